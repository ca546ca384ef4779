"""PoPE against a float64 transcription of the reference, and the properties the paper claims.

Reference: lucidrains/x-transformers, x_transformers/x_transformers.py, ``PolarEmbedding``
(``inv_freq = 1. / (base ** (arange(0, dim).float() / dim))``; ``learned_bias`` of shape
(heads, 1, dim), ``clamp(-2. * math.pi, 0.)``), ``apply_polar_pos_emb`` (``t =
F.softplus(t)``; ``cat((t * freqs.cos(), t * freqs.sin()), dim=-1)``), ``q =
apply_polar_pos_emb(q, freqs)``, ``k = apply_polar_pos_emb(k, freqs + bias)``, and the
attention scale ``dim_head ** -0.5`` of the original head dim. The same maths is
lucidrains/PoPE-pytorch, PoPE_pytorch/pope.py.

The scheme-generic checks (blockwise = dense, KV-cache decoding with 2H-wide cached keys,
left padding, packing, training) run through tests/helpers/schemes.py.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posenc_jax.attention import dense_attention, explain_implementation
from posenc_jax.pope import apply_pope, pope_frequencies
from posenc_jax.schemes import make_scheme


def _softplus64(x):
    return np.logaddexp(0.0, x)


def reference_pope_attention(q, k, v, bias, *, base):
    """float64 transcription of x-transformers' PoPE attention, causal.

    q, k, v: [B, N, T, H]; bias: [N, H] (the keys' learned_bias).
    """
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    t, h = q.shape[-2:]
    inv_freq = 1.0 / (base ** (np.arange(h) / h))
    freqs = np.arange(t)[:, None] * inv_freq[None]  # [T, H]
    bias = np.clip(np.asarray(bias, np.float64), -2 * np.pi, 0.0)[:, None, :]  # [N, 1, H]

    def polar(x, f):
        m = _softplus64(x)
        return np.concatenate([m * np.cos(f), m * np.sin(f)], axis=-1)

    qp, kp = polar(q, freqs), polar(k, freqs + bias)
    logits = qp @ np.swapaxes(kp, -1, -2) * h**-0.5
    logits = np.where(np.tril(np.ones((t, t), bool)), logits, -np.inf)
    w = np.exp(logits - logits.max(-1, keepdims=True))
    return (w / w.sum(-1, keepdims=True)) @ v


def test_attention_equals_the_reference_transcription():
    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    b, t, n, h = 2, 11, 2, 8
    q, k, v = (2.0 * jax.random.normal(kk, (b, t, n, h)) for kk in keys[:3])
    bias = jax.random.uniform(keys[3], (n, h), minval=-8.0, maxval=1.0)  # some clipped
    scheme = make_scheme({"name": "pope", "base": 100.0})
    params = {"phase_bias": bias}
    pos = jnp.arange(t)
    qr, kr = scheme.rotate(params, q, k, pos, pos)
    assert qr.shape == kr.shape == (b, t, n, 2 * h)
    out = dense_attention(qr, kr, v, q_positions=pos, k_positions=pos, causal=True)
    ref = reference_pope_attention(
        *(np.swapaxes(np.asarray(a), 1, 2) for a in (q, k, v)), bias, base=100.0
    )
    np.testing.assert_allclose(out, np.swapaxes(ref, 1, 2), atol=3e-5, rtol=3e-5)


@settings(max_examples=20, deadline=None)
@given(shift=st.integers(0, 2**20), seed=st.integers(0, 2**16))
def test_scores_depend_only_on_the_distance(shift, seed):
    """Shifting every position (up to 2^20) leaves every score: a relative encoding."""
    keys = jax.random.split(jax.random.PRNGKey(seed), 3)
    q, k = (jax.random.normal(kk, (1, 6, 1, 8)) for kk in keys[:2])
    bias = jax.random.uniform(keys[2], (1, 8), minval=-6.0, maxval=0.0)
    freq = pope_frequencies(8, base=10000.0)

    def scores(offset):
        pos = jnp.arange(6) + offset
        qp = apply_pope(q, pos, freq, phase_bias=bias)
        kp = apply_pope(k, pos, freq)
        return np.asarray(jnp.einsum("btnh,bsnh->bts", qp, kp))

    np.testing.assert_allclose(scores(shift), scores(0), atol=2e-4, rtol=1e-4)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), distance=st.integers(0, 50))
def test_magnitude_comes_from_content_and_phase_from_position(seed, distance):
    """The score is sum_c softplus(q_c) softplus(k_c) cos(distance theta_c - delta_c)."""
    keys = jax.random.split(jax.random.PRNGKey(seed), 3)
    q, k = (jax.random.normal(kk, (1, 1, 1, 6)) for kk in keys[:2])
    bias = jax.random.uniform(keys[2], (1, 6), minval=-6.0, maxval=0.0)
    freq = pope_frequencies(6, base=50.0)
    qp = apply_pope(q, jnp.array([distance]), freq, phase_bias=bias)
    kp = apply_pope(k, jnp.array([0]), freq)
    got = float(jnp.sum(qp * kp))
    mq, mk = _softplus64(np.asarray(q, np.float64)), _softplus64(np.asarray(k, np.float64))
    want = np.sum(mq * mk * np.cos(distance * freq - np.asarray(bias, np.float64)))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_bad_settings_and_the_fused_path():
    with pytest.raises(ValueError, match="pope needs base > 1"):
        make_scheme({"name": "pope", "base": 1.0})
    with pytest.raises(ValueError, match="x has 6 components but inv_freq has 8"):
        apply_pope(jnp.ones((1, 2, 1, 6)), jnp.arange(2), pope_frequencies(8))
    choice = explain_implementation(
        scheme=make_scheme("pope"),
        platform="gpu",
        dtype=jnp.bfloat16,
        head_dim=128,
        value_head_dim=64,
        q_len=512,
        k_len=512,
        has_mask=False,
        aligned=True,
    )
    assert choice.implementation == "dense" and "head dim 128 and v 64" in choice.reason
