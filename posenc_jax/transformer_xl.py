"""Transformer-XL's relative position terms (also XLNet's): ``(q_i + v) . W_R R_{i-j}``.

Dai et al. 2019 write the logits of query i and key j as

    A^rel_ij = q_i . k_j + q_i . W_R R_{i-j} + u . k_j + v . W_R R_{i-j}
                 (a)          (b)              (c)        (d)

with R the sinusoidal encoding (Vaswani et al. 2017) of the relative distance
``i - j`` (query minus key: the negative of the library's key - query,
`posenc_jax._checks.relative_distance`), W_R a learned ``[D_r, N, H]`` projection and
u, v learned ``[N, H]`` vectors shared by all positions. Terms (b) and (d) are one
product, ``(q_i + v) . W_R R_{i-j}``: `xl_relative_logits`. Term (c) reads the keys,
``u . k_j`` (one einsum in the scheme, `posenc_jax.schemes.relative.TransformerXLScheme`).

The authors compute (b) and (d) on the ``T + S`` distances of a contiguous block and
align them with the "relative shift". With explicit positions (tiles of a blockwise
attention, KV-cache offsets, randomized positions) the distances of a pair are not
laid out that way, so `xl_relative_logits` uses the angle-difference identities
instead, exact for any positions:

    sin((i - j) w) = sin(i w) cos(j w) - cos(i w) sin(j w)
    cos((i - j) w) = cos(i w) cos(j w) + sin(i w) sin(j w)

so ``(q_i + v) . W_R R_{i-j}`` is a dot product between a feature of the query (its
projection on the ``D_r`` rows of W_R, rotated by its own position) and
``[cos(j w), sin(j w)]`` of the key: one einsum of size ``D_r`` per (query, key,
head), no ``[T, S, D_r]`` array, no gather. Angles are reduced modulo 2 pi exactly
(`posenc_jax.rope.numerics.angles`), so large positions keep their precision.

Shape legend: B batch, T query length, S key length, N heads, H head dim, D_r size of
the relative encoding R, F = D_r / 2 frequencies.

References: Dai et al. 2019, "Transformer-XL: Attentive Language Models Beyond a
Fixed-Length Context", section 3.3 (arXiv 1901.02860); Yang et al. 2019, "XLNet"
(arXiv 1906.08237).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from posenc_jax._checks import as_int, check_positions, positive_float, relative_distance
from posenc_jax.absolute import sinusoidal_frequencies
from posenc_jax.random_distances import table_index
from posenc_jax.rope.numerics import angles

__all__ = ["xl_relative_logits"]


def xl_relative_logits(
    q: jax.Array,
    w_r: jax.Array,
    q_positions: jax.Array,
    k_positions: jax.Array,
    *,
    base: float = 10000.0,
    clamp_len: int | None = None,
    distances: jax.Array | None = None,
) -> jax.Array:
    """Transformer-XL's position terms: ``out[b, n, i, j] = q[b, i, n] . (W_R R_{i-j})[n]``.

    ``R_p`` is `posenc_jax.absolute.sinusoidal` of ``p = q_position - k_position``
    (interleaved sin/cos channels; the authors' code concatenates the sines and the
    cosines, a permutation of W_R's rows), of size ``D_r = w_r.shape[0]``. Pass
    ``q + v`` to get terms (b) + (d) of the paper at once; the result is not scaled
    (pass a scaled q for scaled logits). Computed with the angle-difference identities
    (see the module notes): exact for any positions, O((T + S) D_r) memory besides
    the ``[B, N, T, S]`` output.

    Args:
      q: ``[B, T, N, H]`` queries (plus v).
      w_r: ``[D_r, N, H]`` projection of R (D_r even).
      q_positions: ``[T]`` or ``[B, T]``; k_positions: ``[S]`` or ``[B, S]``
        (integer, or float).
      base: wavelength base of R (10000).
      clamp_len: distances beyond it use ``R_{+-clamp_len}``, as the authors' ``clamp_len``
        (1000 for the WikiText-103 model; None: no clamp). A pair beyond it reads the
        query's product with one fixed R, computed apart from the identities above.
      distances: None, or a distance table ``[W]`` / ``[B, W]`` of randomized signed
        distances (`posenc_jax.random_distances`): the pair at ``k - q = r`` reads
        ``R_{-table[r]}`` (the randomized ``i - j``), Ruoss et al.'s noisy relative
        encoding. Then the product with R is taken once per table entry, ``[B, T, N,
        W]``, and gathered per pair; ``clamp_len`` clamps the table's distances.

    Returns:
      float32 ``[B, N, T, S]``.

    Raises:
      ValueError: shapes that do not match, an odd D_r, a bad base or positions.

    Example:
      >>> q = jnp.ones((1, 2, 1, 1))
      >>> w_r = jnp.array([[[0.0]], [[1.0]]])  # picks cos((i - j) w) with w = 1
      >>> out = xl_relative_logits(q, w_r, jnp.arange(2), jnp.arange(2))
      >>> [[round(x, 4) for x in row] for row in out[0, 0].tolist()]
      [[1.0, 0.5403], [0.5403, 1.0]]

    References: Dai et al. 2019, "Transformer-XL", section 3.3 (arXiv 1901.02860).
    """
    fn = "xl_relative_logits"
    q, w_r = jnp.asarray(q), jnp.asarray(w_r)
    if q.ndim != 4:
        raise ValueError(f"{fn} needs q of shape [B, T, N, H]; got shape {q.shape}")
    if w_r.ndim != 3 or w_r.shape[1:] != q.shape[2:]:
        raise ValueError(
            f"{fn} needs w_r of shape [D_r, N, H] = [D_r, {q.shape[2]}, {q.shape[3]}] (N, H "
            f"from q); got shape {w_r.shape}"
        )
    dim = w_r.shape[0]
    if dim < 2 or dim % 2:
        raise ValueError(f"{fn} needs an even D_r = w_r.shape[0] >= 2; got {dim}")
    base = positive_float(base, "base", fn)
    if clamp_len is not None:
        clamp_len = as_int(clamp_len, "clamp_len", fn)
        if clamp_len < 0:
            raise ValueError(f"{fn} needs clamp_len >= 0 or None; got clamp_len={clamp_len}")
    qp = check_positions(q_positions, "q_positions", fn)  # [(B,) T]
    kp = check_positions(k_positions, "k_positions", fn)  # [(B,) S]
    if qp.shape[-1] != q.shape[1]:
        raise ValueError(f"{fn}: q has T={q.shape[1]} queries but q_positions give {qp.shape[-1]}")
    inv_freq = sinusoidal_frequencies(dim, base=base)  # [F], float64
    if distances is not None:
        return _xl_from_table(q, w_r, qp, kp, distances, inv_freq, clamp_len, fn)
    a_q, a_k = angles(qp, inv_freq), angles(kp, inv_freq)  # [(B,) T, F], [(B,) S, F]
    sin_q, cos_q = jnp.sin(a_q)[..., None, :], jnp.cos(a_q)[..., None, :]  # [(B,) T, 1, F]
    proj = jnp.einsum("btnh,rnh->btnr", q, w_r, preferred_element_type=jnp.float32)
    alpha, beta = proj[..., 0::2], proj[..., 1::2]  # rows of sin and cos: [B, T, N, F]
    # sum_f alpha sin((i-j)w) + beta cos((i-j)w) = feat_q(i) . [cos(j w), sin(j w)]
    feat_q = jnp.concatenate([alpha * sin_q + beta * cos_q, beta * sin_q - alpha * cos_q], -1)
    feat_k = jnp.concatenate([jnp.cos(a_k), jnp.sin(a_k)], -1)  # [(B,) S, 2F]
    if feat_k.ndim == 2:
        out = jnp.einsum("btnf,sf->bnts", feat_q, feat_k)  # [B, N, T, S]
    else:
        feat_k = jnp.broadcast_to(feat_k, (q.shape[0], *feat_k.shape[1:]))  # [B, S, 2F]
        out = jnp.einsum("btnf,bsf->bnts", feat_q, feat_k)  # [B, N, T, S]
    if clamp_len is None:
        return out
    # R_{+-clamp_len} from float64 host constants: [2, D_r] (rows +c, -c).
    ang = np.array([clamp_len, -clamp_len], np.float64)[:, None] * inv_freq  # [2, F]
    r_c = np.stack([np.sin(ang), np.cos(ang)], -1).reshape(2, dim).astype(np.float32)
    far = jnp.einsum("btnr,cr->cbnt", proj, r_c)[..., None]  # [2, B, N, T, 1]
    rel = -relative_distance(qp, kp, fn)[..., None, :, :]  # i - j: [(B,) 1, T, S]
    out = jnp.where(rel > clamp_len, far[0], out)
    return jnp.where(rel < -clamp_len, far[1], out)


def _xl_from_table(q, w_r, qp, kp, distances, inv_freq, clamp_len, fn) -> jax.Array:
    """``(q_i + v) . W_R R_{-table[k_j - q_i]}`` per pair: [B, N, T, S] float32.

    The product with R is taken once per table entry, ``[B, T, W, N]``; each (query,
    key) pair then reads one row of all heads (one gather index per pair, as
    `posenc_jax.relative.shaw_key_logits` does: a per-element ``take_along_axis``
    needs a multi-dimensional index per element under ``vmap``).
    """
    table, idx = table_index(qp, kp, distances, fn)  # [(B,) W], [(B,) T, S]
    dist = -table  # i - j of each entry: [(B,) W]
    if clamp_len is not None:
        dist = jnp.clip(dist, -clamp_len, clamp_len)
    a = angles(dist, inv_freq)  # [(B,) W, F]
    r = jnp.stack([jnp.sin(a), jnp.cos(a)], -1).reshape(*a.shape[:-1], -1)  # [(B,) W, D_r]
    spec = "wr" if r.ndim == 2 else "bwr"
    per_entry = jnp.einsum(
        f"btnh,rnh,{spec}->btwn", q, w_r, r, preferred_element_type=jnp.float32
    )  # [B, T, W, N]
    b, t, w, n = per_entry.shape
    s = idx.shape[-1]
    idx = jnp.broadcast_to(idx, (b, t, s))
    rows = jnp.arange(b * t, dtype=jnp.int32).reshape(b, t, 1) * w + idx  # [B, T, S]
    picked = jnp.take(per_entry.reshape(b * t * w, n), rows.reshape(-1), axis=0, mode="clip")
    return jnp.transpose(picked.reshape(b, t, s, n), (0, 3, 1, 2))  # [B, N, T, S]
