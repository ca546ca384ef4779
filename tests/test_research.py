"""xPos, KERPLE and FIRE: float64 transcriptions of the papers' code, properties, models."""

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st

from posenc_jax import rope
from posenc_jax.attention import blockwise_attention, dense_attention
from posenc_jax.nn import TransformerEncoder, TransformerLM
from posenc_jax.research import (
    FireScheme,
    KerpleScheme,
    XposScheme,
    apply_xpos,
    fire_bias,
    fire_normalized_distance,
    init_fire_params,
    init_kerple_params,
    kerple_bias,
    rope_decay_bound,
    xpos_zeta,
)
from posenc_jax.schemes import list_schemes, make_scheme

PROPS = settings(max_examples=25, deadline=None)


# --------------------------------------------------------------------------------------------
# References (float64 numpy)
# --------------------------------------------------------------------------------------------


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


def _kerple_reference(q_pos, k_pos, r1, r2, kind, eps=1e-2):
    """Chi et al. 2022, with the authors' clamps: r >= eps, and r2 <= 2 for the power kernel."""
    d = np.abs(np.asarray(q_pos, np.float64)[:, None] - np.asarray(k_pos, np.float64)[None, :])
    r1 = np.maximum(np.asarray(r1, np.float64), eps)[:, None, None]
    if kind == "log":
        r2 = np.maximum(np.asarray(r2, np.float64), eps)[:, None, None]
        return -r1 * np.log(1.0 + r2 * d[None])
    r2 = np.clip(np.asarray(r2, np.float64), eps, 2.0)[:, None, None]
    return -r1 * d[None] ** r2


def _fire_reference(seq_len, params, init_threshold, eps=1e-6):
    """float64 transcription of the FIRE paper's reference ``forward(seq_len)``."""
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    positions = np.arange(seq_len, dtype=np.float64)
    rel = positions[:, None] - positions[None, :]
    threshold = abs(p["threshold_scale"] * init_threshold)
    normalizer = np.maximum(positions, threshold)[:, None]
    rel = np.log(np.abs(p["c"] * rel) + 1)
    normalizer = np.log(np.abs(p["c"] * normalizer) + 1) + eps
    u = rel / normalizer  # [T, S]
    hidden = np.maximum(u[..., None] * p["w1"] + p["b1"], 0.0)  # [T, S, W]
    out = hidden @ p["w2"] + p["b2"]  # [T, S, N]
    return np.moveaxis(out, -1, 0)  # [N, T, S]


def _scores(q, k):
    """[T, N, H], [S, N, H] -> [N, T, S] float64."""
    return np.einsum("tnh,snh->nts", np.asarray(q, np.float64), np.asarray(k, np.float64))


def _xpos_pair(q, k, q_pos, k_pos, *, head_dim, scale_base=512.0, center=0, layout="half"):
    inv_freq, _ = rope.rope_frequencies(head_dim)
    zeta = xpos_zeta(head_dim)
    kw = dict(inv_freq=inv_freq, zeta=zeta, scale_base=scale_base, center=center, layout=layout)
    return (
        apply_xpos(q, jnp.asarray(q_pos), downscale=False, **kw),
        apply_xpos(k, jnp.asarray(k_pos), downscale=True, **kw),
    )


# --------------------------------------------------------------------------------------------
# xPos
# --------------------------------------------------------------------------------------------


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
    near = _scores(*_xpos_pair(x, x, [n], [n - gap], head_dim=d, scale_base=64.0))
    far = _scores(*_xpos_pair(x, x, [n], [n - 2 * gap], head_dim=d, scale_base=64.0))
    same = _scores(*_xpos_pair(x, x, [n], [n], head_dim=d, scale_base=64.0))
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
    clipped = _scores(*_xpos_pair(q, k, far_pos, far_pos, head_dim=8))  # outside the window
    assert np.all(np.isfinite(clipped))


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


