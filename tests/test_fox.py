"""Forgetting attention (FoX) against a float64 transcription of the reference, and the
properties the paper claims.

Reference: zhixuan-lin/forgetting-transformer,
src/forgetting_transformer/ops/forgetting_attention.py, the pure-PyTorch check in
``test_op`` (about lines 994-1026): ``p = q @ k^T * sm_scale``; ``log_lambda =
cumsum(log_fgate)``; ``p += log_lambda[..., :, None] - log_lambda[..., None, :]``; a
``tril`` causal mask; keys before ``seq_start`` (left padding) masked, and the padding
gates zeroed before the cumsum (lines 62-71). The gate is
model/forgetting_transformer/modeling_forgetting_transformer.py: ``fgate_proj =
nn.Linear(hidden_size, num_heads, bias=True)`` (line 244), ``logsigmoid`` of its output
in float32 (lines 372-374).

The scheme-generic checks (blockwise = dense, KV-cache decoding, left padding,
packing, training) run through tests/helpers/schemes.py.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st

from posenc_jax import fox
from posenc_jax.attention import dense_attention, explain_implementation
from posenc_jax.nn import MultiHeadAttention
from posenc_jax.schemes import make_scheme


def _log_sigmoid64(x):
    return -np.logaddexp(0.0, -x)


def reference_fox_layer(x, wq, wk, wv, wo, fw, fb, *, num_heads, key_mask=None):
    """float64 transcription of the reference: gates from x, decay bias, causal softmax.

    x: [B, T, D]; wq/wk/wv: [D, N*H]; wo: [N*H, D]; fw: [D, N]; fb: [N];
    key_mask: [B, T] bool with the padding on the left (the reference's seq_start).
    """
    x = np.asarray(x, np.float64)
    b, t, _ = x.shape
    h = wq.shape[1] // num_heads

    def heads(w):  # [B, N, T, H]
        return (x @ np.asarray(w, np.float64)).reshape(b, t, num_heads, h).transpose(0, 2, 1, 3)

    q, k, v = heads(wq), heads(wk), heads(wv)
    log_fgate = _log_sigmoid64(x @ np.asarray(fw, np.float64) + np.asarray(fb, np.float64))
    log_fgate = log_fgate.transpose(0, 2, 1)  # [B, N, T]
    if key_mask is not None:
        log_fgate = np.where(key_mask[:, None, :], log_fgate, 0.0)  # lines 62-71
    log_lambda = np.cumsum(log_fgate, axis=-1)
    p = q @ k.transpose(0, 1, 3, 2) / np.sqrt(h)
    p = p + log_lambda[..., :, None] - log_lambda[..., None, :]
    allowed = np.tril(np.ones((t, t), bool))[None, None]
    if key_mask is not None:
        allowed = allowed & key_mask[:, None, None, :]
    p = np.where(allowed, p, -np.inf)
    row_max = np.max(p, axis=-1, keepdims=True)
    empty = ~np.isfinite(row_max)  # a query with no key (padding): zeros
    w = np.exp(p - np.where(empty, 0.0, row_max))
    w = np.where(empty, 0.0, w / np.maximum(w.sum(-1, keepdims=True), 1e-300))
    out = (w @ v).transpose(0, 2, 1, 3).reshape(b, t, num_heads * h)
    return out @ np.asarray(wo, np.float64)


def _layer(d_model=16, num_heads=2, bias_init=0.5, seed=0):
    return MultiHeadAttention(
        d_model,
        num_heads=num_heads,
        scheme={"name": "fox", "bias_init": bias_init},
        causal=True,
        rngs=nnx.Rngs(seed),
    )


def _weights(layer):
    params = layer.pos_params.get_value()
    kernels = [p.kernel.get_value() for p in (layer.q_proj, layer.k_proj, layer.v_proj)]
    return (*kernels, layer.o_proj.kernel.get_value(), params["fgate_w"], params["fgate_b"])


def test_layer_equals_the_reference_transcription():
    layer = _layer()
    # Gates far from 0.5 so the decay matters: scale the gate projection up.
    params = layer.pos_params.get_value()
    layer.pos_params.set_value({**params, "fgate_w": 40.0 * params["fgate_w"]})
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 9, 16))
    out = layer(x, positions=jnp.arange(9))
    ref = reference_fox_layer(np.asarray(x), *map(np.asarray, _weights(layer)), num_heads=2)
    np.testing.assert_allclose(out, ref, atol=2e-5, rtol=2e-5)
    # The gates span strong forgetting and near-full memory, so the decay is tested.
    *_, fw, fb = map(np.asarray, _weights(layer))
    gates = _log_sigmoid64(np.asarray(x, np.float64) @ fw + fb)
    assert gates.min() < np.log(0.05) and gates.max() > np.log(0.9)


def test_left_padding_follows_the_reference_seq_start():
    layer = _layer(seed=3)
    x = jax.random.normal(jax.random.PRNGKey(2), (2, 7, 16))
    mask = np.ones((2, 7), bool)
    mask[1, :3] = False  # seq_start = 3 for row 1
    out = layer(x, positions=jnp.arange(7), padding_mask=jnp.asarray(mask))
    ref = reference_fox_layer(
        np.asarray(x), *map(np.asarray, _weights(layer)), num_heads=2, key_mask=mask
    )
    np.testing.assert_allclose(np.asarray(out)[mask], ref[mask], atol=2e-5, rtol=2e-5)


def test_pure_functions_against_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, 6)).astype(np.float32)
    w, b = rng.normal(size=(6, 3)).astype(np.float32), rng.normal(size=3).astype(np.float32)
    log_f = fox.log_forget_gates(jnp.asarray(x), jnp.asarray(w), jnp.asarray(b))
    ref = _log_sigmoid64(x.astype(np.float64) @ w + b)
    np.testing.assert_allclose(log_f, ref, rtol=1e-5, atol=1e-6)
    carry = rng.normal(size=(2, 3)).astype(np.float32)
    cum, last = fox.cumulative_log_forget(log_f, jnp.asarray(carry))
    np.testing.assert_allclose(cum, carry[:, None] + np.cumsum(ref, axis=1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(last, cum[:, -1])
    bias = fox.fox_bias(cum, cum)  # [B, N, T, S]
    c = np.asarray(cum, np.float64).transpose(0, 2, 1)
    np.testing.assert_allclose(bias, c[..., :, None] - c[..., None, :], rtol=1e-5, atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(
    gates=st.lists(st.floats(1e-3, 1.0 - 1e-3), min_size=2, max_size=12),
    carry=st.floats(-50.0, 50.0),
)
def test_decay_is_the_product_of_the_gates_between_key_and_query(gates, carry):
    """exp(bias_ij) = prod_{l=j+1..i} f_l: 1 on the diagonal, shrinking with distance."""
    f = np.asarray(gates, np.float64)
    log_f = jnp.asarray(np.log(f), jnp.float32)[None, :, None]  # [1, T, 1]
    cum, _ = fox.cumulative_log_forget(log_f, jnp.full((1, 1), carry, jnp.float32))
    bias = np.asarray(fox.fox_bias(cum, cum))[0, 0]  # [T, T]
    t = len(gates)
    for i in range(t):
        want = np.array([np.sum(np.log(f[j + 1 : i + 1])) for j in range(i + 1)])
        np.testing.assert_allclose(bias[i, : i + 1], want, atol=2e-4 + 1e-5 * abs(carry))
        assert np.all(np.diff(bias[i, : i + 1]) >= -1e-4)  # nearer keys decay less


def _attend_fox(q, k, v, states):
    return dense_attention(
        q,
        k,
        v,
        q_positions=jnp.arange(q.shape[1]),
        k_positions=jnp.arange(k.shape[1]),
        scheme="fox",
        causal=True,
        q_state=states,
        k_state=states,
    )


@settings(max_examples=10, deadline=None)
@given(shift=st.floats(-1e3, 1e3), seed=st.integers(0, 2**16))
def test_a_common_offset_of_the_states_changes_nothing(shift, seed):
    """What makes the KV cache's carry and packed rows exact: only differences count."""
    keys = jax.random.split(jax.random.PRNGKey(seed), 4)
    q, k, v = (jax.random.normal(kk, (1, 6, 2, 4)) for kk in keys[:3])
    states = jnp.cumsum(jax.nn.log_sigmoid(jax.random.normal(keys[3], (1, 6, 2))), axis=1)
    base = _attend_fox(q, k, v, states)
    moved = _attend_fox(q, k, v, states + shift)
    np.testing.assert_allclose(moved, base, atol=2e-4, rtol=1e-3)


def test_gates_of_one_give_plain_softmax_attention():
    """FoX generalises softmax attention: f = 1 everywhere is NoPE."""
    keys = jax.random.split(jax.random.PRNGKey(5), 3)
    q, k, v = (jax.random.normal(kk, (2, 8, 2, 4)) for kk in keys)
    states = jnp.zeros((2, 8, 2))  # log f = 0
    nope = dense_attention(
        q, k, v, q_positions=jnp.arange(8), k_positions=jnp.arange(8), causal=True
    )
    np.testing.assert_allclose(_attend_fox(q, k, v, states), nope, atol=1e-6)


def test_bad_use_is_a_clear_error():
    with pytest.raises(ValueError, match="fox is causal only"):
        make_scheme("fox").configure(causal=False)
    with pytest.raises(ValueError, match="fox needs a finite bias_init"):
        make_scheme({"name": "fox", "bias_init": float("inf")})
    q = jnp.ones((1, 3, 2, 4))
    pos = jnp.arange(3)
    with pytest.raises(ValueError, match=r"pass q_state of shape \[1, 3, 2\]"):
        dense_attention(q, q, q, q_positions=pos, k_positions=pos, scheme="fox", causal=True)
    with pytest.raises(ValueError, match=r"k_state must have shape \[1, 3, 2\]; got \[1, 3, 5\]"):
        dense_attention(
            q,
            q,
            q,
            q_positions=pos,
            k_positions=pos,
            scheme="fox",
            causal=True,
            q_state=jnp.zeros((1, 3, 2)),
            k_state=jnp.zeros((1, 3, 5)),
        )


def test_the_fused_kernel_is_refused_with_the_reason():
    choice = explain_implementation(
        scheme=make_scheme("fox"),
        platform="gpu",
        dtype=jnp.bfloat16,
        head_dim=64,
        q_len=512,
        k_len=512,
        has_mask=False,
        aligned=True,
    )
    assert choice.implementation == "dense"
    assert "reads q, k or the tokens" in choice.reason
