"""Ruoss et al.'s randomized distances (the Toeplitz variant) against the reference code.

The references are numpy transcriptions of google-deepmind/randomized_positional_encodings,
models/positional_encodings.py (commit 57bc5d0): ``compute_noisy_alibi_encodings_biases``
(the bias from sorted sampled distances laid out by ``relative_shift``) and
``_rel_shift_inner``; and a float64 per-pair transcription of Transformer-XL's
``(q_i + v) . W_R R_{i-j}`` with the randomized distance in place of ``i - j``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st

from posenc_jax import (
    alibi_bias,
    alibi_slopes,
    deberta_relative_index,
    kerple_bias,
    shaw_relative_index,
    t5_bias,
)
from posenc_jax.random_distances import (
    relative_from_table,
    sample_relative_distances,
    toeplitz_table,
)
from posenc_jax.transformer_xl import xl_relative_logits


# --------------------------------------------------------------------------------------
# numpy transcriptions of the reference
# --------------------------------------------------------------------------------------
def _rel_shift_inner(logits: np.ndarray, attention_length: int) -> np.ndarray:
    """positional_encodings.py ``_rel_shift_inner``: [T_q, T_v + T_q] -> [T_q, T_v]."""
    tq, total = logits.shape
    assert total == tq + attention_length
    x = logits.reshape(total, tq)[1:]
    return x.reshape(tq, total - 1)[:, :attention_length]


def _reference_noisy_alibi(
    num_heads: int, length: int, right: np.ndarray, left: np.ndarray | None
) -> np.ndarray:
    """``compute_noisy_alibi_encodings_biases`` for q_len = k_len = length, given the
    sampled distances (``right``, and ``left`` when randomize_both_sides), sorted."""
    if left is None:  # symmetric: one draw, mirrored
        symmetric = -np.sort(right).astype(np.float64)
        right_positions = symmetric[: length - 1]
        left_positions = np.flip(symmetric)[: length - 1]
    else:
        right_positions = -np.sort(right).astype(np.float64)
        left_positions = np.sort(-left.astype(np.float64))
    left_positions = left_positions + 0.5
    left_positions = np.concatenate([[np.nan], left_positions])  # the dummy entry
    positions = np.concatenate([left_positions, [0.0], right_positions])
    tiled = np.tile(positions, (length, 1))  # [T, 2T]
    alibi = _rel_shift_inner(tiled, length)  # [T, T]
    slopes = np.asarray(alibi_slopes(num_heads), np.float64)
    return alibi[None] * slopes[:, None, None]  # [N, T, T]


def _sorted_draw(rng: np.random.Generator, n: int, top: int) -> np.ndarray:
    return np.sort(rng.choice(np.arange(1, top), size=n, replace=False))


@pytest.mark.parametrize("both_sides", [False, True])
@pytest.mark.parametrize("length,heads", [(1, 2), (2, 4), (7, 3), (12, 8)])
def test_alibi_with_a_table_is_the_reference_noisy_alibi(length, heads, both_sides):
    rng = np.random.default_rng(length * 10 + heads)
    right = _sorted_draw(rng, length - 1, 64)
    left = _sorted_draw(rng, length - 1, 64) if both_sides else None
    want = _reference_noisy_alibi(heads, length, right, left)
    table = toeplitz_table(jnp.asarray(right, jnp.int32), None if left is None else left)
    pos = jnp.arange(length)
    got = alibi_bias(pos, pos, alibi_slopes(heads), bidirectional="ruoss", distances=table)
    assert not np.isnan(want).any()  # the dummy entry is never read
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6, atol=1e-6)


def test_clipped_and_bucketed_indices_read_the_randomized_distance():
    """Shaw clips table[k - q] at K; DeBERTa buckets -table[k - q] (its q - k)."""
    table = toeplitz_table(jnp.array([1, 5, 40]))  # offsets -3..3 -> -40 -5 -1 0 1 5 40
    pos = jnp.arange(4)
    got = np.asarray(shaw_relative_index(pos, pos, 2, distances=table))
    np.testing.assert_array_equal(got[0], [2, 3, 4, 4])  # clip(0, 1, 5, 40) + 2
    np.testing.assert_array_equal(got[3], [0, 0, 1, 2])  # clip(-40, -5, -1, 0) + 2
    got = np.asarray(
        deberta_relative_index(pos, pos, position_buckets=None, max_relative_positions=3,
                               distances=table)
    )  # fmt: skip
    np.testing.assert_array_equal(got[0], [3, 2, 0, 0])  # clip(0, -1, -5, -40) + 3
    np.testing.assert_array_equal(got[3], [5, 5, 4, 3])  # clip(40, 5, 1, 0) + 3, at most 5


def test_alibi_table_in_a_wider_table_and_per_row_tables():
    """A table drawn for R > L serves the first L positions alike; a [B, W] table gives
    each row its own bias."""
    rng = np.random.default_rng(3)
    rows = [_sorted_draw(rng, 4, 50) for _ in range(2)]
    slopes = alibi_slopes(2)
    pos = jnp.arange(5)
    narrow = [toeplitz_table(jnp.asarray(r)) for r in rows]
    wide = jnp.stack([toeplitz_table(jnp.asarray(r), width=9) for r in rows])  # [2, 17]
    got = alibi_bias(pos, pos, slopes, bidirectional="ruoss", distances=wide)  # [2, N, T, S]
    for b, table in enumerate(narrow):
        want = alibi_bias(pos, pos, slopes, bidirectional="ruoss", distances=table)
        np.testing.assert_array_equal(np.asarray(got[b]), np.asarray(want))
    assert not np.array_equal(np.asarray(got[0]), np.asarray(got[1]))


def _reference_xl(q, w_r, table, base=10000.0):
    """float64, per pair: sum_r q[b,i,n,:] . w_r[r,n,:] R(-table[R-1 + j - i])[r]."""
    q, w_r = np.asarray(q, np.float64), np.asarray(w_r, np.float64)
    b, t, n, _ = q.shape
    dim = w_r.shape[0]
    inv = base ** (-np.arange(0, dim, 2, dtype=np.float64) / dim)
    half = (len(table) - 1) // 2
    proj = np.einsum("btnh,rnh->btnr", q, w_r)  # [B, T, N, D_r]
    out = np.zeros((b, n, t, t))
    for i in range(t):
        for j in range(t):
            p = -float(table[half + j - i])  # the randomized i - j
            r = np.empty(dim)
            r[0::2], r[1::2] = np.sin(p * inv), np.cos(p * inv)
            out[:, :, i, j] = proj[:, i] @ r
    return out


@pytest.mark.parametrize("both_sides", [False, True])
def test_transformer_xl_with_a_table_against_per_pair_float64(both_sides):
    rng = np.random.default_rng(5)
    t, n, h, dim = 6, 2, 4, 8
    right = _sorted_draw(rng, t - 1, 200)
    left = _sorted_draw(rng, t - 1, 200) if both_sides else None
    table = toeplitz_table(jnp.asarray(right), None if left is None else jnp.asarray(left))
    q = rng.normal(size=(2, t, n, h)).astype(np.float32)
    w_r = rng.normal(size=(dim, n, h)).astype(np.float32)
    pos = jnp.arange(t)
    got = xl_relative_logits(jnp.asarray(q), jnp.asarray(w_r), pos, pos, distances=table)
    np.testing.assert_allclose(np.asarray(got), _reference_xl(q, w_r, np.asarray(table)), atol=2e-4)


@settings(max_examples=10, deadline=None)
@given(
    t=st.integers(1, 5),
    extra=st.integers(0, 2),
    seed=st.integers(0, 2**16),
    offset=st.integers(0, 50),
)
def test_identity_table_gives_the_positions_own_bias(t, extra, seed, offset):
    """The table of offsets themselves (d_r = r) reproduces every scheme's own bias, for
    positions shifted by any offset (only k - q is read)."""
    rng = np.random.default_rng(seed)
    r = t + extra
    identity = jnp.arange(-(r - 1), r, dtype=jnp.int32)
    pos = jnp.arange(t) + offset
    slopes = alibi_slopes(2)
    for mode in (False, "symmetric", "ruoss"):
        want = alibi_bias(pos, pos, slopes, bidirectional=mode)
        got = alibi_bias(pos, pos, slopes, bidirectional=mode, distances=identity)
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    r1, r2 = jnp.asarray(rng.uniform(0.1, 2, 2)), jnp.asarray(rng.uniform(0.1, 2, 2))
    np.testing.assert_array_equal(
        np.asarray(kerple_bias(pos, pos, r1, r2, distances=identity)),
        np.asarray(kerple_bias(pos, pos, r1, r2)),
    )
    table = jnp.asarray(rng.normal(size=(32, 2)), jnp.float32)
    np.testing.assert_array_equal(
        np.asarray(t5_bias(pos, pos, table, distances=identity)),
        np.asarray(t5_bias(pos, pos, table)),
    )
    for k in (0, 2):
        np.testing.assert_array_equal(
            np.asarray(shaw_relative_index(pos, pos, k, distances=identity)),
            np.asarray(shaw_relative_index(pos, pos, k)),
        )
    for buckets in ({"position_buckets": None, "max_relative_positions": 3},
                    {"position_buckets": 4, "max_relative_positions": 8}):  # fmt: skip
        np.testing.assert_array_equal(
            np.asarray(deberta_relative_index(pos, pos, distances=identity, **buckets)),
            np.asarray(deberta_relative_index(pos, pos, **buckets)),
        )
    q = jnp.asarray(rng.normal(size=(1, t, 2, 4)), jnp.float32)
    w_r = jnp.asarray(rng.normal(size=(6, 2, 4)), jnp.float32)
    np.testing.assert_allclose(
        np.asarray(xl_relative_logits(q, w_r, pos, pos, distances=identity)),
        np.asarray(xl_relative_logits(q, w_r, pos, pos)),
        atol=2e-4,
    )


@settings(max_examples=25, deadline=None)
@given(t=st.integers(2, 8), seed=st.integers(0, 2**16), both=st.booleans())
def test_a_randomized_bias_is_toeplitz_and_decays_away_from_the_diagonal(t, seed, both):
    """The invariances the construction claims: constant along each diagonal, and the
    ALiBi penalty grows strictly with the offset on each side."""
    table = sample_relative_distances(
        jax.random.key(seed), length=t, max_distance=100, randomize_both_sides=both
    )
    pos = jnp.arange(t)
    bias = np.asarray(alibi_bias(pos, pos, jnp.array([1.0]), bidirectional=True, distances=table))
    bias = bias[0]
    for r in range(-(t - 1), t):
        diagonal = np.diagonal(bias, offset=r)
        assert np.all(diagonal == diagonal[0])
    row = bias[0]  # offsets 0 .. t-1
    assert np.all(np.diff(row) < 0)
    column = bias[:, 0]  # offsets 0 .. -(t-1)
    assert np.all(np.diff(column) < 0)


def test_toeplitz_table_layout_and_errors():
    np.testing.assert_array_equal(
        np.asarray(toeplitz_table(jnp.array([2, 5]), width=5)), [-7, -6, -5, -2, 0, 2, 5, 6, 7]
    )
    np.testing.assert_array_equal(np.asarray(toeplitz_table(jnp.zeros((0,), jnp.int32))), [0])
    np.testing.assert_array_equal(
        np.asarray(toeplitz_table(jnp.zeros((0,), jnp.int32), width=3)), [-2, -1, 0, 1, 2]
    )
    with pytest.raises(ValueError, match="right increasing from >= 1"):
        toeplitz_table(jnp.array([3, 3]))
    with pytest.raises(ValueError, match="right increasing from >= 1"):
        toeplitz_table(jnp.array([0, 3]))
    with pytest.raises(ValueError, match="left increasing"):
        toeplitz_table(jnp.array([1, 3]), jnp.array([4, 2]))
    with pytest.raises(ValueError, match="one shape"):
        toeplitz_table(jnp.array([1, 3]), jnp.array([4]))
    with pytest.raises(ValueError, match="width"):
        toeplitz_table(jnp.array([1, 3]), width=2)
    with pytest.raises(ValueError, match="integer right"):
        toeplitz_table(jnp.array([1.0, 3.0]))


def test_relative_from_table_errors():
    table = toeplitz_table(jnp.array([3, 7]))  # serves offsets up to 2
    pos = jnp.arange(4)
    with pytest.raises(ValueError, match=r"offset \|k - q\| = 3 exceeds .* 2 \(W = 5\)"):
        relative_from_table(pos, pos, table, "demo")
    with pytest.raises(ValueError, match=r"distances of shape \[W\] or \[B, W\] with W"):
        relative_from_table(pos, pos, jnp.arange(4), "demo")
    with pytest.raises(ValueError, match="integer distances"):
        relative_from_table(pos, pos, jnp.zeros(5), "demo")
    with pytest.raises(ValueError, match="integer positions"):
        relative_from_table(pos.astype(jnp.float32), pos, table, "demo")
    # Under jit the offsets are not known: they read the table's ends.
    out = jax.jit(lambda p: relative_from_table(p, p, table, "demo"))(pos)
    assert int(out[0, 3]) == 7 and int(out[3, 0]) == -7


def test_sampled_distances_follow_the_reference_law():
    """Each of the N - 1 distances is drawn with probability (L - 1) / (N - 1), the right
    side sorted and distinct; with randomize_both_sides the left side is a second,
    independent draw; otherwise it mirrors the right. 5 sigma per value."""
    length, top, draws = 5, 21, 4000
    keys = jax.random.split(jax.random.key(0), draws)

    def draw(both):
        fn = jax.vmap(
            lambda k: sample_relative_distances(
                k, length=length, max_distance=top, randomize_both_sides=both
            )
        )
        return np.asarray(fn(keys))  # [draws, 2L - 1]

    sym, both = draw(False), draw(True)
    for tables in (sym, both):
        assert np.all(tables[:, length - 1] == 0)
        assert np.all(np.diff(tables, axis=1) > 0)
        right = tables[:, length:]
        assert right.min() >= 1 and right.max() < top
    np.testing.assert_array_equal(sym[:, : length - 1], -sym[:, length:][:, ::-1])
    p = (length - 1) / (top - 1)
    sigma = np.sqrt(draws * p * (1 - p))
    for side in (both[:, length:], -both[:, : length - 1]):
        counts = np.bincount(side.ravel(), minlength=top)[1:]
        assert np.all(np.abs(counts - draws * p) < 5 * sigma), counts
    # Left and right drawn apart: they agree only as often as two independent draws.
    same = np.mean(np.all(both[:, length:] == -both[:, : length - 1][:, ::-1], axis=1))
    assert same < 0.01
    with pytest.raises(ValueError, match="max_distance >= length"):
        sample_relative_distances(jax.random.key(0), length=5, max_distance=4)


# --------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------
ACCEPTING = ["alibi", "xl", "t5", "kerple", "shaw", "deberta"]


def test_the_schemes_that_accept_a_table():
    """Exactly the schemes whose logit term is a function of k - q alone; the reference
    randomizes ALiBi and Transformer-XL that way, so they do it by default."""
    from posenc_jax.schemes import list_schemes, make_scheme

    schemes = {name: make_scheme(name) for name in list_schemes()}
    assert sorted(n for n, s in schemes.items() if s.accepts_distances) == sorted(ACCEPTING)
    assert sorted(n for n, s in schemes.items() if s.distances_by_default) == ["alibi", "xl"]


def _tables(layers, length, width, seed=0):
    keys = jax.random.split(jax.random.key(seed), layers)
    return jnp.stack(
        [sample_relative_distances(k, length=length, max_distance=60, width=width) for k in keys]
    )


@pytest.mark.parametrize("scheme", ACCEPTING)
def test_kv_cache_decoding_and_blockwise_read_the_same_table(scheme):
    """Decoding token by token with the table gives the full forward's logits, and the
    blockwise path the dense one's: every attention path reads the table by offset."""
    from posenc_jax.attention import AttentionConfig
    from posenc_jax.nn import TransformerLM

    def model(attention=None):
        kw = {} if attention is None else {"attention": attention}
        return TransformerLM(
            17, num_layers=2, d_model=16, num_heads=2, scheme=scheme, rngs=nnx.Rngs(0), **kw
        )

    t = 7
    tokens = jax.random.randint(jax.random.key(1), (2, t), 0, 17)
    tables = _tables(2, t, t)
    dense = model()
    full = dense(tokens, relative_distances=tables)
    plain = dense(tokens)
    assert not np.allclose(np.asarray(full), np.asarray(plain), atol=1e-4)
    identity = jnp.broadcast_to(jnp.arange(-(t - 1), t), (2, 2 * t - 1))
    np.testing.assert_allclose(
        np.asarray(dense(tokens, relative_distances=identity)), np.asarray(plain), atol=2e-5
    )
    blockwise = model(AttentionConfig(implementation="blockwise", block_size=4))
    np.testing.assert_allclose(
        np.asarray(blockwise(tokens, relative_distances=tables)), np.asarray(full), atol=2e-5
    )
    dense.init_cache(2, t)
    steps = [
        dense(
            tokens[:, i : i + 1],
            positions=jnp.full((2, 1), i),
            decode=True,
            relative_distances=tables,
        )
        for i in range(t)
    ]
    np.testing.assert_allclose(np.asarray(jnp.concatenate(steps, 1)), np.asarray(full), atol=2e-5)


