"""Transformer-XL / XLNet: float64 transcription of A^rel (Dai et al. 2019, eq. in section 3.3),
positions terms that depend on i - j only, and the scheme's hooks and errors."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posenc_jax.attention import (
    attention_weights,
    blockwise_attention,
    dense_attention,
    fused_attention,
    select_implementation,
)
from posenc_jax.schemes import Scheme, make_scheme
from posenc_jax.transformer_xl import xl_relative_logits

PROPS = settings(max_examples=20, deadline=None)


def _sinusoid64(p, dim, base=10000.0):
    """R_p (Vaswani et al. 2017): R[2f] = sin(p w_f), R[2f+1] = cos(p w_f), w_f = base^(-2f/dim)."""
    w = base ** (-np.arange(0, dim, 2, dtype=np.float64) / dim)
    ang = np.asarray(p, np.float64)[..., None] * w
    out = np.empty((*ang.shape[:-1], dim))
    out[..., 0::2], out[..., 1::2] = np.sin(ang), np.cos(ang)
    return out


def _a_rel64(q, k, w_r, u, v, q_pos, k_pos):
    """A^rel_ij = q_i.k_j + q_i.W_R R_{i-j} + u.k_j + v.W_R R_{i-j}, per head, over sqrt(H).

    q: [T, N, H], k: [S, N, H], w_r: [D_r, N, H], u, v: [N, H]; returns [N, T, S].
    """
    q, k, w_r, u, v = (np.asarray(x, np.float64) for x in (q, k, w_r, u, v))
    rel = np.asarray(q_pos)[:, None] - np.asarray(k_pos)[None, :]  # i - j: [T, S]
    r = _sinusoid64(rel, w_r.shape[0])  # [T, S, D_r]
    wr = np.einsum("tsr,rnh->tsnh", r, w_r)  # W_R R_{i-j}: [T, S, N, H]
    a = np.einsum("tnh,snh->nts", q, k)
    b = np.einsum("tnh,tsnh->nts", q, wr)
    c = np.einsum("nh,snh->ns", u, k)[:, None, :]
    d = np.einsum("nh,tsnh->nts", v, wr)
    return (a + b + c + d) / math.sqrt(q.shape[-1])


def _softmax64(logits, allowed):
    x = np.where(allowed, logits, -np.inf)
    x = np.exp(x - x.max(-1, keepdims=True))
    return x / x.sum(-1, keepdims=True)


def _random(seed, *shapes):
    keys = jax.random.split(jax.random.PRNGKey(seed), len(shapes))
    return [
        np.asarray(jax.random.normal(k, s), np.float64) for k, s in zip(keys, shapes, strict=True)
    ]


@pytest.mark.parametrize("offset", [0, 1_000_000])
def test_position_terms_match_the_paper(offset):
    """(b) + (d) = (q_i + v) . W_R R_{i-j}, at arbitrary and large positions."""
    q, w_r, v = _random(0, (2, 5, 3, 4), (12, 3, 4), (3, 4))
    q_pos = np.array([0, 3, 4, 9, 30]) + offset
    k_pos = np.array([1, 2, 4, 8, 9, 40, 41]) + offset
    out = np.asarray(xl_relative_logits(jnp.asarray(q + v, jnp.float32), w_r, q_pos, k_pos))
    rel = q_pos[:, None] - k_pos[None, :]
    wr = np.einsum("tsr,rnh->tsnh", _sinusoid64(rel, 12), w_r)
    ref = np.einsum("btnh,tsnh->bnts", q + v, wr)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=2e-4)
    # Per-row positions [B, T] / [B, S] give the same as shared ones.
    batched = xl_relative_logits(
        jnp.asarray(q + v, jnp.float32), w_r, np.stack([q_pos] * 2), np.stack([k_pos] * 2)
    )
    np.testing.assert_allclose(batched, out, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("causal", [True, False])
def test_scheme_attention_is_the_softmax_of_a_rel(causal):
    """The scheme through attention_weights: Transformer-XL (causal) and XLNet (bidirectional)."""
    t, n, h = 6, 2, 4
    q, k, w_r, u, v = _random(1, (1, t, n, h), (1, t, n, h), (8, n, h), (n, h), (n, h))
    scheme = make_scheme({"name": "xl", "dim": 8}).configure(causal=causal)
    params = {"w_r": w_r, "u": u, "v": v}
    params = {key: jnp.asarray(val, jnp.float32) for key, val in params.items()}
    pos = np.arange(t) + 50
    weights = attention_weights(
        jnp.asarray(q, jnp.float32),
        jnp.asarray(k, jnp.float32),
        q_positions=pos,
        k_positions=pos,
        scheme=scheme,
        params=params,
        causal=causal,
    )
    logits = _a_rel64(q[0], k[0], w_r, u, v, pos, pos)
    allowed = pos[None, :] <= pos[:, None] if causal else np.ones((t, t), bool)
    np.testing.assert_allclose(weights[0], _softmax64(logits, allowed), atol=2e-5)


@pytest.mark.parametrize("batched", [False, True])
def test_clamp_len_reuses_r_at_the_clamp(batched):
    """The authors' clamp_len: R_{clip(i - j, -c, c)} (XLNet clamps both signs)."""
    q, w_r = _random(4, (2, 5, 2, 4), (8, 2, 4))
    q_pos = np.array([0, 3, 9, 20, 21])
    k_pos = np.array([0, 1, 2, 3, 9, 15, 26, 40])
    qp, kp = (
        (np.stack([q_pos, q_pos + 7]), np.stack([k_pos, k_pos + 7])) if batched else (q_pos, k_pos)
    )
    out = xl_relative_logits(jnp.asarray(q, jnp.float32), w_r, qp, kp, clamp_len=5)
    rel = np.clip(q_pos[:, None] - k_pos[None, :], -5, 5)
    ref = np.einsum("btnh,tsnh->bnts", q, np.einsum("tsr,rnh->tsnh", _sinusoid64(rel, 8), w_r))
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=2e-5)
    scheme = make_scheme({"name": "xl", "clamp_len": 5})
    assert make_scheme(scheme.to_config()) == scheme


