"""Chunked attention and per-layer patterns (Gemma 3's local/global layers, Llama 4's iRoPE).

Reference for chunked attention: Hugging Face transformers, masking_utils.py,
``chunked_overlay(chunk_size, left_padding)``: ``(kv_idx - left_padding[batch_idx]) //
chunk_size == (q_idx - left_padding[batch_idx]) // chunk_size``, and-ed with
``causal_mask_function`` (``kv_idx <= q_idx``) by ``create_chunked_causal_mask``; the
padding keys masked by ``padding_mask_function``.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from posenc_jax.attention import AttentionConfig, attend, blockwise_attention, dense_attention
from posenc_jax.harness.config import ConfigError, config_from_dict
from posenc_jax.nn import (
    MultiHeadAttention,
    TransformerLM,
    gemma3_pattern,
    layer_pattern,
    layer_pattern_from_hf_config,
    llama4_pattern,
    positions_from_padding,
)
from posenc_jax.schemes import make_scheme


def reference_chunked_attention(q, k, v, chunk, left_padding):
    """One row, one head, float64: softmax(q k^T / sqrt(H) + HF's chunked causal mask) v."""
    q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
    t, h = q.shape
    idx = np.arange(t)
    allowed = (idx[None, :] <= idx[:, None]) & (
        (idx[None, :] - left_padding) // chunk == (idx[:, None] - left_padding) // chunk
    )
    allowed &= idx[None, :] >= left_padding  # padding keys
    s = np.where(allowed, q @ k.T / np.sqrt(h), -np.inf)
    out = np.zeros_like(v)
    rows = allowed.any(-1)
    w = np.exp(s[rows] - s[rows].max(-1, keepdims=True))
    out[rows] = (w / w.sum(-1, keepdims=True)) @ v
    return out


def test_chunked_attention_equals_hugging_face_masks_with_left_padding():
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    t, chunk = 11, 3
    q, k, v = (jax.random.normal(kk, (2, t, 1, 8)) for kk in keys)
    pads = [0, 4]
    mask = jnp.arange(t)[None] >= jnp.array(pads)[:, None]  # [2, T], left padding
    pos = positions_from_padding(mask)
    kw = dict(q_positions=pos, k_positions=pos, causal=True, key_mask=mask, attention_chunk=chunk)
    outs = jax.jit(
        lambda q, k, v: {
            "dense": dense_attention(q, k, v, **kw),
            "blockwise": blockwise_attention(q, k, v, q_block=4, k_block=5, **kw),
        }
    )(q, k, v)
    for b, pad in enumerate(pads):
        ref = reference_chunked_attention(q[b, :, 0], k[b, :, 0], v[b, :, 0], chunk, pad)
        for path, out in outs.items():
            np.testing.assert_allclose(
                out[b, pad:, 0], ref[pad:], atol=2e-5, rtol=2e-5, err_msg=path
            )


@functools.cache
def _llama4_model():
    """Two layers: RoPE with chunks of 3, then NoPE with Llama 4's temperature (steps of 4)."""
    pattern = llama4_pattern(attention_chunk=3, nope_every=2, floor_scale=4.0, attn_scale=0.5)
    return TransformerLM(11, scheme="rope", num_layers=2, d_model=16, num_heads=2,
                         layer_pattern=pattern, rngs=nnx.Rngs(0))  # fmt: skip


def test_llama4_pattern_builds_its_layers_and_decodes_as_the_full_forward():
    model = nnx.clone(_llama4_model())
    rope, nope = (block.attn for block in model.blocks)
    assert (rope.scheme.name, rope.attention_chunk, rope.softmax_scale) == ("rope", 3, None)
    assert (nope.scheme.name, nope.attention_chunk) == ("nope", None)
    assert nope.softmax_scale.kind == "llama4"
    tokens = jax.random.randint(jax.random.PRNGKey(1), (2, 10), 0, 11)
    forward = nnx.jit(lambda m, x: m(x))  # compiled: cheaper than eager operations here
    full = forward(model, tokens)
    model.init_cache(2, 10)
    step = nnx.jit(lambda m, x, p: m(x, positions=p, decode=True))
    outs = [step(model, tokens[:, :4], jnp.arange(4))]
    outs += [step(model, tokens[:, i : i + 1], jnp.array([i])) for i in range(4, 10)]
    np.testing.assert_allclose(jnp.concatenate(outs, 1), full, atol=2e-5, rtol=2e-5)
    # The chunks matter: the same weights without them give other logits past the first chunk.
    rope.attention_chunk = None
    unchunked = forward(model, tokens)
    np.testing.assert_allclose(unchunked[:, :3], full[:, :3], atol=2e-5)
    assert float(jnp.max(jnp.abs(unchunked[:, 3:] - full[:, 3:]))) > 1e-3


def test_gemma3_pattern_repeats_over_the_depth_and_extensions_reach_the_global_layers():
    pattern = gemma3_pattern(sliding_window=4, local_base=100.0, local_per_global=2)
    scheme = make_scheme({"name": "rope", "base": 1e4}).extend_context(
        "linear", train_length=8, eval_length=32
    )
    model = TransformerLM(11, scheme=scheme, num_layers=5, d_model=16, num_heads=2,
                          layer_pattern=pattern, rngs=nnx.Rngs(0))  # fmt: skip
    attns = [block.attn for block in model.blocks]
    assert [a.sliding_window for a in attns] == [4, 4, None, 4, 4]
    assert [a.scheme.base for a in attns] == [100.0, 100.0, 1e4, 100.0, 100.0]
    # Position interpolation acts on the layers that take the model's scheme only.
    assert [a.scheme.scaling is not None for a in attns] == [False, False, True, False, False]


def test_bad_patterns_are_clear_errors():
    with pytest.raises(ValueError, match=r"preset must be one of \['gemma3', 'llama4'\]"):
        layer_pattern({"preset": "gemma4"})
    with pytest.raises(ValueError, match=r"preset 'llama4'.*attention_chunk"):
        layer_pattern({"preset": "llama4"})
    with pytest.raises(ValueError, match=r"layer_pattern\[1\]: unknown keys \['window'\]; valid"):
        layer_pattern([{}, {"window": 3}])
    with pytest.raises(ValueError, match="non-empty list"):
        layer_pattern([])
    kw = dict(num_layers=2, d_model=16, num_heads=2, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"layer_pattern\[0\]: learned acts on the embeddings"):
        TransformerLM(11, layer_pattern=[{"scheme": {"name": "learned", "max_length": 8}}], **kw)
    with pytest.raises(ValueError, match=r"layer_pattern\[1\]: .*unknown scheme"):
        TransformerLM(11, layer_pattern=[{}, {"scheme": "ropee"}], **kw)
    with pytest.raises(ValueError, match="attention_chunk must be None or an int >= 1"):
        MultiHeadAttention(16, num_heads=2, attention_chunk=0, rngs=nnx.Rngs(0))
    q = jnp.ones((1, 4, 2, 8))
    pos = jnp.arange(4)
    with pytest.raises(ValueError, match="takes no sliding_window, attention_chunk, sink"):
        attend(q, q, q, q_positions=pos, k_positions=pos, attention_chunk=2,
               attention=AttentionConfig(implementation="cudnn"))  # fmt: skip


def test_config_key_expands_presets_and_names_the_key_at_fault():
    cfg = config_from_dict({"model": {"layer_pattern": {"preset": "gemma3", "sliding_window": 8}}})
    assert len(cfg.model.layer_pattern) == 6 and cfg.model.layer_pattern[0]["sliding_window"] == 8
    with pytest.raises(ConfigError, match=r"model\.layer_pattern: layer_pattern\[0\]: .*kind"):
        config_from_dict({"model": {"layer_pattern": [{"softmax_scale": "log2"}]}})
    with pytest.raises(ConfigError, match=r"model\.layer_pattern: .*preset"):
        config_from_dict({"model": {"layer_pattern": {"preset": None}}})


# -- Hugging Face configs: layer_types, per-type RoPE, Llama 4's NoPE layers ----------------
# Expected patterns follow transformers' own derivations: Gemma 3
# (configuration_gemma3.py) ``"sliding_attention" if bool((i + 1) %
# sliding_window_pattern) else "full_attention"``, pattern 6, local layers at
# ``rope_local_base_freq`` with default (no) scaling; Llama 4 (configuration_llama4.py)
# ``no_rope_layers = [int((i + 1) % no_rope_layer_interval != 0) ...]``, interval 4,
# ``"chunked_attention" if no_rope else "full_attention"``, and the NoPE layers' query
# temperature when ``attn_temperature_tuning``.


def test_gemma3_config_without_layer_types_gives_five_local_layers_per_global():
    pattern = layer_pattern_from_hf_config({"text_config": {
        "model_type": "gemma3_text", "num_hidden_layers": 12, "head_dim": 16,
        "rope_theta": 1e6, "rope_local_base_freq": 1e4, "sliding_window": 1024,
        "rope_scaling": {"rope_type": "linear", "factor": 8.0}}})  # fmt: skip
    assert [p.get("sliding_window") for p in pattern] == ([1024] * 5 + [None]) * 2
    local, glob = pattern[0]["scheme"], pattern[5]["scheme"]
    assert (local["base"], local["scaling"]) == (1e4, None)
    assert (glob["base"], glob["scaling"]["rope_type"], glob["scaling"]["factor"]) == (
        1e6, "linear", 8.0)  # fmt: skip


def test_per_type_rope_parameters_and_explicit_layer_types_are_read():
    pattern = layer_pattern_from_hf_config({
        "model_type": "gemma3_text", "num_hidden_layers": 3, "head_dim": 16,
        "sliding_window": 8, "layer_types": ["full_attention", "sliding_attention",
                                             "sliding_attention"],
        "rope_parameters": {"full_attention": {"rope_type": "default", "rope_theta": 5e5},
                            "sliding_attention": {"rope_type": "default", "rope_theta": 1e3}},
    })  # fmt: skip
    assert [(p.get("sliding_window"), p["scheme"]["base"]) for p in pattern] == [
        (None, 5e5), (8, 1e3), (8, 1e3)]  # fmt: skip
    with pytest.raises(ValueError, match=r"layer_types\[1\]: 'linear_attention' is not one of"):
        types = ["full_attention", "linear_attention"]
        layer_pattern_from_hf_config({"num_hidden_layers": 2, "head_dim": 8, "layer_types": types})
    assert layer_pattern_from_hf_config({"model_type": "llama", "num_hidden_layers": 2}) is None


def test_llama4_config_gives_chunked_rope_layers_and_nope_layers_with_temperature():
    config = {"model_type": "llama4_text", "num_hidden_layers": 8, "head_dim": 16,
              "rope_theta": 5e5, "attention_chunk_size": 8192, "floor_scale": 8192,
              "attn_scale": 0.1}  # fmt: skip
    pattern = layer_pattern_from_hf_config(config)
    assert [p["scheme"]["name"] for p in pattern] == ["rope", "rope", "rope", "nope"] * 2
    assert [p.get("attention_chunk") for p in pattern] == [8192, 8192, 8192, None] * 2
    assert pattern[3]["softmax_scale"] == {"kind": "llama4", "floor_scale": 8192.0,
                                           "attn_scale": 0.1}  # fmt: skip
    # A model builds from it; no_rope_layers given explicitly win over the interval.
    explicit = layer_pattern_from_hf_config(
        {
            **config,
            "num_hidden_layers": 2,
            "no_rope_layers": [0, 1],
            "attn_temperature_tuning": False,
        }
    )
    assert [sorted(p) for p in explicit] == [["scheme"], ["attention_chunk", "scheme"]]
    TransformerLM(11, num_layers=2, d_model=32, num_heads=2, layer_pattern=explicit,
                  rngs=nnx.Rngs(0))  # fmt: skip
