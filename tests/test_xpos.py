"""xPos: float64 transcription of torchscale's code, and the properties the paper claims."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st

from posenc_jax import rope
from posenc_jax.nn import MultiHeadAttention, TransformerEncoder
from posenc_jax.schemes import make_scheme
from posenc_jax.xpos import apply_xpos, xpos_zeta

PROPS = settings(max_examples=25, deadline=None)


def _torchscale_xpos(x, *, scale_base, downscale):
    """float64 transcription of torchscale's ``XPOS.forward(x, offset=0, downscale)``.

    x: [L, d] for one head. The scale uses positions centred on the sequence
    (min_pos = -L // 2 in Python's floor division); the rotation uses 0 .. L-1
    (``fixed_pos_embedding`` builds its own arange); pairs are (2i, 2i + 1).
    """
    length, d = x.shape
    zeta = (np.arange(0, d, 2) + 0.4 * d) / (1.4 * d)  # [d/2]
    min_pos = -length // 2
    pos = np.arange(min_pos, length + min_pos, dtype=np.float64)
    scale = zeta[None, :] ** (pos[:, None] / scale_base)  # [L, d/2]
    half = d // 2
    inv_freq = 1.0 / (10000.0 ** (np.arange(half) / half))
    angle = np.arange(length, dtype=np.float64)[:, None] * inv_freq[None, :]
    sin, cos = np.sin(angle), np.cos(angle)
    if downscale:
        scale = 1.0 / scale
    sin = np.repeat(sin * scale, 2, axis=-1)  # duplicate_interleave
    cos = np.repeat(cos * scale, 2, axis=-1)
    rot = np.stack([-x[:, 1::2], x[:, 0::2]], axis=-1).reshape(length, d)  # rotate_every_two
    return x * cos + rot * sin


def _scores(q, k):
    """[T, N, H], [S, N, H] -> [N, T, S] float64."""
    return np.einsum("tnh,snh->nts", np.asarray(q, np.float64), np.asarray(k, np.float64))


def _xpos_pair(q, k, q_pos, k_pos, *, head_dim, scale_base=512.0, center=0, layout="half", **extra):
    inv_freq, _ = rope.rope_frequencies(head_dim)
    zeta = xpos_zeta(head_dim)
    kw = dict(inv_freq=inv_freq, zeta=zeta, scale_base=scale_base, center=center, layout=layout)
    kw.update(extra)
    return (
        apply_xpos(q, jnp.asarray(q_pos), downscale=False, **kw),
        apply_xpos(k, jnp.asarray(k_pos), downscale=True, **kw),
    )


def test_xpos_zeta_matches_torchscale_scale_buffer():
    for d in (2, 8, 64, 128):
        ref = (np.arange(0, d, 2) + 0.4 * d) / (1.4 * d)
        np.testing.assert_allclose(xpos_zeta(d), ref, rtol=1e-7)


@pytest.mark.parametrize("length", [7, 16])
@pytest.mark.parametrize("scale_base", [512.0, 4.0])
@pytest.mark.parametrize("downscale", [False, True])
def test_xpos_equals_torchscale_reference(length, scale_base, downscale):
    """Elementwise: torchscale centres its scale at ceil(L / 2); the rotation is uncentred."""
    d = 16
    x = np.random.default_rng(0).normal(size=(length, d))
    ref = _torchscale_xpos(x, scale_base=scale_base, downscale=downscale)
    inv_freq, _ = rope.rope_frequencies(d)
    out = apply_xpos(
        jnp.asarray(x[:, None, :], jnp.float32),  # [T, N=1, H]
        jnp.arange(length),
        inv_freq=inv_freq,
        zeta=xpos_zeta(d),
        scale_base=scale_base,
        downscale=downscale,
        center=-(-length // 2),
        layout="interleaved",
    )
    np.testing.assert_allclose(out[:, 0], ref, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("center", [0, 5, -100])
def test_xpos_scores_equal_torchscale_scores_for_any_center(center):
    """q.k of torchscale's xPos (q upscaled, k downscaled) equals ours whatever the centre."""
    d, length = 8, 12
    rng = np.random.default_rng(1)
    q, k = rng.normal(size=(2, length, d))
    ref = (
        _torchscale_xpos(q, scale_base=8.0, downscale=False)
        @ _torchscale_xpos(k, scale_base=8.0, downscale=True).T
    )
    pos = np.arange(length)
    qx, kx = _xpos_pair(
        q[:, None].astype(np.float32),
        k[:, None].astype(np.float32),
        pos,
        pos,
        head_dim=d,
        scale_base=8.0,
        center=center,
        layout="interleaved",
    )
    np.testing.assert_allclose(_scores(qx, kx)[0], ref, rtol=1e-4, atol=1e-4)


@PROPS
@given(
    shift=st.integers(-2000, 2000),
    start=st.integers(0, 2000),
    seed=st.integers(0, 2**16),
    layout=st.sampled_from(["half", "interleaved"]),
)
def test_xpos_scores_depend_only_on_relative_position(shift, start, seed, layout):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(5, 2, 8)).astype(np.float32)
    k = rng.normal(size=(6, 2, 8)).astype(np.float32)
    q_pos = start + np.array([0, 3, 9, 20, 41])
    k_pos = start + np.array([0, 1, 2, 8, 30, 40])
    # Positions stay inside the exact window |p| < 66.5 * 128 / |log zeta_0| = 6794.
    kw = dict(head_dim=8, scale_base=128.0, layout=layout)
    a = _scores(*_xpos_pair(q, k, q_pos, k_pos, **kw))
    b = _scores(*_xpos_pair(q, k, q_pos + shift, k_pos + shift, **kw))
    np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-3)


