"""Tests for posenc_jax.absolute against float64 numpy transcriptions of the papers."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posenc_jax.absolute import init_learned_table, learned_lookup, sinusoidal

SETTINGS = settings(max_examples=30, deadline=None)


def _pe_reference(positions: np.ndarray, dim: int, base: float = 10000.0) -> np.ndarray:
    """Vaswani et al. 2017, section 3.5, element by element in float64."""
    positions = np.asarray(positions, dtype=np.float64)
    out = np.zeros((*positions.shape, dim), dtype=np.float64)
    for i in range(dim // 2):
        angle = positions / base ** (2 * i / dim)
        out[..., 2 * i] = np.sin(angle)
        out[..., 2 * i + 1] = np.cos(angle)
    return out


def _angle_tol(max_position: float) -> float:
    # float32 angles: relative rounding ~6e-8 per operation on |angle| <= max_position.
    return 4e-7 * max(1.0, max_position) + 2e-6


# -- sinusoidal ---------------------------------------------------------------


@pytest.mark.parametrize("dim", [2, 8, 64, 130])
@pytest.mark.parametrize("base", [10000.0, 500.0])
def test_sinusoidal_matches_paper_formula(dim, base):
    positions = np.array([0, 1, 2, 7, 100, 511, 4096], dtype=np.int32)
    got = np.asarray(sinusoidal(jnp.asarray(positions), dim, base=base), dtype=np.float64)
    want = _pe_reference(positions, dim, base)
    np.testing.assert_allclose(got, want, rtol=0, atol=_angle_tol(4096))


def test_sinusoidal_interleaves_sin_and_cos():
    pe = np.asarray(sinusoidal(jnp.array([0, 1]), 4))
    # Position 0: sin(0) = 0 in even channels, cos(0) = 1 in odd channels.
    np.testing.assert_array_equal(pe[0], [0.0, 1.0, 0.0, 1.0])
    # Position 1: channel pair 0 has frequency 1, pair 1 has 1 / 10000^(2/4) = 0.01.
    np.testing.assert_allclose(
        pe[1], [math.sin(1.0), math.cos(1.0), math.sin(0.01), math.cos(0.01)], atol=1e-7
    )


def test_sinusoidal_batched_float_and_large_positions():
    positions = np.array([[0.5, 3.25, 17.0], [1e5, 2.5e5, 1e6]], dtype=np.float32)
    got = np.asarray(sinusoidal(jnp.asarray(positions), 16), dtype=np.float64)
    assert got.shape == (2, 3, 16)
    want = _pe_reference(positions, 16)
    np.testing.assert_allclose(got[0], want[0], atol=_angle_tol(17.0))
    # Beyond any training length: still finite and within float32 angle error.
    np.testing.assert_allclose(got[1], want[1], atol=_angle_tol(1e6))


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16, jnp.float32])
def test_sinusoidal_output_dtype_with_float32_math(dtype):
    positions = np.arange(0, 3000, 37)
    got = sinusoidal(jnp.asarray(positions), 32, dtype=dtype)
    assert got.dtype == dtype
    want = _pe_reference(positions, 32)
    # The only error beyond float32 angles is the final rounding to `dtype`.
    eps = float(jnp.finfo(dtype).eps)
    np.testing.assert_allclose(np.asarray(got, np.float64), want, atol=eps + _angle_tol(3000))


def test_sinusoidal_under_jit():
    f = jax.jit(functools.partial(sinusoidal, dim=24, base=100.0))
    positions = np.array([[3, 9, 27], [0, 1, 2]], dtype=np.int32)
    np.testing.assert_allclose(
        np.asarray(f(jnp.asarray(positions)), np.float64),
        _pe_reference(positions, 24, 100.0),
        atol=_angle_tol(27),
    )


@SETTINGS
@given(
    dim=st.sampled_from([2, 8, 32, 64]),
    t1=st.integers(0, 1000),
    t2=st.integers(0, 1000),
    k=st.integers(0, 500),
)
def test_sinusoidal_dot_product_depends_only_on_offset(dim, t1, t2, k):
    """PE_t . PE_{t+k} = sum_i cos(k w_i): independent of t, symmetric in +-k."""
    t1, t2 = max(t1, k), max(t2, k)  # keep t - k >= 0
    pos = jnp.array([t1, t1 + k, t1 - k, t2, t2 + k, t2 - k], dtype=jnp.int32)
    pe = np.asarray(sinusoidal(pos, dim), dtype=np.float64)
    forward_1, backward_1 = pe[0] @ pe[1], pe[0] @ pe[2]
    forward_2, backward_2 = pe[3] @ pe[4], pe[3] @ pe[5]
    omega = 1.0 / 10000.0 ** (np.arange(0, dim, 2) / dim)
    want = float(np.sum(np.cos(k * omega)))
    tol = dim * _angle_tol(t1 + t2 + 2 * k)
    for value in (forward_1, backward_1, forward_2, backward_2):
        assert value == pytest.approx(want, abs=tol)


@pytest.mark.parametrize("dim", [0, 1, 3, 63])
def test_sinusoidal_rejects_bad_dim(dim):
    with pytest.raises(ValueError, match=f"even dim >= 2; got dim={dim}"):
        sinusoidal(jnp.arange(4), dim)


@pytest.mark.parametrize("base", [0.0, -1.0, float("nan"), float("inf")])
def test_sinusoidal_rejects_bad_base(base):
    with pytest.raises(ValueError, match="base > 0; got base="):
        sinusoidal(jnp.arange(4), 8, base=base)


def test_sinusoidal_rejects_non_int_dim():
    with pytest.raises(ValueError, match="needs an int dim"):
        sinusoidal(jnp.arange(4), 8.0)


# -- learned lookup -------------------------------------------------------------


def _table(length: int = 5, dim: int = 3) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(length, dim)).astype(np.float32)


def test_learned_lookup_gathers_rows():
    table = _table()
    positions = np.array([[0, 4, 2], [1, 1, 3]], dtype=np.int32)
    got = learned_lookup(jnp.asarray(table), jnp.asarray(positions))
    np.testing.assert_array_equal(np.asarray(got), table[positions])


def test_learned_lookup_clip_policy():
    table = _table()
    positions = np.array([-3, -1, 0, 4, 5, 1000], dtype=np.int32)
    got = learned_lookup(jnp.asarray(table), jnp.asarray(positions), out_of_range="clip")
    np.testing.assert_array_equal(np.asarray(got), table[np.clip(positions, 0, 4)])


def test_learned_lookup_error_policy_eager():
    table = jnp.asarray(_table())
    with pytest.raises(
        ValueError,
        match=r"table of length 5; got min position 0, max position 9.*out_of_range='clip'",
    ):
        learned_lookup(table, jnp.array([0, 9]))
    with pytest.raises(ValueError, match=r"at least 10 rows"):
        learned_lookup(table, jnp.array([0, 9]))
    with pytest.raises(ValueError, match=r"min position -1.*Negative positions"):
        learned_lookup(table, jnp.array([-1, 2]))


def test_learned_lookup_error_policy_under_jit_raises_at_run_time():
    table = jnp.asarray(_table())
    f = jax.jit(learned_lookup)
    ok = f(table, jnp.array([0, 4]))
    np.testing.assert_array_equal(np.asarray(ok), _table()[[0, 4]])
    with pytest.raises(jax.errors.JaxRuntimeError, match="max position 7"):
        f(table, jnp.array([0, 7])).block_until_ready()
    with pytest.raises(jax.errors.JaxRuntimeError, match="min position -2"):
        f(table, jnp.array([-2, 1])).block_until_ready()


def test_learned_lookup_error_policy_under_vmap():
    table = jnp.asarray(_table())
    f = jax.jit(jax.vmap(learned_lookup, in_axes=(None, 0)))
    np.testing.assert_array_equal(np.asarray(f(table, jnp.array([[0], [4]]))), _table()[[[0], [4]]])
    with pytest.raises(jax.errors.JaxRuntimeError, match="max position 5"):
        f(table, jnp.array([[0], [5]])).block_until_ready()


def test_learned_lookup_clip_under_jit_and_gradient():
    table = jnp.asarray(_table())
    f = jax.jit(functools.partial(learned_lookup, out_of_range="clip"))
    positions = jnp.array([-1, 2, 2, 8])
    np.testing.assert_array_equal(np.asarray(f(table, positions)), _table()[[0, 2, 2, 4]])
    grad = jax.grad(lambda t: f(t, positions).sum())(table)
    # Row r receives one unit of gradient per position mapped to it.
    np.testing.assert_array_equal(np.asarray(grad)[:, 0], [1.0, 0.0, 2.0, 0.0, 1.0])


def test_learned_lookup_rejects_unknown_policy():
    with pytest.raises(
        ValueError, match=r"out_of_range must be one of \['error', 'clip'\]; got 'wrap'"
    ):
        learned_lookup(jnp.zeros((4, 2)), jnp.arange(2), out_of_range="wrap")


def test_learned_lookup_rejects_float_positions_and_bad_table():
    with pytest.raises(ValueError, match="integer positions"):
        learned_lookup(jnp.zeros((4, 2)), jnp.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"table of shape \[L, D\]"):
        learned_lookup(jnp.zeros((4,)), jnp.arange(2))


# -- learned table init ------------------------------------------------------------


def test_init_learned_table_distribution():
    table = init_learned_table(jax.random.key(0), 512, 64)
    assert table.shape == (512, 64) and table.dtype == jnp.float32
    values = np.asarray(table, np.float64)
    # Normal(0, 0.02) truncated at two standard deviations.
    assert np.abs(values).max() <= 0.04 + 1e-7
    truncated_std = 0.02 * 0.8796256610  # std of N(0, 1) restricted to [-2, 2]
    assert values.std() == pytest.approx(truncated_std, rel=0.03)
    assert abs(values.mean()) < 1e-3


def test_init_learned_table_dtype_and_stddev():
    table = init_learned_table(jax.random.key(1), 8, 4, stddev=1.0, dtype=jnp.bfloat16)
    assert table.dtype == jnp.bfloat16
    assert float(jnp.abs(table).max()) <= 2.0
    assert float(jnp.abs(table).max()) > 0.5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_length": 0, "dim": 4}, "max_length >= 1; got max_length=0"),
        ({"max_length": 4, "dim": 0}, "dim >= 1; got dim=0"),
        ({"max_length": 4, "dim": 4, "stddev": -0.1}, "stddev >= 0; got stddev=-0.1"),
    ],
)
def test_init_learned_table_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        init_learned_table(jax.random.key(0), **kwargs)
