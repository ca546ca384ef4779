"""Attention paths: dense vs a float64 numpy reference, blockwise vs dense, fused vs dense."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posenc_jax import attention as attention_module
from posenc_jax.attention import (
    MASK_VALUE,
    AttentionConfig,
    attend,
    attention_weights,
    blockwise_attention,
    dense_attention,
    explain_implementation,
    fused_attention,
    select_implementation,
)
from posenc_jax.schemes import make_scheme


def _setup(spec, causal, *, b=2, t=37, s=37, n=4, kv=4, h=8, seed=0):
    scheme = make_scheme(spec).configure(causal=causal)
    keys = jax.random.split(jax.random.PRNGKey(seed), 4)
    q = jax.random.normal(keys[0], (b, t, n, h))
    k = jax.random.normal(keys[1], (b, s, kv, h))
    v = jax.random.normal(keys[2], (b, s, kv, h))
    params = scheme.init_attention_params(keys[3], num_heads=n, head_dim=h)
    # Make learned tables large enough to matter.
    params = jax.tree.map(lambda x: 10.0 * x, params)
    return scheme, q, k, v, params


def _numpy_alibi_weights(q, k, q_pos, k_pos, slopes, causal, allowed=None):
    """float64 transcription: softmax(q.k/sqrt(h) - m|i-j|) (Press et al. 2022).

    allowed: optional extra bool mask broadcastable to [B, N, T, S]; rows with no
    allowed key are 0.
    """
    q, k = (np.asarray(a, np.float64) for a in (q, k))
    h = q.shape[-1]
    logits = np.einsum("btnh,bsnh->bnts", q, k) / np.sqrt(h)
    dist = q_pos[:, None] - k_pos[None, :]
    bias = -np.asarray(slopes, np.float64)[:, None, None] * (dist if causal else np.abs(dist))
    logits = logits + bias[None]
    ok = np.ones(logits.shape, bool)
    if causal:
        ok &= k_pos[None, :] <= q_pos[:, None]
    if allowed is not None:
        ok &= allowed
    logits = np.where(ok, logits, -np.inf)
    top = logits.max(-1, keepdims=True)
    w = np.exp(logits - np.where(np.isfinite(top), top, 0.0))
    total = w.sum(-1, keepdims=True)
    return np.divide(w, total, out=np.zeros_like(w), where=total > 0)


def _numpy_alibi_attention(q, k, v, q_pos, k_pos, slopes, causal):
    """float64 transcription: softmax(q.k/sqrt(h) - m|i-j|) v (Press et al. 2022)."""
    w = _numpy_alibi_weights(q, k, q_pos, k_pos, slopes, causal)
    return np.einsum("bnts,bsnh->btnh", w, np.asarray(v, np.float64))


def _shapes(jaxpr):
    """Shapes of every value a traced program computes, inner programs (scan, jit) included."""
    for eqn in jaxpr.eqns:
        for var in eqn.outvars:
            yield tuple(var.aval.shape)
        for param in eqn.params.values():
            for sub in param if isinstance(param, (tuple, list)) else (param,):
                sub = getattr(sub, "jaxpr", sub)  # ClosedJaxpr -> Jaxpr
                if hasattr(sub, "eqns"):
                    yield from _shapes(sub)


def _materialises(shape, fn, *args):
    """True if tracing ``fn(*args)`` computes an array of ``shape``."""
    return tuple(shape) in set(_shapes(jax.make_jaxpr(fn)(*args).jaxpr))


@pytest.mark.parametrize("causal", [True, False])
def test_attention_weights_match_numpy_reference(causal):
    """Softmax weights with the scheme's bias, a padding mask and an extra mask."""
    scheme, q, k, _, params = _setup("alibi", causal, t=7, s=9, kv=2)
    q_pos, k_pos = np.arange(7) + 2, np.arange(9)
    key_mask = np.ones((2, 9), bool)
    key_mask[1, :4] = False
    extra = np.ones((1, 4, 7, 9), bool)
    extra[0, 3, 2] = False  # head 3, query 2 sees nothing: a row of zeros
    w = attention_weights(
        q,
        k,
        q_positions=q_pos,
        k_positions=k_pos,
        scheme=scheme,
        params=params,
        causal=causal,
        key_mask=key_mask,
        mask=extra,
    )
    assert w.shape == (2, 4, 7, 9) and w.dtype == jnp.float32
    allowed = key_mask[:, None, None, :] & extra
    k_full = np.repeat(k, 2, axis=2)  # 2 key heads shared by 4 query heads
    ref = _numpy_alibi_weights(
        q, k_full, q_pos, k_pos, [2**-2, 2**-4, 2**-6, 2**-8], causal, allowed
    )
    np.testing.assert_allclose(w, ref, atol=1e-6)
    np.testing.assert_array_equal(w[:, 3, 2], 0.0)


