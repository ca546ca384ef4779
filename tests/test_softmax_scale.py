"""Length-scaled softmax: log n, Qwen's logn, SSMax and Llama 4's temperature, with any scheme.

References (float64 transcriptions, not restatements of the implementation):

* Chiang & Cholak 2022 (arXiv 2202.12172), log-length scaled attention:
  ``softmax(log(n) * q . K^T / sqrt(d))``.
* Qwen-7B ``modeling_qwen.py``, ``QWenAttention.__init__``: ``logn_list =
  [math.log(i, self.seq_length) if i > self.seq_length else 1 for i in range(1,
  32768)]``, and ``QWenAttention.forward``: the query at index p times entry p.
* Nakanishi 2025 (arXiv 2501.19399), SSMax: ``z_i -> n^{s z_i} / sum_j n^{s z_j}``.
* transformers 5.24 ``models/llama4/modeling_llama4.py`` lines 363-367:
  ``torch.log1p(torch.floor((positions.float() + 1.0) / self.floor_scale)) *
  self.attn_scale + 1.0`` times the query states.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st

from posenc_jax import softmax_scale as ss
from posenc_jax.attention import AttentionConfig, attention_weights
from posenc_jax.nn import TransformerEncoder, TransformerLM

HYP = settings(max_examples=25, deadline=None)


# --------------------------------------------------------------------------------------------
# Golden values
# --------------------------------------------------------------------------------------------


def test_logn_is_log_of_the_key_count():
    n = np.array([1, 2, 3, 100, 4096, 10**6])
    np.testing.assert_allclose(ss.logn_multiplier(jnp.asarray(n)), np.log(n), rtol=1e-6)
    positions = jnp.array([-3, 0, 5])  # negative positions count as 0: n = 1, finite
    np.testing.assert_array_equal(ss.causal_key_count(positions), [1.0, 1.0, 6.0])


@pytest.mark.parametrize("train_length", [2, 8, 2048])
def test_qwen_matches_logn_list(train_length):
    seq_length = train_length
    logn_list = [math.log(i, seq_length) if i > seq_length else 1 for i in range(1, 32768)]
    positions = np.concatenate([np.arange(40), np.arange(2000, 2100), [32766]])
    ref = np.asarray(logn_list, np.float64)[positions]  # the query at index p gets entry p
    got = ss.qwen_logn_multiplier(jnp.asarray(positions), train_length=train_length)
    np.testing.assert_allclose(got, ref, rtol=1e-6)


@pytest.mark.parametrize(("floor_scale", "attn_scale"), [(8192.0, 0.1), (4.0, 0.5)])
def test_llama4_matches_transformers(floor_scale, attn_scale):
    positions = np.concatenate([np.arange(0, 64), np.arange(8180, 8200), [10**6]])
    ref = np.log1p(np.floor((positions + 1.0) / floor_scale)) * attn_scale + 1.0
    got = ss.llama4_multiplier(
        jnp.asarray(positions), floor_scale=floor_scale, attn_scale=attn_scale
    )
    np.testing.assert_allclose(got, ref, rtol=1e-6)


def test_ssmax_weights_are_n_to_the_power_s_z():
    """Scaled queries through the attention path give n^{s z_i} / sum_j n^{s z_j}."""
    rng = np.random.default_rng(0)
    t, n_heads, h = 6, 2, 4
    q, k = rng.normal(size=(2, 1, t, n_heads, h))
    s = np.array([0.7, 1.3])
    positions = np.arange(t)
    m = ss.ssmax_multiplier(ss.causal_key_count(jnp.asarray(positions))[None], jnp.asarray(s))
    qs = ss.scale_queries(jnp.asarray(q, jnp.float32), m)  # m: [1, T, N]
    weights = jax.jit(functools.partial(attention_weights, causal=True))
    w = weights(qs, jnp.asarray(k, jnp.float32), q_positions=positions, k_positions=positions)
    z = np.einsum("btnh,bsnh->bnts", q, k) / math.sqrt(h)  # the plain logits
    for i in range(t):
        n = i + 1  # keys seen by a causal query at position i
        for head in range(n_heads):
            num = float(n) ** (s[head] * z[0, head, i, :n])
            np.testing.assert_allclose(w[0, head, i, :n], num / num.sum(), rtol=1e-5)
            np.testing.assert_array_equal(w[0, head, i, n:], 0.0)


# --------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("train_length", "floor_scale"))
def _all_multipliers(positions, s, *, train_length, floor_scale):
    n = ss.causal_key_count(positions)
    return (
        ss.logn_multiplier(n),
        ss.qwen_logn_multiplier(positions, train_length=train_length),
        ss.ssmax_multiplier(n, s),
        ss.llama4_multiplier(positions, floor_scale=floor_scale),
    )


@HYP
@given(
    positions=st.lists(st.integers(0, 2**24), min_size=8, max_size=8),
    train_length=st.sampled_from([2, 64, 4096]),
    floor_scale=st.sampled_from([1.0, 8.0, 8192.0]),
    s=st.floats(0.0, 4.0),
)
def test_multipliers_are_monotone_and_qwen_is_one_inside_the_training_length(
    positions, train_length, floor_scale, s
):
    p = jnp.asarray(sorted(positions))
    out = _all_multipliers(
        p, jnp.array([s, 1.0]), train_length=train_length, floor_scale=floor_scale
    )
    for m in out:
        m = np.asarray(m).reshape(len(positions), -1)
        assert np.all(np.isfinite(m))
        assert np.all(np.diff(m, axis=0) >= 0)  # non-decreasing in position
    qwen, llama4 = np.asarray(out[1]), np.asarray(out[3])
    inside = np.asarray(p) < train_length
    np.testing.assert_array_equal(qwen[inside], 1.0)
    assert np.all(qwen[~inside] > 1.0)
    assert np.all(llama4 >= 1.0)


@jax.jit
def _ssmax_and_plain_weights(q, k, s):
    positions = jnp.arange(q.shape[1])
    m = ss.ssmax_multiplier(ss.causal_key_count(positions)[None], s)  # [1, T, N]
    kw = dict(q_positions=positions, k_positions=positions, causal=True)
    return (
        attention_weights(ss.scale_queries(q, m), k, **kw),
        attention_weights(q, k, **kw),
    )


@HYP
@given(seed=st.integers(0, 2**16), n_ref=st.integers(2, 12))
def test_ssmax_with_s_one_over_log_n_ref_is_plain_softmax_at_n_ref(seed, n_ref):
    rng = np.random.default_rng(seed)
    q, k = jnp.asarray(rng.normal(size=(2, 1, 12, 2, 4)), jnp.float32)
    s = jnp.full((2,), 1.0 / math.log(n_ref), jnp.float32)
    scaled, plain = _ssmax_and_plain_weights(q, k, s)
    row = n_ref - 1  # the query that sees n_ref keys
    np.testing.assert_allclose(scaled[:, :, row], plain[:, :, row], atol=1e-6)


# --------------------------------------------------------------------------------------------
# In the models: every path and decoding get it
# --------------------------------------------------------------------------------------------


@nnx.jit
def _forward(model, tokens, segment_ids=None, padding_mask=None):
    return model(tokens, segment_ids=segment_ids, padding_mask=padding_mask)


@nnx.jit
def _decode(model, tokens, positions):
    return model(tokens, positions=positions, decode=True)


def test_blockwise_equals_dense_and_decoding_equals_the_full_forward():
    """One tiny RoPE model with SSMax (per-head s that differ); the paths share the q scaling."""

    def lm(implementation):
        model = TransformerLM(
            13,
            scheme="rope",
            num_layers=1,
            d_model=16,
            num_heads=2,
            softmax_scale="ssmax",
            attention=AttentionConfig(implementation=implementation, block_size=3),
            rngs=nnx.Rngs(0),
        )  # the same weights for both paths (s is not drawn from the rngs)
        model.blocks[0].attn.softmax_scale_params.set_value({"s": jnp.array([0.4, 1.7])})
        return model

    tokens = jnp.asarray(np.random.default_rng(1).integers(0, 13, (2, 8)))
    dense = lm("dense")
    full = _forward(dense, tokens)
    np.testing.assert_allclose(_forward(lm("blockwise"), tokens), full, atol=2e-5)
    dense.init_cache(2, 8)
    steps = [_decode(dense, tokens[:, :5], jnp.arange(5)[None])]
    for t in range(5, 8):
        steps.append(_decode(dense, tokens[:, t : t + 1], jnp.array([[t]])))
    np.testing.assert_allclose(jnp.concatenate(steps, axis=1), full, atol=2e-5)
    params = nnx.state(dense, nnx.Param)
    assert params["blocks"][0]["attn"]["softmax_scale_params"].get_value()["s"].shape == (2,)


def test_encoder_counts_the_real_keys_of_each_segment():
    """logn, bidirectional: n = the allowed keys, so padding and packing change nothing."""
    model = TransformerEncoder(
        13, scheme="alibi", num_layers=1, d_model=16, num_heads=2, softmax_scale="logn",
        rngs=nnx.Rngs(0),
    )  # fmt: skip
    tokens = jnp.asarray(np.random.default_rng(2).integers(1, 13, (1, 5)))
    alone = _forward(model, tokens)
    # Row 0: the tokens then 3 padding slots; row 1: the tokens packed with a second document.
    both = jnp.concatenate([jnp.pad(tokens, ((0, 0), (0, 3))), tokens[:, [0, 1, 2, 3, 4, 0, 1, 2]]])
    segment_ids = jnp.array([[0] * 8, [0] * 5 + [1] * 3])
    padding_mask = jnp.array([[True] * 5 + [False] * 3, [True] * 8])
    out = _forward(model, both, segment_ids, padding_mask)
    np.testing.assert_allclose(out[:, :5], jnp.concatenate([alone, alone]), atol=2e-5)


def test_ssmax_scale_gets_a_gradient():
    rng = np.random.default_rng(3)
    q, k = jnp.asarray(rng.normal(size=(2, 1, 6, 2, 4)), jnp.float32)
    positions = jnp.arange(6)

    def loss(s):
        m = ss.ssmax_multiplier(ss.causal_key_count(positions)[None], s)
        w = attention_weights(
            ss.scale_queries(q, m), k, q_positions=positions, k_positions=positions, causal=True
        )
        return jnp.sum(w[..., 0] ** 2)

    g = jax.jit(jax.grad(loss))(jnp.array([0.5, 1.5]))
    assert np.all(np.isfinite(g)) and np.all(g != 0)


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("softmax", "kind must be one of"),
        ({"train_length": 4}, "needs a 'kind'"),
        ({"kind": "qwen"}, "needs train_length"),
        ({"kind": "qwen", "train_length": 1}, "train_length >= 2"),
        ({"kind": "logn", "train_length": 64}, "takes no train_length"),
        ({"kind": "llama4", "floor_scale": 0}, "floor_scale"),
        ({"kind": "llama4", "attn_scale": -0.1}, "attn_scale"),
        ({"kind": "ssmax", "s_init": math.inf}, "s_init"),
        ({"kind": "ssmax", "scale": 1.0}, "unknown setting"),
        (3, "softmax_scale must be"),
    ],
)
def test_bad_settings_raise(spec, match):
    with pytest.raises(ValueError, match=match):
        ss.make_softmax_scale(spec)


def test_scale_queries_checks_the_multiplier_shape():
    q = jnp.ones((2, 3, 4, 8))
    with pytest.raises(ValueError, match=r"\[T\], \[B, T\] or \[B, T, N\]"):
        ss.scale_queries(q, jnp.ones((2, 3, 4, 1)))
    with pytest.raises(ValueError, match="does not fit"):
        ss.scale_queries(q, jnp.ones((5,)))
    assert ss.scale_queries(q.astype(jnp.bfloat16), jnp.ones((2, 3))).dtype == jnp.bfloat16