# --------------------------------------------------------------------------------------------
# KERPLE
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["log", "power"])
def test_kerple_matches_formula_with_authors_clamps(kind):
    q_pos = np.array([3, 7, 8, 20])
    k_pos = np.array([0, 3, 8, 9, 25])
    r1 = np.array([0.5, 1.7, 0.001, 3.0])  # 0.001 is clamped to eps
    r2 = np.array([0.3, 1.2, 0.8, 2.6])  # 2.6 is clamped to 2 for the power kernel
    out = kerple_bias(q_pos, k_pos, r1, r2, kind=kind)
    np.testing.assert_allclose(
        out, _kerple_reference(q_pos, k_pos, r1, r2, kind), rtol=1e-6, atol=1e-6
    )
    batched = kerple_bias(
        np.stack([q_pos, q_pos + 4]), np.stack([k_pos, k_pos + 4]), r1, r2, kind=kind
    )
    np.testing.assert_allclose(batched[1], out, rtol=1e-6, atol=1e-6)


@PROPS
@given(
    kind=st.sampled_from(["log", "power"]),
    r1=st.floats(0.01, 5.0),
    r2=st.floats(0.01, 2.0),
    shift=st.integers(-10_000, 10_000),
    pos=st.lists(st.integers(0, 5000), min_size=10, max_size=10),  # one shape: one compile,
)
def test_kerple_translation_invariant_symmetric_and_monotone(kind, r1, r2, shift, pos):
    pos = np.array(pos)
    r1a, r2a = np.array([r1]), np.array([r2])
    a = np.asarray(kerple_bias(pos, pos, r1a, r2a, kind=kind))[0]
    b = np.asarray(kerple_bias(pos + shift, pos + shift, r1a, r2a, kind=kind))[0]
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(a, a.T, rtol=1e-6, atol=1e-6)
    dist = np.abs(pos[:, None] - pos[None, :]).ravel()
    order = np.argsort(dist, kind="stable")
    vals = a.ravel()[order]
    assert np.all(np.diff(vals) <= 1e-5 * (1 + np.abs(vals[:-1])))
    assert np.all(vals <= 0)


@pytest.mark.parametrize("kind", ["log", "power"])
def test_kerple_gradients_reach_r1_and_r2_and_are_finite(kind):
    pos = jnp.arange(6)

    def loss(r1, r2):
        return jnp.sum(jnp.sin(kerple_bias(pos, pos, r1, r2, kind=kind)))

    g1, g2 = jax.grad(loss, argnums=(0, 1))(jnp.array([0.7, 1.3]), jnp.array([0.5, 1.5]))
    for g in (g1, g2):
        assert np.all(np.isfinite(g)) and np.all(np.abs(g) > 0)
    # Below the clamp the value is eps but the gradient still flows (projected updates).
    g1, g2 = jax.grad(loss, argnums=(0, 1))(jnp.array([-1.0, 1.0]), jnp.array([-1.0, 0.5]))
    assert np.all(np.abs(g1) > 0) and np.all(np.abs(g2) > 0)


def test_kerple_init_follows_authors_ranges():
    for kind, (hi1, hi2) in (("log", (2.0, 1.0)), ("power", (1.0, 2.0))):
        p = init_kerple_params(jax.random.PRNGKey(0), 256, kind=kind)
        assert float(p["r1"].min()) >= 0 and float(p["r1"].max()) <= hi1
        assert float(p["r2"].min()) >= 0 and float(p["r2"].max()) <= hi2
        assert float(p["r1"].max()) > 0.9 * hi1 and float(p["r2"].max()) > 0.9 * hi2


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: make_scheme({"name": "kerple", "kind": "cubic"}), "kind"),
        (
            lambda: kerple_bias(jnp.arange(2), jnp.arange(2), jnp.ones(2), jnp.ones(2), kind="x"),
            "kind",
        ),
        (lambda: kerple_bias(jnp.arange(2), jnp.arange(2), jnp.ones(2), jnp.ones(3)), "r1 and r2"),
        (lambda: kerple_bias(jnp.arange(2), jnp.arange(2), jnp.ones((2, 1)), jnp.ones(2)), "r1"),
        (lambda: kerple_bias(jnp.arange(2), jnp.arange(2), jnp.ones(2), jnp.ones(2), eps=0), "eps"),
        (
            lambda: kerple_bias(jnp.ones((1, 1, 2)), jnp.arange(2), jnp.ones(2), jnp.ones(2)),
            "q_positions",
        ),
        (lambda: init_kerple_params(jax.random.PRNGKey(0), 0), "num_heads"),
    ],
)
def test_kerple_bad_settings_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --------------------------------------------------------------------------------------------
# FIRE
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("seq_len", "init_threshold"), [(9, 512.0), (20, 6.0)])
def test_fire_matches_reference_code(seq_len, init_threshold):
    params = init_fire_params(jax.random.PRNGKey(1), 3, hidden=8, init_c=0.3)
    params = dict(params, threshold_scale=jnp.asarray(-1.5))  # |L| as in the reference
    out = fire_bias(jnp.arange(seq_len), jnp.arange(seq_len), params, init_threshold=init_threshold)
    ref = _fire_reference(seq_len, params, init_threshold)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


