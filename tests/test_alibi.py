"""Tests for posenc_jax.alibi against the authors' slopes and a numpy bias."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st

from posenc_jax.alibi import alibi_bias, alibi_slopes
from posenc_jax.nn import TransformerEncoder

SETTINGS = settings(max_examples=30, deadline=None)


def _fairseq_get_slopes(n):
    """``get_slopes`` of the authors' fairseq fork (ofirpress/attention_with_linear_biases)."""

    def get_slopes_power_of_2(n):
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        ratio = start
        return [start * ratio**i for i in range(n)]

    if math.log2(n).is_integer():
        return get_slopes_power_of_2(n)
    closest_power_of_2 = 2 ** math.floor(math.log2(n))
    return (
        get_slopes_power_of_2(closest_power_of_2)
        + _fairseq_get_slopes(2 * closest_power_of_2)[0::2][: n - closest_power_of_2]
    )


def _bias_reference(q_pos, k_pos, slopes, bidirectional):
    """-m (q - k) or -m |q - k| in float64, [..., N, T, S]."""
    q = np.asarray(q_pos, np.float64)[..., :, None]
    k = np.asarray(k_pos, np.float64)[..., None, :]
    dist = np.abs(q - k) if bidirectional else q - k  # [..., T, S]
    m = np.asarray(slopes, np.float64)[:, None, None]
    return -m * dist[..., None, :, :]


def _ruoss_compute_alibi_encodings_biases(attention_shape):
    """float64 transcription of ``compute_alibi_encodings_biases`` (Ruoss et al. 2023).

    google-deepmind/randomized_positional_encodings, models/positional_encodings.py
    (commit 57bc5d0, the function of that name), with numpy in place of jnp: ``-|i - j|`` built
    from shifted triangles, plus 0.5 on the lower triangle (keys before the query),
    times the fairseq slopes (the reference's ``_get_alibi_slopes`` is the same code).
    """
    num_heads, q_seq_len, k_seq_len = attention_shape
    alibi = np.zeros((q_seq_len, k_seq_len))
    alibi -= sum(np.tri(*alibi.shape, k=-i) for i in range(1, q_seq_len))
    alibi -= sum(np.tri(*alibi.T.shape, k=-i).T for i in range(1, k_seq_len))
    alibi += 0.5 * np.tri(*alibi.shape, k=-1)
    return alibi * np.array(_fairseq_get_slopes(num_heads))[:, None, None]


# -- slopes --------------------------------------------------------------------


def test_slopes_known_values():
    np.testing.assert_array_equal(np.asarray(alibi_slopes(8)), [2.0**-i for i in range(1, 9)])
    np.testing.assert_array_equal(np.asarray(alibi_slopes(1)), [2.0**-8])
    # 12 heads: the 8-head slopes, then 2^-0.5, 2^-1.5, 2^-2.5, 2^-3.5 (odd terms of 16 heads).
    want_12 = [2.0**-i for i in range(1, 9)] + [2.0 ** -(i + 0.5) for i in range(4)]
    np.testing.assert_allclose(np.asarray(alibi_slopes(12)), want_12, rtol=1e-7)


@pytest.mark.parametrize("num_heads", [*range(1, 41), 48, 64, 96, 100, 128])
def test_slopes_match_fairseq(num_heads):
    got = alibi_slopes(num_heads)
    assert got.dtype == jnp.float32 and got.shape == (num_heads,)
    want = np.asarray(_fairseq_get_slopes(num_heads), np.float64)
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=1e-7)


@SETTINGS
@given(log_n=st.integers(0, 8))
def test_slopes_geometric_for_powers_of_two(log_n):
    n = 2**log_n
    slopes = np.asarray(alibi_slopes(n), np.float64)
    start = 2.0 ** (-8.0 / n)
    assert slopes[0] == pytest.approx(start, rel=1e-7)
    np.testing.assert_allclose(slopes[1:] / slopes[:-1], start, rtol=3e-7)
    assert slopes[-1] == pytest.approx(2.0**-8, rel=1e-7)


