"""RoPE core: frequencies, rotation in both layouts, layout conversion, numerics, errors.

References are float64 NumPy transcriptions of RoFormer (Su et al. 2021, arXiv
2104.09864): theta_i = base^(-2i/d) and the block-diagonal rotation matrix
R_{Theta,m} of eq. (15), built as a dense matrix here rather than elementwise.
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

from posenc_jax.rope import apply_rope, convert_rope_layout, rope_frequencies, rotary_dim
from posenc_jax.rope.numerics import cos_sin_polynomial

HYP = settings(max_examples=25, deadline=None)


# --------------------------------------------------------------------------------------------
# Independent references
# --------------------------------------------------------------------------------------------


def roformer_theta(d: int, base: float = 10000.0) -> np.ndarray:
    """RoFormer eq. (15): theta_i = base^(-2(i-1)/d), i = 1 .. d/2."""
    return np.array([base ** (-2.0 * (i - 1) / d) for i in range(1, d // 2 + 1)])


def roformer_matrix(m: float, theta: np.ndarray, head_dim: int, layout: str) -> np.ndarray:
    """The [H, H] rotation R_{Theta,m}: 2x2 blocks on the rotated pairs, identity elsewhere."""
    mat = np.eye(head_dim)
    half = len(theta)
    for i, t in enumerate(theta):
        a, b = (2 * i, 2 * i + 1) if layout == "interleaved" else (i, i + half)
        c, s = math.cos(m * t), math.sin(m * t)
        mat[a, a], mat[a, b] = c, -s
        mat[b, a], mat[b, b] = s, c
    return mat


def reference_rope(x: np.ndarray, positions: np.ndarray, theta: np.ndarray, layout: str):
    """x: [T, N, H] float64, positions [T] -> R_{Theta,m} x per token."""
    out = np.empty_like(x, dtype=np.float64)
    for t, m in enumerate(positions):
        mat = roformer_matrix(float(m), theta, x.shape[-1], layout)
        out[t] = x[t].astype(np.float64) @ mat.T
    return out


def hf_permute(w: np.ndarray, n_heads: int) -> np.ndarray:
    """transformers' convert_llama_weights_to_hf ``permute``, for a [D, N*H] weight.

    The original acts on torch's [out, in] layout:
    w.view(n_heads, dim1 // n_heads // 2, 2, dim2).transpose(1, 2).reshape(dim1, dim2).
    """
    wt = w.T  # [out, in]
    dim1, dim2 = wt.shape
    out = wt.reshape(n_heads, dim1 // n_heads // 2, 2, dim2).transpose(0, 2, 1, 3)
    return out.reshape(dim1, dim2).T


def wrap(angle: np.ndarray) -> np.ndarray:
    """Angle difference folded into (-pi, pi]."""
    return np.angle(np.exp(1j * angle))


# --------------------------------------------------------------------------------------------
# Frequencies
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head_dim", "base", "fraction"),
    [(64, 10000.0, 1.0), (128, 500000.0, 1.0), (96, 10000.0, 0.25), (256, 10000.0, 0.25)],
)
def test_default_frequencies_match_roformer(head_dim, base, fraction):
    inv_freq, factor = rope_frequencies(head_dim, base=base, rotary_fraction=fraction)
    d = int(head_dim * fraction)
    assert inv_freq.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(inv_freq), roformer_theta(d, base), rtol=1e-7)
    assert factor == 1.0


def test_rotary_dim_is_int_of_fraction():
    assert rotary_dim(256, 0.25) == 64
    assert rotary_dim(80, 0.4) == 32
    assert rotary_dim(96, 0.25) == 24


# --------------------------------------------------------------------------------------------
# Rotation against the RoFormer matrix
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["half", "interleaved"])
@pytest.mark.parametrize(("head_dim", "fraction"), [(16, 1.0), (16, 0.5), (12, 1 / 3)])
def test_apply_rope_matches_roformer_matrix(layout, head_dim, fraction):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 7, 3, head_dim)).astype(np.float32)  # [B, T, N, H]
    positions = np.array([0, 1, 2, 5, 100, 4097, 65535], np.int32)
    inv_freq, _ = rope_frequencies(head_dim, rotary_fraction=fraction)
    d = rotary_dim(head_dim, fraction)
    # The rotation is exact for the frequencies it is given: float32-rounded theta here.
    theta32 = roformer_theta(d).astype(np.float32).astype(np.float64)
    got = np.asarray(apply_rope(jnp.asarray(x), positions, inv_freq=inv_freq, layout=layout))
    for b in range(2):
        want = reference_rope(x[b], positions, theta32, layout)
        np.testing.assert_allclose(got[b], want, atol=2e-5, rtol=1e-4)
    np.testing.assert_array_equal(got[..., d:], x[..., d:])  # pass-through dims untouched
    # Float64 NumPy frequencies are used unrounded.
    got64 = apply_rope(jnp.asarray(x), positions, inv_freq=roformer_theta(d), layout=layout)
    want64 = reference_rope(x[0], positions, roformer_theta(d), layout)
    np.testing.assert_allclose(np.asarray(got64)[0], want64, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("layout", ["half", "interleaved"])
def test_batched_positions_rotate_each_row(layout):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 5, 2, 8)).astype(np.float32)
    positions = np.array([[0, 1, 2, 3, 4], [7, 8, 9, 10, 11], [3, 3, 3, 0, 1000]], np.int32)
    inv_freq, _ = rope_frequencies(8)
    got = np.asarray(apply_rope(x, positions, inv_freq=inv_freq, layout=layout))
    theta = roformer_theta(8)
    for b in range(3):
        want = reference_rope(x[b], positions[b], theta, layout)
        np.testing.assert_allclose(got[b], want, atol=2e-5, rtol=1e-4)


def test_float_positions_interpolate():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(1, 4, 1, 8)).astype(np.float32)
    positions = np.array([0.5, 2.25, 1000.75, 12345.5], np.float32)
    inv_freq, _ = rope_frequencies(8)
    got = np.asarray(apply_rope(x, positions, inv_freq=inv_freq))
    want = reference_rope(x[0], positions.astype(np.float64), roformer_theta(8), "half")
    np.testing.assert_allclose(got[0], want, atol=5e-5, rtol=1e-4)


def test_jit_with_traced_positions_and_frequencies():
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(2, 6, 2, 16)), jnp.float32)
    positions = jnp.arange(6) + 1000
    inv_freq, _ = rope_frequencies(16)
    eager = apply_rope(x, positions, inv_freq=inv_freq, attention_factor=1.3)

    @jax.jit
    def f(x, positions, inv_freq, factor):
        return apply_rope(x, positions, inv_freq=inv_freq, attention_factor=factor)

    np.testing.assert_allclose(f(x, positions, inv_freq, 1.3), eager, rtol=1e-6, atol=1e-6)
    # One compiled program serves other position values.
    np.testing.assert_allclose(
        f(x, positions + 7, inv_freq, 1.3),
        apply_rope(x, positions + 7, inv_freq=inv_freq, attention_factor=1.3),
        rtol=1e-6,
        atol=1e-6,
    )


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16, jnp.float32])
@pytest.mark.parametrize("layout", ["half", "interleaved"])
@pytest.mark.parametrize("rotary_dim", [8, 4])
def test_output_keeps_input_dtype(dtype, layout, rotary_dim):
    """Every dtype, layout and partial rotary against float64 (16-bit inputs take
    their own code path in the interleaved layout)."""
    x = jax.random.normal(jax.random.key(0), (2, 3, 2, 8)).astype(dtype)
    inv_freq, _ = rope_frequencies(rotary_dim)
    out = apply_rope(x, jnp.arange(3), inv_freq=inv_freq, layout=layout)
    assert out.dtype == dtype and out.shape == x.shape
    theta = roformer_theta(rotary_dim)
    tol = {jnp.bfloat16: 3e-2, jnp.float16: 4e-3, jnp.float32: 1e-6}[dtype]
    for row in range(2):
        want = reference_rope(np.asarray(x[row], np.float64), np.arange(3), theta, layout)
        np.testing.assert_allclose(np.asarray(out[row], np.float64), want, atol=tol)


# --------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------

fractions = st.sampled_from([(8, 1.0), (16, 1.0), (16, 0.5), (12, 1 / 3), (32, 0.25)])
layouts = st.sampled_from(["half", "interleaved"])


@functools.partial(jax.jit, static_argnames="layout")  # one compile per shape and layout
def _scores(q, k, qpos, kpos, inv_freq, layout, factor=1.0):
    qr = apply_rope(q, qpos, inv_freq=inv_freq, layout=layout, attention_factor=factor)
    kr = apply_rope(k, kpos, inv_freq=inv_freq, layout=layout, attention_factor=factor)
    return jnp.einsum("btnh,bsnh->bnts", qr, kr)


@HYP
@given(
    shape=fractions,
    layout=layouts,
    seed=st.integers(0, 2**16),
    shift=st.integers(-(2**20), 2**20),
    base=st.sampled_from([10000.0, 500000.0]),
)
def test_scores_depend_only_on_offset(shape, layout, seed, shift, base):
    """RoFormer section 3.2: <f(q, m), f(k, n)> = g(q, k, m - n), here up to |m| ~ 2^21."""
    head_dim, fraction = shape
    rng = np.random.default_rng(seed)
    q = jnp.asarray(rng.normal(size=(1, 4, 2, head_dim)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(1, 5, 2, head_dim)), jnp.float32)
    qpos = jnp.asarray(rng.integers(0, 2**20, size=4), jnp.int32)
    kpos = jnp.asarray(rng.integers(0, 2**20, size=5), jnp.int32)
    inv_freq, _ = rope_frequencies(head_dim, base=base, rotary_fraction=fraction)
    s0 = _scores(q, k, qpos, kpos, inv_freq, layout)
    s1 = _scores(q, k, qpos + shift, kpos + shift, inv_freq, layout)
    np.testing.assert_allclose(s1, s0, atol=2e-4 * head_dim, rtol=0)


@HYP
@given(shape=fractions, layout=layouts, seed=st.integers(0, 2**16))
def test_rotation_preserves_norms(shape, layout, seed):
    head_dim, fraction = shape
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2, 6, 3, head_dim)).astype(np.float32)
    positions = rng.integers(-(2**20), 2**20, size=(2, 6)).astype(np.int32)
    inv_freq, _ = rope_frequencies(head_dim, rotary_fraction=fraction)
    rope = jax.jit(apply_rope, static_argnames="layout")
    out = np.asarray(rope(x, positions, inv_freq=inv_freq, layout=layout))
    np.testing.assert_allclose(
        np.linalg.norm(out, axis=-1), np.linalg.norm(x, axis=-1), rtol=1e-5, atol=1e-6
    )


@HYP
@given(layout=layouts, seed=st.integers(0, 2**16), factor=st.floats(0.25, 4.0))
def test_attention_factor_scales_logits_by_its_square(layout, seed, factor):
    rng = np.random.default_rng(seed)
    q = jnp.asarray(rng.normal(size=(1, 3, 2, 16)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(1, 4, 2, 16)), jnp.float32)
    qpos, kpos = jnp.arange(3) + 50, jnp.arange(4)
    inv_freq, _ = rope_frequencies(16)
    plain = _scores(q, k, qpos, kpos, inv_freq, layout)
    scaled = _scores(q, k, qpos, kpos, inv_freq, layout, factor=factor)
    # float32 rounding of a 16-term dot grows with the terms, not with the (possibly
    # cancelling) sum: the absolute tolerance follows the size of the scores.
    atol = max(1e-5, 1e-6 * float(np.max(np.abs(scaled))))
    np.testing.assert_allclose(scaled, factor**2 * plain, rtol=1e-5, atol=atol)


@HYP
@given(
    shape=fractions,
    heads=st.integers(1, 2),
    seed=st.integers(0, 2**16),
    src=layouts,
)
def test_layout_conversion_keeps_attention_scores(shape, heads, seed, src):
    head_dim, fraction = shape
    dst = "half" if src == "interleaved" else "interleaved"
    d_model, t = 12, 5
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(1, t, d_model)).astype(np.float32)
    wq = rng.normal(size=(d_model, heads * head_dim)).astype(np.float32)
    wk = rng.normal(size=(d_model, heads, head_dim)).astype(np.float32)  # [D, N, H] form
    r = rotary_dim(head_dim, fraction)
    inv_freq, _ = rope_frequencies(head_dim, rotary_fraction=fraction)
    positions = jnp.asarray(rng.integers(0, 5000, size=t), jnp.int32)

    def scores(wq, wk, layout):
        q = (x @ np.asarray(wq).reshape(d_model, -1)).reshape(1, t, heads, head_dim)
        k = (x @ np.asarray(wk).reshape(d_model, -1)).reshape(1, t, heads, head_dim)
        return _scores(jnp.asarray(q), jnp.asarray(k), positions, positions, inv_freq, layout)

    wq2 = convert_rope_layout(wq, head_dim=head_dim, rotary_dim=r, src=src, dst=dst)
    wk2 = convert_rope_layout(wk, head_dim=head_dim, rotary_dim=r, src=src, dst=dst)
    assert wq2.shape == wq.shape and wk2.shape == wk.shape
    np.testing.assert_allclose(
        scores(wq2, wk2, dst), scores(wq, wk, src), rtol=2e-4, atol=2e-4 * head_dim
    )
    # Round trip is the identity.
    back = convert_rope_layout(wq2, head_dim=head_dim, rotary_dim=r, src=dst, dst=src)
    np.testing.assert_array_equal(back, wq)


@pytest.mark.parametrize("heads", [1, 4])
def test_layout_conversion_equals_hf_permute(heads):
    rng = np.random.default_rng(4)
    w = rng.normal(size=(10, heads * 8)).astype(np.float32)
    got = convert_rope_layout(w, head_dim=8, src="interleaved", dst="half")
    np.testing.assert_array_equal(np.asarray(got), hf_permute(w, heads))
    same = convert_rope_layout(w, head_dim=8, src="half", dst="half")
    np.testing.assert_array_equal(np.asarray(same), w)


# --------------------------------------------------------------------------------------------
# Numerics at long positions
# --------------------------------------------------------------------------------------------

LONG_POSITIONS = np.array([2**20, 2**20 - 1, 999_999, 123_457, -(2**20), 3], np.int32)


def _recovered_phase(head_dim: int, inv_freq, layout: str, dtype) -> np.ndarray:
    """Rotate the unit vector (1, 0) of every pair and read the angle back with atan2."""
    half = head_dim // 2
    x = np.zeros((1, len(LONG_POSITIONS), 1, head_dim), np.float32)
    if layout == "half":
        x[..., :half] = 1.0
    else:
        x[..., 0::2] = 1.0
    out = apply_rope(jnp.asarray(x, dtype), LONG_POSITIONS, inv_freq=inv_freq, layout=layout)
    out = np.asarray(out, np.float64)[0, :, 0]
    if layout == "half":
        a, b = out[:, :half], out[:, half:]
    else:
        a, b = out[:, 0::2], out[:, 1::2]
    return np.arctan2(b, a)  # [T, R/2]


def test_cos_sin_polynomial_against_float64():
    """The CPU table's cos and sin: within one float32 ulp of 1 over |angle| <= 2^10,
    including the quadrant boundaries (multiples of pi/4) and both signs."""
    grid = np.linspace(-1024.0, 1024.0, 400_001)
    edges = (np.arange(-1300, 1301) * (math.pi / 4)).astype(np.float32)
    up, down = np.nextafter(edges, np.float32(2e3)), np.nextafter(edges, np.float32(-2e3))
    x = np.concatenate([grid.astype(np.float32), edges, up, down])
    x = np.concatenate([x, np.array([0.0, -0.0, 1e-30, -1e-30], np.float32)])
    cos, sin = jax.jit(cos_sin_polynomial)(jnp.asarray(x))
    xd = x.astype(np.float64)
    ulp = float(np.spacing(np.float32(1.0)))
    assert np.abs(np.asarray(cos, np.float64) - np.cos(xd)).max() < ulp
    assert np.abs(np.asarray(sin, np.float64) - np.sin(xd)).max() < ulp


@pytest.mark.parametrize("layout", ["half", "interleaved"])
@pytest.mark.parametrize("base", [10000.0, 500000.0])
def test_phase_error_at_2_pow_20_float32(layout, base):
    inv_freq, _ = rope_frequencies(128, base=base)
    theta32 = np.asarray(inv_freq, np.float64)
    want = LONG_POSITIONS[:, None].astype(np.float64) * theta32[None, :]
    err = np.abs(wrap(_recovered_phase(128, inv_freq, layout, jnp.float32) - want))
    assert err.max() < 1e-4
    # The check has teeth: a plain float32 product m * theta is off by far more here.
    naive = (LONG_POSITIONS[:, None].astype(np.float32) * np.asarray(inv_freq)).astype(np.float64)
    assert np.abs(wrap(naive - want)).max() > 5e-3


@pytest.mark.parametrize("layout", ["half", "interleaved"])
def test_phase_error_at_2_pow_20_bfloat16(layout):
    inv_freq, _ = rope_frequencies(128, base=10000.0)
    want = LONG_POSITIONS[:, None] * np.asarray(inv_freq, np.float64)[None, :]
    err = np.abs(wrap(_recovered_phase(128, inv_freq, layout, jnp.bfloat16) - want))
    assert err.max() < 5e-3  # bfloat16 rounding of cos and sin, ~2e-3 rad at most


def test_phase_error_against_exact_frequencies_with_float64_input():
    """Float64 NumPy frequencies skip float32 rounding: error vs base^(-2i/d) in float64."""
    theta = roformer_theta(128, 10000.0)
    want = LONG_POSITIONS[:, None] * theta[None, :]
    err = np.abs(wrap(_recovered_phase(128, theta, "half", jnp.float32) - want))
    assert err.max() < 1e-4
    # float32 frequencies alone move the phase at 2^20 by more than that.
    inv_freq, _ = rope_frequencies(128, base=10000.0)
    err32 = np.abs(wrap(_recovered_phase(128, inv_freq, "half", jnp.float32) - want))
    assert err32.max() > 1e-3


def test_phase_exact_under_jit_with_traced_frequencies():
    inv_freq, _ = rope_frequencies(64, base=10000.0)
    x = jnp.zeros((1, len(LONG_POSITIONS), 1, 64)).at[..., :32].set(1.0)
    f = jax.jit(lambda x, p, w: apply_rope(x, p, inv_freq=w))
    out = np.asarray(f(x, jnp.asarray(LONG_POSITIONS), inv_freq), np.float64)[0, :, 0]
    phase = np.arctan2(out[:, 32:], out[:, :32])
    want = LONG_POSITIONS[:, None] * np.asarray(inv_freq, np.float64)[None, :]
    assert np.abs(wrap(phase - want)).max() < 1e-4


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"head_dim": 63}, "even rotary dim.*head_dim=63, rotary_fraction=1.0"),
        ({"head_dim": 64, "rotary_fraction": 0.3}, "even rotary dim.*rotary dim 19"),
        ({"head_dim": 64, "rotary_fraction": 0.0}, "rotary_fraction"),
        ({"head_dim": 64, "rotary_fraction": 1.5}, "rotary_fraction"),
        ({"head_dim": 1}, "head_dim"),
        ({"head_dim": 8, "rotary_fraction": 0.1}, "rotary dim 0"),
        ({"head_dim": 64, "base": 0.0}, "base"),
        ({"head_dim": 64, "base": -10.0}, "base"),
    ],
)
def test_invalid_frequency_settings(kwargs, match):
    head_dim = kwargs.pop("head_dim")
    with pytest.raises(ValueError, match=match):
        rope_frequencies(head_dim, **kwargs)


def test_bad_layout_lists_valid_layouts():
    inv_freq, _ = rope_frequencies(8)
    with pytest.raises(ValueError, match=r"layout.*\['half', 'interleaved'\].*'neox'"):
        apply_rope(jnp.ones((1, 2, 1, 8)), jnp.arange(2), inv_freq=inv_freq, layout="neox")
    with pytest.raises(ValueError, match=r"src.*\['half', 'interleaved'\]"):
        convert_rope_layout(jnp.ones((4, 8)), head_dim=8, src="gptj", dst="half")
    with pytest.raises(ValueError, match=r"dst.*\['half', 'interleaved'\]"):
        convert_rope_layout(jnp.ones((4, 8)), head_dim=8, src="half", dst="rotate_half")


def test_apply_rope_shape_errors():
    inv_freq, _ = rope_frequencies(8)
    with pytest.raises(ValueError, match="positions"):
        apply_rope(jnp.ones((1, 3, 2, 8)), jnp.arange(4), inv_freq=inv_freq)
    with pytest.raises(ValueError, match="batch"):
        apply_rope(jnp.ones((2, 3, 2, 8)), jnp.zeros((3, 3), jnp.int32), inv_freq=inv_freq)
    with pytest.raises(ValueError, match="head dim 4"):
        apply_rope(jnp.ones((1, 3, 2, 4)), jnp.arange(3), inv_freq=inv_freq)


def test_convert_layout_errors():
    with pytest.raises(ValueError, match="rotary_dim"):
        convert_rope_layout(jnp.ones((4, 8)), head_dim=8, rotary_dim=3, src="half", dst="half")
    with pytest.raises(ValueError, match="rotary_dim=16 exceeds head_dim=8"):
        convert_rope_layout(
            jnp.ones((4, 8)), head_dim=8, rotary_dim=16, src="half", dst="interleaved"
        )
    with pytest.raises(ValueError, match="multiple of head_dim=8"):
        convert_rope_layout(jnp.ones((4, 12)), head_dim=8, src="half", dst="interleaved")
