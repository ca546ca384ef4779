"""Learned attention sinks and sliding windows against a float64 transcription of gpt-oss.

Reference: openai/gpt-oss, gpt_oss/torch/model.py, ``sdpa(Q, K, V, S, sm_scale,
sliding_window)``: ``mask = torch.triu(-inf, diagonal=1)``; with a window, ``mask +=
torch.tril(-inf, diagonal=-sliding_window)``; ``QK *= sm_scale``; ``QK += mask``; ``QK =
torch.cat([QK, S], dim=-1)``; ``W = torch.softmax(QK, dim=-1)``; ``W = W[..., :-1]``;
``attn = W @ V``. One sink logit per query head (``self.sinks``).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st

from posenc_jax.attention import (
    AttentionConfig,
    attend,
    blockwise_attention,
    dense_attention,
    explain_implementation,
)
from posenc_jax.nn import MultiHeadAttention, TransformerLM
from posenc_jax.schemes import make_scheme


def reference_sdpa(q, k, v, sinks, sliding_window):
    """gpt-oss's sdpa in float64; q, k, v: [T, N, H], sinks: [N] -> [T, N, H]."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    t, _, h = q.shape
    mask = np.triu(np.full((t, t), -np.inf), 1)
    if sliding_window > 0:
        mask = mask + np.tril(np.full((t, t), -np.inf), -sliding_window)
    qk = np.einsum("qnd,knd->nqk", q, k) / np.sqrt(h) + mask[None]
    s = np.broadcast_to(np.asarray(sinks, np.float64)[:, None, None], (qk.shape[0], t, 1))
    qk = np.concatenate([qk, s], -1)
    w = np.exp(qk - qk.max(-1, keepdims=True))
    w = (w / w.sum(-1, keepdims=True))[..., :-1]
    return np.einsum("nqk,knd->qnd", w, v)


@pytest.mark.parametrize("window", [0, 4])
def test_dense_and_blockwise_equal_gpt_oss(window):
    keys = jax.random.split(jax.random.PRNGKey(window), 4)
    t, n, h = 13, 3, 8
    q, k, v = (2.0 * jax.random.normal(kk, (1, t, n, h)) for kk in keys[:3])
    sinks = 2.0 * jax.random.normal(keys[3], (n,))
    pos = jnp.arange(t)
    kw = dict(q_positions=pos, k_positions=pos, causal=True, sink_logits=sinks,
              sliding_window=window or None)  # fmt: skip
    ref = reference_sdpa(q[0], k[0], v[0], sinks, window)
    for fn in (dense_attention, functools.partial(blockwise_attention, q_block=4, k_block=3)):
        out = jax.jit(lambda q, k, v, fn=fn: fn(q, k, v, **kw))(q, k, v)
        np.testing.assert_allclose(out[0], ref, atol=2e-5, rtol=2e-5)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**16))
def test_a_very_negative_sink_and_a_window_past_the_sequence_change_nothing(seed):
    length = 7  # one shape: the examples share compiled operations
    keys = jax.random.split(jax.random.PRNGKey(seed), 3)
    q, k, v = (jax.random.normal(kk, (1, length, 2, 4)) for kk in keys)
    pos = jnp.arange(length)
    kw = dict(q_positions=pos, k_positions=pos, causal=True)
    plain = dense_attention(q, k, v, **kw)
    local = dense_attention(q, k, v, sink_logits=jnp.full((2,), -1e4), sliding_window=length, **kw)
    np.testing.assert_allclose(local, plain, atol=1e-6)


def test_kv_cache_decoding_with_sinks_and_a_window_equals_the_full_forward():
    model = TransformerLM(11, scheme="rope", num_layers=1, d_model=16, num_heads=2,
                          sliding_window=3, attention_sinks=True, rngs=nnx.Rngs(0))  # fmt: skip
    model.blocks[0].attn.sink_logits.set_value(jnp.array([1.5, -0.5]))
    tokens = jax.random.randint(jax.random.PRNGKey(1), (2, 9), 0, 11)
    full = nnx.jit(lambda m, x, p: m(x, positions=p))(model, tokens, jnp.arange(9) + 7)
    model.init_cache(2, 9)
    step = nnx.jit(lambda m, x, p: m(x, positions=p, decode=True))
    outs = [step(model, tokens[:, :4], jnp.arange(4) + 7)]
    outs += [step(model, tokens[:, i : i + 1], jnp.array([i + 7])) for i in range(4, 9)]
    np.testing.assert_allclose(jnp.concatenate(outs, 1), full, atol=2e-5, rtol=2e-5)