@pytest.mark.parametrize("num_heads", [0, -1, 2.5, "8"])
def test_slopes_reject_bad_num_heads(num_heads):
    with pytest.raises(ValueError, match="num_heads"):
        alibi_slopes(num_heads)


# -- bias ----------------------------------------------------------------------


@pytest.mark.parametrize("bidirectional", [False, True])
def test_bias_matches_reference_1d(bidirectional):
    slopes = alibi_slopes(4)
    q_pos = np.arange(6)
    k_pos = np.arange(9)
    got = alibi_bias(jnp.asarray(q_pos), jnp.asarray(k_pos), slopes, bidirectional=bidirectional)
    assert got.dtype == jnp.float32 and got.shape == (4, 6, 9)
    want = _bias_reference(q_pos, k_pos, slopes, bidirectional)
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=1e-6, atol=0)


def test_causal_bias_is_minus_slope_times_distance_on_visible_keys():
    slopes = np.asarray(alibi_slopes(2), np.float64)
    pos = np.arange(5)
    got = np.asarray(alibi_bias(jnp.asarray(pos), jnp.asarray(pos), jnp.asarray(slopes)))
    for n in range(2):
        for i in range(5):
            for j in range(5):
                if j <= i:
                    assert got[n, i, j] == pytest.approx(-slopes[n] * (i - j), rel=1e-6)
                else:  # future keys: positive, removed by the causal mask
                    assert got[n, i, j] > 0


@pytest.mark.parametrize("bidirectional", [False, True])
def test_bias_batched_and_mixed_positions(bidirectional):
    slopes = alibi_slopes(3)
    rng = np.random.default_rng(1)
    q_pos = np.sort(rng.integers(0, 2048, size=(2, 5)), axis=-1)  # e.g. randomized positions
    k_pos = np.sort(rng.integers(0, 2048, size=(2, 7)), axis=-1)
    got = alibi_bias(jnp.asarray(q_pos), jnp.asarray(k_pos), slopes, bidirectional=bidirectional)
    assert got.shape == (2, 3, 5, 7)
    want = _bias_reference(q_pos, k_pos, slopes, bidirectional)
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=1e-6)
    # [T] queries against [B, S] keys (e.g. a shared query tile).
    got_mixed = alibi_bias(jnp.asarray(q_pos[0]), jnp.asarray(k_pos), slopes)
    np.testing.assert_allclose(
        np.asarray(got_mixed, np.float64),
        _bias_reference(q_pos[0][None], k_pos, slopes, False),
        rtol=1e-6,
    )


def test_bias_float_positions():
    slopes = jnp.array([0.5, 0.25])
    q_pos = np.array([0.5, 3.0], np.float32)
    k_pos = np.array([0.0, 1.5, 3.0], np.float32)
    got = alibi_bias(jnp.asarray(q_pos), jnp.asarray(k_pos), slopes, bidirectional=True)
    np.testing.assert_allclose(
        np.asarray(got, np.float64), _bias_reference(q_pos, k_pos, [0.5, 0.25], True), rtol=1e-6
    )


@SETTINGS
@given(
    t=st.integers(1, 8),
    s=st.integers(1, 8),
    q_start=st.integers(0, 5000),
    k_start=st.integers(0, 5000),
    shift=st.integers(-5000, 100_000),
    num_heads=st.integers(1, 12),
    bidirectional=st.booleans(),
)
def test_bias_translation_invariant(t, s, q_start, k_start, shift, num_heads, bidirectional):
    slopes = alibi_slopes(num_heads)
    q_pos = jnp.arange(q_start, q_start + t)
    k_pos = jnp.arange(k_start, k_start + s)
    base = alibi_bias(q_pos, k_pos, slopes, bidirectional=bidirectional)
    shifted = alibi_bias(q_pos + shift, k_pos + shift, slopes, bidirectional=bidirectional)
    np.testing.assert_array_equal(np.asarray(base), np.asarray(shifted))
    want = _bias_reference(np.asarray(q_pos), np.asarray(k_pos), slopes, bidirectional)
    np.testing.assert_allclose(np.asarray(base, np.float64), want, rtol=1e-6)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_bias_under_jit(bidirectional):
    f = jax.jit(functools.partial(alibi_bias, bidirectional=bidirectional))
    slopes = alibi_slopes(5)
    q_pos = np.array([[10, 11, 12], [0, 1, 2]])
    k_pos = np.array([[3, 7, 10, 12], [0, 0, 1, 2]])
    got = f(jnp.asarray(q_pos), jnp.asarray(k_pos), slopes)
    np.testing.assert_allclose(
        np.asarray(got, np.float64),
        _bias_reference(q_pos, k_pos, slopes, bidirectional),
        rtol=1e-6,
    )


