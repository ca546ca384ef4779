"""NNX modules: KV cache and generation, positions, attention settings, sown weights, dtypes.

The scheme-generic model tests (every registered scheme) are in tests/test_schemes.py.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from posenc_jax.attention import AttentionConfig
from posenc_jax.nn import (
    MultiHeadAttention,
    TransformerEncoder,
    TransformerLM,
    generate,
    positions_from_padding,
)

VOCAB = 11


def _lm(spec, *, cls=TransformerLM, seed=0, **kw):
    opts = dict(num_layers=2, d_model=32, num_heads=4)
    opts.update(kw)
    return cls(VOCAB, scheme=spec, rngs=nnx.Rngs(seed), **opts)


@pytest.mark.parametrize(
    ("spec", "where"),
    [
        ({"name": "t5", "num_buckets": 8}, "attn"),
        ({"name": "shaw", "max_distance": 3}, "attn"),
        ({"name": "learned", "max_length": 16}, "embed"),
    ],
    ids=["t5", "shaw", "learned"],
)
def test_scheme_parameters_receive_gradients(spec, where):
    model = _lm(spec, num_layers=1)
    tokens = jnp.arange(8)[None] % VOCAB
    grads = nnx.jit(nnx.grad(lambda m: jnp.mean(m(tokens) ** 2)))(model)
    holder = grads.blocks[0].attn if where == "attn" else grads
    leaves = jax.tree.leaves(holder.pos_params.get_value())
    assert leaves
    for g in leaves:
        assert float(jnp.abs(g).sum()) > 0


def test_token_ids_outside_the_vocabulary_are_an_error_not_nan():
    model = TransformerLM(8, num_layers=1, d_model=16, num_heads=2, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"tokens must be ids in \[0, 7\].*from 1 to 9"):
        model(jnp.array([[1, 9]]))
    with pytest.raises(ValueError, match=r"from -1 to 2"):
        model(jnp.array([[-1, 2]]))
    assert np.all(np.isfinite(model(jnp.array([[0, 7]]))))


def test_learned_table_out_of_range_is_an_error():
    model = _lm({"name": "learned", "max_length": 8})
    with pytest.raises(ValueError, match="out_of_range"):
        model(jnp.zeros((1, 9), jnp.int32))
    clip = _lm({"name": "learned", "max_length": 8, "out_of_range": "clip"})
    assert np.all(np.isfinite(clip(jnp.zeros((1, 9), jnp.int32))))


def test_positions_checked_once_drop_the_run_time_check_and_keep_outputs():
    from posenc_jax.schemes import make_scheme

    learned = make_scheme({"name": "learned", "max_length": 8})
    checked = learned.assume_positions_below(8)
    assert checked.out_of_range == "clip" and learned.out_of_range == "error"
    with pytest.raises(ValueError, match="exceed the limit of 8"):
        learned.assume_positions_below(9)
    params = learned.init_embed_params(jax.random.key(0), d_model=4)
    x = jnp.zeros((2, 8, 4))
    pos = jnp.broadcast_to(jnp.arange(8), (2, 8))
    np.testing.assert_array_equal(checked.embed(params, x, pos), learned.embed(params, x, pos))
    for name in ("nope", "rope", "alibi", "t5", "shaw", "sinusoidal"):
        scheme = make_scheme(name)
        assert scheme.assume_positions_below(10**6) is scheme


def test_learned_table_starts_at_the_token_embedding_scale():
    from posenc_jax.schemes import make_scheme

    key = jax.random.key(0)
    table = make_scheme("learned").init_embed_params(key, d_model=64)["table"]
    model = _lm({"name": "learned", "max_length": 512})
    tokens = model.embed.embedding.get_value()
    # A normal truncated at two standard deviations has std 0.880 sigma.
    assert float(jnp.std(table)) == pytest.approx(0.880 * float(jnp.std(tokens)), rel=0.1)
    small = make_scheme({"name": "learned", "init_stddev": 0.02}).init_embed_params(key, d_model=64)
    assert float(jnp.std(small["table"])) == pytest.approx(0.880 * 0.02, rel=0.1)
    with pytest.raises(ValueError, match="init_stddev"):
        make_scheme({"name": "learned", "init_stddev": -1.0})


def test_generate_greedy_matches_argmax_of_full_forward():
    model = _lm("alibi")
    prompt = jnp.array([[1, 2, 3, 4], [0, 5, 6, 7]])
    mask = jnp.array([[True] * 4, [False, True, True, True]])
    out = generate(model, prompt, max_new_tokens=5, prompt_mask=mask)
    assert out.shape == (2, 9)
    # Re-run the whole sequence without a cache: each generated token is the argmax.
    full = model(out, padding_mask=jnp.concatenate([mask, jnp.ones((2, 5), bool)], 1))
    np.testing.assert_array_equal(out[:, 4:], jnp.argmax(full[:, 3:-1], -1))


def test_kv_cache_overflow_is_an_error_eagerly_and_under_jit():
    """3 tokens, then 2 more, into a cache of 4 slots: an error naming max_length, eagerly
    (before any write) and under nnx.jit (when the step runs), never a clamped overwrite."""
    model = _lm("rope", num_layers=1)
    tokens = jnp.array([[1, 2, 3, 4, 5]])
    model.init_cache(1, 4)
    model(tokens[:, :3], positions=jnp.arange(3), decode=True)
    with pytest.raises(ValueError, match=r"cache index 3 reaches index 5 > max_length=4"):
        model(tokens[:, 3:], positions=jnp.arange(3, 5), decode=True)
    cache = model.blocks[0].attn.cache
    assert int(cache["index"][...]) == 3
    np.testing.assert_array_equal(cache["positions"][...], [[0, 1, 2, 0]])  # nothing overwritten
    step = nnx.jit(lambda m, x, p: m(x, positions=p, decode=True))
    model.init_cache(1, 4)
    step(model, tokens[:, :3], jnp.arange(3))
    with pytest.raises(jax.errors.JaxRuntimeError, match=r"index 5 > max_length=4"):
        step(model, tokens[:, 3:], jnp.arange(3, 5)).block_until_ready()
    model.init_cache(1, 5)  # exactly enough slots: no error, and the full forward's logits
    outs = [step(model, tokens[:, :3], jnp.arange(3)), step(model, tokens[:, 3:], jnp.arange(3, 5))]
    full = nnx.jit(lambda m, x: m(x))(model, tokens)  # compiled: cheaper than eager here
    np.testing.assert_allclose(jnp.concatenate(outs, axis=1), full, atol=2e-5)


def test_generate_checks_max_length_before_decoding_and_accepts_a_fixed_one():
    model = _lm("alibi", num_layers=1)
    prompt = jnp.array([[1, 2, 3]])
    with pytest.raises(ValueError, match=r"max_length=4 .* max_length >= 5"):
        generate(model, prompt, max_new_tokens=2, max_length=4)
    assert model.blocks[0].attn.cache is None  # refused before any cache or decoding
    out = generate(model, prompt, max_new_tokens=2)
    np.testing.assert_array_equal(generate(model, prompt, max_new_tokens=2, max_length=8), out)


def test_positions_from_padding():
    mask = jnp.array([[False, False, True, True, True], [True, True, True, True, True]])
    np.testing.assert_array_equal(positions_from_padding(mask), [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]])


def _computes(shape, fn, *args):
    """True if tracing ``fn(*args)`` computes a value of ``shape`` (inner programs included)."""
    return "[" + ",".join(map(str, shape)) + "]" in str(jax.make_jaxpr(fn)(*args))


def test_auto_takes_the_blockwise_path_inside_the_model_above_the_threshold():
    spec = {"name": "t5", "num_buckets": 8}
    dense = _lm(spec, attention=AttentionConfig(blockwise_threshold=None))
    block = _lm(spec, attention=AttentionConfig(blockwise_threshold=8, block_size=8))
    tokens = jax.random.randint(jax.random.PRNGKey(3), (2, 21), 0, VOCAB)
    logits = (2, 4, 21, 21)  # [B, N, T, S]: only the dense path computes it
    for model, materialised in ((dense, True), (block, False)):
        graphdef, state = nnx.split(model)
        forward = lambda state, x, g=graphdef: nnx.merge(g, state)(x)  # noqa: E731
        assert _computes(logits, forward, state, tokens) is materialised
    np.testing.assert_allclose(block(tokens), dense(tokens), atol=1e-4)


def test_attention_settings_travel_as_one_config():
    config = AttentionConfig(implementation="blockwise", blockwise_threshold=None, block_size=16)
    model = _lm("alibi", attention=config)
    assert all(block.attn.attention is config for block in model.blocks)
    assert _lm("alibi").blocks[0].attn.attention == AttentionConfig()


def _numpy_rope_half(x, positions, base=10000.0):
    """float64 RoPE, pairs (i, i + H/2) rotated by positions * base^(-2i/H) (GPT-NeoX layout)."""
    half = x.shape[-1] // 2
    angle = positions[:, :, None, None] * base ** (-2.0 * np.arange(half) / x.shape[-1])
    cos, sin = np.cos(angle), np.sin(angle)  # [B, T, 1, H/2]
    a, b = x[..., :half], x[..., half:]
    return np.concatenate([a * cos - b * sin, b * cos + a * sin], axis=-1)


def _numpy_attention_weights(attn, x, positions, padding_mask, spec):
    """float64 softmax(q.k / sqrt(H) + ALiBi bias) of a causal MultiHeadAttention's kernels.

    Returns the [B, N, T, S] weights and [B, T], True where the query has an allowed key.
    """
    b, t, _ = x.shape
    n, kv, h = attn.num_heads, attn.num_kv_heads, attn.head_dim
    x = np.asarray(x, np.float64)
    q = (x @ np.asarray(attn.q_proj.kernel.get_value(), np.float64)).reshape(b, t, n, h)
    k = (x @ np.asarray(attn.k_proj.kernel.get_value(), np.float64)).reshape(b, t, kv, h)
    k = np.repeat(k, n // kv, axis=2)  # [B, S, N, H]
    pos = np.broadcast_to(np.asarray(positions, np.float64), (b, t))
    if spec == "rope":
        q, k = _numpy_rope_half(q, pos), _numpy_rope_half(k, pos)
    logits = np.einsum("btnh,bsnh->bnts", q, k) / np.sqrt(h)
    if spec == "alibi":  # slopes 2^-2 ... 2^-8 for 4 heads; bias -m (i - j) (Press et al. 2022)
        slopes = 2.0 ** (-2.0 * np.arange(1, n + 1))
        logits -= slopes[None, :, None, None] * (pos[:, None, :, None] - pos[:, None, None, :])
    allowed = (pos[:, None, None, :] <= pos[:, None, :, None]) & padding_mask[:, None, None, :]
    logits = np.where(allowed, logits, -np.inf)
    top = np.max(logits, axis=-1, keepdims=True)
    w = np.exp(logits - np.where(np.isfinite(top), top, 0.0))
    total = w.sum(-1, keepdims=True)
    return np.divide(w, total, out=np.zeros_like(w), where=total > 0), allowed.any(-1)[:, 0]


PATHS = {
    "auto": AttentionConfig(),
    "blockwise": AttentionConfig(implementation="blockwise", block_size=4),
}


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("spec", ["alibi", "rope"])
def test_sown_weights_are_the_softmax_of_the_logits(spec, path):
    """Bias scheme (ALiBi) and rotate scheme (RoPE), whichever path the forward takes."""
    attn = MultiHeadAttention(
        32,
        num_heads=4,
        num_kv_heads=2,
        scheme=spec,
        attention=PATHS[path],
        sow_weights=True,
        rngs=nnx.Rngs(0),
    )
    x = jax.random.normal(jax.random.PRNGKey(4), (2, 9, 32))
    positions = np.arange(9) + 5
    mask = np.ones((2, 9), bool)
    mask[1, :3] = False  # left padding: queries 0..2 of row 1 see no real key
    out, sown = nnx.capture(attn, nnx.Intermediate)(x, positions=positions, padding_mask=mask)
    (w,) = sown["attention_weights"].get_value()  # one call, one entry
    assert w.shape == (2, 4, 9, 9) and w.dtype == jnp.float32
    ref, has_key = _numpy_attention_weights(attn, x, positions, mask, spec)
    np.testing.assert_allclose(w, ref, atol=1e-5)
    rows = np.broadcast_to(has_key[:, None, :], (2, 4, 9))  # [B, N, T]
    assert rows.sum() == 2 * 4 * 9 - 4 * 3  # every row but those of row 1's padding queries
    np.testing.assert_allclose(np.sum(w, -1), rows.astype(float), atol=1e-6)
    plain = nnx.view(attn, sow_weights=False)  # sowing leaves the output alone
    np.testing.assert_array_equal(out, plain(x, positions=positions, padding_mask=mask))


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize(
    ("spec", "causal"),
    [
        ("alibi", True),
        ({"name": "shaw", "max_distance": 3}, False),
        ({"name": "xpos", "scale_base": 8.0}, True),
        ({"name": "fire", "hidden": 8, "init_threshold": 4.0}, True),
        ({"name": "kerple", "kind": "power"}, False),
    ],
    ids=["alibi", "shaw-bidirectional", "xpos", "fire", "kerple-bidirectional"],
)
def test_sown_weights_times_values_give_the_layer_output(spec, causal, path):
    """w . v (+ the Shaw value term), projected out, equals the module's own output."""
    attn = MultiHeadAttention(
        16,
        num_heads=2,
        num_kv_heads=1,
        scheme=spec,
        causal=causal,
        attention=PATHS[path],
        sow_weights=True,
        rngs=nnx.Rngs(0),
    )
    x = jax.random.normal(jax.random.PRNGKey(5), (2, 9, 16))
    positions = jnp.broadcast_to(jnp.arange(9) + 3, (2, 9))
    mask = jnp.ones((2, 9), bool).at[1, :2].set(False)
    out, sown = nnx.capture(attn, nnx.Intermediate)(x, positions=positions, padding_mask=mask)
    (w,) = sown["attention_weights"].get_value()
    v = attn.v_proj(x).reshape(2, 9, 1, attn.head_dim).repeat(2, axis=2)  # [B, S, N, H]
    mixed = jnp.einsum("bnts,bsnh->btnh", w, v)
    if "value_term" in attn.scheme.hooks:
        mixed = mixed + attn.scheme.value_term(attn.pos_params.get_value(), w, positions, positions)
    np.testing.assert_allclose(attn.o_proj(mixed.reshape(2, 9, -1)), out, atol=2e-5)


