"""Packed sequences: segment ids keep documents apart on every attention path and scheme.

Positions restart at 0 in each packed document, so a causal mask on positions alone
lets a token see the next document's first tokens; segment ids (equal ids attend)
close that leak. Checked for every registered scheme (tests/helpers/schemes.py) in
the models, at the `attend` level against separate runs, and through the KV cache.
"""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from helpers import scheme_models
from helpers.scheme_models import WIDTH
from helpers.schemes import SCHEME_CASES
from hypothesis import given, settings
from hypothesis import strategies as st

from posenc_jax.attention import (
    AttentionConfig,
    attend,
    dense_attention,
    explain_implementation,
    fused_attention,
)
from posenc_jax.nn import TransformerEncoder, TransformerLM, positions_from_segments
from posenc_jax.schemes import make_scheme

PATHS = {
    "dense": AttentionConfig(implementation="dense"),
    # Tiles of 3 straddle the boundary between packed documents (tokens 7 | 8 of 10 below).
    "blockwise": AttentionConfig(implementation="blockwise", block_size=3),
}
# Every scheme in the decoder; a bias, a value-term and a rotation scheme in the encoder.
MODELS = [(c, TransformerLM) for c in SCHEME_CASES] + [
    (c, TransformerEncoder) for c in ("alibi", "shaw", "rope")
]


@pytest.mark.parametrize(("case", "cls"), MODELS, ids=[f"{c}-{cls.__name__}" for c, cls in MODELS])
def test_packed_document_logits_ignore_the_other_document_and_equal_unpacked(case, cls):
    doc_a, doc_b = np.array([3, 1, 4, 1, 5, 9, 2]), np.array([6, 5, 3])
    other_a, other_b = np.array([7, 7, 8, 2, 0, 10, 4]), np.array([0, 10, 10])
    packed = np.stack(
        [
            np.concatenate([doc_a, doc_b]),
            np.concatenate([doc_a, other_b]),
            np.concatenate([other_a, doc_b]),
        ]
    )  # [3, 10]: [A B], [A B'], [A' B]
    segment_ids = np.array([[0] * 7 + [1] * 3] * 3)
    inputs = dict(positions=positions_from_segments(segment_ids), segment_ids=segment_ids)
    # The case's shared model (tests/helpers/scheme_models.py), whose default "auto"
    # attention takes the dense path on these inputs; the same weights on the blockwise one.
    attn = scheme_models.model(case, cls).blocks[0].attn
    choice = explain_implementation(
        scheme=attn.scheme, platform=jax.devices()[0].platform, dtype=jnp.float32,
        head_dim=attn.head_dim, q_len=WIDTH, k_len=WIDTH, has_mask=True, aligned=True,
        has_segment_ids=True,
    )  # fmt: skip
    assert choice.implementation == "dense", choice
    paths = {"dense": scheme_models.logits(case, cls, packed, **inputs)}
    if attn.scheme.tiles:  # CoPE does not: dense only (tests/test_schemes.py checks the refusal)
        paths["blockwise"] = scheme_models.logits_on_path(
            case, cls, PATHS["blockwise"], packed, **inputs
        )
    alone_a, alone_b = scheme_models.alone(case, cls, [doc_a, doc_b])
    for path, logits in paths.items():
        a, b = logits[:, :7], logits[:, 7:]
        # Changing one document's tokens leaves the other document's logits alone...
        np.testing.assert_allclose(a[1], a[0], atol=1e-6, err_msg=f"{path}: B leaks into A")
        np.testing.assert_allclose(b[2], b[0], atol=1e-6, err_msg=f"{path}: A leaks into B")
        # ...and each equals the document run on its own.
        np.testing.assert_allclose(a[0], alone_a, atol=2e-5, err_msg=f"{path}: A != alone")
        np.testing.assert_allclose(b[0], alone_b, atol=2e-5, err_msg=f"{path}: B != alone")