@PROPS
@given(
    pos=st.lists(st.integers(0, 100_000), min_size=12, max_size=12),
    c=st.floats(1e-3, 10.0),
    threshold=st.floats(0.5, 4096.0),
)
def test_fire_input_is_in_unit_interval_for_causal_pairs(pos, c, threshold):
    pos = np.sort(np.array(pos))
    u = np.asarray(fire_normalized_distance(pos, pos, c=c, threshold=threshold))
    causal = pos[None, :] <= pos[:, None]
    assert np.all(np.isfinite(u))
    assert np.all(u[causal] >= 0) and np.all(u[causal] <= 1 + 1e-6)
    np.testing.assert_array_equal(np.diag(u), 0.0)


@PROPS
@given(
    pos=st.lists(st.integers(0, 200), min_size=8, max_size=8),
    shift=st.integers(0, 300),
    seed=st.integers(0, 2**16),
)
def test_fire_bias_is_translation_invariant_below_threshold(pos, shift, seed):
    """While query positions stay <= L the normaliser is psi(L): a function of i - j only."""
    params = init_fire_params(jax.random.PRNGKey(seed), 2, hidden=8)
    pos = np.array(pos)
    a = fire_bias(pos, pos, params, init_threshold=512.0)
    b = fire_bias(pos + shift, pos + shift, params, init_threshold=512.0)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@PROPS
@given(
    i=st.integers(64, 2000),
    frac=st.floats(0.0, 1.0),
    scale=st.integers(2, 8),
)
def test_fire_input_is_scale_invariant_beyond_threshold_for_small_c(i, frac, scale):
    """psi(x) ~ c x for small c: (i, j) and (a i, a j) map to the same input (i - j) / i.

    The error of the linear approximation is at most c * a * i / 8 (< 2e-3 here); eps is
    made negligible against psi(i) ~ 1e-4.
    """
    j = int(frac * i)
    kw = dict(c=1e-6, threshold=32.0, eps=1e-12)
    u = fire_normalized_distance(np.array([i]), np.array([j]), **kw)
    ua = fire_normalized_distance(np.array([scale * i]), np.array([scale * j]), **kw)
    np.testing.assert_allclose(ua, u, atol=5e-3)
    np.testing.assert_allclose(u, (i - j) / i, atol=5e-3)


def test_fire_gradients_reach_mlp_c_and_threshold():
    params = init_fire_params(jax.random.PRNGKey(2), 2, hidden=8)
    pos = jnp.arange(12)

    def loss(p):
        return jnp.sum(jnp.sin(fire_bias(pos, pos, p, init_threshold=6.0)))

    grads = jax.jit(jax.grad(loss))(params)
    for name, g in grads.items():
        assert np.all(np.isfinite(g)), name
        assert float(jnp.abs(g).sum()) > 0, name