@pytest.mark.parametrize("causal", [True, False])
def test_dense_alibi_matches_numpy_reference(causal):
    scheme, q, k, v, params = _setup("alibi", causal, t=9, s=9)
    pos = np.arange(9) + 5
    out = dense_attention(
        q, k, v, q_positions=pos, k_positions=pos, scheme=scheme, params=params, causal=causal
    )
    # Slopes for 4 heads are 2^-2, 2^-4, 2^-6, 2^-8 (Press et al.).
    ref = _numpy_alibi_attention(q, k, v, pos, pos, [2**-2, 2**-4, 2**-6, 2**-8], causal)
    np.testing.assert_allclose(out, ref, atol=2e-5)


def test_dense_shaw_matches_naive_reference():
    """Shaw et al. eq. (3)-(5) with a materialised [T, S, H] tensor of a_ij."""
    scheme, q, k, v, params = _setup({"name": "shaw", "max_distance": 3}, True, t=7, s=7)
    pos = np.arange(7)
    out = dense_attention(
        q, k, v, q_positions=pos, k_positions=pos, scheme=scheme, params=params, causal=True
    )
    q64, k64, v64 = (np.asarray(a, np.float64) for a in (q, k, v))
    idx = np.clip(pos[None, :] - pos[:, None], -3, 3) + 3
    a_k = np.asarray(params["table_k"], np.float64)[idx]  # [T, S, H]
    a_v = np.asarray(params["table_v"], np.float64)[idx]
    h = q.shape[-1]
    e = np.einsum("btnh,bsnh->bnts", q64, k64) + np.einsum("btnh,tsh->bnts", q64, a_k)
    e = e / np.sqrt(h)
    e = np.where(pos[None, :] <= pos[:, None], e, -np.inf)
    w = np.exp(e - e.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    ref = np.einsum("bnts,bsnh->btnh", w, v64) + np.einsum("bnts,tsh->btnh", w, a_v)
    np.testing.assert_allclose(out, ref, atol=5e-5)


def test_grouped_query_attention_matches_repeated_heads():
    scheme, q, k, v, _params = _setup("alibi", True, n=4, kv=2, t=6, s=6)
    pos = np.arange(6)
    out = dense_attention(q, k, v, q_positions=pos, k_positions=pos, scheme=scheme, causal=True)
    ref = _numpy_alibi_attention(
        q,
        np.repeat(k, 2, axis=2),
        np.repeat(v, 2, axis=2),
        pos,
        pos,
        [2**-2, 2**-4, 2**-6, 2**-8],
        True,
    )
    np.testing.assert_allclose(out, ref, atol=2e-5)
    with pytest.raises(ValueError, match="multiple"):
        dense_attention(
            q, k[:, :, :1].repeat(3, 2), v[:, :, :1].repeat(3, 2), q_positions=pos, k_positions=pos
        )


@settings(max_examples=10, deadline=None)
@given(t=st.integers(1, 40), block=st.integers(1, 17), offset=st.integers(0, 1000))
def test_blockwise_equals_dense_any_length(t, block, offset):
    scheme, q, k, v, params = _setup(
        {"name": "t5", "num_buckets": 8, "max_distance": 16}, True, b=1, t=t, s=t, n=2, kv=1, h=4
    )
    pos = jnp.arange(t) + offset
    kw = dict(q_positions=pos, k_positions=pos, scheme=scheme, params=params, causal=True)
    blockwise = jax.jit(functools.partial(blockwise_attention, q_block=block, k_block=block, **kw))
    np.testing.assert_allclose(
        blockwise(q, k, v),
        jax.jit(functools.partial(dense_attention, **kw))(q, k, v),
        atol=1e-5,
        rtol=1e-5,
    )


@pytest.mark.parametrize("fn", [dense_attention, blockwise_attention])
def test_fully_masked_row_is_finite_with_finite_grads(fn):
    scheme, q, k, v, params = _setup({"name": "shaw", "max_distance": 2}, True, t=6, s=6)
    pos = jnp.arange(6)
    key_mask = jnp.ones((2, 6), bool).at[0].set(False)  # row 0 attends to nothing

    def f(q, k, v):
        return fn(
            q,
            k,
            v,
            q_positions=pos,
            k_positions=pos,
            scheme=scheme,
            params=params,
            causal=True,
            key_mask=key_mask,
        )

    out = f(q, k, v)
    assert np.all(np.isfinite(out))
    np.testing.assert_array_equal(out[0], 0.0)
    grads = jax.grad(lambda *a: jnp.sum(f(*a) ** 2), argnums=(0, 1, 2))(q, k, v)
    for g in grads:
        assert np.all(np.isfinite(g))


@pytest.mark.parametrize("spec", ["nope", "alibi", {"name": "t5", "num_buckets": 8}], ids=str)
def test_fused_path_equals_dense(spec):
    """jax.nn.dot_product_attention (run with its XLA implementation on CPU) = dense."""
    scheme, q, k, v, params = _setup(spec, True, t=12, s=12)
    pos = jnp.arange(12)
    kw = dict(q_positions=pos, k_positions=pos, scheme=scheme, params=params, causal=True)
    np.testing.assert_allclose(
        fused_attention(q, k, v, implementation="xla", **kw),
        dense_attention(q, k, v, **kw),
        atol=1e-5,
    )


def test_fused_path_rejects_q_dependent_schemes():
    scheme, q, k, v, params = _setup("shaw", True, t=4, s=4)
    with pytest.raises(ValueError, match="shaw"):
        fused_attention(
            q,
            k,
            v,
            q_positions=jnp.arange(4),
            k_positions=jnp.arange(4),
            scheme=scheme,
            params=params,
            implementation="xla",
        )


def test_select_implementation_decisions():
    rope = make_scheme("rope")
    base = dict(
        platform="gpu",
        dtype=jnp.bfloat16,
        head_dim=64,
        q_len=1024,
        k_len=1024,
        has_mask=False,
        aligned=True,
        blockwise_threshold=4096,
    )
    assert select_implementation(scheme=rope, **base) == "cudnn"
    assert select_implementation(scheme=make_scheme("shaw"), **base) == "dense"
    assert select_implementation(scheme=rope, **{**base, "platform": "cpu"}) == "dense"
    assert select_implementation(scheme=rope, **{**base, "platform": "tpu"}) == "dense"
    assert select_implementation(scheme=rope, **{**base, "dtype": jnp.float32}) == "dense"
    assert select_implementation(scheme=rope, **{**base, "head_dim": 60}) == "dense"
    assert select_implementation(scheme=rope, **{**base, "head_dim": 256}) == "dense"
    assert select_implementation(scheme=rope, **{**base, "has_mask": True}) == "dense"
    assert select_implementation(scheme=rope, **{**base, "aligned": False}) == "dense"
    assert select_implementation(scheme=rope, **{**base, "q_len": 8192}) == "blockwise"
    assert (
        select_implementation(scheme=rope, **{**base, "q_len": 8192, "blockwise_threshold": None})
        == "cudnn"
    )


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_bias_schemes_in_low_precision_stay_off_cudnn_unless_allowed(dtype):
    """The cuDNN path takes the bias in the activation dtype; the dense and blockwise paths keep
    it in float32, so "auto" sends ALiBi/T5/KERPLE/FIRE there, with the reason."""
    base = dict(platform="gpu", dtype=dtype, head_dim=64, q_len=1024, k_len=1024,
                has_mask=False, aligned=True)  # fmt: skip
    for spec in ("alibi", "t5", "kerple", "fire"):
        choice = explain_implementation(scheme=make_scheme(spec), **base)
        assert choice.implementation == "dense", spec
        assert "logit bias" in choice.reason and "float32" in choice.reason
        allowed = explain_implementation(scheme=make_scheme(spec), low_precision_bias=True, **base)
        assert allowed.implementation == "cudnn"
    long = explain_implementation(scheme=make_scheme("alibi"), **{**base, "q_len": 8192})
    assert long.implementation == "blockwise"
    assert explain_implementation(scheme=make_scheme("rope"), **base).implementation == "cudnn"
    cpu = explain_implementation(scheme=make_scheme("alibi"), **{**base, "platform": "cpu"})
    assert cpu == ("dense", "cuDNN needs a GPU; platform is 'cpu'")


def test_attend_passes_the_low_precision_opt_in_to_the_choice(monkeypatch):
    seen = {}

    def spy(**facts):
        seen.update(facts)
        return "dense"

    monkeypatch.setattr(attention_module, "select_implementation", spy)
    q = jnp.ones((1, 4, 2, 8), jnp.bfloat16)
    pos = jnp.arange(4)
    for opt_in in (False, True):
        attend(q, q, q, q_positions=pos, k_positions=pos, scheme="alibi",
               attention=AttentionConfig(low_precision_bias=opt_in))  # fmt: skip
        assert seen["low_precision_bias"] is opt_in and seen["dtype"] == jnp.bfloat16


def test_fused_xla_path_keeps_the_bias_in_float32_for_bfloat16_inputs():
    """Two keys 2048 and 2056 positions back; the slope 2^-8 head sees biases -8 and -8.03125,
    which bfloat16 rounds to -8 (step 0.0625): the output sigmoid(1/32) would become 0.5."""
    scheme = make_scheme("alibi").configure(causal=True)
    q = jnp.zeros((1, 1, 4, 8), jnp.bfloat16)  # zero logits: the weights are softmax(bias)
    v = jnp.zeros((1, 2, 4, 8), jnp.bfloat16).at[:, 0].set(1.0)
    out = fused_attention(q, jnp.zeros_like(v), v, q_positions=jnp.array([10_000]),
                          k_positions=jnp.array([10_000 - 2048, 10_000 - 2056]), scheme=scheme,
                          causal=False, implementation="xla")  # fmt: skip
    expected = 1.0 / (1.0 + np.exp(-8.0 / 256))  # weight of the nearer key = 0.50781
    np.testing.assert_allclose(float(out[0, 0, 3, 0]), expected, atol=1e-3)


def test_attend_auto_uses_blockwise_above_threshold():
    """Above the threshold "auto" takes the blockwise path: no [B, N, T, S] array is computed."""
    scheme, q, k, v, params = _setup("alibi", True, t=20, s=20)
    pos = jnp.arange(20)
    kw = dict(q_positions=pos, k_positions=pos, scheme=scheme, params=params, causal=True)
    auto = AttentionConfig(blockwise_threshold=8, block_size=8)
    facts = dict(platform="cpu", dtype=q.dtype, head_dim=8, q_len=20, k_len=20, has_mask=False)
    assert select_implementation(scheme=scheme, aligned=False, blockwise_threshold=8, **facts) == (
        "blockwise"
    )
    full = (2, 4, 20, 20)  # [B, N, T, S]
    assert not _materialises(full, lambda q, k, v: attend(q, k, v, attention=auto, **kw), q, k, v)
    # The same check sees the dense path's logits, below the threshold or when asked for.
    for dense in (AttentionConfig(blockwise_threshold=20), AttentionConfig(implementation="dense")):
        assert _materialises(
            full, lambda q, k, v, a=dense: attend(q, k, v, attention=a, **kw), q, k, v
        )
    np.testing.assert_allclose(
        attend(q, k, v, attention=auto, **kw), dense_attention(q, k, v, **kw), atol=1e-5
    )


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        (dict(implementation="xla"), r"implementation must be one of \['auto', 'dense'"),
        (dict(implementation="flash"), "implementation"),
        (dict(blockwise_threshold=0), "blockwise_threshold must be an int >= 1 or None"),
        (dict(blockwise_threshold=2.5), "blockwise_threshold"),
        (dict(block_size=0), "block_size must be an int >= 1"),
        (dict(block_size=True), "block_size"),
        (dict(low_precision_bias="yes"), "low_precision_bias must be True or False"),
    ],
)
def test_attention_config_names_the_bad_field(settings, match):
    with pytest.raises(ValueError, match=match):
        AttentionConfig(**settings)