def test_positions_restart_per_segment_and_skip_padding():
    segment_ids = jnp.array([[0, 0, 0, 1, 1, 2], [5, 5, 5, 5, 6, 6]])
    mask = jnp.array([[True] * 6, [False, False, True, True, True, True]])
    np.testing.assert_array_equal(
        positions_from_segments(segment_ids, mask), [[0, 1, 2, 0, 1, 0], [0, 0, 0, 1, 0, 1]]
    )


# -- attend: segment masking = each segment run separately --------------------------------

SPECS = {  # a bias scheme (every path) and a q-reading, value-term scheme (dense, blockwise)
    "t5": {"name": "t5", "num_buckets": 8, "max_distance": 16},
    "shaw": {"name": "shaw", "max_distance": 3},
}


def _attend_paths(scheme):
    """name -> attention function of (q, k, v, **kw); the fused one where the scheme allows."""
    paths = {
        "dense": lambda *a, **kw: attend(*a, attention=PATHS["dense"], **kw),
        "blockwise": lambda *a, **kw: attend(*a, attention=PATHS["blockwise"], **kw),
    }
    if not scheme.needs_q_for_bias and "value_term" not in scheme.hooks:
        # jax.nn.dot_product_attention with XLA: what the fused path runs on CPU.
        paths["fused"] = lambda *a, **kw: fused_attention(*a, implementation="xla", **kw)
    return paths


@functools.cache
def _attention(path, spec, causal):
    """Jitted attention of one path (compiled once per path, scheme and causal)."""
    scheme = make_scheme(SPECS[spec]).configure(causal=causal)
    fn = _attend_paths(scheme)[path]

    def attention(q, k, v, params, positions, **kw):
        return fn(q, k, v, q_positions=positions, k_positions=positions, scheme=scheme,
                  params=params, causal=causal, **kw)  # fmt: skip

    return jax.jit(attention)


def _alone(q, k, v, params, positions, start, stop, *, spec, causal):
    """Tokens start:stop run on their own: moved to the front, the rest padding (masked keys).

    The padded length stays T, so the reference compiles once per scheme.
    """
    length = stop - start
    front = lambda x: jnp.roll(x, -start, axis=1)  # noqa: E731
    real = jnp.arange(T)[None] < length  # [1, T]
    out = _attention("dense", spec, causal)(
        front(q), front(k), front(v), params, front(positions[None]), key_mask=real
    )
    return out[:, :length]


T = 8  # packed length: fixed, so each path compiles once


