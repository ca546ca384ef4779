"""Contextual position encoding (CoPE): positions that count the keys a query's gates select.

For query i and key j (both after the causal, padding and segment masks), a gate
``g_ij = sigmoid(q_i . k_j / sqrt(H))`` says whether key j counts for query i, and the
position of key j seen from query i is the number of counted keys from j to i::

    p_ij = min(sum_{t=j..i} g_it, npos - 1)                (fractional, >= 0)

Position embeddings ``e[0..npos-1]`` (shared by the heads) enter the logits through the
query, interpolated between the integer positions around ``p_ij``::

    logits_ij += q_i . ((1 - w) e[floor(p_ij)] + w e[ceil(p_ij)]) / sqrt(H),   w = p - floor(p)

computed as a gather of ``q_i . e[n]`` for every integer n (``[T, npos]``, not ``[T, S, H]``).
With every gate 1, ``p_ij = i - j + 1``: ordinary relative positions.

Shape legend: B batch, N heads, T queries, S keys, H head dim.

References: Golovneva, Wang, Weston, Sukhbaatar 2024, "Contextual Position Encoding:
Learning to Count What's Important" (arXiv 2405.18719); reference code
facebookresearch/RAM, projects/cope/src/cope/context_position.py (``gates =
sigmoid(gate_logits / sqrt(head_dim)) * attn_mask``; ``positions =
gates.flip(-1).cumsum(-1).flip(-1).clamp(max=npos - 1)``; ``pos_logits_fixed = query @
pos_emb``; floor/ceil gather and linear weights; ``(attn_logits + pos_logits) /
sqrt(head_dim)``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["cope_bias", "cope_interpolate", "cope_positions"]


def cope_positions(gate_logits: jax.Array, allowed: jax.Array, *, npos: int) -> jax.Array:
    """Contextual positions ``p_ij = min(sum_{t>=j, allowed} sigmoid(z_it), npos - 1)``.

    Example:
        >>> import jax.numpy as jnp
        >>> z = jnp.full((1, 1, 1, 4), 30.0)  # every gate ~1
        >>> ok = jnp.array([True, True, True, False])[None, None, None]  # key 3 is masked
        >>> [round(float(p), 3) for p in cope_positions(z, ok, npos=8)[0, 0, 0]]
        [3.0, 2.0, 1.0, 0.0]

    Args:
      gate_logits: [B, N, T, S] float, ``q_i . k_j / sqrt(H)``.
      allowed: bool, broadcastable to [B, N, T, S]: the keys a query may attend
        (causal, padding, segments); the others count 0.
      npos: the number of position embeddings (positions are clipped to npos - 1).

    Returns:
      [B, N, T, S] float32, in [0, npos - 1].
    """
    gates = jax.nn.sigmoid(gate_logits.astype(jnp.float32)) * allowed.astype(jnp.float32)
    positions = jnp.flip(jnp.cumsum(jnp.flip(gates, -1), axis=-1), -1)
    return jnp.minimum(positions, float(npos - 1))


def cope_interpolate(pos_logits: jax.Array, positions: jax.Array) -> jax.Array:
    """``(1 - w) L[floor(p)] + w L[ceil(p)]`` along the last axis, ``w = p - floor(p)``.

    Example:
        >>> import jax.numpy as jnp
        >>> cope_interpolate(jnp.array([[0.0, 10.0, 20.0]]), jnp.array([[0.5, 2.0]])).tolist()
        [[5.0, 20.0]]

    Args:
      pos_logits: [..., npos] the logit of each integer position (``q_i . e[n]``).
      positions: [..., S] fractional positions in [0, npos - 1].

    Returns:
      [..., S] float32. Differentiable in ``positions`` through w (floor and ceil are
      not), as in the reference.
    """
    pos_logits = pos_logits.astype(jnp.float32)
    floor = jnp.floor(positions)
    lo = jnp.take_along_axis(pos_logits, floor.astype(jnp.int32), axis=-1, mode="clip")
    hi = jnp.take_along_axis(
        pos_logits, jnp.ceil(positions).astype(jnp.int32), axis=-1, mode="clip"
    )
    w = positions - jax.lax.stop_gradient(floor)
    return lo * (1.0 - w) + hi * w


def cope_bias(qs: jax.Array, k: jax.Array, pos_emb: jax.Array, allowed: jax.Array) -> jax.Array:
    """The CoPE logit term ``q_i . e(p_ij) / sqrt(H)`` for scaled queries.

    Example:
        >>> import jax.numpy as jnp
        >>> qs, k = jnp.ones((1, 3, 2, 4)) / 2.0, jnp.ones((1, 3, 2, 4))
        >>> ok = jnp.tril(jnp.ones((3, 3), bool))[None, None]
        >>> cope_bias(qs, k, jnp.zeros((4, 5)), ok).shape
        (1, 2, 3, 3)

    Args:
      qs: [B, T, N, H] queries times 1/sqrt(H) (attention's scaled queries).
      k: [B, S, N, H] keys (key heads repeated to N).
      pos_emb: [H, npos] position embeddings, shared by the heads.
      allowed: bool [B, 1, T, S] (or broadcastable to [B, N, T, S]).

    Returns:
      [B, N, T, S] float32.
    """
    hi = jax.lax.Precision.HIGHEST
    gate_logits = jnp.einsum("btnh,bsnh->bnts", qs, k, preferred_element_type=jnp.float32)
    positions = cope_positions(gate_logits, allowed, npos=pos_emb.shape[-1])
    pos_logits = jnp.einsum(
        "btnh,hp->bntp", qs.astype(jnp.float32), pos_emb.astype(jnp.float32), precision=hi
    )  # [B, N, T, npos]
    return cope_interpolate(pos_logits, positions)