def test_fire_init_follows_reference():
    p = init_fire_params(jax.random.PRNGKey(0), 4, hidden=32)
    assert float(p["c"]) == pytest.approx(0.1) and float(p["threshold_scale"]) == 1.0
    assert p["w1"].shape == (32,) and p["w2"].shape == (32, 4) and p["b2"].shape == (4,)
    assert float(jnp.abs(p["w1"]).max()) <= 1.0 and float(jnp.abs(p["w1"]).max()) > 0.5
    assert float(jnp.abs(p["w2"]).max()) <= 1 / math.sqrt(32)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: make_scheme({"name": "fire", "hidden": 0}), "hidden"),
        (lambda: make_scheme({"name": "fire", "init_c": -0.1}), "init_c"),
        (lambda: make_scheme({"name": "fire", "init_threshold": 0}), "init_threshold"),
        (lambda: make_scheme({"name": "fire", "eps": 0}), "eps"),
        (
            lambda: fire_bias(jnp.arange(2), jnp.arange(2), {"c": 1.0}),
            "missing",
        ),
        (
            lambda: fire_bias(
                jnp.arange(2),
                jnp.arange(2),
                dict(init_fire_params(jax.random.PRNGKey(0), 2), b2=jnp.ones(3)),
            ),
            "b2",
        ),
        (lambda: init_fire_params(jax.random.PRNGKey(0), 2, hidden=0), "hidden"),
    ],
)
def test_fire_bad_settings_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --------------------------------------------------------------------------------------------
# RoFormer long-term decay bound
# --------------------------------------------------------------------------------------------


