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

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posenc_jax.attention import blockwise_attention, dense_attention
from posenc_jax.rope.rectified import dual_chunk_positions
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
    attention = jax.jit(functools.partial(dense_attention, scheme=scheme, causal=True))
    out = attention(q, k, v, q_positions=pos, k_positions=pos)
    logits = reference_logits(q[0, :, 0], k[0, :, 0], method, window, factor)
    logits = np.where(np.tril(np.ones((t, t), bool)), logits, -np.inf)
    w = np.exp(logits - logits.max(-1, keepdims=True))
    ref = (w / w.sum(-1, keepdims=True)) @ np.asarray(v[0, :, 0], np.float64)
    np.testing.assert_allclose(out[0, :, 0], ref, atol=3e-5, rtol=3e-5)


@functools.cache
def _rope_attention(name, method=None, window=None):
    """A compiled causal attention of rotated q, k at positions 0..T-1 (shared by examples)."""
    spec = {"name": name}
    if method is not None:
        spec.update(method=method, window=window, factor=2.0)
    scheme = make_scheme(spec).configure(causal=True)

    def attend(q, k, v):
        pos = jnp.arange(q.shape[1])
        qr, kr = scheme.rotate({}, q, k, pos, pos)
        return dense_attention(qr, kr, v, q_positions=pos, k_positions=pos, scheme=scheme,
                               causal=True)  # fmt: skip

    return jax.jit(attend)


@settings(max_examples=6, deadline=None)
@given(
    method=st.sampled_from(["rerope", "leaky_rerope", "self_extend"]),
    seed=st.integers(0, 2**16),
)
def test_a_window_longer_than_the_sequence_is_plain_rope(method, seed):
    length = 9  # one shape: the examples share compiled operations
    keys = jax.random.split(jax.random.PRNGKey(seed), 3)
    q, k, v = (jax.random.normal(kk, (1, length, 2, 8)) for kk in keys)
    windowed = _rope_attention("windowed_rope", method, length)(q, k, v)
    np.testing.assert_allclose(windowed, _rope_attention("rope")(q, k, v), atol=2e-5, rtol=2e-5)


def test_bad_settings_are_clear_errors():
    valid = r"\['rerope', 'leaky_rerope', 'self_extend', 'dual_chunk', 'streaming_llm'\]"
    with pytest.raises(ValueError, match=r"method.*" + valid):
        make_scheme({"name": "windowed_rope", "method": "rope"})
    with pytest.raises(ValueError, match="needs window >= 1"):
        make_scheme({"name": "windowed_rope", "window": 0})
    with pytest.raises(ValueError, match="an integer group size"):
        make_scheme({"name": "windowed_rope", "method": "self_extend", "factor": 2.5})
    with pytest.raises(ValueError, match="local_window >= 0"):
        make_scheme({"name": "windowed_rope", "method": "dual_chunk", "local_window": -1})


# -- Dual Chunk Attention -------------------------------------------------------------------


def _dca_tables(n, chunk_len, local_window):
    """ChunkLlama's position tables (chunkllama_attn_replace.py, ``_set_cos_sin_cache``,
    scaling factor 1): q_t, qc_t and k_t."""
    q_t = np.arange(chunk_len, dtype=np.float64)
    qc_t = np.minimum(q_t + chunk_len, chunk_len + local_window)  # .clamp(max=chunk_size)
    k_t = np.arange(n, dtype=np.float64) % chunk_len
    return q_t, qc_t, k_t