def test_attention_config_is_frozen_and_hashable():
    config = AttentionConfig(implementation="blockwise", block_size=64)
    assert hash(config) == hash(AttentionConfig(implementation="blockwise", block_size=64))
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.block_size = 8  # type: ignore[misc]


def test_mask_value_far_below_longest_biases():
    # The largest ALiBi slope is 1/2; positions up to 2^31 give |bias| <= 2^30.
    assert MASK_VALUE < -1e20 * 2.0**30
    # A masked logit never wins against the most negative real bias.
    scheme = make_scheme("alibi").configure(causal=True)
    q = jnp.ones((1, 1, 2, 4))
    k = jnp.ones((1, 2, 2, 4))
    v = jnp.stack([jnp.zeros((2, 4)), jnp.ones((2, 4))])[None]
    out = dense_attention(
        q,
        k,
        v,
        q_positions=jnp.array([2**20]),
        k_positions=jnp.array([0, 2**20 + 1]),
        scheme=scheme,
        causal=True,
    )
    np.testing.assert_allclose(out, 0.0)  # only key 0 is allowed, however far away


def test_logit_softcap_is_gemma2_attention_on_every_path():
    """Float64 transcription of transformers' Gemma 2 eager attention
    (models/gemma2/modeling_gemma2.py, eager_attention_forward: scores = q.k * scaling,
    then softcap * tanh(scores / softcap), then the causal and sliding-window mask, then
    softmax): dense and blockwise equal it with the window on and off, GQA included;
    the cuDNN path refuses the cap and auto never takes it."""
    rng = np.random.default_rng(3)
    b, t, n, kv, h, cap = 2, 21, 4, 2, 8, 5.0
    q, k, v = (rng.normal(size=(b, t, m, h)) * 2.0 for m in (n, kv, kv))
    pos = np.arange(t)

    def reference(window):
        kr, vr = np.repeat(k, n // kv, axis=2), np.repeat(v, n // kv, axis=2)
        scores = np.einsum("btnh,bsnh->bnts", q, kr) / np.sqrt(h)
        scores = cap * np.tanh(scores / cap)
        ok = pos[None, :] <= pos[:, None]
        if window is not None:
            ok &= pos[:, None] - pos[None, :] < window
        scores = np.where(ok, scores, -np.inf)
        w = np.exp(scores - scores.max(-1, keepdims=True))
        w /= w.sum(-1, keepdims=True)
        return np.einsum("bnts,bsnh->btnh", w, vr)

    args = [jnp.asarray(x, jnp.float32) for x in (q, k, v)]
    common = dict(q_positions=pos, k_positions=pos, causal=True, logit_softcap=cap)
    for window in (None, 6):
        want = reference(window)
        dense = dense_attention(*args, sliding_window=window, **common)
        tiled = blockwise_attention(*args, sliding_window=window, q_block=8, k_block=4, **common)
        np.testing.assert_allclose(np.asarray(dense), want, atol=2e-5)
        np.testing.assert_allclose(np.asarray(tiled), want, atol=2e-5)
    with pytest.raises(ValueError, match=r"cudnn' takes no .*logit_softcap"):
        attend(*args, attention=AttentionConfig(implementation="cudnn"), **common)
    choice = explain_implementation(
        scheme=make_scheme("rope"), platform="gpu", dtype=jnp.bfloat16, head_dim=64,
        q_len=512, k_len=512, has_mask=False, aligned=True, has_softcap=True,
    )  # fmt: skip
    assert choice.implementation == "dense" and "soft-capping" in choice.reason