def test_weights_are_sown_only_when_asked():
    model = _lm("alibi")
    tokens = jnp.arange(6)[None] % VOCAB
    _, sown = nnx.capture(model, nnx.Intermediate)(tokens)
    assert not jax.tree.leaves(sown)
    view = nnx.view(model, sow_weights=True)  # every layer; the model itself is unchanged
    assert not any(block.attn.sow_weights for block in model.blocks)
    logits, sown = nnx.jit(nnx.capture(lambda m, x: m(x), nnx.Intermediate))(view, tokens)
    np.testing.assert_allclose(logits, model(tokens), atol=1e-6)
    for i in range(2):
        (w,) = sown["blocks"][i]["attn"]["attention_weights"].get_value()
        assert w.shape == (1, 4, 6, 6)


def test_encoder_head_has_num_classes_outputs():
    tokens = jnp.arange(7)[None] % VOCAB
    encoder = _lm("alibi", cls=TransformerEncoder, num_classes=3)
    assert encoder.embed.num_embeddings == VOCAB
    assert encoder(tokens).shape == (1, 7, 3)
    assert _lm("alibi", cls=TransformerEncoder)(tokens).shape == (1, 7, VOCAB)  # default
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        _lm("alibi", cls=TransformerEncoder, num_classes=0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(num_heads=5), "divisible"),
        (dict(num_heads=64, d_model=32), "num_heads"),
        (dict(num_layers=0), "num_layers"),
        (dict(norm="batchnorm"), "layernorm"),
    ],
)
def test_bad_model_settings_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _lm("nope", **kwargs)


