"""Abacus embeddings: each digit's place within its number, as a learned position embedding.

A digit's Abacus id is its 1-based index within its run of consecutive digit tokens; every
other token gets id 0 (one shared row). With numbers written least significant digit first,
digits of the same significance share an id across the operands and the answer, so the
model aligns them however long the numbers. During training one random offset
``k ~ U{0, .., max_offset}`` per call is added to every digit's id (not to the zeros), so
the rows for ids beyond the training lengths are trained too; evaluation uses ``k = 0``.

Shape legend: B batch, T length, D model dim, L table length.

References: McLeish, Bansal, Stein, Jain, Kirchenbauer, Bartoldson, Kailkhura, Bhatele,
Geiping, Schwarzschild, Goldstein 2024, "Transformers Can Do Arithmetic with the Right
Embeddings" (NeurIPS 2024, arXiv 2405.17399); mcleish7/arithmetic, abacus.py
(``get_index``: index within the digit run from 1, 0 elsewhere; ``forward``: one
``randint(0, max_k)`` per call while training, added where the id is > 0; the table
``nn.Embedding(max_seq_length, embedding_dim)``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from posenc_jax._checks import as_int

__all__ = ["abacus_ids", "digit_mask", "digit_places", "sample_abacus_offset"]


def digit_mask(tokens: jax.Array, digit_ids: tuple[int, ...]) -> jax.Array:
    """Which tokens are digits.

    Args:
      tokens: [B, T] (or any shape) integer token ids.
      digit_ids: the token ids of the digits.

    Returns:
      bool array of ``tokens.shape``.

    Example:
      >>> digit_mask(jnp.array([5, 9, 20, 6]), (5, 6, 7, 8, 9)).tolist()
      [True, True, False, True]
    """
    if not digit_ids:
        raise ValueError("digit_mask: digit_ids must name at least one token id; got none")
    ids = jnp.asarray(sorted({int(i) for i in digit_ids}), dtype=jnp.int32)
    return jnp.isin(jnp.asarray(tokens), ids)


def digit_places(
    is_digit: jax.Array,
    *,
    carry: jax.Array | int = 0,
    segment_ids: jax.Array | None = None,
) -> jax.Array:
    """Each digit's 1-based index within its run of consecutive digits; 0 for other tokens.

    Args:
      is_digit: [B, T] (or [..., T]) bool, True on digit tokens.
      carry: [B] (or [...]) int, or an int: the length of a run of digits that ends just
        before this call's first token (KV-cache decoding continues it; 0 otherwise).
      segment_ids: optional [B, T] (or [..., T]) int: a digit whose segment differs from
        the token before it starts a new run (packed documents do not share a number).

    Returns:
      int32 array of ``is_digit.shape``.

    Example:
      >>> is_digit = jnp.array([True, True, False, True, True, True, False])  # "12+345="
      >>> digit_places(is_digit).tolist()
      [1, 2, 0, 1, 2, 3, 0]
      >>> digit_places(is_digit[:2], carry=3).tolist()  # continuing a run of three digits
      [4, 5]

    References: McLeish et al. 2024 (arXiv 2405.17399), mcleish7/arithmetic abacus.py.
    """
    is_digit = jnp.asarray(is_digit, dtype=bool)
    t = is_digit.shape[-1]
    index = jnp.arange(t, dtype=jnp.int32)  # [T]
    # A run ends at a non-digit (the next one starts after it); a new segment starts a run
    # at its first token (as if a non-digit stood just before it).
    breaks = jnp.where(is_digit, -1, index)  # [..., T]
    if segment_ids is not None:
        segment_ids = jnp.asarray(segment_ids)
        changed = segment_ids[..., 1:] != segment_ids[..., :-1]  # [..., T - 1]
        starts = jnp.concatenate([jnp.zeros_like(changed[..., :1]), changed], axis=-1)
        breaks = jnp.where(is_digit & starts, index - 1, breaks)
    last = jax.lax.cummax(breaks, axis=is_digit.ndim - 1)  # last break at or before t
    carry = jnp.asarray(carry, jnp.int32)[..., None]  # a run before the call continues
    places = index - last + jnp.where(last < 0, carry, 0)
    return jnp.where(is_digit, places, 0).astype(jnp.int32)


def abacus_ids(
    is_digit: jax.Array,
    *,
    offset: jax.Array | int = 0,
    carry: jax.Array | int = 0,
    segment_ids: jax.Array | None = None,
) -> jax.Array:
    """Abacus ids: `digit_places` plus ``offset`` on the digits, 0 for every other token.

    Args:
      is_digit: [B, T] (or [..., T]) bool, True on digit tokens.
      offset: an int or int scalar array added to every digit's id (the training shift).
      carry, segment_ids: as in `digit_places`.

    Returns:
      int32 array of ``is_digit.shape``.

    Example:
      >>> is_digit = jnp.array([True, True, False, True, True, True, False])  # "12+345="
      >>> abacus_ids(is_digit, offset=10).tolist()
      [11, 12, 0, 11, 12, 13, 0]

    References: McLeish et al. 2024 (arXiv 2405.17399), mcleish7/arithmetic abacus.py.
    """
    places = digit_places(is_digit, carry=carry, segment_ids=segment_ids)
    return jnp.where(places > 0, places + jnp.asarray(offset, jnp.int32), 0)


def sample_abacus_offset(key: jax.Array, max_offset: int) -> jax.Array:
    """One training offset ``k ~ U{0, .., max_offset}`` (both ends included), shared by the
    whole batch, as the reference draws one ``randint(0, max_k)`` per forward call.

    Args:
      key: PRNG key.
      max_offset: largest offset; >= 0.

    Returns:
      int32 scalar.

    Example:
      >>> int(sample_abacus_offset(jax.random.key(0), 0))
      0
    """
    max_offset = as_int(max_offset, "max_offset", "abacus")
    if max_offset < 0:
        raise ValueError(f"abacus: max_offset must be >= 0; got max_offset={max_offset}")
    return jax.random.randint(key, (), 0, max_offset + 1, dtype=jnp.int32)