def test_bad_use_is_a_clear_error():
    q = jnp.ones((1, 4, 2, 8))
    pos = jnp.arange(4)
    with pytest.raises(ValueError, match=r"sink_logits must have shape \[N=2\]"):
        dense_attention(q, q, q, q_positions=pos, k_positions=pos, sink_logits=jnp.zeros(3))
    with pytest.raises(ValueError, match="stick-breaking attention has none"):
        dense_attention(q, q, q, q_positions=pos, k_positions=pos, causal=True,
                        scheme=make_scheme("stick_breaking"), sink_logits=jnp.zeros(2))  # fmt: skip
    with pytest.raises(ValueError, match="takes no sliding_window, attention_chunk, sink_logits"):
        attend(q, q, q, q_positions=pos, k_positions=pos, sliding_window=2,
               attention=AttentionConfig(implementation="cudnn"))  # fmt: skip
    with pytest.raises(ValueError, match="sliding_window must be None or an int >= 1"):
        MultiHeadAttention(16, num_heads=2, sliding_window=0, rngs=nnx.Rngs(0))
    choice = explain_implementation(scheme=make_scheme("nope"), platform="gpu",
                                    dtype=jnp.bfloat16, head_dim=64, q_len=256, k_len=256,
                                    has_mask=False, aligned=True, has_sinks=True)  # fmt: skip
    assert choice.implementation == "dense" and "sink" in choice.reason


# -- a ring-buffer cache: StreamingLLM's sinks + window in constant memory ------------------


@pytest.mark.parametrize(
    "scheme",
    [
        {"name": "windowed_rope", "method": "streaming_llm", "window": 4, "sink_tokens": 2},
        {"name": "alibi"},
    ],
    ids=["streaming_llm", "alibi"],
)
def test_rolling_cache_decodes_a_long_stream_as_the_full_forward(scheme):
    model = TransformerLM(11, scheme=scheme, num_layers=1, d_model=16, num_heads=2,
                          sliding_window=4, sink_tokens=2, rngs=nnx.Rngs(0))  # fmt: skip
    tokens = jax.random.randint(jax.random.PRNGKey(2), (2, 23), 0, 11)
    full = nnx.jit(lambda m, x: m(x))(model, tokens)  # compiled: cheaper than eager here
    model.init_rolling_cache(2)
    assert model.blocks[0].attn.cache["k"].shape[1] == 2 + 4 - 1  # sinks + window - 1
    step = nnx.jit(lambda m, x, p: m(x, positions=p, decode=True))
    outs = [step(model, tokens[:, :7], jnp.arange(7))]  # a prompt longer than the ring
    outs += [step(model, tokens[:, i : i + 1], jnp.array([i])) for i in range(7, 23)]
    np.testing.assert_allclose(jnp.concatenate(outs, 1), full, atol=2e-5, rtol=2e-5)
    # The ring holds the sinks and the last window - 1 tokens of the stream.
    held = np.sort(np.asarray(model.blocks[0].attn.cache["positions"][...][0]))
    np.testing.assert_array_equal(held, [0, 1, 20, 21, 22])


def test_rolling_cache_needs_a_window_and_sink_tokens_need_one_too():
    with pytest.raises(ValueError, match="sink_tokens=2 keeps the first tokens visible"):
        MultiHeadAttention(16, num_heads=2, sink_tokens=2, rngs=nnx.Rngs(0))
    model = TransformerLM(11, num_layers=1, d_model=16, num_heads=2, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="layer 0 has no sliding_window"):
        model.init_rolling_cache(1)