def test_unknown_scheme_lists_valid_names():
    with pytest.raises(ValueError, match="valid schemes"):
        _lm("rotary")
    with pytest.raises(ValueError, match="valid settings"):
        _lm({"name": "alibi", "slope": 2})


def test_rope_odd_head_dim_error_names_setting():
    with pytest.raises(ValueError, match="rotary"):
        MultiHeadAttention(
            30, num_heads=2, scheme={"name": "rope", "rotary_fraction": 0.2}, rngs=nnx.Rngs(0)
        )


def test_bf16_forward_matches_float32():
    """bfloat16 activations (float32 parameters) against the float32 forward of the same weights.

    bfloat16 keeps 8 significant bits (relative rounding 2^-9 = 0.002 per operation). The
    logits (of size up to about 4 here) must stay within 0.05 of float32; 0.02 is measured.
    """
    tokens = jax.random.randint(jax.random.PRNGKey(6), (2, 9), 0, VOCAB)
    positions = jnp.arange(9) + 100  # rotations by large angles, computed in float32
    out = _lm("rope", dtype=jnp.bfloat16)(tokens, positions=positions)
    ref = _lm("rope")(tokens, positions=positions)  # same seed: same float32 parameters
    assert out.dtype == jnp.float32 and np.all(np.isfinite(out))
    np.testing.assert_allclose(out, ref, atol=0.05, rtol=0.0)
    assert not np.allclose(out, ref, atol=1e-5, rtol=1e-5)  # the bfloat16 path did run


