"""KERPLE: float64 transcription of the paper's kernels with the authors' clamps, properties."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posenc_jax.kerple import init_kerple_params, kerple_bias
from posenc_jax.schemes import make_scheme

PROPS = settings(max_examples=25, deadline=None)


def _kerple_reference(q_pos, k_pos, r1, r2, kind, eps=1e-2):
    """Chi et al. 2022, with the authors' clamps: r >= eps, and r2 <= 2 for the power kernel."""
    d = np.abs(np.asarray(q_pos, np.float64)[:, None] - np.asarray(k_pos, np.float64)[None, :])
    r1 = np.maximum(np.asarray(r1, np.float64), eps)[:, None, None]
    if kind == "log":
        r2 = np.maximum(np.asarray(r2, np.float64), eps)[:, None, None]
        return -r1 * np.log(1.0 + r2 * d[None])
    r2 = np.clip(np.asarray(r2, np.float64), eps, 2.0)[:, None, None]
    return -r1 * d[None] ** r2


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