@settings(max_examples=10, deadline=None)
@given(
    cuts=st.sets(st.integers(1, T - 1), max_size=3),
    offsets=st.lists(st.integers(0, 50), min_size=4, max_size=4),
    spec=st.sampled_from(list(SPECS)),
    causal=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_segment_masking_equals_running_each_segment_separately(cuts, offsets, spec, causal, seed):
    scheme = make_scheme(SPECS[spec]).configure(causal=causal)
    n, kv, h = 2, 1, 8
    keys = jax.random.split(jax.random.PRNGKey(seed), 4)
    q = jax.random.normal(keys[0], (1, T, n, h))
    k, v = (jax.random.normal(key, (1, T, kv, h)) for key in keys[1:3])
    params = jax.tree.map(
        lambda x: 10.0 * x, scheme.init_attention_params(keys[3], num_heads=n, head_dim=h)
    )
    # Packed layout: segment s holds tokens bounds[s]:bounds[s + 1] at positions offsets[s], +1...
    bounds = [0, *sorted(cuts), T]
    segment_ids = np.repeat(np.arange(len(bounds) - 1), np.diff(bounds))
    positions = np.concatenate(
        [np.arange(b - a) + o for a, b, o in zip(bounds[:-1], bounds[1:], offsets, strict=False)]
    )
    separate = jnp.concatenate(
        [
            _alone(q, k, v, params, positions, a, b, spec=spec, causal=causal)
            for a, b in itertools.pairwise(bounds)
        ],
        axis=1,
    )
    for path in _attend_paths(scheme):
        packed = _attention(path, spec, causal)(q, k, v, params, positions, segment_ids=segment_ids)
        np.testing.assert_allclose(packed, separate, atol=2e-5, rtol=2e-5, err_msg=path)


def test_kv_segment_ids_serve_cross_attention_and_are_checked():
    q, k = jnp.ones((1, 2, 2, 4)), jnp.ones((1, 3, 2, 4))  # equal logits: weights 1 / count
    v = jnp.arange(3.0)[None, :, None, None] * jnp.ones((1, 3, 2, 4))
    kw = dict(q_positions=jnp.arange(2), k_positions=jnp.arange(3))
    out = dense_attention(q, k, v, segment_ids=jnp.array([0, 1]), kv_segment_ids=[1, 1, 0], **kw)
    np.testing.assert_allclose(out[0, :, 0, 0], [2.0, 0.5])  # query 0 sees key 2; query 1 keys 0, 1
    with pytest.raises(ValueError, match="pass kv_segment_ids"):
        dense_attention(q, k, v, segment_ids=jnp.array([0, 1]), **kw)
    with pytest.raises(ValueError, match="kv_segment_ids needs segment_ids"):
        dense_attention(q, k, v, kv_segment_ids=jnp.array([0, 1, 1]), **kw)
    with pytest.raises(ValueError, match=r"segment_ids must be integer ids of shape \[2\]"):
        dense_attention(q, k, v, segment_ids=jnp.zeros(2), kv_segment_ids=jnp.zeros(3, int), **kw)
    with pytest.raises(
        ValueError, match=r"kv_segment_ids must be .* \[B=1, 3\]; got shape \(2, 3\)"
    ):
        dense_attention(
            q, k, v, segment_ids=jnp.zeros(2, int), kv_segment_ids=jnp.zeros((2, 3), int), **kw
        )


def test_auto_sends_segment_ids_to_a_path_that_takes_them():
    facts = dict(
        scheme=make_scheme("rope"),
        platform="gpu",
        dtype=jnp.bfloat16,
        head_dim=64,
        q_len=1024,
        k_len=1024,
        has_mask=False,
        aligned=True,
    )
    assert explain_implementation(**facts).implementation == "cudnn"
    choice = explain_implementation(**facts, has_segment_ids=True)
    assert choice.implementation == "dense" and "segment ids" in choice.reason
    long = explain_implementation(**{**facts, "q_len": 8192, "k_len": 8192}, has_segment_ids=True)
    assert long.implementation == "blockwise"


# -- KV cache: the cache keeps the keys' segment ids ---------------------------------------


def test_decoding_a_packed_prompt_equals_the_packed_forward():
    tokens = jnp.array([[3, 1, 4, 1, 5, 9, 2, 6, 5, 3]])
    segment_ids = jnp.array([[0] * 5 + [1] * 5])
    positions = positions_from_segments(segment_ids)  # [[0 1 2 3 4 0 1 2 3 4]]
    full = scheme_models.logits(  # the packed forward (shared, see the test above)
        "rope", TransformerLM, tokens, positions=positions, segment_ids=segment_ids
    )
    model = nnx.clone(scheme_models.model("rope", TransformerLM))
    model.init_cache(1, WIDTH + 1)
    step = nnx.jit(lambda m, x, p, s: m(x, positions=p, segment_ids=s, decode=True))
    cont = nnx.jit(lambda m, x, p: m(x, positions=p, decode=True))  # continues the last segment
    outs = [step(model, tokens[:, :7], positions[:, :7], segment_ids[:, :7])]
    outs.append(step(model, tokens[:, 7:8], positions[:, 7:8], segment_ids[:, 7:8]))
    outs += [cont(model, tokens[:, i : i + 1], positions[:, i : i + 1]) for i in (8, 9)]
    np.testing.assert_allclose(jnp.concatenate(outs, axis=1), full, atol=2e-5)
    # A third document starts in the cache with token 3 at position 0: it sees none of
    # the first two, so its logits are those of the first token of the sequence.
    new_doc = step(model, tokens[:, :1], jnp.array([[0]]), jnp.array([[2]]))
    np.testing.assert_allclose(new_doc, full[:, :1], atol=2e-5)