def dca_prefill_reference(q, k, v, chunk_len, local_window):
    """[T, H] output of one head: ChunkLlama's ``forward`` without a cache, in float64.

    Each chunk's queries attend causally to their own chunk (intra), to the whole previous
    chunk with the successive rotation, and to every earlier key with the inter rotation;
    the flash-attention partial outputs merge by their log-sum-exp (``merge_attn_outputs``).
    """
    q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
    t, h = q.shape
    q_t, qc_t, k_t = _dca_tables(t, chunk_len, local_window)
    pos = np.arange(t)
    key = _rope64(k, k_t[pos])
    rel = pos % chunk_len

    def flash(qs, ks, vs, causal):  # (output, lse), flash_attn_func's default 1/sqrt(H)
        s = qs @ ks.T / np.sqrt(h)
        if causal:
            s = np.where(np.tril(np.ones(s.shape, bool)), s, -np.inf)
        m = s.max(-1, keepdims=True)
        e = np.exp(s - m)
        return e @ vs / e.sum(-1, keepdims=True), (m + np.log(e.sum(-1, keepdims=True)))[:, 0]

    outs = [flash(_rope64(q[:chunk_len], q_t[rel[:chunk_len]]), key[:chunk_len],
                  v[:chunk_len], True)[0]]  # fmt: skip
    prev = slice(0, chunk_len)
    for begin in range(chunk_len, t, chunk_len):
        end = min(begin + chunk_len, t)
        cur = slice(begin, end)
        parts = [flash(_rope64(q[cur], q_t[rel[cur]]), key[cur], v[cur], True)]
        parts.append(flash(_rope64(q[cur], qc_t[rel[cur]]), key[prev], v[prev], False))
        if begin - chunk_len > 0:
            inter_q = _rope64(q[cur], np.full(end - begin, qc_t[chunk_len - 1]))
            parts.append(flash(inter_q, key[: begin - chunk_len], v[: begin - chunk_len], False))
        lse = np.exp(np.stack([p[1] for p in parts]))
        weights = lse / lse.sum(0)
        outs.append(sum(w[:, None] * p[0] for w, p in zip(weights, parts, strict=True)))
        prev = cur
    return np.concatenate(outs)


def dca_decode_reference(q, k, v, chunk_len, local_window):
    """[H] output of one head for the last query attending to all T keys: ChunkLlama's
    ``forward`` with a KV cache (the intra, successive and inter scores concatenated)."""
    q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
    t, h = k.shape
    q_t, qc_t, k_t = _dca_tables(t, chunk_len, local_window)
    key = _rope64(k, k_t[np.arange(t)])
    rel = np.array([(t - 1) % chunk_len])
    curr = (t - 1) // chunk_len
    scores = [_rope64(q, q_t[rel]) @ key[chunk_len * curr :].T]
    if curr >= 1:
        succ = key[chunk_len * (curr - 1) : chunk_len * curr]
        scores.insert(0, _rope64(q, qc_t[rel]) @ succ.T)
    if curr >= 2:
        inter = _rope64(q, qc_t[[chunk_len - 1]]) @ key[: chunk_len * (curr - 1)].T
        scores.insert(0, inter)
    s = np.concatenate(scores, -1)[0] / np.sqrt(h)
    w = np.exp(s - s.max())
    return (w / w.sum()) @ v


def test_dual_chunk_attention_equals_the_reference_transcriptions():
    keys = jax.random.split(jax.random.PRNGKey(5), 3)
    t, h, chunk, local = 23, 16, 5, 2  # 5 chunks, the last one partial
    q, k, v = (jax.random.normal(kk, (1, t, 1, h)) for kk in keys)
    scheme = make_scheme({"name": "windowed_rope", "method": "dual_chunk", "window": chunk,
                          "local_window": local})  # fmt: skip
    pos = jnp.arange(t)
    # One compiled program for both calls below (cheaper than eager operations here).
    attention = jax.jit(functools.partial(dense_attention, scheme=scheme, causal=True))
    out = attention(q, k, v, q_positions=pos, k_positions=pos)
    ref = dca_prefill_reference(q[0, :, 0], k[0, :, 0], v[0, :, 0], chunk, local)
    np.testing.assert_allclose(out[0, :, 0], ref, atol=3e-5, rtol=3e-5)
    # Decoding: queries at a few positions, each against every key (causal: those so
    # far), in one call; the reference's cached form takes one query at a time.
    last = jnp.array([3, 7, 12, 22])
    steps = attention(q[:, last], k, v, q_positions=last, k_positions=pos)
    for i, n in enumerate(last.tolist()):
        ref = dca_decode_reference(q[0, n : n + 1, 0], k[0, : n + 1, 0], v[0, : n + 1, 0],
                                   chunk, local)  # fmt: skip
        np.testing.assert_allclose(steps[0, i, 0], ref, atol=3e-5, rtol=3e-5, err_msg=str(n))


