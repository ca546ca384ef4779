"""DeBERTa: golden values from a float64 NumPy transcription of Hugging Face's DebertaV2
(log buckets and disentangled_attention_bias), bucket properties, and the scheme's hooks.

Transcribed from huggingface/transformers, src/transformers/models/deberta_v2/
modeling_deberta_v2.py (commit 967ed0db): ``make_log_bucket_position``,
``build_relative_position`` and ``DisentangledSelfAttention.forward`` /
``disentangled_attention_bias`` (c2p and p2c, ``share_att_key`` False, so the projected
tables are given directly). The gathers and the transpose of the p2c term are kept as
they are written there, index by index, rather than simplified.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posenc_jax.attention import attention_weights, select_implementation
from posenc_jax.deberta import (
    deberta_c2p,
    deberta_log_bucket,
    deberta_p2c,
    deberta_relative_index,
    deberta_span,
)
from posenc_jax.schemes import make_scheme

PROPS = settings(max_examples=25, deadline=None)


# -- the reference, transcribed ----------------------------------------------------------------


def hf_make_log_bucket_position(relative_pos, bucket_size, max_position):
    relative_pos = np.asarray(relative_pos, np.int64)
    sign = np.sign(relative_pos)
    mid = bucket_size // 2
    abs_pos = np.where(
        (relative_pos < mid) & (relative_pos > -mid), mid - 1, np.abs(relative_pos)
    ).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):  # log(0) only in unused branches
        log_pos = (
            np.ceil(np.log(abs_pos / mid) / np.log((max_position - 1) / mid) * (mid - 1)) + mid
        )
    bucket_pos = np.where(abs_pos <= mid, relative_pos.astype(np.float64), log_pos * sign)
    return bucket_pos.astype(np.int64)


def hf_build_relative_position(query_size, key_size, bucket_size=-1, max_position=-1):
    q_ids = np.arange(0, query_size)
    k_ids = np.arange(0, key_size)
    rel_pos_ids = q_ids[:, None] - k_ids[None, :]
    if bucket_size > 0 and max_position > 0:
        rel_pos_ids = hf_make_log_bucket_position(rel_pos_ids, bucket_size, max_position)
    return rel_pos_ids[:query_size, :][None]  # [1, T, S]


def hf_disentangled_scores(query_layer, key_layer, pos_key_layer, pos_query_layer, *, bucket_size,
                           max_relative_positions, pos_att_type=("c2p", "p2c")):  # fmt: skip
    """Attention scores of DisentangledSelfAttention.forward: content term + rel_att.

    query_layer, key_layer: [B*N, T, H] (T == S); pos_*_layer: [2 att_span, N, H]
    (projected rel_embeddings, one block per head). Returns [B*N, T, T] float64.
    """
    query_layer, key_layer = np.asarray(query_layer, np.float64), np.asarray(key_layer, np.float64)
    bn, t, h = query_layer.shape
    n = pos_key_layer.shape[1]
    scale_factor = 1 + ("c2p" in pos_att_type) + ("p2c" in pos_att_type)
    scale = np.sqrt(h * scale_factor)
    attention_scores = query_layer @ (key_layer.transpose(0, 2, 1) / scale)
    att_span = bucket_size if bucket_size > 0 else max_relative_positions
    relative_pos = hf_build_relative_position(t, t, bucket_size, max_relative_positions)[None]
    # transpose_for_scores(...).repeat(B, 1, 1): [B*N, 2 att_span, H]
    pos_key_layer = np.tile(
        np.asarray(pos_key_layer, np.float64).transpose(1, 0, 2), (bn // n, 1, 1)
    )
    pos_query_layer = np.tile(
        np.asarray(pos_query_layer, np.float64).transpose(1, 0, 2), (bn // n, 1, 1)
    )
    score = 0.0
    if "c2p" in pos_att_type:
        c2p_att = query_layer @ pos_key_layer.transpose(0, 2, 1)  # [B*N, T, 2 att_span]
        c2p_pos = np.clip(relative_pos + att_span, 0, att_span * 2 - 1)
        index = np.broadcast_to(c2p_pos.squeeze(0), (bn, t, relative_pos.shape[-1]))
        c2p_att = np.take_along_axis(c2p_att, index, axis=-1)
        score += c2p_att / scale
    if "p2c" in pos_att_type:
        r_pos = relative_pos  # key_layer.size(-2) == query_layer.size(-2)
        p2c_pos = np.clip(-r_pos + att_span, 0, att_span * 2 - 1)
        p2c_att = key_layer @ pos_query_layer.transpose(0, 2, 1)  # [B*N, S, 2 att_span]
        index = np.broadcast_to(p2c_pos.squeeze(0), (bn, t, t))
        p2c_att = np.take_along_axis(p2c_att, index, axis=-1).transpose(0, 2, 1)
        score += p2c_att / scale
    return attention_scores + score


# -- buckets ----------------------------------------------------------------------------------

BUCKET_SETTINGS = [(256, 512), (8, 16), (8, 32), (2, 4), (3, 10), (64, 4096), (256, 130)]


@pytest.mark.parametrize(("buckets", "max_pos"), BUCKET_SETTINGS)
def test_log_buckets_equal_hugging_face(buckets, max_pos):
    rel = np.arange(-6000, 6001)
    ours = deberta_log_bucket(
        jnp.asarray(rel), position_buckets=buckets, max_relative_positions=max_pos
    )
    ref = hf_make_log_bucket_position(rel, buckets, max_pos)
    # Buckets beyond +-position_buckets read the first or last table row anyway: capped.
    np.testing.assert_array_equal(ours, np.clip(ref, -buckets, buckets))
    # The v2/v3 settings: |r| <= 128 exact, 511 -> the last log bucket 255.
    if (buckets, max_pos) == (256, 512):
        assert deberta_log_bucket(jnp.array([128, 511, -511])).tolist() == [128, 255, -255]


@PROPS
@given(
    buckets=st.integers(2, 300),
    extra=st.integers(2, 3000),
    rel=st.lists(st.integers(-(2**31) + 1, 2**31 - 1), min_size=8, max_size=8),
)
def test_log_buckets_odd_monotone_and_exact_near_zero(buckets, extra, rel):
    max_pos = buckets // 2 + extra
    rel = np.sort(np.array([*rel, 0, 1, -1, buckets // 2]))
    b = np.asarray(
        deberta_log_bucket(
            jnp.asarray(rel), position_buckets=buckets, max_relative_positions=max_pos
        )
    )
    neg = np.asarray(
        deberta_log_bucket(
            jnp.asarray(-rel), position_buckets=buckets, max_relative_positions=max_pos
        )
    )
    np.testing.assert_array_equal(neg, -b)  # odd: bucket(-r) = -bucket(r)
    assert np.all(np.diff(b) >= 0)  # monotone
    # Capped; beyond the exact zone no bucket falls back inside it. (Not |b| <= |r|: with
    # max_relative_positions near position_buckets / 2 HF's formula gives r=4 -> 5 at
    # buckets=6, max 5.)
    assert np.all(np.abs(b) <= buckets)
    beyond = np.abs(rel) > buckets // 2
    assert np.all(np.abs(b[beyond]) >= buckets // 2)
    small = np.abs(rel) <= buckets // 2
    np.testing.assert_array_equal(b[small], rel[small])  # exact near the diagonal


def test_relative_index_is_the_papers_delta():
    """Without buckets: delta(i, j) = clip(i - j, -k, k - 1) + k (DeBERTa v1)."""
    q, k = np.array([0, 5, 9, 20]), np.arange(12)
    index = deberta_relative_index(q, k, position_buckets=None, max_relative_positions=4)
    np.testing.assert_array_equal(index, np.clip(q[:, None] - k[None, :], -4, 3) + 4)
    assert deberta_span(position_buckets=None, max_relative_positions=4) == 4
    with_buckets = deberta_relative_index(q, k, position_buckets=8, max_relative_positions=16)
    ref = np.clip(hf_make_log_bucket_position(q[:, None] - k[None, :], 8, 16) + 8, 0, 15)
    np.testing.assert_array_equal(with_buckets, ref)


# -- the disentangled terms -------------------------------------------------------------------


def _random(seed, *shapes):
    keys = jax.random.split(jax.random.PRNGKey(seed), len(shapes))
    return [
        np.asarray(jax.random.normal(k, s), np.float64) for k, s in zip(keys, shapes, strict=True)
    ]


CONFIGS = [
    dict(position_buckets=8, max_relative_positions=16),  # v2/v3 style; T=24 saturates
    dict(position_buckets=None, max_relative_positions=5),  # v1 style
]


@pytest.mark.parametrize("config", CONFIGS, ids=["log-buckets", "clipped"])
def test_c2p_and_p2c_equal_hugging_face(config):
    b, t, n, h = 2, 24, 2, 4
    span = deberta_span(**config)
    q, k, pos_key, pos_query = _random(
        0, (b, t, n, h), (b, t, n, h), (2 * span, n, h), (2 * span, n, h)
    )
    pos = np.arange(t)
    scale = math.sqrt(3 * h)
    ours = deberta_c2p(jnp.asarray(q / scale, jnp.float32), pos_key, pos, pos, **config)
    ours = ours + deberta_p2c(jnp.asarray(k, jnp.float32), pos_query / scale, pos, pos, **config)
    hf_bucket = config["position_buckets"] or -1
    ref = (
        hf_disentangled_scores(
            q.transpose(0, 2, 1, 3).reshape(b * n, t, h),
            k.transpose(0, 2, 1, 3).reshape(b * n, t, h),
            pos_key,
            pos_query,
            bucket_size=hf_bucket,
            max_relative_positions=config["max_relative_positions"],
        )
        - np.einsum("bqnh,bknh->bnqk", q, k).reshape(b * n, t, t) / scale
    )  # rel_att only
    np.testing.assert_allclose(np.asarray(ours).reshape(b * n, t, t), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("config", CONFIGS, ids=["log-buckets", "clipped"])
def test_scheme_attention_equals_hugging_face_scores(config):
    """rotate (q / sqrt(3)) + logit hook, through attention_weights, against HF's scores."""
    b, t, n, h = 1, 20, 2, 4
    scheme = make_scheme({"name": "deberta", **config}).configure(causal=False)
    span = scheme.span()
    q, k, pos_key, pos_query = _random(
        1, (b, t, n, h), (b, t, n, h), (2 * span, n, h), (2 * span, n, h)
    )
    params = {
        "pos_key": jnp.asarray(pos_key, jnp.float32),
        "pos_query": jnp.asarray(pos_query, jnp.float32),
    }
    pos = np.arange(t) + 7  # any offset: relative positions only
    qr, kr = scheme.rotate(
        params, jnp.asarray(q, jnp.float32), jnp.asarray(k, jnp.float32), pos, pos
    )
    weights = attention_weights(
        qr, kr, q_positions=pos, k_positions=pos, scheme=scheme, params=params
    )
    scores = hf_disentangled_scores(
        q.transpose(0, 2, 1, 3).reshape(b * n, t, h),
        k.transpose(0, 2, 1, 3).reshape(b * n, t, h),
        pos_key,
        pos_query,
        bucket_size=config["position_buckets"] or -1,
        max_relative_positions=config["max_relative_positions"],
    ).reshape(b, n, t, t)
    ref = np.exp(scores - scores.max(-1, keepdims=True))
    np.testing.assert_allclose(weights, ref / ref.sum(-1, keepdims=True), atol=2e-6)