DYNAMIC_SCALINGS = {
    "dynamic": {"rope_type": "dynamic", "factor": 4.0, "original_max_position_embeddings": 8},
    "longrope": {
        "rope_type": "longrope",
        "factor": 4.0,
        "original_max_position_embeddings": 8,
        "short_factor": [1.0] * 8,
        "long_factor": [1.0 + 0.5 * i for i in range(8)],
    },
}


@pytest.mark.parametrize("rope_type", sorted(DYNAMIC_SCALINGS))
def test_dynamic_rope_row_logits_do_not_depend_on_the_batch(rope_type):
    """A 3-token row gives the same logits alone and left-padded beside a 20-token row."""
    model = _lm({"name": "rope", "scaling": DYNAMIC_SCALINGS[rope_type]}, num_layers=1, num_heads=2)
    short = jnp.array([3, 1, 4])
    tokens = jnp.stack([jnp.pad(short, (17, 0)), jnp.arange(20) % VOCAB])
    mask = jnp.stack([jnp.arange(20) >= 17, jnp.ones(20, bool)])
    batched = nnx.jit(lambda m, x, pm: m(x, padding_mask=pm))(model, tokens, mask)
    alone = model(short[None])
    np.testing.assert_allclose(batched[0, 17:], alone[0], atol=2e-5, rtol=2e-5)
