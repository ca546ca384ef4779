"""ALiBi: attention with linear biases (Press, Smith, Lewis 2022).

Each head n adds ``-m_n * distance`` to its attention logits, with fixed
per-head slopes ``m_n`` forming a geometric sequence. No parameters.

Encoders use ``-m_n * |q - k|`` ("symmetric"), which cannot tell left from right:
an encoder with it maps a reversed input to the reversed output. The
randomized-positions study (Ruoss et al. 2023) breaks the tie with ``+0.5 * m_n``
on keys before the query ("ruoss"), as its reference code does.

Shape legend: B batch, T query length, S key length, N heads.
"""

from __future__ import annotations

import operator

import jax
import jax.numpy as jnp
import numpy as np

from posenc_jax._checks import relative_distance
from posenc_jax.random_distances import relative_from_table

__all__ = ["BIDIRECTIONAL_MODES", "alibi_bias", "alibi_slopes", "bidirectional_mode"]

BIDIRECTIONAL_MODES: tuple[str, ...] = ("symmetric", "ruoss")
"""The bidirectional (encoder) biases: ``-m |q - k|``, or that plus ``0.5 m`` for keys before
the query (Ruoss et al. 2023). ``bidirectional=True`` means "symmetric"."""


def _slopes_power_of_two(n: int) -> list[float]:
    # 2^(-8 i / n), i = 1 .. n: start 2^(-8/n), ratio 2^(-8/n).
    return [2.0 ** (-8.0 * i / n) for i in range(1, n + 1)]


def alibi_slopes(num_heads: int) -> jax.Array:
    """Per-head ALiBi slopes, exactly as the authors' code.

    For a power of two n the slopes are ``2^(-8 i / n)``, ``i = 1 .. n`` (8 heads:
    1/2, 1/4, ..., 1/256). Otherwise, with p the largest power of two below n,
    the p slopes of p heads come first, followed by every second slope of the
    2p-head sequence (``2^(-4 i / p)`` for odd i), for the remaining n - p heads.
    Computed in float64 on the host, returned as float32.

    Args:
      num_heads: N, >= 1.

    Returns:
      ``[N]`` float32 slopes in (0, 1).

    Raises:
      ValueError: ``num_heads`` < 1 or not an int.

    Example:
      >>> alibi_slopes(4).tolist()
      [0.25, 0.0625, 0.015625, 0.00390625]

    References: Press, Smith, Lewis 2022, "Train Short, Test Long: Attention with
    Linear Biases Enables Input Length Extrapolation" (arXiv 2108.12409), and the
    authors' fairseq ``get_slopes``.
    """
    try:
        n = operator.index(num_heads)
    except TypeError:
        raise ValueError(f"alibi_slopes needs an int num_heads; got {num_heads!r}") from None
    if n < 1:
        raise ValueError(f"alibi_slopes needs num_heads >= 1; got num_heads={n}")
    p = 1 << (n.bit_length() - 1)  # largest power of two <= n
    slopes = _slopes_power_of_two(p)
    if p < n:
        slopes += _slopes_power_of_two(2 * p)[0::2][: n - p]
    return jnp.asarray(np.asarray(slopes, dtype=np.float32))


def bidirectional_mode(value: object, fn: str) -> str | None:
    """None (causal), "symmetric" or "ruoss" from a ``bidirectional`` argument.

    Raises:
      ValueError: not a bool nor one of `BIDIRECTIONAL_MODES`; the message, prefixed
        with ``fn``, lists the valid values.

    Example:
      >>> bidirectional_mode(True, "alibi"), bidirectional_mode(False, "alibi")
      ('symmetric', None)
    """
    if isinstance(value, bool | np.bool_):
        return "symmetric" if value else None
    if isinstance(value, str) and value in BIDIRECTIONAL_MODES:
        return value
    valid = [False, True, *BIDIRECTIONAL_MODES]
    raise ValueError(f"{fn}: bidirectional must be one of {valid}; got {value!r}")


