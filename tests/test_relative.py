"""Tests for posenc_jax.relative: Shaw et al. terms and T5 buckets.

References are independent of the implementation: float64 numpy versions of
Shaw et al. that materialise the [T, S, H] tensors a^K_ij / a^V_ij, a numpy
transcription of Mesh TensorFlow's T5 bucket function, and golden buckets
produced by Hugging Face's T5 code (tests/data/t5_buckets_golden.json).
"""

from __future__ import annotations

import functools
import json
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posenc_jax.relative import (
    shaw_key_logits,
    shaw_relative_index,
    shaw_value_term,
    t5_bias,
    t5_relative_bucket,
)

SETTINGS = settings(max_examples=30, deadline=None)
DATA = pathlib.Path(__file__).parent / "data"


# -- independent references ------------------------------------------------------


def _shaw_embeddings(table, q_pos, k_pos, max_distance):
    """a_ij = w_{clip(j - i, K)} for every pair: [..., T, S, H] float64 (paper eq. 5)."""
    table = np.asarray(table, np.float64)
    q = np.asarray(q_pos)[..., :, None]
    k = np.asarray(k_pos)[..., None, :]
    clipped = np.maximum(-max_distance, np.minimum(max_distance, k - q))  # [..., T, S]
    return table[clipped + max_distance]  # [..., T, S, H]


def _shaw_key_reference(q, table_k, q_pos, k_pos, max_distance):
    """e_ij = q_i . a^K_ij with a^K materialised, [B, N, T, S]."""
    a = _shaw_embeddings(table_k, q_pos, k_pos, max_distance)
    q = np.asarray(q, np.float64)
    if a.ndim == 3:
        return np.einsum("btnh,tsh->bnts", q, a)
    return np.einsum("btnh,btsh->bnts", q, np.broadcast_to(a, (q.shape[0], *a.shape[1:])))


def _shaw_value_reference(weights, table_v, q_pos, k_pos, max_distance):
    """z_i = sum_j w_ij a^V_ij with a^V materialised, [B, T, N, H]."""
    a = _shaw_embeddings(table_v, q_pos, k_pos, max_distance)
    w = np.asarray(weights, np.float64)
    if a.ndim == 3:
        return np.einsum("bnts,tsh->btnh", w, a)
    return np.einsum("bnts,btsh->btnh", w, np.broadcast_to(a, (w.shape[0], *a.shape[1:])))


def _t5_bucket_reference(relative_position, bidirectional, num_buckets, max_distance, ftype):
    """Mesh TensorFlow transformer_layers._relative_position_bucket, line by line.

    ``ftype`` is the float type of ``mtf.to_float`` (float32 in the reference);
    float64 gives the mathematically exact buckets except at rounding ties.
    """
    ret = np.zeros(np.shape(relative_position), np.int64)
    n = -np.asarray(relative_position, np.int64)
    if bidirectional:
        num_buckets //= 2
        ret += (n < 0).astype(np.int64) * num_buckets
        n = np.abs(n)
    else:
        n = np.maximum(n, 0)
    # now n is in the range [0, inf)
    max_exact = num_buckets // 2
    is_small = n < max_exact
    with np.errstate(divide="ignore"):
        log_ratio = np.log(n.astype(ftype) / ftype(max_exact))
    x = log_ratio / ftype(math.log(max_distance / max_exact)) * ftype(num_buckets - max_exact)
    x = np.where(is_small, 0, x)  # the discarded branch holds -inf at n = 0
    val_if_large = max_exact + x.astype(np.int64)
    val_if_large = np.minimum(val_if_large, num_buckets - 1)
    ret += np.where(is_small, n, val_if_large)
    return ret


# -- Shaw: relative index ---------------------------------------------------------


@pytest.mark.parametrize("max_distance", [0, 1, 3, 16])
def test_shaw_relative_index_values(max_distance):
    q_pos = np.array([0, 1, 5, 40])
    k_pos = np.arange(0, 50, 7)
    got = shaw_relative_index(jnp.asarray(q_pos), jnp.asarray(k_pos), max_distance)
    assert got.dtype == jnp.int32 and got.shape == (4, 8)
    want = np.clip(k_pos[None, :] - q_pos[:, None], -max_distance, max_distance) + max_distance
    np.testing.assert_array_equal(np.asarray(got), want)