def test_model_table_errors():
    from posenc_jax.nn import TransformerEncoder, TransformerLM

    lm = TransformerLM(11, num_layers=2, d_model=16, num_heads=2, scheme="rope", rngs=nnx.Rngs(0))
    tokens = jnp.zeros((1, 4), jnp.int32)
    with pytest.raises(ValueError, match="relative_distances: scheme rope does not read"):
        lm(tokens, relative_distances=_tables(2, 4, 4))
    enc = TransformerEncoder(
        11, num_layers=2, d_model=16, num_heads=2, scheme="alibi", rngs=nnx.Rngs(0)
    )
    with pytest.raises(
        ValueError, match=r"\[num_layers, W\] .* num_layers = 2; got shape \(3, 7\)"
    ):
        enc(tokens, relative_distances=_tables(3, 4, 4))
    with pytest.raises(ValueError, match=r"width W = 5 serves offsets up to 2, .* 4 keys"):
        enc(tokens, relative_distances=_tables(2, 3, 3))
    # Per-row tables [B, layers, W], and a jitted gradient through them, are finite.
    tables = jnp.stack([_tables(2, 4, 4, seed=s) for s in range(3)])
    tokens = jnp.zeros((3, 4), jnp.int32)

    def loss(m):
        return jnp.mean(m(tokens, relative_distances=tables) ** 2)

    grads = nnx.jit(nnx.grad(loss))(enc)
    leaves = jax.tree.leaves(nnx.state(grads))
    assert leaves and all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
