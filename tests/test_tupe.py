"""TUPE: float64 transcription of the paper's untied attention (Ke et al. 2021, equations (6)
and (7); section 3.3 and the authors' code for TUPE-R's buckets), the [CLS] untying, and the
scheme's hooks and variants."""

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
from posenc_jax.schemes import make_scheme
from posenc_jax.tupe import tupe_bias, tupe_positional_logits

PROPS = settings(max_examples=20, deadline=None)


def _t5_bucket64(relative_position, bidirectional, num_buckets, max_distance):
    """The authors' relative_position_bucket (T5's, memory - context), in float64 NumPy."""
    ret = 0
    n = -np.asarray(relative_position, np.int64)
    if bidirectional:
        num_buckets //= 2
        ret += (n < 0).astype(np.int64) * num_buckets
        n = np.abs(n)
    else:
        n = np.maximum(n, 0)
    max_exact = num_buckets // 2
    is_small = n < max_exact
    with np.errstate(divide="ignore", invalid="ignore"):  # log(0): only where is_small
        large = np.log(n / max_exact) / math.log(max_distance / max_exact)
        large = (large * (num_buckets - max_exact)).astype(np.int64)
    val_if_large = np.minimum(max_exact + large, num_buckets - 1)
    return ret + np.where(is_small, n, val_if_large)


def _tupe_logits64(
    q, k, table, u_q, u_k, pos, *, theta=None, rel_table=None, buckets=(True, 8, 16)
):
    """alpha_ij = (x_i W^Q).(x_j W^K)/sqrt(2d) + reset_theta((p_i U^Q).(p_j U^K)/sqrt(2d) + b).

    q, k: [T, N, H] (x W^Q, x W^K); table: [L, D_p]; u_q, u_k: [D_p, N, H]; pos: [T];
    b = b_{bucket(j - i)} for TUPE-R. reset_theta: theta_1 where i is [CLS] (position 0),
    else theta_2 where j is [CLS].
    """
    q, k, table, u_q, u_k = (np.asarray(x, np.float64) for x in (q, k, table, u_q, u_k))
    two_d = 2 * q.shape[-1]
    content = np.einsum("tnh,snh->nts", q, k) / math.sqrt(two_d)
    p = table[pos]  # [T, D_p]
    pq, pk = np.einsum("td,dnh->tnh", p, u_q), np.einsum("td,dnh->tnh", p, u_k)
    positional = np.einsum("tnh,snh->nts", pq, pk) / math.sqrt(two_d)
    if rel_table is not None:
        bucket = _t5_bucket64(pos[None, :] - pos[:, None], *buckets)  # [T, S]
        positional = positional + np.asarray(rel_table, np.float64)[bucket].transpose(2, 0, 1)
    if theta is not None:
        theta = np.asarray(theta, np.float64)
        is_cls = pos == 0
        positional = np.where(is_cls[None, None, :], theta[1][:, None, None], positional)
        positional = np.where(is_cls[None, :, None], theta[0][:, None, None], positional)
    return content + positional


def _softmax64(logits, allowed):
    x = np.where(allowed, logits, -np.inf)
    x = np.exp(x - x.max(-1, keepdims=True))
    return x / x.sum(-1, keepdims=True)


def _random(seed, *shapes):
    keys = jax.random.split(jax.random.PRNGKey(seed), len(shapes))
    return [
        np.asarray(jax.random.normal(k, s), np.float64) for k, s in zip(keys, shapes, strict=True)
    ]