def test_shaw_relative_index_batched_and_k0():
    q_pos = np.array([[3, 4], [0, 9]])
    k_pos = np.array([[0, 4, 8], [9, 9, 1]])
    got = np.asarray(shaw_relative_index(jnp.asarray(q_pos), jnp.asarray(k_pos), 2))
    np.testing.assert_array_equal(got[0], [[0, 3, 4], [0, 2, 4]])
    np.testing.assert_array_equal(got[1], [[4, 4, 3], [2, 2, 0]])
    zero = shaw_relative_index(jnp.asarray(q_pos), jnp.asarray(k_pos), 0)
    np.testing.assert_array_equal(np.asarray(zero), 0)


# -- Shaw: key and value terms ------------------------------------------------------


def _shaw_inputs(rng, b, t, s, n, h, k):
    q = rng.normal(size=(b, t, n, h)).astype(np.float32)
    table = rng.normal(size=(2 * k + 1, h)).astype(np.float32)
    logits = rng.normal(size=(b, n, t, s))
    weights = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    return q, table, weights.astype(np.float32)


def _positions(draw_start, length, batch, batched, rng):
    if not batched:
        return np.arange(draw_start, draw_start + length)
    # Per-row offsets, as with left padding or a KV cache.
    starts = draw_start + rng.integers(0, 40, size=(batch, 1))
    return starts + np.arange(length)[None, :]


# A few shapes only, so that compiled programs are reused across examples.
_SHAW_KEY_JIT = jax.jit(shaw_key_logits, static_argnames="max_distance")
_SHAW_VALUE_JIT = jax.jit(shaw_value_term, static_argnames="max_distance")
SHAW_SHAPES = [(1, 1, 1, 1, 1), (2, 5, 7, 2, 3), (1, 7, 4, 3, 2)]  # (B, T, S, N, H)