@pytest.mark.parametrize("terms", [("c2p",), ("p2c",)])
def test_one_extra_term_scales_by_sqrt_2h(terms):
    b, t, n, h = 1, 10, 1, 4
    config = dict(position_buckets=4, max_relative_positions=8)
    scheme = make_scheme(
        {"name": "deberta", **config, "c2p": "c2p" in terms, "p2c": "p2c" in terms}
    )
    assert scheme.scale_factor() == 2
    params = scheme.init_attention_params(jax.random.PRNGKey(0), num_heads=n, head_dim=h)
    assert set(params) == {"pos_key" if "c2p" in terms else "pos_query"}
    q, k = _random(2, (b, t, n, h), (b, t, n, h))
    pos = np.arange(t)
    qr, kr = scheme.rotate(
        params, jnp.asarray(q, jnp.float32), jnp.asarray(k, jnp.float32), pos, pos
    )
    weights = attention_weights(
        qr, kr, q_positions=pos, k_positions=pos, scheme=scheme, params=params
    )
    tables = {name: np.asarray(v, np.float64) for name, v in params.items()}
    zeros = np.zeros((8, n, h))
    scores = hf_disentangled_scores(
        q.transpose(0, 2, 1, 3).reshape(b * n, t, h),
        k.transpose(0, 2, 1, 3).reshape(b * n, t, h),
        tables.get("pos_key", zeros),
        tables.get("pos_query", zeros),
        bucket_size=4,
        max_relative_positions=8,
        pos_att_type=terms,
    ).reshape(b, n, t, t)
    ref = np.exp(scores - scores.max(-1, keepdims=True))
    np.testing.assert_allclose(weights, ref / ref.sum(-1, keepdims=True), atol=2e-6)


