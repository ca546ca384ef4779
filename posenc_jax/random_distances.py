"""Randomized relative distances: the Toeplitz variant of randomized positional encodings.

Ruoss et al. 2023 randomize ALiBi and the Transformer-XL relative encoding not through
random *positions* (whose differences change from pair to pair along a diagonal) but
through random *distances*: once per forward pass and per layer, they draw the sorted
distances ``0 < d_1 < d_2 < ... < d_{L-1}`` without replacement from ``[1, N)`` and
give every query-key pair at offset ``r = k - q`` the distance ``d_|r|`` (with the sign
of ``r``). The bias stays a Toeplitz matrix, as without randomization, but its distances
spread over the larger range ``[0, N)`` seen at test time.

A **distance table** holds this map for the offsets of one call: an integer array of
``W = 2 R - 1`` entries (R: the largest sequence length it serves) with
``table[R - 1 + r]`` the signed distance of offset ``r`` in ``(-R, R)``; the centre is 0
and the table increases strictly. ``randomize_both_sides`` draws the distances to the
left of the query apart from those to the right (the reference's option); otherwise the
left side mirrors the right one. A scheme whose logit term is a function of ``k - q``
only (ALiBi, T5, KERPLE, Shaw, DeBERTa, Transformer-XL) accepts such a table and reads
``table[R - 1 + (k - q)]`` in place of ``k - q`` (`relative_from_table`).

Shape legend: B batch, T query length, S key length, W table width (odd).

References: Ruoss et al. 2023, "Randomized Positional Encodings Boost Length
Generalization of Transformers" (arXiv 2305.16843); reference code
google-deepmind/randomized_positional_encodings, ``models/positional_encodings.py``,
``compute_noisy_alibi_encodings_biases`` and
``compute_attention_with_noisy_relative_encodings`` (commit 57bc5d0).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from posenc_jax._checks import as_int, relative_distance

__all__ = [
    "check_distance_table",
    "relative_from_table",
    "sample_relative_distances",
    "table_index",
    "toeplitz_table",
]


def _as_int_array(x, name: str, fn: str) -> jax.Array:
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.integer):
        raise ValueError(f"{fn} needs integer {name}; got dtype {x.dtype}")
    return x.astype(jnp.int32)


def toeplitz_table(
    right: jax.Array | np.ndarray,
    left: jax.Array | np.ndarray | None = None,
    *,
    width: int | None = None,
) -> jax.Array:
    """The distance table of sorted distances: ``[0 - ... , 0, right]``, centre 0.

    Args:
      right: ``[L - 1]`` increasing positive distances of the keys after the query
        (offsets 1 .. L-1).
      left: ``[L - 1]`` increasing positive distances of the keys before it (offsets
        -1 .. -(L-1)); None: ``right`` (a symmetric table).
      width: R >= L, the half-width of the table (offsets up to R - 1 are served);
        default L. Offsets beyond L - 1 continue one by one past the largest
        distance, so the table still increases (they serve padding only).

    Returns:
      int32 ``[2 R - 1]``: ``table[R - 1 + r]`` = ``right[r - 1]`` for r > 0,
      ``-left[-r - 1]`` for r < 0, 0 for r = 0.

    Raises:
      ValueError: not 1-D integer arrays of one length, not increasing from >= 1, or
        ``width`` below L.

    Example:
      >>> toeplitz_table(jnp.array([2, 5])).tolist()
      [-5, -2, 0, 2, 5]
      >>> toeplitz_table(jnp.array([2, 5]), jnp.array([1, 3]), width=4).tolist()
      [-4, -3, -1, 0, 2, 5, 6]
    """
    fn = "toeplitz_table"
    right = _as_int_array(right, "right", fn)
    left = right if left is None else _as_int_array(left, "left", fn)
    if right.ndim != 1 or left.shape != right.shape:
        raise ValueError(
            f"{fn} needs right and left of one shape [L - 1]; got {right.shape} and {left.shape}"
        )
    n = right.shape[0]
    r = n + 1 if width is None else as_int(width, "width", fn)
    if r < n + 1:
        raise ValueError(f"{fn}: width ({r}) must be >= L = {n + 1} (len(right) + 1)")
    for name, side in (("right", right), ("left", left)):
        if isinstance(side, jax.core.Tracer):
            continue
        s = np.asarray(side)
        if s.size and (s[0] < 1 or np.any(np.diff(s) <= 0)):
            raise ValueError(f"{fn} needs {name} increasing from >= 1; got {s.tolist()}")
    extra = jnp.arange(1, r - n, dtype=jnp.int32)  # [R - L]: one past the largest, onward

    def side(d):
        top = d[-1] if n else jnp.int32(0)
        return jnp.concatenate([d, top + extra])  # [R - 1]

    zero = jnp.zeros((1,), jnp.int32)
    return jnp.concatenate([-side(left)[::-1], zero, side(right)])  # [2R - 1]


def sample_relative_distances(
    key: jax.Array,
    *,
    length: int,
    max_distance: int,
    width: int | None = None,
    randomize_both_sides: bool = False,
) -> jax.Array:
    """One random distance table: sorted distances from ``[1, max_distance)``.

    Draws ``length - 1`` distinct distances uniformly from ``[1, max_distance)`` and
    sorts them (the reference's ``jrandom.choice(..., replace=False)`` then
    ``jnp.sort``); with ``randomize_both_sides`` a second draw gives the left side.
    Jit-compatible with static ``length``; draw one table per layer and per call as
    the reference does (`jax.random.split` the key).

    Args:
      key: a PRNG key.
      length: L >= 1, the sequence length (its L - 1 offsets each way are drawn).
      max_distance: N >= L, one past the largest distance.
      width: R >= L, the table's half-width (see `toeplitz_table`); default L.
      randomize_both_sides: draw the left distances apart from the right ones.

    Returns:
      int32 ``[2 R - 1]``.

    Raises:
      ValueError: ``length`` < 1 or ``max_distance`` < ``length``.

    Example:
      >>> t = sample_relative_distances(jax.random.key(0), length=4, max_distance=64)
      >>> t.shape, int(t[3]), bool(jnp.all(jnp.diff(t) > 0)), bool(jnp.all(t == -t[::-1]))
      ((7,), 0, True, True)

    References: Ruoss et al. 2023 (arXiv 2305.16843), reference code
    ``compute_noisy_alibi_encodings_biases``.
    """
    fn = "sample_relative_distances"
    n = as_int(length, "length", fn)
    top = as_int(max_distance, "max_distance", fn)
    if n < 1 or top < n:
        raise ValueError(
            f"{fn} needs length >= 1 and max_distance >= length; got length={n}, max_distance={top}"
        )
    k_right, k_left = jax.random.split(key)

    def draw(k):
        picked = jax.random.choice(k, top - 1, shape=(n - 1,), replace=False) + 1
        return jnp.sort(picked).astype(jnp.int32)

    right = draw(k_right)
    left = draw(k_left) if randomize_both_sides else None
    return toeplitz_table(right, left, width=width)


def check_distance_table(
    table: jax.Array | np.ndarray, fn: str, *, name: str = "distances"
) -> jax.Array:
    """A table ``[W]`` or ``[B, W]`` of integers with W odd; returned as int32.

    Raises:
      ValueError: another shape, an even W or a float dtype.
    """
    table = _as_int_array(table, name, fn)
    if table.ndim not in (1, 2) or table.shape[-1] % 2 == 0:
        raise ValueError(
            f"{fn} needs {name} of shape [W] or [B, W] with W = 2 R - 1 odd (see "
            f"posenc_jax.random_distances); got shape {table.shape}"
        )
    return table


def table_index(
    q_positions: jax.Array, k_positions: jax.Array, table: jax.Array, fn: str
) -> tuple[jax.Array, jax.Array]:
    """The checked table (int32 ``[W]`` or ``[B, W]``) and the entry of every pair,
    ``R - 1 + (k - q)``: int32 ``[..., T, S]``.

    For a scheme that computes something per table entry and gathers it (Transformer-XL's
    ``q . W_R R_d``); the others call `relative_from_table`.

    Raises:
      ValueError: as `relative_from_table`.
    """
    table = check_distance_table(table, fn)
    rel = relative_distance(q_positions, k_positions, fn)  # [..., T, S]
    if not jnp.issubdtype(rel.dtype, jnp.integer):
        raise ValueError(f"{fn} needs integer positions with a distance table; got floats")
    half = (table.shape[-1] - 1) // 2
    if not isinstance(rel, jax.core.Tracer) and rel.size:
        worst = int(jnp.max(jnp.abs(rel)))
        if worst > half:
            raise ValueError(
                f"{fn}: an offset |k - q| = {worst} exceeds the distance table's "
                f"{half} (W = {table.shape[-1]}); draw the table for the longest sequence"
            )
    return table, jnp.clip(rel + half, 0, 2 * half)


def relative_from_table(
    q_positions: jax.Array, k_positions: jax.Array, table: jax.Array, fn: str
) -> jax.Array:
    """``table[R - 1 + (k - q)]``: the randomized signed distance of every pair.

    Args:
      q_positions: integer ``[T]`` or ``[B, T]``; k_positions: ``[S]`` or ``[B, S]``.
      table: ``[W]`` (one table for the batch) or ``[B, W]`` (one per row).
      fn: the caller's name, for errors.

    Returns:
      int32 ``[T, S]`` (1-D positions and table), else ``[B, T, S]``.

    Raises:
      ValueError: non-integer positions, a bad table, or (concrete positions) an
        offset ``|k - q|`` beyond the table's R - 1. Traced offsets beyond it read the
        table's ends.

    Example:
      >>> table = toeplitz_table(jnp.array([3, 7]))  # [-7, -3, 0, 3, 7]
      >>> relative_from_table(jnp.arange(3), jnp.arange(3), table, "demo").tolist()
      [[0, 3, 7], [-3, 0, 3], [-7, -3, 0]]
    """
    table, idx = table_index(q_positions, k_positions, table, fn)  # [(B,) W], [..., T, S]
    if table.ndim == 1:
        return table[idx]  # [..., T, S]
    if idx.ndim == 2:
        idx = jnp.broadcast_to(idx, (table.shape[0], *idx.shape))
    return jax.vmap(lambda t, i: t[i])(table, idx)  # [B, T, S]