@SETTINGS
@given(
    shape=st.sampled_from(SHAW_SHAPES),
    k=st.sampled_from([0, 1, 3, 6]),
    q_start=st.integers(0, 200),
    k_start=st.integers(0, 200),
    q_batched=st.booleans(),
    k_batched=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_shaw_terms_match_materialised_reference(
    shape, k, q_start, k_start, q_batched, k_batched, seed
):
    b, t, s, n, h = shape
    rng = np.random.default_rng(seed)
    q, table, weights = _shaw_inputs(rng, b, t, s, n, h, k)
    q_pos = _positions(q_start, t, b, q_batched, rng)
    k_pos = _positions(k_start, s, b, k_batched, rng)
    jq, jk = jnp.asarray(q_pos), jnp.asarray(k_pos)

    got_k = _SHAW_KEY_JIT(jnp.asarray(q), jnp.asarray(table), jq, jk, max_distance=k)
    assert got_k.shape == (b, n, t, s)
    want_k = _shaw_key_reference(q, table, q_pos, k_pos, k)
    np.testing.assert_allclose(np.asarray(got_k, np.float64), want_k, rtol=1e-5, atol=1e-5)

    got_v = _SHAW_VALUE_JIT(jnp.asarray(weights), jnp.asarray(table), jq, jk, max_distance=k)
    assert got_v.shape == (b, t, n, h)
    want_v = _shaw_value_reference(weights, table, q_pos, k_pos, k)
    np.testing.assert_allclose(np.asarray(got_v, np.float64), want_v, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("q_range", "k_range"),
    [
        ((100, 132), (64, 96)),  # a tile far below the diagonal: every pair clipped to -K
        ((64, 96), (100, 132)),  # far above: every pair clipped to +K
        ((80, 112), (70, 102)),  # straddling the band |j - i| <= K
    ],
)
def test_shaw_terms_on_tiles(q_range, k_range):
    k = 16
    rng = np.random.default_rng(3)
    q, table, weights = _shaw_inputs(rng, 2, 32, 32, 2, 8, k)
    q_pos, k_pos = np.arange(*q_range), np.arange(*k_range)
    got_k = shaw_key_logits(
        jnp.asarray(q), jnp.asarray(table), jnp.asarray(q_pos), jnp.asarray(k_pos), max_distance=k
    )
    np.testing.assert_allclose(
        np.asarray(got_k, np.float64),
        _shaw_key_reference(q, table, q_pos, k_pos, k),
        rtol=1e-5,
        atol=1e-5,
    )
    got_v = shaw_value_term(
        jnp.asarray(weights),
        jnp.asarray(table),
        jnp.asarray(q_pos),
        jnp.asarray(k_pos),
        max_distance=k,
    )
    np.testing.assert_allclose(
        np.asarray(got_v, np.float64),
        _shaw_value_reference(weights, table, q_pos, k_pos, k),
        rtol=1e-5,
        atol=1e-5,
    )


def test_shaw_tiles_assemble_the_full_result():
    """Blockwise use: per-tile key logits / value terms add up to the dense ones."""
    k, t, tile = 4, 12, 4
    rng = np.random.default_rng(4)
    q, table, weights = _shaw_inputs(rng, 1, t, t, 2, 3, k)
    pos = jnp.arange(t)
    dense_k = shaw_key_logits(jnp.asarray(q), jnp.asarray(table), pos, pos, max_distance=k)
    dense_v = shaw_value_term(jnp.asarray(weights), jnp.asarray(table), pos, pos, max_distance=k)
    tiled_k = np.zeros(dense_k.shape, np.float32)
    tiled_v = np.zeros(dense_v.shape, np.float32)
    for i in range(0, t, tile):
        qs = slice(i, i + tile)
        for j in range(0, t, tile):
            ks = slice(j, j + tile)
            tiled_k[:, :, qs, ks] = shaw_key_logits(
                jnp.asarray(q[:, qs]), jnp.asarray(table), pos[qs], pos[ks], max_distance=k
            )
            tiled_v[:, qs] += shaw_value_term(
                jnp.asarray(weights[:, :, qs, ks]),
                jnp.asarray(table),
                pos[qs],
                pos[ks],
                max_distance=k,
            )
    np.testing.assert_allclose(tiled_k, np.asarray(dense_k), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(tiled_v, np.asarray(dense_v), rtol=1e-5, atol=1e-6)


def test_shaw_terms_under_jit_with_gradients():
    k = 3
    rng = np.random.default_rng(5)
    q, table, weights = _shaw_inputs(rng, 2, 5, 6, 2, 4, k)
    q_pos = np.array([[0, 1, 2, 3, 4], [7, 8, 9, 10, 11]])
    k_pos = np.array([[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]])
    args = (jnp.asarray(q_pos), jnp.asarray(k_pos))
    key_fn = jax.jit(functools.partial(shaw_key_logits, max_distance=k))
    value_fn = jax.jit(functools.partial(shaw_value_term, max_distance=k))
    np.testing.assert_allclose(
        np.asarray(key_fn(jnp.asarray(q), jnp.asarray(table), *args), np.float64),
        _shaw_key_reference(q, table, q_pos, k_pos, k),
        rtol=1e-5,
        atol=1e-5,
    )
    np.testing.assert_allclose(
        np.asarray(value_fn(jnp.asarray(weights), jnp.asarray(table), *args), np.float64),
        _shaw_value_reference(weights, table, q_pos, k_pos, k),
        rtol=1e-5,
        atol=1e-5,
    )
    # Gradients of <g, term>: both terms are bilinear, so each gradient is the
    # other factor contracted with g through the materialised a_ij.
    g_k = rng.normal(size=(2, 2, 5, 6))
    g_v = rng.normal(size=(2, 5, 2, 4))
    a = _shaw_embeddings(table, q_pos, k_pos, k)  # [B, T, S, H]
    grad_q = jax.grad(lambda x: jnp.sum(key_fn(x, jnp.asarray(table), *args) * g_k))(jnp.asarray(q))
    np.testing.assert_allclose(
        np.asarray(grad_q, np.float64), np.einsum("bnts,btsh->btnh", g_k, a), rtol=1e-4, atol=1e-5
    )
    grad_w = jax.grad(lambda w: jnp.sum(value_fn(w, jnp.asarray(table), *args) * g_v))(
        jnp.asarray(weights)
    )
    np.testing.assert_allclose(
        np.asarray(grad_w, np.float64), np.einsum("btnh,btsh->bnts", g_v, a), rtol=1e-4, atol=1e-5
    )


@pytest.mark.parametrize("positions_batched", [False, True])
def test_shaw_terms_and_gradients_under_vmap(positions_batched):
    """vmap over seeds (as the experiments train them): each slice equals the float64 terms."""
    k, seeds, b, t, n, h = 3, 2, 2, 6, 2, 4
    rng = np.random.default_rng(8)
    inputs = [_shaw_inputs(rng, b, t, t, n, h, k) for _ in range(seeds)]
    pos = np.stack([_positions(10 * i, t, b, positions_batched, rng) for i in range(seeds)])
    q, table, weights = (np.stack(x) for x in zip(*inputs, strict=True))
    g_k = rng.normal(size=(seeds, b, n, t, t))
    g_v = rng.normal(size=(seeds, b, t, n, h))

    def loss(q, table, weights, pos, g_k, g_v):
        key = shaw_key_logits(q, table, pos, pos, max_distance=k)
        value = shaw_value_term(weights, table, pos, pos, max_distance=k)
        return jnp.sum(key * g_k) + jnp.sum(value * g_v)

    grads = jax.jit(jax.vmap(jax.grad(loss, argnums=(0, 1, 2))))(
        *map(jnp.asarray, (q, table, weights, pos, g_k, g_v))
    )
    for i in range(seeds):
        rows = np.broadcast_to(pos[i], (b, t))  # [B, T]
        a = _shaw_embeddings(table[i], rows, rows, k)  # [B, T, S, H]
        onehot = _shaw_embeddings(np.eye(2 * k + 1), rows, rows, k)  # [B, T, S, R]
        want = (
            np.einsum("bnts,btsh->btnh", g_k[i], a),
            np.einsum("bnts,btnh,btsr->rh", g_k[i], q[i], onehot)
            + np.einsum("btnh,bnts,btsr->rh", g_v[i], weights[i], onehot),
            np.einsum("btnh,btsh->bnts", g_v[i], a),
        )
        for got, w in zip(grads, want, strict=True):
            np.testing.assert_allclose(np.asarray(got[i], np.float64), w, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float32])
def test_shaw_terms_keep_dtype(dtype):
    k = 2
    rng = np.random.default_rng(6)
    q, table, weights = _shaw_inputs(rng, 1, 40, 40, 1, 4, k)
    pos = jnp.arange(40)
    out_k = shaw_key_logits(
        jnp.asarray(q, dtype), jnp.asarray(table, dtype), pos, pos, max_distance=k
    )
    out_v = shaw_value_term(
        jnp.asarray(weights, dtype), jnp.asarray(table, dtype), pos, pos, max_distance=k
    )
    assert out_k.dtype == dtype and out_v.dtype == dtype
    # Bucket sums accumulate in float32: with 40 keys the clipped buckets still
    # sum to within bfloat16 rounding of the float64 result.
    wq = np.asarray(jnp.asarray(weights, dtype), np.float64)
    tq = np.asarray(jnp.asarray(table, dtype), np.float64)
    want_v = _shaw_value_reference(wq, tq, np.arange(40), np.arange(40), k)
    tol = 2 * float(jnp.finfo(dtype).eps) * np.abs(want_v).max()
    np.testing.assert_allclose(np.asarray(out_v, np.float64), want_v, atol=tol + 1e-6)


@pytest.mark.parametrize("max_distance", [-1, -16])
def test_shaw_rejects_negative_max_distance(max_distance):
    pos = jnp.arange(3)
    match = f"max_distance >= 0; got max_distance={max_distance}"
    with pytest.raises(ValueError, match=match):
        shaw_relative_index(pos, pos, max_distance)
    with pytest.raises(ValueError, match=match):
        shaw_key_logits(
            jnp.zeros((1, 3, 1, 2)), jnp.zeros((1, 2)), pos, pos, max_distance=max_distance
        )
    with pytest.raises(ValueError, match=match):
        shaw_value_term(
            jnp.zeros((1, 1, 3, 3)), jnp.zeros((1, 2)), pos, pos, max_distance=max_distance
        )


def test_shaw_rejects_bad_tables_shapes_and_positions():
    pos = jnp.arange(3)
    with pytest.raises(
        ValueError, match=r"table_k of shape \[2 \* max_distance \+ 1, H\] = \[5, H\]"
    ):
        shaw_key_logits(jnp.zeros((1, 3, 1, 2)), jnp.zeros((4, 2)), pos, pos, max_distance=2)
    with pytest.raises(ValueError, match=r"table_v of shape .* = \[3, H\]"):
        shaw_value_term(jnp.zeros((1, 1, 3, 3)), jnp.zeros((5, 2)), pos, pos, max_distance=1)
    with pytest.raises(ValueError, match=r"q of shape \[B, T, N, H\]"):
        shaw_key_logits(jnp.zeros((1, 3, 1, 4)), jnp.zeros((3, 2)), pos, pos, max_distance=1)
    with pytest.raises(ValueError, match=r"weights of shape \[B, N, T, S\]"):
        shaw_value_term(jnp.zeros((1, 1, 3, 4)), jnp.zeros((3, 2)), pos, pos, max_distance=1)
    with pytest.raises(ValueError, match="integer q_positions"):
        shaw_relative_index(jnp.arange(3.0), pos, 1)


# -- T5 buckets ---------------------------------------------------------------------


def test_t5_buckets_match_hugging_face_golden():
    golden = json.loads((DATA / "t5_buckets_golden.json").read_text())
    rel = jnp.asarray(golden["relative_position"], jnp.int32)
    for key, bidirectional in (("bidirectional", True), ("unidirectional", False)):
        got = t5_relative_bucket(
            rel,
            bidirectional=bidirectional,
            num_buckets=golden["num_buckets"],
            max_distance=golden["max_distance"],
        )
        assert got.dtype == jnp.int32
        np.testing.assert_array_equal(np.asarray(got), golden[key], err_msg=key)


def test_t5_buckets_known_values():
    # Bidirectional defaults: 16 buckets per direction, 8 exact; keys after the query get +16.
    got = t5_relative_bucket(jnp.array([0, -1, -7, -8, -128, -(10**6), 1, 7, 8, 128]))
    np.testing.assert_array_equal(np.asarray(got), [0, 1, 7, 8, 15, 15, 17, 23, 24, 31])
    # Unidirectional: future keys in bucket 0; 16 exact buckets; bucket 16 + k starts at
    # distance ceil(16 * 8^(k/16)): 99 for bucket 30, 113 for bucket 31.
    got = t5_relative_bucket(
        jnp.array([5, 0, -1, -15, -16, -98, -99, -112, -113, -128]), bidirectional=False
    )
    np.testing.assert_array_equal(np.asarray(got), [0, 0, 1, 15, 16, 29, 30, 30, 31, 31])


SETTINGS_T5 = [
    (True, 32, 128),
    (False, 32, 128),
    (True, 4, 3),
    (False, 2, 2),
    (True, 33, 50),
    (False, 5, 17),
    (True, 64, 256),
    (False, 128, 100),
    (True, 320, 1000),
]


@pytest.mark.parametrize(("bidirectional", "num_buckets", "max_distance"), SETTINGS_T5)
def test_t5_buckets_match_mesh_tensorflow_transcription(bidirectional, num_buckets, max_distance):
    rel = np.arange(-3000, 3001)
    got = np.asarray(
        t5_relative_bucket(
            jnp.asarray(rel),
            bidirectional=bidirectional,
            num_buckets=num_buckets,
            max_distance=max_distance,
        )
    )
    want = _t5_bucket_reference(rel, bidirectional, num_buckets, max_distance, np.float64)
    np.testing.assert_array_equal(got, want)
    assert got.min() >= 0 and got.max() < num_buckets


def test_t5_exact_bucket_boundary():
    # num_buckets=128, max_distance=100, unidirectional: max_exact = 64 and distance 80
    # gives 64 + 64 * log(80/64) / log(100/64) = 64 + 64 * 1/2 = 96 exactly
    # (100/64 = (80/64)^2). float32 logarithms may round this to 95. Neighbours:
    # 64 * log(79/64) / log(100/64) = 30.2 and 64 * log(81/64) / log(100/64) = 33.8.
    got = t5_relative_bucket(
        jnp.array([-79, -80, -81]), bidirectional=False, num_buckets=128, max_distance=100
    )
    np.testing.assert_array_equal(np.asarray(got), [94, 96, 97])


def test_t5_buckets_huge_distances_have_no_overflow():
    rel = jnp.array([-(2**30), -(2**24) - 1, 2**24 + 1, 2**30], jnp.int32)
    np.testing.assert_array_equal(np.asarray(t5_relative_bucket(rel)), [15, 15, 31, 31])
    np.testing.assert_array_equal(
        np.asarray(t5_relative_bucket(rel, bidirectional=False)), [31, 31, 0, 0]
    )


@SETTINGS
@given(
    bidirectional=st.booleans(),
    num_buckets=st.integers(4, 96),
    extra=st.integers(1, 400),
    distances=st.lists(st.integers(0, 5000), min_size=16, max_size=16),
)
def test_t5_buckets_monotone_and_saturating(bidirectional, num_buckets, extra, distances):
    half = num_buckets // 2 if bidirectional else num_buckets
    max_exact = half // 2
    max_distance = max_exact + extra
    fn = functools.partial(
        t5_relative_bucket,
        bidirectional=bidirectional,
        num_buckets=num_buckets,
        max_distance=max_distance,
    )
    d = np.sort(np.asarray(distances))
    past = np.asarray(fn(jnp.asarray(-d)))  # keys before the query, distance d
    future = np.asarray(fn(jnp.asarray(d)))  # keys after the query
    assert np.all(np.diff(past) >= 0)
    assert np.all(past[d >= max_distance] == half - 1)
    np.testing.assert_array_equal(past[d < max_exact], d[d < max_exact])
    if bidirectional:
        assert np.all(np.diff(future) >= 0)
        assert np.all(future[d >= max_distance] == 2 * half - 1)
        np.testing.assert_array_equal(future[d > 0], past[d > 0] + half)
        assert np.all(future[d == 0] == 0)
    else:
        np.testing.assert_array_equal(future, 0)  # every key after the query: bucket 0
    want = _t5_bucket_reference(-d, bidirectional, num_buckets, max_distance, np.float64)
    np.testing.assert_array_equal(past, want)


# -- T5 bias ------------------------------------------------------------------------


@pytest.mark.parametrize("bidirectional", [True, False])
def test_t5_bias_matches_reference(bidirectional):
    rng = np.random.default_rng(7)
    table = rng.normal(size=(32, 3)).astype(np.float32)
    q_pos = np.array([[0, 1, 2, 300], [50, 51, 52, 53]])
    k_pos = np.array([[0, 1, 2, 3, 150], [0, 40, 52, 60, 200]])
    f = jax.jit(functools.partial(t5_bias, bidirectional=bidirectional))
    got = f(jnp.asarray(q_pos), jnp.asarray(k_pos), jnp.asarray(table))
    assert got.shape == (2, 3, 4, 5) and got.dtype == jnp.float32
    bucket = _t5_bucket_reference(
        k_pos[:, None, :] - q_pos[:, :, None], bidirectional, 32, 128, np.float32
    )  # [B, T, S]
    want = np.moveaxis(table[bucket], -1, 1)  # [B, N, T, S]
    np.testing.assert_array_equal(np.asarray(got), want)
    # 1-D positions give [N, T, S]; a tile with offsets equals the slice of the full bias.
    full = t5_bias(jnp.arange(64), jnp.arange(64), jnp.asarray(table), bidirectional=bidirectional)
    tile = t5_bias(
        jnp.arange(40, 48), jnp.arange(8, 24), jnp.asarray(table), bidirectional=bidirectional
    )
    np.testing.assert_array_equal(np.asarray(tile), np.asarray(full)[:, 40:48, 8:24])


def test_t5_bias_custom_settings_and_dtype():
    table = jnp.arange(10 * 2, dtype=jnp.bfloat16).reshape(10, 2)
    pos = jnp.arange(30)
    got = t5_bias(pos, pos, table, bidirectional=False, num_buckets=10, max_distance=20)
    assert got.shape == (2, 30, 30) and got.dtype == jnp.bfloat16
    bucket = _t5_bucket_reference(
        np.arange(30)[None, :] - np.arange(30)[:, None], False, 10, 20, np.float64
    )
    np.testing.assert_array_equal(np.asarray(got[1], np.float32), 2 * bucket + 1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_buckets": 3}, "num_buckets >= 4 with bidirectional=True.*got num_buckets=3"),
        ({"num_buckets": 1, "bidirectional": False}, "num_buckets >= 2 with bidirectional=False"),
        ({"max_distance": 0}, "max_distance > 8 .*got max_distance=0"),
        ({"max_distance": 8}, "max_distance > 8 .*got max_distance=8"),
        ({"max_distance": 16, "bidirectional": False}, "max_distance > 16 .*got max_distance=16"),
        ({"num_buckets": 32.0}, "int num_buckets"),
    ],
)
def test_t5_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        t5_relative_bucket(jnp.arange(-3, 3), **kwargs)


def test_t5_rejects_bad_table_and_positions():
    pos = jnp.arange(4)
    with pytest.raises(ValueError, match=r"table of shape \[num_buckets, N\] = \[32, N\]"):
        t5_bias(pos, pos, jnp.zeros((16, 2)))
    with pytest.raises(ValueError, match="integer relative_position"):
        t5_relative_bucket(jnp.array([0.5]))
    with pytest.raises(ValueError, match="integer k_positions"):
        t5_bias(pos, jnp.arange(4.0), jnp.zeros((32, 2)))
