"""DeBERTa's disentangled attention: content-to-position and position-to-content terms.

DeBERTa adds two terms to the content logits ``Q^c_i . K^c_j``: content-to-position
``Q^c_i . K^r[delta(i, j)]`` (`deberta_c2p`) and position-to-content
``K^c_j . Q^r[delta(i, j)]`` (`deberta_p2c`), where ``K^r`` and ``Q^r`` are tables of
``2k`` relative-position embeddings projected per head, and all three terms are
divided by ``sqrt(3 H)`` (``scale_factor`` = 1 + the number of extra terms).
``delta`` clips the relative distance ``i - j`` (query minus key: the negative of the
library's key - query, `posenc_jax._checks.relative_distance`) to the table;
DeBERTa-v2/v3 first bucket it logarithmically beyond ``position_buckets // 2``
(`deberta_log_bucket`, Hugging Face's ``make_log_bucket_position``).

The position-to-content term reads the row the reference code reads: Hugging Face's
``DebertaV2`` gathers ``clamp(-r_pos + att_span)`` along the keys and transposes,
which is the row ``delta(i, j)`` of the content-to-position term (the paper writes
``delta(j, i)``). Golden values in ``tests/test_deberta.py`` are a float64
transcription of that code.

Both terms are computed from explicit positions with a gather of whole rows (as the
Shaw key term, `posenc_jax.relative.shaw_key_logits`): project every query (key) on
the ``2k`` table rows, then pick the row of each pair; memory O(B N T 2k), no
``[T, S, H]`` array, and it works per tile of a blockwise attention.

Shape legend: B batch, T query length, S key length, N heads, H head dim,
R = 2k table rows.

References: He et al. 2021, "DeBERTa: Decoding-enhanced BERT with Disentangled
Attention" (arXiv 2006.03654), section 3.1; Hugging Face transformers
``models/deberta_v2/modeling_deberta_v2.py`` (``make_log_bucket_position``,
``build_relative_position``, ``DisentangledSelfAttention.disentangled_attention_bias``).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp

from posenc_jax._checks import as_int, check_positions, relative_distance
from posenc_jax.random_distances import relative_from_table

__all__ = [
    "deberta_c2p",
    "deberta_log_bucket",
    "deberta_p2c",
    "deberta_relative_index",
    "deberta_span",
]


def _check_buckets(position_buckets: Any, max_position: Any, fn: str) -> tuple[int | None, int]:
    """(position_buckets or None, max_position) after validation."""
    m = as_int(max_position, "max_relative_positions", fn)
    if m < 1:
        raise ValueError(f"{fn} needs max_relative_positions >= 1; got {m}")
    if position_buckets is None:
        return None, m
    pb = as_int(position_buckets, "position_buckets", fn)
    if pb < 2:
        raise ValueError(
            f"{fn} needs position_buckets >= 2, or None for no log buckets (DeBERTa v1); "
            f"got position_buckets={pb}"
        )
    if m - 1 <= pb // 2:
        raise ValueError(
            f"{fn} needs max_relative_positions - 1 > position_buckets // 2 (the log buckets "
            f"divide by log((max_relative_positions - 1) / (position_buckets // 2))); got "
            f"position_buckets={pb}, max_relative_positions={m}"
        )
    return pb, m


def deberta_span(*, position_buckets: int | None = 256, max_relative_positions: int = 512) -> int:
    """Half the number of table rows, ``att_span`` in the reference code.

    ``position_buckets`` when log buckets are used (DeBERTa-v2/v3), else
    ``max_relative_positions`` (DeBERTa v1); the tables ``K^r``, ``Q^r`` have
    ``2 * span`` rows.

    Example:
      >>> deberta_span(position_buckets=256, max_relative_positions=512)
      256
      >>> deberta_span(position_buckets=None, max_relative_positions=512)
      512
    """
    pb, m = _check_buckets(position_buckets, max_relative_positions, "deberta_span")
    return m if pb is None else pb


@functools.lru_cache(maxsize=64)
def _log_thresholds(mid: int, max_position: int, count: int) -> tuple[int, ...]:
    """Smallest distance n > mid of each bucket ``mid + k``, k = 1 .. count.

    The reference computes ``mid + ceil(c * log(n / mid) / log((M - 1) / mid))`` with
    ``c = mid - 1``. The bucket is ``>= mid + k`` exactly when that ceiling is ``>= k``,
    i.e. ``c * log(n / mid) > (k - 1) * log((M - 1) / mid)``, i.e.
    ``n^c * mid^(k-1) > (M - 1)^(k-1) * mid^c``: an integer comparison, decided here
    exactly with Python integers. Buckets that no distance reaches end the list.
    """
    c = mid - 1
    out: list[int] = []
    for k in range(1, count + 1):
        rhs = (max_position - 1) ** (k - 1) * mid**c

        def above(n: int, k: int = k, rhs: int = rhs) -> bool:
            return n**c * mid ** (k - 1) > rhs

        if c == 0:
            if k == 1 and above(mid + 1):
                out.append(mid + 1)
                continue
            break
        # (n / mid) > ((M - 1) / mid)^((k - 1) / c): a float guess, then exact steps.
        guess = mid * ((max_position - 1) / mid) ** ((k - 1) / c)
        n = max(mid + 1, math.floor(guess) - 1)
        while not above(n):
            n += 1
        while n > mid + 1 and above(n - 1):
            n -= 1
        out.append(n)
    return tuple(out)


def deberta_log_bucket(
    relative_position: jax.Array,
    *,
    position_buckets: int = 256,
    max_relative_positions: int = 512,
) -> jax.Array:
    """DeBERTa-v2/v3's logarithmic bucket of a relative position.

    Hugging Face's ``make_log_bucket_position(relative_pos, bucket_size,
    max_position)``: with ``mid = position_buckets // 2``, positions with
    ``|r| <= mid`` keep their value; a larger ``|r|`` gets
    ``sign(r) * (mid + ceil((mid - 1) * log(|r| / mid) / log((M - 1) / mid)))`` with
    ``M = max_relative_positions``, so ``|r| = M - 1`` lands in bucket
    ``2 mid - 1``. The function is odd (``bucket(-r) = -bucket(r)``), so it serves
    either sign convention.

    The logarithm is not evaluated on the device: the smallest distance of each
    bucket is found once on the host in exact integer arithmetic (as for T5,
    `posenc_jax.relative.t5_relative_bucket`), and a distance's bucket is the count
    of thresholds it reaches. Buckets are capped at ``+-position_buckets``: the
    embedding tables have ``2 * position_buckets`` rows and the reference clamps
    every larger bucket to the first or last row, so the cap changes no logit.

    Args:
      relative_position: integer relative positions of any shape.
      position_buckets: >= 2 (256 in DeBERTa-v2/v3).
      max_relative_positions: M, with ``M - 1 > position_buckets // 2`` (512).

    Returns:
      int32 buckets in ``[-position_buckets, position_buckets]``, same shape.

    Raises:
      ValueError: non-integer input or settings out of the ranges above.

    Example:
      >>> deberta_log_bucket(jnp.array([-3, 0, 128, 129, 300, 511, 5000])).tolist()
      [-3, 0, 128, 129, 207, 255, 256]

    References: He et al. 2021 (arXiv 2006.03654); Hugging Face transformers
    ``models/deberta_v2/modeling_deberta_v2.py``, ``make_log_bucket_position``.
    """
    fn = "deberta_log_bucket"
    pb, m = _check_buckets(position_buckets, max_relative_positions, fn)
    if pb is None:
        raise ValueError(f"{fn} needs position_buckets >= 2; got None")
    rel = jnp.asarray(relative_position)
    if not jnp.issubdtype(rel.dtype, jnp.integer):
        raise ValueError(f"{fn} needs integer relative_position; got dtype {rel.dtype}")
    rel = rel.astype(jnp.int32)
    mid = pb // 2
    thresholds = _log_thresholds(mid, m, pb - mid)  # buckets mid+1 .. pb
    n = jnp.abs(rel)
    # Count of thresholds <= n: a binary search (no [..., buckets] comparison array).
    large = mid + jnp.searchsorted(jnp.asarray(thresholds, jnp.int32), n, side="right")
    return jnp.where(n <= mid, rel, jnp.sign(rel) * large)


def deberta_relative_index(
    q_positions: jax.Array,
    k_positions: jax.Array,
    *,
    position_buckets: int | None = 256,
    max_relative_positions: int = 512,
    distances: jax.Array | None = None,
) -> jax.Array:
    """Table row of each (query, key) pair: ``clip(bucket(q_i - k_j) + span, 0, 2 span - 1)``.

    This is the paper's ``delta(i, j)``: ``i - j`` clipped to ``[-k, k)`` and shifted
    by ``k = span`` (`deberta_span`); with ``position_buckets`` the distance is first
    bucketed by `deberta_log_bucket` (DeBERTa-v2/v3), without (None) it is used as
    it is (DeBERTa v1). The same row serves both disentangled terms.

    Args:
      q_positions: integer query positions ``[T]`` or ``[B, T]``.
      k_positions: integer key positions ``[S]`` or ``[B, S]``.
      position_buckets: >= 2, or None for plain clipping.
      max_relative_positions: see `deberta_log_bucket`; the span without buckets.
      distances: None, or a distance table ``[W]`` / ``[B, W]`` of randomized signed
        distances (`posenc_jax.random_distances`): ``q - k`` becomes ``-table[k - q]``.

    Returns:
      int32 ``[T, S]`` when both position arrays and the table are 1-D, else
      ``[B, T, S]``, in ``[0, 2 span)``.

    Raises:
      ValueError: bad settings, non-integer positions or positions not 1-D/2-D.

    Example:
      >>> pos = jnp.arange(4)
      >>> deberta_relative_index(pos, pos, position_buckets=None,
      ...                        max_relative_positions=2).tolist()
      [[2, 1, 0, 0], [3, 2, 1, 0], [3, 3, 2, 1], [3, 3, 3, 2]]

    References: He et al. 2021, "DeBERTa", section 3.1 (arXiv 2006.03654).
    """
    fn = "deberta_relative_index"
    pb, m = _check_buckets(position_buckets, max_relative_positions, fn)
    q = check_positions(q_positions, "q_positions", fn, integer=True)
    k = check_positions(k_positions, "k_positions", fn, integer=True)
    if distances is None:
        rel = -relative_distance(q, k, fn)  # query - key: [..., T, S]
    else:
        rel = -relative_from_table(q, k, distances, fn)
    if pb is not None:
        rel = deberta_log_bucket(rel, position_buckets=pb, max_relative_positions=m)
    span = m if pb is None else pb
    return jnp.clip(rel + span, 0, 2 * span - 1)


def _check_table(x: jax.Array, table: jax.Array, names: tuple[str, str], rows: int, fn: str):
    x, table = jnp.asarray(x), jnp.asarray(table)
    if x.ndim != 4:
        raise ValueError(f"{fn} needs {names[0]} of shape [B, L, N, H]; got shape {x.shape}")
    if table.shape != (rows, *x.shape[2:]):
        raise ValueError(
            f"{fn} needs {names[1]} of shape [2 * span, N, H] = [{rows}, {x.shape[2]}, "
            f"{x.shape[3]}] (span from the bucket settings, N and H from {names[0]}); got "
            f"shape {table.shape}"
        )
    return x, table


def _pick_rows(x: jax.Array, table: jax.Array, index: jax.Array) -> jax.Array:
    """``out[b, n, l, m] = x[b, l, n] . table[index[(b,) l, m], n]``: [B, N, L, M] float32.

    x: [B, L, N, H]; table: [R, N, H]; index: [L, M] or [B', L, M]. Every (l, row)
    projection is computed once ([L, R, B, N]); a pair then reads one contiguous
    window (all heads, and all batch rows when the index is shared) of its row.
    """
    b, length, n, _ = x.shape
    rows = table.shape[0]
    m = index.shape[-1]
    flat = jnp.arange(length, dtype=jnp.int32)[:, None] * rows + index  # [(B',) L, M]
    if flat.ndim == 2:
        proj = jnp.einsum("blnh,rnh->lrbn", x, table, preferred_element_type=jnp.float32)
        picked = jnp.take(proj.reshape(length * rows, b * n), flat.reshape(-1), axis=0, mode="clip")
        return jnp.transpose(picked.reshape(length, m, b, n), (2, 3, 0, 1))  # [B, N, L, M]
    flat = jnp.broadcast_to(flat, (b, length, m))
    flat = flat + jnp.arange(b, dtype=jnp.int32)[:, None, None] * (length * rows)  # [B, L, M]
    proj = jnp.einsum("blnh,rnh->blrn", x, table, preferred_element_type=jnp.float32)
    picked = jnp.take(proj.reshape(b * length * rows, n), flat.reshape(-1), axis=0, mode="clip")
    return jnp.transpose(picked.reshape(b, length, m, n), (0, 3, 1, 2))  # [B, N, L, M]


def _term_inputs(x, table, q_positions, k_positions, names, fn, settings, index):
    """Checked ``x``, ``table`` and the relative index ``[(B,) T, S]`` of one disentangled term.

    names: (x's name, table's name, what x holds, the index axis that must match x's axis 1);
    index: the `deberta_relative_index` of the positions, or None to compute it here.
    """
    x_name, table_name, holds, axis = names
    rows = 2 * deberta_span(**settings)
    x, table = _check_table(x, table, (x_name, table_name), rows, fn)
    if index is None:
        index = deberta_relative_index(q_positions, k_positions, **settings)  # [(B,) T, S]
    else:
        index = jnp.asarray(index)
        if index.ndim not in (2, 3) or not jnp.issubdtype(index.dtype, jnp.integer):
            raise ValueError(
                f"{fn} needs index of shape [T, S] or [B, T, S] with integer rows (from "
                f"deberta_relative_index); got shape {index.shape} and dtype {index.dtype}"
            )
    if index.shape[axis] != x.shape[1]:
        side = "q_positions" if axis == -2 else "k_positions"
        raise ValueError(
            f"{fn}: {x_name} has {'T' if axis == -2 else 'S'}={x.shape[1]} {holds} but {side} "
            f"give {index.shape[axis]}"
        )
    return x, table, index


def deberta_c2p(
    q: jax.Array,
    pos_key: jax.Array,
    q_positions: jax.Array,
    k_positions: jax.Array,
    *,
    position_buckets: int | None = 256,
    max_relative_positions: int = 512,
    index: jax.Array | None = None,
) -> jax.Array:
    """Content-to-position term ``q_i . K^r[delta(i, j)]`` per head (not scaled).

    Args:
      q: ``[B, T, N, H]`` queries (pass them scaled to get scaled logits).
      pos_key: ``[2 span, N, H]`` relative-position keys ``K^r = P W_{k,r}``.
      q_positions: integer ``[T]`` or ``[B, T]``; k_positions: ``[S]`` or ``[B, S]``.
      position_buckets, max_relative_positions: as in `deberta_relative_index`.
      index: the `deberta_relative_index` of these positions and settings, when the
        caller already has it (both terms read the same rows); None computes it.

    Returns:
      float32 ``[B, N, T, S]``.

    Raises:
      ValueError: shapes that do not match, bad settings or positions.

    Example:
      >>> q = jnp.ones((1, 2, 1, 2))
      >>> pos_key = jnp.arange(4.0)[:, None, None] * jnp.ones((4, 1, 2))
      >>> pos = jnp.arange(2)
      >>> deberta_c2p(q, pos_key, pos, pos, position_buckets=None,
      ...             max_relative_positions=2)[0, 0].tolist()
      [[4.0, 2.0], [6.0, 4.0]]

    References: He et al. 2021, "DeBERTa", equation (4) (arXiv 2006.03654).
    """
    settings = dict(
        position_buckets=position_buckets, max_relative_positions=max_relative_positions
    )
    q, pos_key, index = _term_inputs(
        q,
        pos_key,
        q_positions,
        k_positions,
        ("q", "pos_key", "queries", -2),
        "deberta_c2p",
        settings,
        index,
    )
    return _pick_rows(q, pos_key, index)


def deberta_p2c(
    k: jax.Array,
    pos_query: jax.Array,
    q_positions: jax.Array,
    k_positions: jax.Array,
    *,
    position_buckets: int | None = 256,
    max_relative_positions: int = 512,
    index: jax.Array | None = None,
) -> jax.Array:
    """Position-to-content term ``k_j . Q^r[delta(i, j)]`` per head (not scaled).

    The row is the one Hugging Face's ``DebertaV2`` reads (see the module notes).

    Args:
      k: ``[B, S, N, H]`` keys.
      pos_query: ``[2 span, N, H]`` relative-position queries ``Q^r = P W_{q,r}``.
      q_positions: integer ``[T]`` or ``[B, T]``; k_positions: ``[S]`` or ``[B, S]``.
      position_buckets, max_relative_positions: as in `deberta_relative_index`.
      index: as in `deberta_c2p`.

    Returns:
      float32 ``[B, N, T, S]``.

    Raises:
      ValueError: shapes that do not match, bad settings or positions.

    Example:
      >>> k = jnp.ones((1, 2, 1, 2))
      >>> pos_query = jnp.arange(4.0)[:, None, None] * jnp.ones((4, 1, 2))
      >>> pos = jnp.arange(2)
      >>> deberta_p2c(k, pos_query, pos, pos, position_buckets=None,
      ...             max_relative_positions=2)[0, 0].tolist()
      [[4.0, 2.0], [6.0, 4.0]]

    References: He et al. 2021, "DeBERTa", equation (4) (arXiv 2006.03654).
    """
    settings = dict(
        position_buckets=position_buckets, max_relative_positions=max_relative_positions
    )
    k, pos_query, index = _term_inputs(
        k,
        pos_query,
        q_positions,
        k_positions,
        ("k", "pos_query", "keys", -1),
        "deberta_p2c",
        settings,
        index,
    )
    picked = _pick_rows(k, pos_query, jnp.swapaxes(index, -1, -2))  # [B, N, S, T]
    return jnp.swapaxes(picked, -1, -2)  # [B, N, T, S]
