"""ReRoPE, Leaky ReRoPE and SelfExtend against float64 transcriptions of their references.

References: bojone/rerope, rerope_patch.py (``query_states2`` rotated at ``position_ids * 0
+ window`` against unrotated keys; ``rectified_mask = (position_ids[:, -q_len:, None] -
position_ids[:, None]).abs() < window``; ``torch.where(rectified_mask, attn_weights1,
attn_weights2)``) and leaky_rerope_patch.py (the far query at ``position_ids + offset``,
``offset = window * (scaling_factor - 1)``, the far key at ``position_ids``, both rotated
by ``LlamaLinearScalingRotaryEmbedding(scaling_factor)``); Jin et al. 2024, SelfExtend,
Sec. 3 (arXiv 2401.01325): neighbour attention with ordinary positions for ``i - j <
w``, grouped positions ``floor(i / G) + w - floor(w / G)`` and ``floor(j / G)`` beyond.
The reference code also multiplies queries by a log-n factor; that is the separate
``softmax_scale`` option here and is left out of these transcriptions.

The scheme-generic checks (blockwise = dense, KV-cache decoding, left padding, packing,
training) run through tests/helpers/schemes.py.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posenc_jax.attention import dense_attention
from posenc_jax.schemes import make_scheme


def _rope64(x, positions, base=10000.0, scale=1.0):
    """Hugging Face Llama's rotate-half RoPE in float64: x [T, H], positions [T]."""
    h = x.shape[-1]
    inv_freq = 1.0 / base ** (np.arange(0, h, 2) / h) / scale
    angle = np.asarray(positions, np.float64)[:, None] * inv_freq[None]
    angle = np.concatenate([angle, angle], -1)
    cos, sin = np.cos(angle), np.sin(angle)
    rotated = np.concatenate([-x[:, h // 2 :], x[:, : h // 2]], -1)
    return x * cos + rotated * sin


def reference_logits(q, k, method, window, factor):
    """[T, T] logits / sqrt(H) of one head, as the reference patches compute them."""
    q, k = np.asarray(q, np.float64), np.asarray(k, np.float64)
    t, h = q.shape
    pos = np.arange(t)
    near = _rope64(q, pos) @ _rope64(k, pos).T
    if method == "rerope":
        far = _rope64(q, pos * 0 + window) @ k.T
    elif method == "leaky_rerope":
        offset = window * (factor - 1)
        far = _rope64(q, pos + offset, scale=factor) @ _rope64(k, pos, scale=factor).T
    else:  # self_extend
        g = int(factor)
        far = _rope64(q, pos // g + window - window // g) @ _rope64(k, pos // g).T
    mask = np.abs(pos[:, None] - pos[None, :]) < window
    return np.where(mask, near, far) / np.sqrt(h)


@pytest.mark.parametrize(
    ("method", "factor"), [("rerope", 1.0), ("leaky_rerope", 4.0), ("self_extend", 3.0)]
)
def test_attention_equals_the_reference_transcription(method, factor):
    keys = jax.random.split(jax.random.PRNGKey(3), 3)
    t, h, window = 24, 16, 5
    q, k, v = (jax.random.normal(kk, (1, t, 1, h)) for kk in keys)
    scheme = make_scheme({"name": "windowed_rope", "method": method, "window": window,
                          "factor": factor})  # fmt: skip
    pos = jnp.arange(t)
    out = dense_attention(q, k, v, q_positions=pos, k_positions=pos, scheme=scheme, causal=True)
    logits = reference_logits(q[0, :, 0], k[0, :, 0], method, window, factor)
    logits = np.where(np.tril(np.ones((t, t), bool)), logits, -np.inf)
    w = np.exp(logits - logits.max(-1, keepdims=True))
    ref = (w / w.sum(-1, keepdims=True)) @ np.asarray(v[0, :, 0], np.float64)
    np.testing.assert_allclose(out[0, :, 0], ref, atol=3e-5, rtol=3e-5)


@settings(max_examples=6, deadline=None)
@given(
    method=st.sampled_from(["rerope", "leaky_rerope", "self_extend"]),
    seed=st.integers(0, 2**16),
)
def test_a_window_longer_than_the_sequence_is_plain_rope(method, seed):
    length = 9  # one shape: the examples share compiled operations
    keys = jax.random.split(jax.random.PRNGKey(seed), 3)
    q, k, v = (jax.random.normal(kk, (1, length, 2, 8)) for kk in keys)
    pos = jnp.arange(length)

    def attend(spec):
        scheme = make_scheme(spec).configure(causal=True)
        qr, kr = scheme.rotate({}, q, k, pos, pos)
        return dense_attention(
            qr, kr, v, q_positions=pos, k_positions=pos, scheme=scheme, causal=True
        )

    windowed = attend({"name": "windowed_rope", "method": method, "window": length,
                       "factor": 2.0})  # fmt: skip
    np.testing.assert_allclose(windowed, attend({"name": "rope"}), atol=2e-5, rtol=2e-5)


def test_bad_settings_are_clear_errors():
    with pytest.raises(ValueError, match=r"method.*\['rerope', 'leaky_rerope', 'self_extend'\]"):
        make_scheme({"name": "windowed_rope", "method": "rope"})
    with pytest.raises(ValueError, match="needs window >= 1"):
        make_scheme({"name": "windowed_rope", "window": 0})
    with pytest.raises(ValueError, match="an integer group size"):
        make_scheme({"name": "windowed_rope", "method": "self_extend", "factor": 2.5})