@PROPS
@given(n=st.integers(0, 400), m=st.integers(0, 400), seed=st.integers(0, 2**16))
def test_xpos_score_is_rope_score_with_per_pair_decay(n, m, seed):
    """With only pair i non-zero, xPos q.k = RoPE q.k * zeta_i^((n - m) / scale_base)."""
    d, sb = 8, 32.0
    zeta = np.asarray(xpos_zeta(d), np.float64)
    inv_freq, _ = rope.rope_frequencies(d)
    rng = np.random.default_rng(seed)
    for i in range(d // 2):
        q = np.zeros((1, 1, d), np.float32)
        k = np.zeros((1, 1, d), np.float32)
        q[..., [i, i + d // 2]] = rng.normal(size=2)
        k[..., [i, i + d // 2]] = rng.normal(size=2)
        xq, xk = _xpos_pair(q, k, [n], [m], head_dim=d, scale_base=sb)
        rq = rope.apply_rope(q, jnp.array([n]), inv_freq=inv_freq)
        rk = rope.apply_rope(k, jnp.array([m]), inv_freq=inv_freq)
        expected = _scores(rq, rk) * zeta[i] ** ((n - m) / sb)
        np.testing.assert_allclose(_scores(xq, xk), expected, rtol=1e-4, atol=1e-5)


@PROPS
@given(gap=st.integers(1, 500), start=st.integers(0, 5000), seed=st.integers(0, 2**16))
def test_xpos_aligned_scores_decay_with_distance(gap, start, seed):
    """q = k in the lowest-frequency pair: the score falls strictly as the key moves away."""
    d = 16
    x = np.zeros((1, 1, d), np.float32)
    x[..., [d // 2 - 1, d - 1]] = np.random.default_rng(seed).normal(size=2) + 3.0
    n = start + 2 * gap + 10
    kw = dict(head_dim=d, scale_base=64.0, center=n)  # the exact window is n +- 3398
    near = _scores(*_xpos_pair(x, x, [n], [n - gap], **kw))
    far = _scores(*_xpos_pair(x, x, [n], [n - 2 * gap], **kw))
    same = _scores(*_xpos_pair(x, x, [n], [n], **kw))
    assert far.item() < near.item() < same.item()
    np.testing.assert_allclose(same.item(), float(np.sum(x.astype(np.float64) ** 2)), rtol=1e-5)


def test_xpos_far_positions_are_finite_and_center_restores_exact_scores():
    rng = np.random.default_rng(3)
    q = rng.normal(size=(4, 1, 8)).astype(np.float32)
    k = rng.normal(size=(4, 1, 8)).astype(np.float32)
    pos = np.arange(4)
    near = _scores(*_xpos_pair(q, k, pos, pos, head_dim=8))
    far_pos = pos + 1_000_000
    far = _scores(*_xpos_pair(q, k, far_pos, far_pos, head_dim=8, center=1_000_000))
    np.testing.assert_allclose(far, near, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match=r"center \+- 27194 \(center=0"):
        _xpos_pair(q, k, far_pos, far_pos, head_dim=8)  # outside the window
    clipped = _xpos_pair(q, k, far_pos, far_pos, head_dim=8, out_of_range="clip")
    assert np.all(np.isfinite(_scores(*clipped)))


def test_xpos_keeps_dtype_and_jits():
    q = jnp.ones((2, 5, 2, 8), jnp.bfloat16)
    inv_freq, _ = rope.rope_frequencies(8)
    f = jax.jit(lambda x, p: apply_xpos(x, p, inv_freq=inv_freq, zeta=xpos_zeta(8), downscale=True))
    out = f(q, jnp.arange(10).reshape(2, 5))
    assert out.dtype == jnp.bfloat16
    ref = f(q.astype(jnp.float32), jnp.arange(10).reshape(2, 5))
    np.testing.assert_allclose(out.astype(jnp.float32), ref, rtol=2e-2, atol=2e-2)


def test_xpos_partial_head_passes_extra_dims_through():
    x = jnp.asarray(np.random.default_rng(4).normal(size=(3, 1, 10)), jnp.float32)
    inv_freq, _ = rope.rope_frequencies(8)
    out = apply_xpos(x, jnp.arange(3) + 7, inv_freq=inv_freq, zeta=xpos_zeta(8), layout="half")
    np.testing.assert_array_equal(out[..., 8:], x[..., 8:])


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: xpos_zeta(7), "head_dim=7"),
        (lambda: xpos_zeta(8, gamma=0.0), "gamma"),
        (lambda: make_scheme({"name": "xpos", "layout": "rot"}), "layout"),
        (lambda: make_scheme({"name": "xpos", "scale_base": -1}), "scale_base"),
        (lambda: make_scheme({"name": "xpos", "gamma": float("nan")}), "gamma"),
        (lambda: make_scheme({"name": "xpos", "center": 0.5}), "center"),
        (lambda: make_scheme("xpos").configure(causal=False), "causal=False"),
        (lambda: make_scheme("xpos").validate(num_heads=2, head_dim=9, d_model=18), "head_dim=9"),
        (
            lambda: apply_xpos(
                jnp.ones((2, 1, 8)),
                jnp.arange(2),
                inv_freq=rope.rope_frequencies(8)[0],
                zeta=xpos_zeta(6),
            ),
            "zeta",
        ),
        (
            lambda: apply_xpos(
                jnp.ones((2, 1, 8)),
                jnp.arange(2),
                inv_freq=rope.rope_frequencies(8)[0],
                zeta=xpos_zeta(8),
                scale_base=0,
            ),
            "scale_base",
        ),
    ],
)
def test_xpos_bad_settings_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_xpos_encoder_is_refused():
    with pytest.raises(ValueError, match="causal"):
        TransformerEncoder(
            7, scheme="xpos", num_layers=1, d_model=16, num_heads=2, rngs=nnx.Rngs(0)
        )


# -- long range: the exact window, its check, and the centre the plan picks ---------------


def _xpos_scores_float64(q, k, q_pos, k_pos, *, scale_base=512.0, base=1e4):
    """score(n, m) = sum_i zeta_i^((n - m) / scale_base) * <R(n theta_i) q_i, R(m theta_i) k_i>,
    float64, interleaved pairs (2i, 2i + 1). q: [T, N, H], k: [S, N, H] -> [N, T, S]."""
    d = q.shape[-1]
    theta = base ** (-np.arange(0, d, 2) / d)  # [H/2]
    zeta = (np.arange(0, d, 2) + 0.4 * d) / (1.4 * d)  # [H/2]

    def rotated(x, pos):
        angle = np.asarray(pos, np.float64)[:, None, None] * theta  # [T, 1, H/2]
        a, b = np.asarray(x, np.float64)[..., 0::2], np.asarray(x, np.float64)[..., 1::2]
        return a * np.cos(angle) - b * np.sin(angle), b * np.cos(angle) + a * np.sin(angle)

    (qa, qb), (ka, kb) = rotated(q, q_pos), rotated(k, k_pos)
    pair = np.einsum("tni,sni->nits", qa, ka) + np.einsum("tni,sni->nits", qb, kb)
    dist = np.asarray(q_pos, np.float64)[:, None] - np.asarray(k_pos, np.float64)[None, :]
    decay = zeta[:, None, None] ** (dist / scale_base)  # [H/2, T, S]
    return np.einsum("nits,its->nts", pair, decay)


def test_xpos_scores_near_32k_are_exact_or_an_error():
    """Queries 32000..32007, keys 31990..32007: past the float32 window around centre 0.

    The default scheme raises (eagerly, and under jit at run time) instead of dropping
    the decay of the fastest pair; the scheme the experiment plan uses
    (`assume_positions_below`) moves the centre and scores match the float64 formula.
    """
    scheme = make_scheme("xpos").configure(causal=True)
    rng = np.random.default_rng(5)
    q = jnp.asarray(rng.normal(size=(1, 8, 2, 8)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(1, 18, 2, 8)), jnp.float32)
    q_pos, k_pos = jnp.arange(32000, 32008), jnp.arange(31990, 32008)
    with pytest.raises(ValueError, match=r"within center \+- 27194 \(center=0.*center=31998"):
        scheme.rotate({}, q, k, q_pos, k_pos)
    with pytest.raises(jax.errors.JaxRuntimeError, match="xpos: positions must lie within"):
        jax.block_until_ready(jax.jit(lambda *a: scheme.rotate({}, *a))(q, k, q_pos, k_pos))

    checked = scheme.assume_positions_below(32008)
    assert (checked.center, checked.out_of_range) == (16003, "clip")
    qx, kx = jax.jit(lambda *a: checked.rotate({}, *a))(q, k, q_pos, k_pos)
    got = _scores(qx[0], kx[0])
    want = _xpos_scores_float64(q[0], k[0], q_pos, k_pos)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_xpos_assume_positions_below_keeps_a_fitting_centre_and_refuses_too_long_spans():
    scheme = make_scheme({"name": "xpos", "scale_base": 16.0})  # window 848 in float32
    assert scheme.assume_positions_below(800) == dataclasses.replace(scheme, out_of_range="clip")
    assert scheme.assume_positions_below(1600).center == 799
    assert scheme.position_limit() == 2 * 848 + 1
    with pytest.raises(ValueError, match="span more than the window"):
        scheme.assume_positions_below(1700)
    clip = dataclasses.replace(scheme, out_of_range="clip")
    assert clip.position_limit() is None and clip.assume_positions_below(800) is clip
    # "clip" accepts a span past the window (the far pairs stop decaying): centred, no error.
    assert clip.assume_positions_below(1700).center == 849


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_xpos_half_precision_inputs_keep_angles_and_scales_in_float32(dtype):
    """bf16 cannot hold position 32001 (spacing 128 there); angles and scales stay float32."""
    rng = np.random.default_rng(6)
    x = jnp.asarray(rng.normal(size=(8, 2, 8)), dtype)  # [T, N, H]
    pos = jnp.arange(32000, 32008)
    inv_freq, _ = rope.rope_frequencies(8)
    for downscale in (False, True):
        out = apply_xpos(
            x, pos, inv_freq=inv_freq, zeta=xpos_zeta(8), center=31000, downscale=downscale
        )
        assert out.dtype == dtype
        # float64: scale zeta^(+-(p - c) / 512), then rotate pair (2i, 2i + 1) by p theta_i.
        xf = np.asarray(x.astype(jnp.float32), np.float64)
        zeta = (np.arange(0, 8, 2) + 3.2) / 11.2
        sign = -1.0 if downscale else 1.0
        scale = zeta ** (sign * (np.asarray(pos)[:, None] - 31000) / 512.0)  # [T, 4]
        angle = np.asarray(pos, np.float64)[:, None] * 1e4 ** (-np.arange(0, 8, 2) / 8)
        a, b = xf[..., 0::2] * scale[:, None], xf[..., 1::2] * scale[:, None]
        cos, sin = np.cos(angle)[:, None], np.sin(angle)[:, None]
        want = np.stack([a * cos - b * sin, b * cos + a * sin], axis=-1).reshape(xf.shape)
        eps = float(jnp.finfo(dtype).eps)
        err = np.max(np.abs(np.asarray(out.astype(jnp.float32), np.float64) - want))
        assert err <= 2 * eps * np.max(np.abs(want)), err


def test_xpos_cached_decoding_near_32k_equals_the_full_forward():
    """The centre is a setting shared by every call, so keys cached at one step meet
    queries of later steps with the same centre: decoding stays exact at 32k."""
    scheme = make_scheme("xpos").assume_positions_below(32010)
    attn = MultiHeadAttention(16, num_heads=2, scheme=scheme, rngs=nnx.Rngs(0))
    x = jnp.asarray(np.random.default_rng(7).normal(size=(1, 10, 16)), jnp.float32)
    pos = jnp.arange(32000, 32010)
    full = attn(x, positions=pos)
    attn.init_cache(1, 10)
    step = nnx.jit(lambda m, x, p: m(x, positions=p, decode=True))
    outs = [step(attn, x[:, :4], pos[:4])]
    outs += [step(attn, x[:, i : i + 1], pos[i : i + 1]) for i in range(4, 10)]
    np.testing.assert_allclose(jnp.concatenate(outs, axis=1), full, atol=1e-5, rtol=1e-5)