@PROPS
@given(
    shift=st.integers(-(2**20), 2**20),
    pos=st.lists(st.integers(0, 4000), min_size=6, max_size=6),
)
def test_position_terms_depend_on_i_minus_j_only(shift, pos):
    """The same query vector at every position: the term is a function of i - j."""
    q, w_r = _random(2, (1, 1, 2, 4), (8, 2, 4))
    q = jnp.broadcast_to(jnp.asarray(q, jnp.float32), (1, 6, 2, 4))
    pos = np.array(pos)
    a = np.asarray(xl_relative_logits(q, w_r, pos, pos))
    b = np.asarray(xl_relative_logits(q, w_r, pos + shift, pos + shift))
    np.testing.assert_allclose(a, b, atol=2e-4)
    rel = (pos[:, None] - pos[None, :]).ravel()
    flat = a.reshape(2, -1)
    for d in np.unique(rel):
        same = flat[:, rel == d]
        np.testing.assert_allclose(same, same[:, :1].repeat(same.shape[1], 1), atol=2e-4)


def test_grad_reaches_w_r_and_the_query():
    q, w_r = _random(3, (1, 3, 1, 2), (4, 1, 2))
    pos = jnp.arange(3)

    def loss(q, w_r):
        return jnp.sum(jnp.sin(xl_relative_logits(q, w_r, pos, pos)))

    gq, gw = jax.grad(loss, argnums=(0, 1))(jnp.asarray(q, jnp.float32), jnp.asarray(w_r))
    assert np.all(np.isfinite(gq)) and np.any(gq != 0)
    assert np.all(np.isfinite(gw)) and np.any(gw != 0)


class _KeySum(Scheme):
    """A key-reading logit term, 0.1 * sum_h k_j (no position): the contract of ``k=``."""

    hooks = frozenset({"logit_bias"})
    needs_k_for_bias = True

    def logit_bias(self, params, q, q_positions, k_positions, *, k):
        assert k.shape[2] == q.shape[2]  # key heads repeated to the query heads
        assert k.shape[1] == jnp.shape(k_positions)[-1]  # the tile's keys, blockwise
        return 0.1 * jnp.sum(k, -1)[:, :, None, :].transpose(0, 3, 2, 1)  # [B, N, 1, S]


def test_attention_hands_the_keys_to_a_key_reading_logit_term():
    q, k, v = _random(5, (2, 9, 4, 4), (2, 11, 2, 4), (2, 11, 2, 4))
    q, k, v = (jnp.asarray(x, jnp.float32) for x in (q, k, v))
    pos = dict(q_positions=jnp.arange(9) + 2, k_positions=jnp.arange(11))
    weights = attention_weights(q, k, scheme=_KeySum(), causal=True, **pos)
    k_rep = np.repeat(np.asarray(k, np.float64), 2, axis=2)  # [B, S, N, H]
    logits = np.einsum("btnh,bsnh->bnts", np.asarray(q, np.float64), k_rep) / 2.0
    logits = logits + 0.1 * k_rep.sum(-1).transpose(0, 2, 1)[:, :, None, :]
    allowed = np.arange(11)[None, :] <= (np.arange(9) + 2)[:, None]
    np.testing.assert_allclose(weights, _softmax64(logits, allowed), atol=1e-6)
    dense = dense_attention(q, k, v, scheme=_KeySum(), causal=True, **pos)
    block = blockwise_attention(q, k, v, scheme=_KeySum(), causal=True, q_block=4, k_block=3, **pos)
    np.testing.assert_allclose(block, dense, atol=1e-5)


def test_scheme_reads_q_and_k_so_no_fused_kernel():
    scheme = make_scheme("xl")
    assert scheme.needs_q_for_bias and scheme.needs_k_for_bias
    kw = dict(platform="gpu", dtype=jnp.bfloat16, head_dim=64, q_len=8, k_len=8)
    assert select_implementation(scheme=scheme, has_mask=False, aligned=True, **kw) == "dense"
    x = jnp.ones((1, 2, 1, 2))
    with pytest.raises(ValueError, match="reads q, k or the tokens"):
        fused_attention(
            x, x, x, q_positions=jnp.arange(2), k_positions=jnp.arange(2), scheme=scheme
        )


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: make_scheme({"name": "xl", "dim": 7}), "dim must be even"),
        (lambda: make_scheme({"name": "xl", "base": -1.0}), "base"),
        (lambda: make_scheme({"name": "xl", "clamp_len": -1}), "clamp_len must be >= 0"),
        (
            lambda: make_scheme("xl").validate(num_heads=3, head_dim=5, d_model=15),
            "N \\* H = 3 \\* 5 = 15",
        ),
        (
            lambda: xl_relative_logits(jnp.ones((1, 2, 1, 4)), jnp.ones((3, 1, 4)), [0, 1], [0]),
            "even D_r",
        ),
        (
            lambda: xl_relative_logits(jnp.ones((1, 2, 1, 4)), jnp.ones((4, 2, 4)), [0, 1], [0]),
            "w_r of shape",
        ),
        (
            lambda: xl_relative_logits(jnp.ones((1, 2, 1, 4)), jnp.ones((4, 1, 4)), [0], [0]),
            "T=2 queries",
        ),
    ],
)
def test_bad_settings_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()
