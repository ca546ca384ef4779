"""The dense path's hand-written backward (``backward="manual"``) against a float64
transcription of the softmax's chain rule, and against JAX's own derivative of the
reference formula (``backward="autodiff"``) for every scheme that takes it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posenc_jax.attention import AttentionConfig, attend, dense_attention
from posenc_jax.schemes import make_scheme


def _numpy_attention_and_grads(q, k, v, bias, allowed, g):
    """float64: out = softmax(where(allowed, q.k / sqrt(h) + bias, -inf)) v (rows with no
    key: 0) and the gradients of sum(out * g), by the chain rule written out term by term:
    dV = P^T g, dP = g V^T, dS_ij = P_ij (dP_ij - sum_k P_ik dP_ik), dQ = dS K / sqrt(h),
    dK = dS^T Q / sqrt(h), dBias = dS. q [B, T, N, H]; k, v [B, S, K, H] (K | N heads
    share a key head); bias, allowed broadcastable to [B, N, T, S]."""
    q, k, v, bias, g = (np.asarray(a, np.float64) for a in (q, k, v, bias, g))
    n, kv, h = q.shape[2], k.shape[2], q.shape[3]
    rep = n // kv
    k_full, v_full = np.repeat(k, rep, axis=2), np.repeat(v, rep, axis=2)
    s = np.einsum("btnh,bsnh->bnts", q, k_full) / np.sqrt(h) + bias
    allowed = np.broadcast_to(allowed, s.shape)
    s = np.where(allowed, s, -np.inf)
    top = s.max(-1, keepdims=True)
    e = np.exp(s - np.where(np.isfinite(top), top, 0.0))
    total = e.sum(-1, keepdims=True)
    p = np.divide(e, total, out=np.zeros_like(e), where=total > 0)
    out = np.einsum("bnts,bsnh->btnh", p, v_full)
    dv_full = np.einsum("bnts,btnh->bsnh", p, g)
    dp = np.einsum("btnh,bsnh->bnts", g, v_full)
    ds = p * (dp - np.sum(p * dp, axis=-1, keepdims=True))
    dq = np.einsum("bnts,bsnh->btnh", ds, k_full) / np.sqrt(h)
    dk_full = np.einsum("bnts,btnh->bsnh", ds, q) / np.sqrt(h)
    b, s_len = q.shape[0], k.shape[1]
    dk = dk_full.reshape(b, s_len, kv, rep, h).sum(3)
    dv = dv_full.reshape(b, s_len, kv, rep, h).sum(3)
    return out, (dq, dk, dv, ds)


def _sum_to(x, shape):
    lead = x.ndim - len(shape)
    x = x.sum(tuple(range(lead)))
    axes = tuple(i for i, d in enumerate(shape) if d == 1 and x.shape[i] != 1)
    return x.sum(axes, keepdims=True)


@settings(max_examples=8, deadline=None)
@given(
    b=st.integers(1, 2),
    t=st.integers(1, 7),
    extra_keys=st.integers(0, 3),
    heads=st.sampled_from([(2, 2), (4, 2), (4, 1)]),
    causal=st.booleans(),
    bias_shape=st.sampled_from(["bnts", "nts", "1n1s", "none"]),
    empty_row=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_manual_backward_matches_float64_chain_rule(
    b, t, extra_keys, heads, causal, bias_shape, empty_row, seed
):
    n, kv = heads
    s_len, h = t + extra_keys, 4
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(b, t, n, h)).astype(np.float32)
    k = rng.normal(size=(b, s_len, kv, h)).astype(np.float32)
    v = rng.normal(size=(b, s_len, kv, h)).astype(np.float32)
    g = rng.normal(size=(b, t, n, h)).astype(np.float32)
    shapes = {"bnts": (b, n, t, s_len), "nts": (n, t, s_len), "1n1s": (1, n, 1, s_len)}
    bias = None if bias_shape == "none" else rng.normal(size=shapes[bias_shape]).astype(np.float32)
    key_mask = rng.random((b, s_len)) < 0.8
    if empty_row:
        key_mask[0] = False  # the first row's queries attend to nothing
    q_pos, k_pos = np.arange(extra_keys, extra_keys + t), np.arange(s_len)
    allowed = key_mask[:, None, None, :]
    if causal:
        allowed = allowed & (k_pos[None, :] <= q_pos[:, None])[None, None]

    def f(q, k, v, bias):
        return dense_attention(
            q, k, v, q_positions=q_pos, k_positions=k_pos, causal=causal, key_mask=key_mask,
            bias=bias,
        )  # fmt: skip

    args = [q, k, v] if bias is None else [q, k, v, bias]
    out, vjp = jax.vjp(lambda *a: f(a[0], a[1], a[2], a[3] if len(a) > 3 else None), *args)
    grads = vjp(jnp.asarray(g))
    ref_out, (dq, dk, dv, ds) = _numpy_attention_and_grads(
        q, k, v, 0.0 if bias is None else bias, allowed, g
    )
    np.testing.assert_allclose(out, ref_out, atol=2e-5, rtol=1e-4)
    refs = [dq, dk, dv] + ([] if bias is None else [_sum_to(ds, bias.shape)])
    assert len(grads) == len(args)
    for got, want in zip(grads, refs, strict=True):
        assert got.shape == want.shape
        assert np.all(np.isfinite(got))
        np.testing.assert_allclose(got, want, atol=5e-5, rtol=1e-4)
    if empty_row:
        np.testing.assert_array_equal(out[0], 0.0)
        np.testing.assert_array_equal(grads[0][0], 0.0)


# Every kind of logit term: fixed (ALiBi), learned tables and functions (T5, KERPLE,
# FIRE), reading the mask (CoPE), per-token states (FoX), reading q and k (XL, DeBERTa).
SCHEMES = [
    "alibi",
    {"name": "t5", "num_buckets": 8},
    "kerple",
    "fire",
    "cope",
    "fox",
    "xl",
    "deberta",
]


@pytest.mark.parametrize("spec", SCHEMES, ids=str)
def test_manual_and_autodiff_backward_agree_for_every_scheme(spec):
    """Learned bias parameters (T5's table, KERPLE's, FIRE's MLP, CoPE's, the
    Transformer-XL and DeBERTa projections) get the same gradients either way."""
    scheme = make_scheme(spec).configure(causal=True)
    b, t, n, h = 2, 6, 4, 8
    keys = jax.random.split(jax.random.key(0), 5)
    q, k, v = (jax.random.normal(keys[i], (b, t, n, h)) for i in range(3))
    params = scheme.init_attention_params(keys[3], num_heads=n, head_dim=h)
    params = jax.tree.map(lambda x: 3.0 * x if jnp.issubdtype(x.dtype, jnp.floating) else x, params)
    states = {}
    if "token_state" in scheme.hooks:
        state = jax.nn.log_sigmoid(jax.random.normal(keys[4], (b, t, n)))
        states = dict(q_state=state, k_state=state)
    pos = jnp.arange(t)
    key_mask = jnp.ones((b, t), bool).at[1, :2].set(False)

    def loss(backward, q, k, v, params):
        out = dense_attention(
            q, k, v, q_positions=pos, k_positions=pos, scheme=scheme, params=params,
            causal=True, key_mask=key_mask, backward=backward, **states,
        )  # fmt: skip
        return jnp.sum(jnp.sin(out))

    manual = jax.value_and_grad(loss, argnums=(1, 2, 3, 4))("manual", q, k, v, params)
    auto = jax.value_and_grad(loss, argnums=(1, 2, 3, 4))("autodiff", q, k, v, params)
    np.testing.assert_allclose(manual[0], auto[0], rtol=1e-5)
    flat_m, flat_a = jax.tree.leaves(manual[1]), jax.tree.leaves(auto[1])
    assert len(flat_m) == len(flat_a) and flat_m
    for m, a in zip(flat_m, flat_a, strict=True):
        np.testing.assert_allclose(m, a, atol=2e-5, rtol=1e-4)


def test_manual_backward_in_bfloat16_keeps_dtypes_and_matches_float32():
    keys = jax.random.split(jax.random.key(1), 3)
    q, k, v = (jax.random.normal(keys[i], (2, 16, 2, 8)) for i in range(3))
    pos = jnp.arange(16)

    def loss(q, k, v):
        out = dense_attention(
            q, k, v, q_positions=pos, k_positions=pos, scheme="alibi", causal=True
        )
        return jnp.sum(out.astype(jnp.float32) ** 2), out

    (_, out16), g16 = jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)(
        *(x.astype(jnp.bfloat16) for x in (q, k, v))
    )
    (_, out32), g32 = jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)(q, k, v)
    assert out16.dtype == jnp.bfloat16 and all(g.dtype == jnp.bfloat16 for g in g16)
    np.testing.assert_allclose(out16.astype(np.float32), out32, atol=3e-2)
    for a, b in zip(g16, g32, strict=True):
        np.testing.assert_allclose(a.astype(np.float32), b, atol=0.1, rtol=0.05)


def test_forward_mode_needs_the_autodiff_backward():
    q = k = v = jnp.ones((1, 3, 2, 4))
    pos = jnp.arange(3)

    def f(q, backward):
        return dense_attention(
            q, k, v, q_positions=pos, k_positions=pos, causal=True, backward=backward
        )

    primal, tangent = jax.jvp(lambda x: f(x, "autodiff"), (q,), (jnp.ones_like(q),))
    assert primal.shape == tangent.shape == q.shape
    # Every key sees the same logit change, so the weights do not move: v is constant.
    np.testing.assert_allclose(tangent, 0.0, atol=1e-6)
    with pytest.raises(TypeError, match="custom_vjp"):
        jax.jvp(lambda x: f(x, "manual"), (q,), (jnp.ones_like(q),))


def test_attend_passes_the_configured_backward_to_the_dense_path():
    q = k = v = jnp.ones((1, 3, 2, 4))
    pos = jnp.arange(3)
    config = AttentionConfig(implementation="dense", dense_backward="autodiff")
    # jax.jvp raises through the manual backward: this passes only if attend hands the
    # dense path the configured "autodiff".
    out, tangent = jax.jvp(
        lambda x: attend(x, k, v, q_positions=pos, k_positions=pos, causal=True, attention=config),
        (q,),
        (jnp.ones_like(q),),
    )
    assert out.shape == tangent.shape


def test_bad_backward_names_the_argument_and_the_choices():
    q = k = v = jnp.ones((1, 3, 2, 4))
    pos = jnp.arange(3)
    with pytest.raises(ValueError, match=r"backward must be one of \['manual', 'autodiff'\]"):
        dense_attention(q, k, v, q_positions=pos, k_positions=pos, backward="fast")
    with pytest.raises(ValueError, match=r"dense_backward must be one of \['manual', 'autodiff'\]"):
        AttentionConfig(dense_backward="fast")
