"""TUPE: untied positional attention, with the [CLS] position untied and optional T5 buckets.

Ke et al. 2021 remove the absolute position embedding from the input and add its
correlation as a separate term of the logits:

    alpha_ij = (x_i W^Q)(x_j W^K)^T / sqrt(2d) + (p_i U^Q)(p_j U^K)^T / sqrt(2d)  [+ b_{j-i}]

with p a learned table of absolute positions and U^Q, U^K per-head projections of
their own; the content term is scaled by ``1/sqrt(2d)`` too (d the head dim here, as
in the authors' multi-head code), which the scheme applies by scaling q. With
``cls_theta`` the [CLS] token (the one at position 0) is untied: its row of the
positional term is a learned scalar theta_1 per head ([CLS] to the others) and its
column theta_2 (the others to [CLS]). TUPE-R adds T5's bucketed relative bias
``b_{j-i}`` (`posenc_jax.relative.t5_bias`).

The authors' code layer-normalises the table and gives the projections biases; the
[CLS] scalars there are products of two extra table rows, and TUPE-R's [CLS] cells
add a bucket of their own. Here the paper's form is kept: a plain table, bias-free
projections, and free scalars theta (which also absorb the relative bias of the [CLS]
cells, a sum of two free scalars).

Shape legend: B batch, T query length, S key length, N heads, H head dim, L table
length, D_p size of the position embeddings.

References: Ke, He, Liu 2021, "Rethinking Positional Encoding in Language
Pre-training" (ICLR 2021, arXiv 2006.15595), sections 3.1-3.3; the authors' code,
github.com/guolinke/TUPE (``fairseq/modules/transformer_sentence_encoder.py``).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from posenc_jax import absolute, relative
from posenc_jax._checks import check_choice, check_positions

__all__ = ["tupe_bias", "tupe_positional_logits"]


def tupe_positional_logits(
    q_positions: jax.Array,
    k_positions: jax.Array,
    table: jax.Array,
    u_q: jax.Array,
    u_k: jax.Array,
    *,
    out_of_range: str = "error",
) -> jax.Array:
    """The untied positional term ``(p_i U^Q) . (p_j U^K) / sqrt(2 H)`` per head.

    Args:
      q_positions: integer query positions ``[T]`` or ``[B, T]``.
      k_positions: integer key positions ``[S]`` or ``[B, S]``.
      table: ``[L, D_p]`` absolute position embeddings p.
      u_q, u_k: ``[D_p, N, H]`` projections U^Q, U^K.
      out_of_range: positions outside ``[0, L)``: "error" or "clip", as in
        `posenc_jax.absolute.learned_lookup` (one check covers both position
        arrays, `posenc_jax.absolute.check_learned_positions`).

    Returns:
      float32 ``[N, T, S]`` when both position arrays are 1-D, else ``[B, N, T, S]``.

    Raises:
      ValueError: shapes that do not match, bad positions (out of range with "error").

    Example:
      >>> table = jnp.eye(3)
      >>> u = jnp.ones((3, 1, 2))
      >>> tupe_positional_logits(jnp.arange(2), jnp.arange(3), table, u, u).shape
      (1, 2, 3)

    References: Ke et al. 2021, "Rethinking Positional Encoding in Language
    Pre-training", equation (6) (arXiv 2006.15595).
    """
    fn = "tupe_positional_logits"
    table, u_q, u_k = jnp.asarray(table), jnp.asarray(u_q), jnp.asarray(u_k)
    if table.ndim != 2:
        raise ValueError(f"{fn} needs table of shape [L, D_p]; got shape {table.shape}")
    if u_q.ndim != 3 or u_q.shape != u_k.shape or u_q.shape[0] != table.shape[1]:
        raise ValueError(
            f"{fn} needs u_q and u_k of shape [D_p, N, H] with D_p = table.shape[1] = "
            f"{table.shape[1]}; got shapes {u_q.shape} and {u_k.shape}"
        )
    check_choice(out_of_range, "out_of_range", absolute.OUT_OF_RANGE_POLICIES, fn)
    q_pos = check_positions(q_positions, "q_positions", fn, integer=True)
    k_pos = check_positions(k_positions, "k_positions", fn, integer=True)
    if out_of_range == "error":  # one check for both lookups
        absolute.check_learned_positions(q_pos, k_pos, length=table.shape[0], fn=fn)
    p_q = absolute.learned_lookup(table, q_pos, out_of_range="clip")  # [..., T, D_p]
    p_k = absolute.learned_lookup(table, k_pos, out_of_range="clip")  # [..., S, D_p]
    f32 = jnp.float32
    pos_q = jnp.einsum("...td,dnh->...tnh", p_q, u_q, preferred_element_type=f32)
    pos_k = jnp.einsum("...sd,dnh->...snh", p_k, u_k, preferred_element_type=f32)
    scale = 1.0 / math.sqrt(2 * u_q.shape[-1])
    return jnp.einsum("...tnh,...snh->...nts", pos_q * scale, pos_k)  # [..., N, T, S]


def tupe_bias(
    q_positions: jax.Array,
    k_positions: jax.Array,
    table: jax.Array,
    u_q: jax.Array,
    u_k: jax.Array,
    *,
    cls_theta: jax.Array | None = None,
    relative_table: jax.Array | None = None,
    bidirectional: bool = True,
    num_buckets: int = 32,
    max_distance: int = 128,
    out_of_range: str = "error",
) -> jax.Array:
    """TUPE's positional logits: the untied term, [CLS] untied, plus TUPE-R's relative bias.

    ``tupe_positional_logits (+ t5_bias)``; then, with ``cls_theta``, every pair whose
    query is at position 0 gets ``cls_theta[0]`` ([CLS] to the others, the [CLS]
    query's whole row) and every other pair whose key is at position 0 gets
    ``cls_theta[1]`` (the others to [CLS]).

    Args:
      q_positions, k_positions, table, u_q, u_k, out_of_range: as in
        `tupe_positional_logits`.
      cls_theta: ``[2, N]`` theta_1 and theta_2 per head, or None (nothing untied:
        decoders have no [CLS]).
      relative_table: ``[num_buckets, N]`` T5 bias table (TUPE-R), or None.
      bidirectional, num_buckets, max_distance: the T5 buckets
        (`posenc_jax.relative.t5_relative_bucket`; 32 and 128 in the paper).

    Returns:
      float32 ``[N, T, S]`` when both position arrays are 1-D, else ``[B, N, T, S]``.

    Raises:
      ValueError: shapes that do not match, bad settings or positions.

    Example:
      >>> table, u = jnp.zeros((4, 2)), jnp.zeros((2, 1, 2))
      >>> theta = jnp.array([[5.0], [7.0]])
      >>> tupe_bias(jnp.arange(3), jnp.arange(3), table, u, u, cls_theta=theta)[0].tolist()
      [[5.0, 5.0, 5.0], [7.0, 0.0, 0.0], [7.0, 0.0, 0.0]]

    References: Ke et al. 2021, "Rethinking Positional Encoding in Language
    Pre-training", sections 3.2-3.3 (arXiv 2006.15595).
    """
    fn = "tupe_bias"
    out = tupe_positional_logits(
        q_positions, k_positions, table, u_q, u_k, out_of_range=out_of_range
    )  # [..., N, T, S]
    n = u_q.shape[1]
    if relative_table is not None:
        out = out + relative.t5_bias(
            q_positions,
            k_positions,
            relative_table,
            bidirectional=bidirectional,
            num_buckets=num_buckets,
            max_distance=max_distance,
        ).astype(jnp.float32)
    if cls_theta is None:
        return out
    theta = jnp.asarray(cls_theta, jnp.float32)
    if theta.shape != (2, n):
        raise ValueError(
            f"{fn} needs cls_theta of shape [2, N] = [2, {n}] (theta_1: [CLS] to the others, "
            f"theta_2: the others to [CLS]); got shape {theta.shape}"
        )
    q_cls = (jnp.asarray(q_positions) == 0)[..., None, :, None]  # [..., 1, T, 1]
    k_cls = (jnp.asarray(k_positions) == 0)[..., None, None, :]  # [..., 1, 1, S]
    out = jnp.where(k_cls, theta[1][:, None, None], out)
    return jnp.where(q_cls, theta[0][:, None, None], out)