def _relative(
    q_positions: jax.Array, k_positions: jax.Array, mode: str | None, distances
) -> jax.Array:
    """The bias per unit slope as float32, [T] / [B, T] with [S] / [B, S] -> [..., T, S].

    Causal (mode None): k - q. "symmetric": -|k - q|. "ruoss": -|k - q| + 0.5 where k < q.
    Integer positions subtract exactly first, so the diagonal is +0.0 after the cast.
    With a distance table, ``table[k - q]`` stands for ``k - q``.
    """
    if distances is None:
        rel = relative_distance(q_positions, k_positions, "alibi_bias")
    else:
        rel = relative_from_table(q_positions, k_positions, distances, "alibi_bias")
    if mode is None:
        return rel.astype(jnp.float32)  # [..., T, S]
    out = (-jnp.abs(rel)).astype(jnp.float32)
    if mode == "ruoss":
        out = out + jnp.where(rel < 0, jnp.float32(0.5), jnp.float32(0.0))
    return out  # [..., T, S]


def alibi_bias(
    q_positions: jax.Array,
    k_positions: jax.Array,
    slopes: jax.Array,
    *,
    bidirectional: bool | str = False,
    distances: jax.Array | None = None,
) -> jax.Array:
    """ALiBi additive logit bias.

    Causal (default): ``bias[n, i, j] = -m_n * (q_i - k_j)``. For keys at or
    before the query (``k_j <= q_i``) this is ``-m_n * distance``; entries with
    ``k_j > q_i`` are positive and must be removed by the causal mask, which the
    attention applies separately. Bidirectional (encoders), ``bidirectional=True``
    or ``"symmetric"``: ``bias[n, i, j] = -m_n * |q_i - k_j|``. This bias is
    symmetric, so an encoder using it is mirror-equivariant: its output for a
    reversed input is its output reversed, and it cannot tell left from right.
    ``"ruoss"``: ``-m_n * |q_i - k_j| + 0.5 * m_n`` for keys before the query
    (``k_j < q_i``), which breaks the symmetry as the reference code of Ruoss et
    al. 2023 does: google-deepmind/randomized_positional_encodings,
    ``models/positional_encodings.py``, ``compute_alibi_encodings_biases``
    (commit 57bc5d0: ``alibi += 0.5 * np.tri(*alibi.shape, k=-1)``,
    the lower triangle, i.e. keys before the query, on top of ``-|i - j|``). There
    positions are 0 .. T-1 and 0 .. S-1; here any positions (randomized,
    offset) enter through ``q_i - k_j`` as in the rest of the library.

    The bias depends on positions only through ``q_i - k_j``, so shifting both
    position arrays by the same offset leaves it unchanged.

    Args:
      q_positions: query positions ``[T]`` or ``[B, T]``.
      k_positions: key positions ``[S]`` or ``[B, S]``.
      slopes: ``[N]`` per-head slopes (see `alibi_slopes`).
      bidirectional: False (causal), True or "symmetric" (``-m |q - k|``), or "ruoss"
        (that plus ``0.5 m`` for keys before the query).
      distances: None, or a distance table ``[W]`` / ``[B, W]`` of randomized signed
        distances (`posenc_jax.random_distances`) read in place of ``k - q``: with
        "ruoss" and a symmetric table this is the reference's
        ``compute_noisy_alibi_encodings_biases``.

    Returns:
      float32 ``[N, T, S]`` when both position arrays and the table are 1-D, else
      ``[B, N, T, S]``.

    Raises:
      ValueError: positions not 1-D/2-D, ``slopes`` not 1-D, or an unknown
        ``bidirectional`` (the message lists the valid ones).

    Example:
      >>> pos = jnp.arange(3)
      >>> alibi_bias(pos, pos, jnp.array([0.5]))[0].tolist()
      [[0.0, 0.5, 1.0], [-0.5, 0.0, 0.5], [-1.0, -0.5, 0.0]]
      >>> alibi_bias(pos, pos, jnp.array([0.5]), bidirectional="ruoss")[0].tolist()
      [[0.0, -0.5, -1.0], [-0.25, 0.0, -0.5], [-0.75, -0.25, 0.0]]

    References: Press, Smith, Lewis 2022, "Train Short, Test Long" (arXiv 2108.12409);
    Ruoss et al. 2023, "Randomized Positional Encodings Boost Length Generalization of
    Transformers" (arXiv 2305.16843).
    """
    slopes = jnp.asarray(slopes)
    if slopes.ndim != 1:
        raise ValueError(f"alibi_bias needs slopes of shape [N]; got {slopes.shape}")
    mode = bidirectional_mode(bidirectional, "alibi_bias")
    rel = _relative(q_positions, k_positions, mode, distances)  # [..., T, S]
    m = slopes.astype(jnp.float32)[:, None, None]  # [N, 1, 1]
    return m * rel[..., None, :, :]  # [..., N, T, S]; causal: m * (k - q) == -m * (q - k)
