"""Forgetting attention (FoX): a data-dependent, learned decay of the attention logits.

Each head h has a forget gate per token, ``f_t = sigmoid(w_h . x_t + b_h)`` in (0, 1),
and the logit of query i for key j gains the log of the gates between them::

    logits_ij = q_i . k_j / sqrt(H) + sum_{l=j+1..i} log f_l = ... + L_i - L_j,
    L_t = sum_{l<=t} log f_l                                    (cumulative log forget)

so a key's weight decays by the product of the forget gates of the tokens after it:
ALiBi's fixed linear decay ``-m (i - j)`` becomes a decay that the tokens choose. The
query's own key gets no decay (the sum is empty for j = i). FoX uses no other
positional encoding.

Shape legend: B batch, T query length, S key length, N heads, D model dim.

References: Lin, Nikishin, He, Courville 2025, "Forgetting Transformer: Softmax
Attention with a Forget Gate" (ICLR 2025, arXiv 2503.02130); reference code
zhixuan-lin/forgetting-transformer, src/forgetting_transformer/ops/forgetting_attention.py
(``log_lambda = cumsum(log_fgate)``; ``decay_bias = log_lambda[..., :, None] -
log_lambda[..., None, :]``) and model/forgetting_transformer/modeling_forgetting_transformer.py
(``fgate_proj = nn.Linear(hidden_size, num_heads, bias=True)``, ``logsigmoid`` in float32).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["cumulative_log_forget", "fox_bias", "log_forget_gates"]


def log_forget_gates(x: jax.Array, weight: jax.Array, bias: jax.Array) -> jax.Array:
    """log f = log sigmoid(x . w + b), per token and head, in float32.

    Example:
        >>> import jax.numpy as jnp
        >>> log_forget_gates(jnp.zeros((1, 2, 4)), jnp.ones((4, 3)), jnp.zeros(3)).shape
        (1, 2, 3)

    Args:
      x: [B, T, D] the attention layer's input.
      weight: [D, N]; bias: [N].

    Returns:
      [B, T, N] float32, every entry < 0 (log of a gate in (0, 1)).

    References: Lin et al. 2025, eq. (2) (arXiv 2503.02130).
    """
    logits = jnp.einsum(
        "btd,dn->btn",
        x.astype(jnp.float32),
        weight.astype(jnp.float32),
        precision=jax.lax.Precision.HIGHEST,
    )
    return jax.nn.log_sigmoid(logits + bias.astype(jnp.float32))


def cumulative_log_forget(
    log_f: jax.Array,
    carry: jax.Array | None = None,
    *,
    key_mask: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """L_t = carry + sum_{l<=t} log f_l along the sequence, and the carry after the last token.

    Padding tokens (``key_mask`` False) contribute 0, as in the reference, which zeroes
    the gates of left padding before its cumulative sum: differences ``L_i - L_j``
    between real tokens are unchanged and stay accurate.

    Example:
        >>> import jax.numpy as jnp
        >>> L, carry = cumulative_log_forget(jnp.log(jnp.full((1, 3, 1), 0.5)))
        >>> jnp.round(jnp.exp(L[0, :, 0]), 3).tolist(), float(jnp.exp(carry[0, 0]))
        ([0.5, 0.25, 0.125], 0.125)

    Args:
      log_f: [B, T, N] log forget gates.
      carry: [B, N] the cumulative value before the first of these tokens (None: 0).
      key_mask: [B, T] bool, True = real token (None: all real).

    Returns:
      L: [B, T, N] float32 and the new carry [B, N] (= L at the last token).
    """
    log_f = log_f.astype(jnp.float32)
    if key_mask is not None:
        log_f = jnp.where(jnp.asarray(key_mask, bool)[..., None], log_f, 0.0)
    cum = jnp.cumsum(log_f, axis=1)
    if carry is not None:
        cum = cum + carry.astype(jnp.float32)[:, None, :]
    return cum, cum[:, -1, :]


def fox_bias(q_state: jax.Array, k_state: jax.Array) -> jax.Array:
    """The FoX logit term ``L_i - L_j``: the log forget gates between key j and query i.

    Example:
        >>> import jax.numpy as jnp
        >>> L = jnp.array([[[-1.0], [-3.0]]])  # [B=1, T=2, N=1]
        >>> fox_bias(L, L)[0, 0].tolist()
        [[0.0, 2.0], [-2.0, 0.0]]

    Args:
      q_state: [B, T, N] cumulative log forget L at the queries.
      k_state: [B, S, N] L at the keys.

    Returns:
      [B, N, T, S] float32 (non-positive wherever key j is not after query i).
    """
    q_state = jnp.swapaxes(q_state.astype(jnp.float32), 1, 2)  # [B, N, T]
    k_state = jnp.swapaxes(k_state.astype(jnp.float32), 1, 2)  # [B, N, S]
    return q_state[..., :, None] - k_state[..., None, :]