@PROPS
@given(shift=st.integers(-(2**20), 2**20), seed=st.integers(0, 3))
def test_terms_are_translation_invariant(shift, seed):
    q, k, table = _random(seed, (1, 6, 1, 2), (1, 9, 1, 2), (16, 1, 2))
    q_pos, k_pos = np.array([0, 1, 4, 9, 10, 30]), np.arange(9) * 3
    config = dict(position_buckets=8, max_relative_positions=16)
    for fn, x in ((deberta_c2p, q), (deberta_p2c, k)):
        a = fn(jnp.asarray(x, jnp.float32), table, q_pos, k_pos, **config)
        b = fn(jnp.asarray(x, jnp.float32), table, q_pos + shift, k_pos + shift, **config)
        np.testing.assert_array_equal(a, b)


def test_scheme_needs_q_and_k_and_v3_defaults():
    scheme = make_scheme("deberta")
    assert (scheme.position_buckets, scheme.max_relative_positions) == (256, 512)
    assert scheme.needs_q_for_bias and scheme.needs_k_for_bias and scheme.scale_factor() == 3
    kw = dict(platform="gpu", dtype=jnp.bfloat16, head_dim=64, q_len=8, k_len=8)
    assert select_implementation(scheme=scheme, has_mask=False, aligned=True, **kw) == "dense"
    params = scheme.init_attention_params(jax.random.PRNGKey(0), num_heads=2, head_dim=8)
    assert params["pos_key"].shape == params["pos_query"].shape == (512, 2, 8)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: make_scheme({"name": "deberta", "position_buckets": 1}), "position_buckets >= 2"),
        (
            lambda: make_scheme(
                {"name": "deberta", "position_buckets": 256, "max_relative_positions": 129}
            ),
            "max_relative_positions - 1 > position_buckets // 2",
        ),
        (
            lambda: make_scheme({"name": "deberta", "max_relative_positions": 0}),
            "max_relative_positions >= 1",
        ),
        (lambda: make_scheme({"name": "deberta", "c2p": "yes"}), "c2p must be True or False"),
        (lambda: deberta_log_bucket(jnp.array([0.5])), "integer relative_position"),
        (
            lambda: deberta_c2p(
                jnp.ones((1, 2, 1, 4)),
                jnp.ones((6, 1, 4)),
                [0, 1],
                [0, 1],
                position_buckets=4,
                max_relative_positions=8,
            ),
            r"\[2 \* span, N, H\] = \[8, 1, 4\]",
        ),
        (
            lambda: deberta_p2c(
                jnp.ones((1, 2, 1, 4)),
                jnp.ones((8, 1, 4)),
                [0, 1],
                [0],
                position_buckets=4,
                max_relative_positions=8,
            ),
            "S=2 keys",
        ),
    ],
)
def test_bad_settings_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()