def test_bias_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"slopes of shape \[N\]"):
        alibi_bias(jnp.arange(3), jnp.arange(3), jnp.ones((2, 2)))
    with pytest.raises(ValueError, match=r"q_positions of shape \[T\] or \[B, T\]"):
        alibi_bias(jnp.zeros((1, 2, 3), jnp.int32), jnp.arange(3), alibi_slopes(2))


# -- the bidirectional variants ---------------------------------------------------


@pytest.mark.parametrize("shape", [(4, 6, 6), (3, 4, 7), (8, 7, 3), (1, 1, 1), (12, 5, 5)])
def test_ruoss_bias_matches_the_reference_code(shape):
    num_heads, t, s = shape
    got = alibi_bias(jnp.arange(t), jnp.arange(s), alibi_slopes(num_heads), bidirectional="ruoss")
    assert got.dtype == jnp.float32 and got.shape == shape
    want = _ruoss_compute_alibi_encodings_biases(shape)
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=1e-6, atol=0)
    # Translation invariant like every bias here: randomized or offset positions give
    # the same matrix when their differences agree.
    shifted = alibi_bias(
        jnp.arange(t) + 1000, jnp.arange(s) + 1000, alibi_slopes(num_heads), bidirectional="ruoss"
    )
    np.testing.assert_array_equal(np.asarray(shifted), np.asarray(got))


def test_symmetric_is_true_and_unknown_modes_list_the_valid_ones():
    pos = jnp.arange(5)
    slopes = alibi_slopes(2)
    np.testing.assert_array_equal(
        alibi_bias(pos, pos, slopes, bidirectional="symmetric"),
        alibi_bias(pos, pos, slopes, bidirectional=True),
    )
    with pytest.raises(ValueError, match=r"bidirectional must be one of \[False, True, 'symm"):
        alibi_bias(pos, pos, slopes, bidirectional="left")
    with pytest.raises(ValueError, match=r"alibi: bidirectional must be one of .*'ruoss'"):
        TransformerEncoder(
            7,
            scheme={"name": "alibi", "bidirectional": 1},
            num_layers=1,
            d_model=8,
            num_heads=2,
            rngs=nnx.Rngs(0),
        )


def _mirror_gap(bidirectional):
    """max |f(reversed x) reversed - f(x)| for a random 2-layer ALiBi encoder."""
    model = TransformerEncoder(
        13,
        scheme={"name": "alibi", "bidirectional": bidirectional},
        num_layers=2,
        d_model=32,
        num_heads=4,
        rngs=nnx.Rngs(0),
    )
    tokens = jax.random.randint(jax.random.PRNGKey(3), (2, 9), 0, 13)
    out = model(tokens)
    mirrored = model(tokens[:, ::-1])[:, ::-1]
    return float(jnp.max(jnp.abs(out - mirrored))), float(jnp.max(jnp.abs(out)))


def test_symmetric_encoder_cannot_tell_left_from_right_and_ruoss_can():
    gap, scale = _mirror_gap(True)
    assert gap < 1e-5 * max(scale, 1.0), gap  # mirror-equivariant up to float32 rounding
    gap, scale = _mirror_gap("ruoss")
    assert gap > 1e-2 * scale, gap