@pytest.mark.parametrize(
    ("causal", "relative"),
    [(False, False), (False, True), (True, False), (True, True)],
    ids=["encoder", "encoder-tupe-r", "decoder", "decoder-tupe-r"],
)
def test_scheme_attention_is_the_softmax_of_the_papers_logits(causal, relative):
    """An encoder with [CLS] untied (position 0), a decoder without; TUPE-R adds T5 buckets."""
    t, n, h, length, dim = 10, 2, 4, 24, 6
    spec = {"name": "tupe", "max_length": length, "dim": dim, "relative": relative}
    spec |= {"num_buckets": 8, "max_distance": 16, "untie_cls": not causal}
    scheme = make_scheme(spec).configure(causal=causal)
    assert scheme.untie_cls is (not causal) and scheme.bidirectional is (not causal)
    assert make_scheme({"name": "tupe"}).configure(causal=False).untie_cls is False
    q, k, table, u_q, u_k, theta, rel = _random(
        0, (1, t, n, h), (1, t, n, h), (length, dim), (dim, n, h), (dim, n, h), (2, n), (8, n)
    )
    params = {"table": table, "u_q": u_q, "u_k": u_k}
    if not causal:
        params["cls_theta"] = theta
    if relative:
        params["relative_table"] = rel
    params = {key: jnp.asarray(val, jnp.float32) for key, val in params.items()}
    assert set(params) == set(
        scheme.init_attention_params(jax.random.PRNGKey(0), num_heads=n, head_dim=h)
    )
    pos = np.array([0, 1, 2, 3, 5, 8, 13, 14, 20, 23])  # any positions below max_length
    qr, kr = scheme.rotate(
        params, jnp.asarray(q, jnp.float32), jnp.asarray(k, jnp.float32), pos, pos
    )
    weights = attention_weights(
        qr, kr, q_positions=pos, k_positions=pos, scheme=scheme, params=params, causal=causal
    )
    logits = _tupe_logits64(
        q[0], k[0], table, u_q, u_k, pos,
        theta=None if causal else theta,
        rel_table=rel if relative else None,
        buckets=(not causal, 8, 16),
    )  # fmt: skip
    allowed = pos[None, :] <= pos[:, None] if causal else np.ones((t, t), bool)
    np.testing.assert_allclose(weights[0], _softmax64(logits, allowed), atol=2e-6)


@PROPS
@given(
    pos=st.lists(st.integers(0, 31), min_size=5, max_size=5),
    theta=st.tuples(st.floats(-5, 5), st.floats(-5, 5)),
)
def test_cls_row_and_column_are_the_thetas(pos, theta):
    """With [CLS] untied, its row is theta_1 and the others' column to it theta_2, whatever p."""
    pos = np.array(pos)
    table, u_q, u_k = _random(1, (32, 4), (4, 1, 2), (4, 1, 2))
    th = jnp.array([[theta[0]], [theta[1]]], jnp.float32)
    out = np.asarray(tupe_bias(pos, pos, table, u_q, u_k, cls_theta=th))[0]
    plain = np.asarray(tupe_positional_logits(pos, pos, table, u_q, u_k))[0]
    q_cls, k_cls = np.meshgrid(pos == 0, pos == 0, indexing="ij")
    np.testing.assert_allclose(out[q_cls], np.float32(theta[0]))
    np.testing.assert_allclose(out[~q_cls & k_cls], np.float32(theta[1]))
    np.testing.assert_allclose(out[~q_cls & ~k_cls], plain[~q_cls & ~k_cls])
    # Per-row positions give the rows of the shared ones.
    batched = tupe_bias(np.stack([pos, pos]), pos, table, u_q, u_k, cls_theta=th)
    np.testing.assert_allclose(batched[1, 0], out, rtol=1e-5, atol=1e-6)


def test_bias_reads_no_content_so_the_fused_path_takes_it():
    scheme = make_scheme({"name": "tupe", "max_length": 16}).configure(causal=True)
    assert not scheme.needs_q_for_bias and not scheme.needs_k_for_bias
    kw = dict(platform="gpu", dtype=jnp.bfloat16, head_dim=64, q_len=8, k_len=8)
    # An additive bias: in bfloat16 "auto" keeps it off cuDNN unless the user opts in.
    assert select_implementation(scheme=scheme, has_mask=False, aligned=True, **kw) == "dense"
    opt_in = dict(has_mask=False, aligned=True, low_precision_bias=True, **kw)
    assert select_implementation(scheme=scheme, **opt_in) == "cudnn"
    params = scheme.init_attention_params(jax.random.PRNGKey(0), num_heads=2, head_dim=4)
    q, k, v = _random(2, (1, 7, 2, 4), (1, 7, 2, 4), (1, 7, 2, 4))
    pos = jnp.arange(7)
    qr, kr = scheme.rotate(
        params, jnp.asarray(q, jnp.float32), jnp.asarray(k, jnp.float32), pos, pos
    )
    common = dict(q_positions=pos, k_positions=pos, scheme=scheme, params=params, causal=True)
    fused = fused_attention(qr, kr, jnp.asarray(v, jnp.float32), implementation=None, **common)
    dense = dense_attention(qr, kr, jnp.asarray(v, jnp.float32), **common)
    np.testing.assert_allclose(fused, dense, atol=1e-5)


