"""p-RoPE (Barbero et al. 2025, arXiv 2410.06205): RoPE with its lowest frequencies removed.

The reference is a float64 NumPy transcription of the authors' ``apply_p_rope``
listing (appendix of the paper): ``rope_angles = int(rope_percentage * head_dim //
2)``, timescales ``max_wavelength ** (2 i / head_dim)`` for i < rope_angles padded
with infinity (no rotation), ``sinusoid_inp = positions / timescale`` and the
rotation of the two halves of the head. Hugging Face's ``rope_type="proportional"``
(``_compute_proportional_rope_parameters`` in transformers' ``modeling_rope_utils.py``,
5.24: ``base ** (arange(0, 2 * rope_angles, 2) / head_dim)`` then zeros, then
``/ factor``) is transcribed as well.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posenc_jax.rope import apply_rope, p_rope_keep_count, rope_frequencies
from posenc_jax.schemes import make_scheme

HYP = settings(max_examples=20, deadline=None)
_rope = jax.jit(apply_rope, static_argnames=("layout",))  # one compile, not op-by-op dispatch


def paper_p_rope(x: np.ndarray, positions: np.ndarray, p: float, base: float) -> np.ndarray:
    """The authors' apply_p_rope in float64: x [T, N, H], positions [T] ("half" layout)."""
    head_dim = x.shape[-1]
    rope_angles = int(p * head_dim // 2)
    nope_angles = head_dim // 2 - rope_angles
    fraction = 2.0 * np.arange(0, rope_angles) / head_dim
    timescale = np.concatenate([base**fraction, np.full(nope_angles, np.inf)])
    sinusoid = positions[:, None, None].astype(np.float64) / timescale  # [T, 1, H/2]
    sin, cos = np.sin(sinusoid), np.cos(sinusoid)
    first, second = np.split(x.astype(np.float64), 2, axis=-1)
    return np.concatenate([first * cos - second * sin, second * cos + first * sin], axis=-1)


def hf_proportional_inv_freq(head_dim: int, p: float, base: float, factor: float) -> np.ndarray:
    """transformers' _compute_proportional_rope_parameters, in float64."""
    rope_angles = int(p * head_dim // 2)
    rotated = 1.0 / base ** (np.arange(0, 2 * rope_angles, 2) / head_dim)
    return np.concatenate([rotated, np.zeros(head_dim // 2 - rope_angles)]) / factor


@pytest.mark.parametrize("p", [0.0, 0.25, 0.5, 0.75, 1.0])
def test_matches_the_authors_apply_p_rope(p):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 2, 16))
    positions = np.concatenate([np.arange(20), rng.integers(0, 4000, 20)])
    inv_freq, factor = rope_frequencies(16, keep_fraction=p)
    got = _rope(jnp.asarray(x, jnp.float32), jnp.asarray(positions), inv_freq=inv_freq)
    np.testing.assert_allclose(got, paper_p_rope(x, positions, p, 10000.0), atol=2e-5)
    assert factor == 1.0


@pytest.mark.parametrize(("head_dim", "p", "factor"), [(16, 0.25, 1.0), (256, 0.25, 8.0)])
def test_equals_hugging_face_proportional_rope(head_dim, p, factor):
    base = 1_000_000.0
    scaling = None if factor == 1.0 else {"rope_type": "linear", "factor": factor}
    inv_freq, _ = rope_frequencies(head_dim, base=base, keep_fraction=p, scaling=scaling)
    ref = hf_proportional_inv_freq(head_dim, p, base, factor)
    np.testing.assert_allclose(inv_freq, ref, rtol=1e-6)
    assert int(np.count_nonzero(ref)) == p_rope_keep_count(head_dim, p)


def test_interleaved_layout_leaves_the_low_frequency_pairs_unrotated():
    x = jnp.asarray(np.random.default_rng(1).normal(size=(5, 1, 8)), jnp.float32)
    inv_freq, _ = rope_frequencies(8, keep_fraction=0.5)  # pairs 0, 1 rotate; 2, 3 do not
    out = _rope(x, jnp.arange(100, 105), inv_freq=inv_freq, layout="interleaved")
    np.testing.assert_array_equal(out[..., 4:], x[..., 4:])
    assert not np.allclose(out[..., :4], x[..., :4])
    # The same as the "half" layout on the permuted features.
    perm = np.array([0, 2, 4, 6, 1, 3, 5, 7])  # interleaved pair i = (2i, 2i+1) -> (i, i + 4)
    half = _rope(x[..., perm], jnp.arange(100, 105), inv_freq=inv_freq, layout="half")
    np.testing.assert_allclose(out[..., perm], half, atol=1e-6)


@pytest.mark.parametrize(
    "scaling",
    [
        {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16},
        {"rope_type": "dynamic", "factor": 2.0, "original_max_position_embeddings": 8},
    ],
)
def test_composes_with_scalings_by_removing_the_lowest_frequencies(scaling):
    seq_len = jnp.array([4, 40])  # dynamic: one schedule a row
    full, factor = rope_frequencies(16, scaling=scaling, seq_len=seq_len)
    kept, kept_factor = rope_frequencies(16, scaling=scaling, seq_len=seq_len, keep_fraction=0.5)
    np.testing.assert_array_equal(kept[..., :4], full[..., :4])
    np.testing.assert_array_equal(kept[..., 4:], 0.0)
    assert kept_factor == factor


def _split_scores(q, k, qpos, kpos, inv_freq, layout, unrotated):
    """q.k of the rotated vectors, split into the unrotated and the rotated channels."""
    qr = apply_rope(q, qpos, inv_freq=inv_freq, layout=layout)
    kr = apply_rope(k, kpos, inv_freq=inv_freq, layout=layout)
    prod = qr[:, None] * kr[None, :]  # [T, S, N, H]
    mask = jnp.asarray(unrotated, prod.dtype)
    return jnp.sum(prod * mask, -1), jnp.sum(prod * (1 - mask), -1)  # [T, S, N] twice


@functools.partial(jax.jit, static_argnames=("layout",))
def _scores_at_offsets(q, k, qpos, kpos, shift, inv_freq, unrotated, layout):
    a = _split_scores(q, k, qpos, kpos, inv_freq, layout, unrotated)
    b = _split_scores(q, k, qpos + shift, kpos + shift, inv_freq, layout, unrotated)
    return a, b


@HYP
@given(
    seed=st.integers(0, 2**16),
    shift=st.integers(-1000, 100_000),
    layout=st.sampled_from(["half", "interleaved"]),
    p=st.sampled_from([0.25, 0.5, 0.75]),
)
def test_unrotated_part_ignores_positions_and_rotated_part_sees_only_the_offset(
    seed, shift, layout, p
):
    h = 16
    rng = np.random.default_rng(seed)
    q = jnp.asarray(rng.normal(size=(4, 2, h)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(5, 2, h)), jnp.float32)
    qpos = jnp.asarray(rng.integers(0, 5000, 4))
    kpos = jnp.asarray(rng.integers(0, 5000, 5))
    inv_freq, _ = rope_frequencies(h, keep_fraction=p)
    keep = p_rope_keep_count(h, p)
    pair = np.arange(h) // 2 if layout == "interleaved" else np.arange(h) % (h // 2)
    unrotated = pair >= keep  # [H]: features of the removed (lowest) frequencies
    (plain_a, rot_a), (plain_b, rot_b) = _scores_at_offsets(
        q, k, qpos, kpos, shift, inv_freq, unrotated, layout
    )
    content = jnp.einsum("tnh,snh->tsn", q * unrotated, k * unrotated)
    np.testing.assert_allclose(plain_a, content, atol=1e-5)  # no position at all
    np.testing.assert_allclose(plain_b, content, atol=1e-5)
    np.testing.assert_allclose(rot_a, rot_b, atol=2e-4 * h)  # only m - n matters


def test_scheme_option_and_its_errors():
    scheme = make_scheme({"name": "rope", "keep_fraction": 0.25, "layout": "interleaved"})
    q = jnp.ones((1, 3, 2, 8))
    rq, _ = scheme.rotate({}, q, q, jnp.arange(3), jnp.arange(3))
    np.testing.assert_array_equal(rq[..., 2:], q[..., 2:])  # int(0.25 * 8 // 2) = 1 pair kept
    assert scheme.extend_context("yarn", train_length=8, eval_length=32).keep_fraction == 0.25
    for bad in (1.5, -0.1, "half", True, math.nan):
        with pytest.raises(ValueError, match="keep_fraction"):
            make_scheme({"name": "rope", "keep_fraction": bad})
        with pytest.raises(ValueError, match="keep_fraction"):
            rope_frequencies(8, keep_fraction=bad)
