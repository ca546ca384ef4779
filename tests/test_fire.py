"""FIRE: float64 transcription of the paper's reference code, and its properties."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posenc_jax.fire import fire_bias, fire_normalized_distance, init_fire_params
from posenc_jax.schemes import make_scheme

PROPS = settings(max_examples=25, deadline=None)


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
