"""Contextual position encoding (CoPE) against a float64 transcription of the reference, and
the properties the paper claims.

Reference: facebookresearch/RAM, projects/cope/src/cope/context_position.py,
``ContextPosSelfAttn.forward``: ``gates = sigmoid(gate_logits / sqrt(head_dim))`` times
``attn_mask``; ``positions = gates.flip(-1).cumsum(dim=-1).flip(-1)`` clamped to ``npos -
1``; ``pos_logits_fixed = query @ pos_emb``; floor/ceil ``gather`` and the weight
``positions - positions_floor``; ``attn_logits = (q @ k^T + pos_logits) / sqrt(head_dim)``
(the default, without ``--cope-nodiv``); ``attn_logits += attn_mask.log()``; softmax.

The scheme-generic checks (KV-cache decoding, left padding, packing, training, and the
refusal of the blockwise path) run through tests/helpers/schemes.py.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posenc_jax import cope
from posenc_jax.attention import blockwise_attention, dense_attention, explain_implementation
from posenc_jax.schemes import make_scheme


def reference_cope_attention(q, k, v, pos_emb, attn_mask):
    """float64 transcription of ContextPosSelfAttn.forward (one head: B x L x H)."""
    q, k, v, pos_emb = (np.asarray(a, np.float64) for a in (q, k, v, pos_emb))
    h = q.shape[-1]
    npos = pos_emb.shape[-1]
    gate_logits = q @ np.swapaxes(k, -1, -2)
    gates = 1.0 / (1.0 + np.exp(-gate_logits / np.sqrt(h))) * attn_mask
    positions = np.flip(np.cumsum(np.flip(gates, -1), axis=-1), -1)
    positions = np.minimum(positions, npos - 1)
    pos_logits_fixed = q @ pos_emb  # B x L x npos
    ceil = np.ceil(positions).astype(int)
    floor = np.floor(positions).astype(int)
    logits_ceil = np.take_along_axis(pos_logits_fixed, ceil, -1)
    logits_floor = np.take_along_axis(pos_logits_fixed, floor, -1)
    w = positions - floor
    pos_logits = logits_ceil * w + logits_floor * (1 - w)
    attn_logits = (gate_logits + pos_logits) / np.sqrt(h)
    with np.errstate(divide="ignore"):
        attn_logits = attn_logits + np.log(attn_mask)
    attn = np.exp(attn_logits - attn_logits.max(-1, keepdims=True))
    attn = attn / attn.sum(-1, keepdims=True)
    return attn @ v


@pytest.mark.parametrize("npos", [4, 16])  # 4: positions clipped; 16: never clipped here
def test_attention_equals_the_reference_transcription(npos):
    keys = jax.random.split(jax.random.PRNGKey(npos), 4)
    b, t, h = 2, 9, 8
    q, k, v = (jax.random.normal(kk, (b, t, 1, h)) for kk in keys[:3])
    pos_emb = jax.random.normal(keys[3], (h, npos))
    out = dense_attention(
        q,
        k,
        v,
        q_positions=jnp.arange(t),
        k_positions=jnp.arange(t),
        scheme={"name": "cope", "npos": npos},
        params={"pos_emb": pos_emb},
        causal=True,
    )
    mask = np.tril(np.ones((t, t)))[None]
    ref = reference_cope_attention(q[:, :, 0], k[:, :, 0], v[:, :, 0], pos_emb, mask)
    np.testing.assert_allclose(out[:, :, 0], ref, atol=2e-5, rtol=2e-5)
    nope = dense_attention(
        q, k, v, q_positions=jnp.arange(t), k_positions=jnp.arange(t), causal=True
    )
    assert float(jnp.max(jnp.abs(out - nope))) > 1e-2  # the position term matters here


@settings(max_examples=15, deadline=None)
@given(npos=st.integers(2, 16))
def test_gates_of_one_give_clipped_relative_positions(npos):
    """Every gate 1: p_ij = i - j + 1 (clipped), the ordinary relative position."""
    length = 12  # one shape; npos below and above it
    z = jnp.full((1, 1, length, length), 60.0)
    allowed = jnp.tril(jnp.ones((length, length), bool))[None, None]
    p = np.asarray(cope.cope_positions(z, allowed, npos=npos))[0, 0]
    i, j = np.meshgrid(np.arange(length), np.arange(length), indexing="ij")
    want = np.where(j <= i, np.minimum(i - j + 1, npos - 1), 0)
    np.testing.assert_allclose(p, want, atol=1e-5)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**16))
def test_positions_count_backwards_from_the_query(seed):
    """p_ij >= 0, non-increasing in j up to the query, p_ii = g_ii < 1, 0 past the query."""
    length = 10
    z = 3.0 * jax.random.normal(jax.random.PRNGKey(seed), (1, 1, length, length))
    allowed = jnp.tril(jnp.ones((length, length), bool))[None, None]
    p = np.asarray(cope.cope_positions(z, allowed, npos=1000))[0, 0]
    g = 1.0 / (1.0 + np.exp(-np.asarray(z, np.float64)[0, 0]))
    for i in range(length):
        row = p[i, : i + 1]
        assert np.all(row >= 0) and np.all(np.diff(row) <= 1e-6)
        np.testing.assert_allclose(p[i, i], g[i, i], rtol=1e-5)
        assert np.all(p[i, i + 1 :] == 0)


@settings(max_examples=25, deadline=None)
@given(p=st.floats(0.0, 5.0))
def test_interpolation_is_linear_between_integer_positions(p):
    table = jnp.array([[0.0, 3.0, -1.0, 4.0, 10.0, 2.0]])
    got = float(cope.cope_interpolate(table, jnp.array([[p]]))[0, 0])
    np.testing.assert_allclose(got, np.interp(p, np.arange(6), np.asarray(table[0])), atol=1e-5)


def test_bad_use_is_a_clear_error():
    with pytest.raises(ValueError, match="cope is causal only"):
        make_scheme("cope").configure(causal=False)
    with pytest.raises(ValueError, match="cope needs npos >= 2"):
        make_scheme({"name": "cope", "npos": 1})
    q = jnp.ones((1, 4, 2, 8))
    with pytest.raises(ValueError, match=r"does not tile.*implementation='dense'"):
        blockwise_attention(
            q, q, q, q_positions=jnp.arange(4), k_positions=jnp.arange(4), scheme="cope"
        )
    choice = explain_implementation(
        scheme=make_scheme("cope"),
        platform="gpu",
        dtype=jnp.bfloat16,
        head_dim=64,
        q_len=8192,
        k_len=8192,
        has_mask=False,
        aligned=True,
    )
    assert choice.implementation == "dense" and "does not tile" in choice.reason