def test_learned_table_limits_positions_like_the_learned_scheme():
    scheme = make_scheme({"name": "tupe", "max_length": 8})
    assert scheme.position_limit() == 8
    with pytest.raises(ValueError, match="exceed the limit of 8 positions"):
        scheme.assume_positions_below(9)
    assert scheme.assume_positions_below(8).out_of_range == "clip"
    params = scheme.configure(causal=True).init_attention_params(
        jax.random.PRNGKey(0), num_heads=1, head_dim=2
    )
    with pytest.raises(ValueError, match="positions must lie in"):
        tupe_bias(jnp.arange(9), jnp.arange(9), params["table"], params["u_q"], params["u_k"])


def _callbacks(jaxpr, in_loop=False):
    """One entry per host callback in ``jaxpr`` and the jaxprs nested in it: whether it
    lies inside a loop (scan, while), i.e. runs once per tile of a blockwise attention."""
    found = []
    for eqn in jaxpr.eqns:
        if "callback" in eqn.primitive.name:
            found.append(in_loop)
        loop = in_loop or eqn.primitive.name in ("scan", "while")
        for value in eqn.params.values():
            for sub in value if isinstance(value, tuple | list) else (value,):
                sub = getattr(sub, "jaxpr", sub)  # ClosedJaxpr -> Jaxpr
                if hasattr(sub, "eqns"):
                    found += _callbacks(sub, loop)
    return found


def test_blockwise_attention_checks_positions_once_outside_the_tile_loop():
    """The table's range check runs once per call (one host callback, before the scan over
    tiles), not once per tile; the tiles look up with "clip". Out of range still fails."""
    scheme = make_scheme({"name": "tupe", "max_length": 16}).configure(causal=True)
    params = scheme.init_attention_params(jax.random.PRNGKey(0), num_heads=2, head_dim=4)
    x = jnp.ones((1, 12, 2, 4))

    def run(x, pos):
        common = dict(scheme=scheme, params=params, causal=True, q_block=4, k_block=4)
        return blockwise_attention(x, x, x, q_positions=pos, k_positions=pos, **common)

    assert _callbacks(jax.make_jaxpr(run)(x, jnp.arange(12)).jaxpr) == [False]
    with pytest.raises(jax.errors.JaxRuntimeError, match=r"tupe: positions must lie in \[0, 15\]"):
        jax.block_until_ready(jax.jit(run)(x, jnp.arange(12) + 8))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: make_scheme({"name": "tupe", "max_length": 0}), "max_length"),
        (lambda: make_scheme({"name": "tupe", "dim": 0}), "dim"),
        (lambda: make_scheme({"name": "tupe", "untie_cls": "yes"}), "untie_cls must be"),
        (lambda: make_scheme({"name": "tupe", "relative": 1}), "relative must be"),
        (lambda: make_scheme({"name": "tupe", "num_buckets": 1}), "num_buckets"),
        (lambda: make_scheme({"name": "tupe", "out_of_range": "wrap"}), "out_of_range"),
        (
            lambda: tupe_positional_logits(
                [0], [0], jnp.ones((4, 3)), jnp.ones((2, 1, 2)), jnp.ones((2, 1, 2))
            ),
            "D_p = table.shape\\[1\\] = 3",
        ),
        (
            lambda: tupe_bias(
                [0],
                [0],
                jnp.ones((4, 2)),
                jnp.ones((2, 1, 2)),
                jnp.ones((2, 1, 2)),
                cls_theta=jnp.ones((2, 3)),
            ),
            "cls_theta of shape \\[2, N\\] = \\[2, 1\\]",
        ),
    ],
)
def test_bad_settings_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()