def test_rope_decay_bound_matches_roformer_formula():
    d = 32
    theta = 10000.0 ** (-2.0 * np.arange(d // 2) / d)  # theta_i = 10000^(-2(i-1)/d)
    r = np.array([0, 1, 5, 50, 300, 2000])
    s = np.cumsum(np.exp(1j * r[:, None] * theta[None, :]), axis=-1)  # S_j, j = 1 .. d/2
    ref = np.abs(s).mean(-1)
    inv_freq, _ = rope.rope_frequencies(d)
    np.testing.assert_allclose(rope_decay_bound(r, inv_freq), ref, rtol=1e-4)
    assert float(rope_decay_bound(jnp.array(0), inv_freq)) == pytest.approx((d / 2 + 1) / 2)
    with pytest.raises(ValueError, match="inv_freq"):
        rope_decay_bound(r, jnp.ones((2, 2)))


# --------------------------------------------------------------------------------------------
# Registry, attention paths and models
# --------------------------------------------------------------------------------------------

NEW_SCHEMES = [
    {"name": "xpos", "scale_base": 16.0, "center": 20},
    {"name": "kerple", "kind": "log"},
    {"name": "kerple", "kind": "power"},
    {"name": "fire", "hidden": 16, "init_threshold": 8.0},
]
IDS = ["xpos", "kerple-log", "kerple-power", "fire"]
VOCAB = 11


def test_registered_and_config_round_trip():
    assert {"xpos", "kerple", "fire"} <= set(list_schemes())
    for spec in NEW_SCHEMES:
        scheme = make_scheme(spec)
        assert make_scheme(scheme.to_config()) == scheme
        assert isinstance(scheme, XposScheme | KerpleScheme | FireScheme)
    hash(make_scheme("fire"))  # usable as a static jit argument


def _attention_inputs(spec, *, t, s, seed=0):
    scheme = make_scheme(spec).configure(causal=True)
    keys = jax.random.split(jax.random.PRNGKey(seed), 4)
    q = jax.random.normal(keys[0], (2, t, 4, 8))
    k = jax.random.normal(keys[1], (2, s, 2, 8))
    v = jax.random.normal(keys[2], (2, s, 2, 8))
    params = scheme.init_attention_params(keys[3], num_heads=4, head_dim=8)
    return scheme, q, k, v, params


BLOCKWISE_CASES = [
    (NEW_SCHEMES[0], True, False),
    (NEW_SCHEMES[1], True, True),
    (NEW_SCHEMES[1], False, False),
    (NEW_SCHEMES[2], True, False),
    (NEW_SCHEMES[3], True, True),
    (NEW_SCHEMES[3], False, False),
]


@pytest.mark.parametrize(
    ("spec", "causal", "check_grad"),
    BLOCKWISE_CASES,
    ids=["xpos", "kerple-log", "kerple-log-bidir", "kerple-power", "fire", "fire-bidir"],
)
def test_blockwise_equals_dense(spec, causal, check_grad):
    """Tiles see offset positions (queries 108.., keys 100..): each tile's bias must be right."""
    scheme, q, k, v, params = _attention_inputs(spec, t=37, s=45)
    q_pos = jnp.arange(37) + 108
    k_pos = jnp.arange(45) + 100
    key_mask = jnp.ones((2, 45), bool).at[1, :5].set(False)
    q, k = scheme.rotate(params, q, k, q_pos, k_pos)

    @functools.partial(jax.jit, static_argnums=0)
    def run(fn, params):
        return fn(
            q,
            k,
            v,
            q_positions=q_pos,
            k_positions=k_pos,
            scheme=scheme,
            params=params,
            causal=causal,
            key_mask=key_mask,
        )

    blockwise = functools.partial(blockwise_attention, q_block=16, k_block=8)
    dense = run(dense_attention, params)
    block = run(blockwise, params)
    np.testing.assert_allclose(block, dense, atol=2e-5, rtol=2e-5)
    if check_grad:
        g_dense = jax.grad(lambda p: jnp.sum(jnp.sin(run(dense_attention, p))))(params)
        g_block = jax.grad(lambda p: jnp.sum(jnp.sin(run(blockwise, p))))(params)
        for gd, gb in zip(jax.tree.leaves(g_dense), jax.tree.leaves(g_block), strict=True):
            np.testing.assert_allclose(gb, gd, atol=1e-4, rtol=1e-4)


def _lm(spec, **kw):
    opts = dict(num_layers=2, d_model=32, num_heads=4)
    opts.update(kw)
    return TransformerLM(VOCAB, scheme=spec, rngs=nnx.Rngs(0), **opts)


@pytest.mark.parametrize("spec", NEW_SCHEMES, ids=IDS)
def test_kv_cache_decoding_equals_full_forward(spec):
    model = _lm(spec, num_layers=1)
    tokens = jax.random.randint(jax.random.PRNGKey(1), (2, 10), 0, VOCAB)
    offset = 30  # positions need not start at 0
    full = nnx.jit(lambda m, x: m(x, positions=jnp.arange(10) + offset))(model, tokens)
    model.init_cache(2, 10)
    step = nnx.jit(lambda m, x, p: m(x, positions=p, decode=True))
    outs = [step(model, tokens[:, :4], jnp.arange(4) + offset)]
    for i in range(4, 10):
        outs.append(step(model, tokens[:, i : i + 1], jnp.array([i + offset])))
    np.testing.assert_allclose(jnp.concatenate(outs, axis=1), full, atol=2e-4, rtol=2e-4)


@pytest.mark.parametrize("spec", NEW_SCHEMES, ids=IDS)
def test_tiny_lm_overfits_a_batch(spec):
    model = _lm(spec, num_layers=1)
    tokens = jax.random.randint(jax.random.PRNGKey(2), (4, 12), 0, VOCAB)
    opt = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)

    def loss_fn(m):
        logits = m(tokens[:, :-1])
        return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()

    before = jax.tree.map(np.asarray, model.blocks[0].attn.pos_params.get_value())

    @nnx.jit
    def step(m, o):
        loss, grads = nnx.value_and_grad(loss_fn)(m)
        o.update(m, grads)
        return loss

    losses = [float(step(model, opt)) for _ in range(60)]
    assert losses[-1] < 0.3 * losses[0], (losses[0], losses[-1])
    # The scheme's own parameters (KERPLE r1, r2; FIRE MLP, c, threshold) were trained.
    after = model.blocks[0].attn.pos_params.get_value()
    for name in before:
        assert not np.allclose(after[name], before[name]), name


def test_scheme_dataclasses_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        make_scheme("kerple").kind = "power"  # type: ignore[misc]