def test_dual_chunk_attention_blockwise_equals_dense_and_never_rotates_past_its_range():
    keys = jax.random.split(jax.random.PRNGKey(6), 3)
    t, chunk, local = 19, 4, 1
    q = jax.random.normal(keys[0], (2, t, 4, 8))
    k, v = (jax.random.normal(kk, (2, t, 2, 8)) for kk in keys[1:])
    pos = jnp.stack([jnp.arange(t), jnp.arange(t) + 7])  # a second row at an offset
    scheme = make_scheme({"name": "windowed_rope", "method": "dual_chunk", "window": chunk,
                          "local_window": local})  # fmt: skip
    kw = dict(q_positions=pos, k_positions=pos, scheme=scheme, causal=True)
    dense, block = jax.jit(
        lambda q, k, v: (
            dense_attention(q, k, v, **kw),
            blockwise_attention(q, k, v, **kw, q_block=5, k_block=3),  # tiles straddle chunks
        )
    )(q, k, v)
    np.testing.assert_allclose(block, dense, atol=2e-5, rtol=2e-5)
    q3, kp, chunks = dual_chunk_positions(pos, pos, chunk_size=chunk, local_window=local)
    distance = np.asarray(q3)[..., None, :] - np.asarray(kp)[..., None, :, None]  # [B,T,S,3]
    term = np.clip(np.asarray(chunks), 0, 2)  # intra, successive, inter
    used = np.take_along_axis(distance, term[..., None], -1)[..., 0]
    causal = np.asarray(pos)[:, :, None] >= np.asarray(pos)[:, None, :]
    assert used[causal].max() == chunk + local and used[causal].min() == 0
    # Within a chunk, and up to the local window into the next one, the true distance.
    true = np.asarray(pos)[:, :, None] - np.asarray(pos)[:, None, :]
    near = causal & ((term == 0) | ((term == 1) & (np.asarray(q3)[..., 1:2] < chunk + local)))
    np.testing.assert_array_equal(used[near], true[near])


# -- StreamingLLM: sinks, a window and positions within the cache -----------------------------


def streaming_llm_reference(q, k, v, start_size, recent_size):
    """[T, H] outputs of one head decoded token by token as StreamingLLM does, float64.

    mit-han-lab/streaming-llm: the cache keeps unrotated keys (pos_shift/modify_llama.py,
    ``past_key_value = (key_states, value_states)`` before rotation); each step's query
    sits at the cache length (transformers' ``position_ids`` = past length), the keys at
    ``torch.arange(kv_seq_len)``; after the step ``StartRecentKVCache`` keeps the first
    ``start_size`` and the last ``recent_size`` entries (kv_cache.py, ``__call__``).
    """
    q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
    h = q.shape[-1]
    cache, out = [], []
    for n in range(q.shape[0]):
        keys = [*cache, n]
        qr = _rope64(q[n : n + 1], [len(cache)])
        kr = _rope64(k[keys], np.arange(len(keys)))
        s = (qr @ kr.T)[0] / np.sqrt(h)
        w = np.exp(s - s.max())
        out.append((w / w.sum()) @ v[keys])
        if len(keys) > start_size + recent_size:
            keys = keys[:start_size] + keys[len(keys) - recent_size :]
        cache = keys
    return np.stack(out)


def test_streaming_llm_equals_the_reference_decoding():
    keys = jax.random.split(jax.random.PRNGKey(7), 3)
    t, h, sinks, window = 26, 16, 2, 5  # the reference's recent_size = window - 1
    q, k, v = (jax.random.normal(kk, (1, t, 1, h)) for kk in keys)
    scheme = make_scheme({"name": "windowed_rope", "method": "streaming_llm", "window": window,
                          "sink_tokens": sinks})  # fmt: skip
    pos = jnp.arange(t)
    ref = streaming_llm_reference(q[0, :, 0], k[0, :, 0], v[0, :, 0], sinks, window - 1)
    kw = dict(q_positions=pos, k_positions=pos, scheme=scheme, causal=True)
    # The scheme alone masks the evicted keys (dense); a window with sink tokens masks them
    # too (blockwise, as a model with sliding_window and sink_tokens runs it).
    out, block = jax.jit(
        lambda q, k, v: (
            dense_attention(q, k, v, **kw),
            blockwise_attention(q, k, v, **kw, q_block=4, k_block=3, sliding_window=window,
                                sink_tokens=sinks),
        )
    )(q, k, v)  # fmt: skip
    np.testing.assert_allclose(out[0, :, 0], ref, atol=3e-5, rtol=3e-5)
    np.testing.assert_allclose(block[0, :, 0], ref, atol=3e-5, rtol=3e-5)
