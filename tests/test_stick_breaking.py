"""Stick-breaking attention against a float64 transcription of the reference, and the
properties the paper claims.

Reference: shawntan/stickbreaking-attention, stickbreaking_attention/sb_ref.py:
``logits = q @ k^T / sqrt(d)`` (line 12), ``log_z = logsigmoid(logits).masked_fill(mask,
-1e5)`` (line 17), ``log_beta = logsigmoid(-logits).masked_fill(mask, 0)`` (line 19),
the later keys summed by a triangular matrix (lines 21-22), ``return att @ v, 1 -
att.sum(-1)`` (line 26); tests/test_attn.py lines 9-13 build ``mask`` from
``attend_current`` (``triu(1)`` with it, ``triu(0)`` without). The remainder's learned
per-head bias follows IBM/dolomite-engine's stickbreaking_attention.py (``hidden_states +
rem[..., None] * self.head_bias[None, :, None, :]``).

The scheme-generic checks (blockwise = dense, KV-cache decoding, left padding, packing,
training) run through tests/helpers/schemes.py.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posenc_jax.attention import blockwise_attention, dense_attention
from posenc_jax.schemes import make_scheme
from posenc_jax.stick_breaking import stick_breaking_weights


def _log_sigmoid64(x):
    return -np.logaddexp(0.0, -x)


def reference_stick_breaking(q, k, v, head_bias, *, attend_current):
    """float64 transcription of sb_ref.py with the mask of tests/test_attn.py.

    q, k, v: [B, N, T, H]; head_bias: [N, H]. Returns [B, N, T, H] and the remainder.
    """
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    t, h = q.shape[-2:]
    logits = q @ np.swapaxes(k, -1, -2) / np.sqrt(h)
    mask = np.triu(np.ones((t, t), bool), 1 if attend_current else 0)  # True = not allowed
    log_z = np.where(mask, -1e5, _log_sigmoid64(logits))
    log_beta = np.where(mask, 0.0, _log_sigmoid64(-logits))
    cum_weight = np.tril(np.ones((t, t)), -1)  # cum_weight[j, k] = 1 for j > k
    att = np.exp(log_z + log_beta @ cum_weight)  # sum over later keys j > k
    rem = 1.0 - att.sum(-1)
    out = att @ v + rem[..., None] * np.asarray(head_bias, np.float64)[None, :, None, :]
    return out, rem


def _inputs(seed, t=11, n=2, h=8):
    keys = jax.random.split(jax.random.PRNGKey(seed), 4)
    q, k, v = (2.0 * jax.random.normal(kk, (1, t, n, h)) for kk in keys[:3])
    head_bias = jax.random.normal(keys[3], (n, h))
    return q, k, v, head_bias


def _run(fn, q, k, v, head_bias, *, attend_current):
    scheme = make_scheme({"name": "stick_breaking", "attend_current": attend_current})
    pos = jnp.arange(q.shape[1])
    return fn(
        q,
        k,
        v,
        q_positions=pos,
        k_positions=pos,
        scheme=scheme,
        params={"head_bias": head_bias},
        causal=True,
    )


@pytest.mark.parametrize("attend_current", [False, True])
def test_dense_and_blockwise_equal_the_reference(attend_current):
    q, k, v, head_bias = _inputs(0)
    ref, rem = reference_stick_breaking(
        *(np.swapaxes(np.asarray(a), 1, 2) for a in (q, k, v)),
        head_bias,
        attend_current=attend_current,
    )
    ref = np.swapaxes(ref, 1, 2)  # [B, T, N, H]
    assert rem.min() < 0.5 < rem.max()  # the remainder term matters in this example
    blockwise = functools.partial(blockwise_attention, q_block=4, k_block=3)
    for fn in (dense_attention, blockwise):
        out = jax.jit(functools.partial(_run, fn, attend_current=attend_current))(
            q, k, v, head_bias
        )
        np.testing.assert_allclose(out, ref, atol=2e-5, rtol=2e-5)


@settings(max_examples=30, deadline=None)
@given(logits=st.lists(st.floats(-30.0, 30.0), min_size=1, max_size=16))
def test_weights_and_remainder_split_one_stick(logits):
    """A_j >= 0, sum_j A_j + remainder = 1, and the nearest key takes sigmoid(z) first."""
    z = np.asarray(logits, np.float64)
    w, rem = stick_breaking_weights(jnp.asarray(z, jnp.float32))
    w, rem = np.asarray(w, np.float64), float(rem)
    assert np.all(w >= 0) and 0.0 <= rem <= 1.0
    np.testing.assert_allclose(w.sum() + rem, 1.0, atol=1e-5)
    np.testing.assert_allclose(w[-1], 1.0 / (1.0 + np.exp(-z[-1])), rtol=1e-5, atol=1e-6)


@settings(max_examples=30, deadline=None)
@given(
    near=st.lists(st.floats(-20.0, 20.0), min_size=1, max_size=8),
    far=st.lists(st.floats(-20.0, 20.0), min_size=1, max_size=8),
)
def test_farther_keys_never_change_the_nearer_keys_weights(near, far):
    """What stick-breaking claims over the softmax: a key's weight depends only on it and
    the keys between it and the query, so adding context farther back changes nothing."""
    w_near, _ = stick_breaking_weights(jnp.asarray(near, jnp.float32))
    w_all, _ = stick_breaking_weights(jnp.asarray(far + near, jnp.float32))
    np.testing.assert_allclose(w_all[len(far) :], w_near, rtol=1e-6, atol=1e-7)


def test_long_rows_stay_finite_and_masked_keys_drop_out():
    z = jnp.concatenate([jnp.full((4096,), 8.0), jnp.full((4096,), -8.0)])
    w, rem = stick_breaking_weights(z)
    assert np.all(np.isfinite(w)) and 0.0 <= float(rem) <= 1.0
    masked = z.at[::2].set(-1e30)  # MASK_VALUE keys take nothing and break nothing
    w_masked, _ = stick_breaking_weights(masked)
    w_kept, _ = stick_breaking_weights(z[1::2])
    np.testing.assert_allclose(w_masked[1::2], w_kept, rtol=1e-5, atol=1e-30)
    assert float(jnp.max(w_masked[::2])) == 0.0


def test_bad_settings_are_clear_errors():
    with pytest.raises(ValueError, match="stick_breaking is causal only"):
        make_scheme("stick_breaking").configure(causal=False)
    with pytest.raises(ValueError, match=r"remainder.*\['bias', 'drop'\]"):
        make_scheme({"name": "stick_breaking", "remainder": "self"})
    with pytest.raises(ValueError, match="attend_current must be True or False"):
        make_scheme({"name": "stick_breaking", "attend_current": 1})
