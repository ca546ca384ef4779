"""Abacus embeddings against the reference's index computation, and the scheme in a model.

Reference: mcleish7/arithmetic, abacus.py (``Abacus.helper``, lines 24-51, and
``forward``, lines 53-65): the places are computed from the digit mask by marking the
start of each run of digits, numbering the runs with a cumulative sum, scattering each
run's start index and subtracting it from the token index (+1, times the mask); while
training one ``random.randint(0, max_k)`` is added where the id is > 0. Transcribed
below in numpy as the reference does it, not as the library does.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st

from posenc_jax.abacus import abacus_ids, digit_mask, digit_places, sample_abacus_offset
from posenc_jax.harness.config import ConfigError, load_config
from posenc_jax.harness.plan import plan
from posenc_jax.nn import TransformerLM
from posenc_jax.schemes import make_scheme


def reference_places(mask: np.ndarray) -> np.ndarray:
    """abacus.py ``helper``: [B, T] bool -> [B, T] places (numpy transcription)."""
    mask = mask.astype(np.int64)
    shifted = np.concatenate([np.zeros((mask.shape[0], 1), np.int64), mask[:, :-1]], axis=1)
    starts = (shifted != mask) & (mask == 1)
    segment_ids = np.cumsum(starts, axis=1)
    index = np.broadcast_to(np.arange(mask.shape[1]), mask.shape)
    # One slot more than the reference's zeros_like(mask): a row that starts with a digit
    # numbers its runs from 1, up to T (the reference's inputs start with a non-digit).
    reset_index = np.zeros((mask.shape[0], mask.shape[1] + 1), np.int64)
    for row in range(mask.shape[0]):  # scatter_add(1, segment_ids, index * starts)
        np.add.at(reset_index[row], segment_ids[row], index[row] * starts[row])
    positions = index - np.take_along_axis(reset_index, segment_ids, axis=1) + 1
    return positions * mask


masks = st.lists(st.lists(st.booleans(), min_size=1, max_size=24), min_size=1, max_size=4).map(
    lambda rows: np.array([(r * 24)[:24] for r in rows])
)


@settings(max_examples=60, deadline=None)
@given(masks)
def test_places_equal_the_reference(mask):
    np.testing.assert_array_equal(digit_places(jnp.asarray(mask)), reference_places(mask))


@settings(max_examples=40, deadline=None)
@given(masks, st.integers(0, 23))
def test_a_run_carried_across_calls_equals_the_whole_sequence(mask, cut):
    """KV-cache decoding: places of the tail, given the run length before it (the carry)."""
    whole = np.asarray(digit_places(jnp.asarray(mask)))
    head = np.asarray(digit_places(jnp.asarray(mask[:, :cut])))
    carry = head[:, -1] if cut else np.zeros(mask.shape[0], np.int32)
    tail = digit_places(jnp.asarray(mask[:, cut:]), carry=carry)
    np.testing.assert_array_equal(tail, whole[:, cut:])


@settings(max_examples=40, deadline=None)
@given(masks, st.integers(1, 23))
def test_a_new_segment_starts_a_new_run(mask, cut):
    segment_ids = (np.arange(24) >= cut).astype(np.int32)[None].repeat(mask.shape[0], 0)
    packed = np.asarray(digit_places(jnp.asarray(mask), segment_ids=jnp.asarray(segment_ids)))
    np.testing.assert_array_equal(packed[:, :cut], reference_places(mask[:, :cut]))
    np.testing.assert_array_equal(packed[:, cut:], reference_places(mask[:, cut:]))


def test_ids_offset_only_the_digits_and_offsets_cover_both_ends():
    mask = jnp.array([[True, False, True, True]])
    np.testing.assert_array_equal(abacus_ids(mask, offset=7), [[8, 0, 8, 9]])
    np.testing.assert_array_equal(digit_mask(jnp.array([4, 0, 9]), (9, 4)), [True, False, True])
    keys = jax.random.split(jax.random.key(0), 4000)
    draws = jax.vmap(lambda k: sample_abacus_offset(k, 3))(keys)
    counts = np.bincount(np.asarray(draws), minlength=5)
    assert counts[4] == 0 and np.all(np.abs(counts[:4] / 4000 - 0.25) < 0.03)  # U{0..3}


def _lm(**scheme):
    spec = {"name": "abacus", "digit_ids": [3, 4, 5], "max_length": 16, "max_offset": 5}
    return TransformerLM(8, scheme={**spec, **scheme}, num_layers=1, d_model=16, num_heads=2,
                         rngs=nnx.Rngs(0))  # fmt: skip


def test_the_model_adds_the_row_of_each_digit_place_and_shifts_them_while_training():
    model = _lm()
    tokens = jnp.array([[3, 4, 1, 5, 5, 5, 2, 0]])  # places 1 2 0 1 2 3 0 0
    table = model.pos_params.get_value()["table"]
    base = model.embed(tokens)
    places = np.array([1, 2, 0, 1, 2, 3, 0, 0])
    x, _ = model.scheme.embed_tokens(
        model.pos_params.get_value(), base, tokens, carry=jnp.zeros((1,), jnp.int32)
    )
    np.testing.assert_allclose(x, base + table[places][None], rtol=1e-6)
    # Training: one offset k in 0..5 for the whole call, on the digits only.
    x, _ = model.scheme.embed_tokens(
        model.pos_params.get_value(), base, tokens, carry=jnp.zeros((1,), jnp.int32),
        key=jax.random.key(3),
    )  # fmt: skip
    matches = [
        k for k in range(6)
        if np.allclose(x, base + table[np.where(places > 0, places + k, 0)][None], rtol=1e-6)
    ]  # fmt: skip
    assert len(matches) == 1
    # The model ignores positions (NoPE attention): any positions give the same logits.
    np.testing.assert_allclose(
        model(tokens), model(tokens, positions=jnp.arange(8) * 3 + 11), rtol=1e-5, atol=1e-6
    )
    # Training calls draw their offset from the dropout stream: two calls differ.
    a, b = model(tokens, deterministic=False), model(tokens, deterministic=False)
    assert not np.allclose(a, b)


def test_settings_and_calls_that_cannot_work_are_named_errors():
    with pytest.raises(ValueError, match="digit_ids"):
        make_scheme({"name": "abacus", "digit_ids": [-1]})
    with pytest.raises(ValueError, match="max_offset"):
        make_scheme({"name": "abacus", "max_offset": -1})
    unbound = _lm(digit_ids=None)
    with pytest.raises(ValueError, match="digit_ids is not set"):
        unbound(jnp.zeros((1, 4), jnp.int32))
    with pytest.raises(ValueError, match="embed_tokens"):
        make_scheme("abacus").embed({}, jnp.zeros((1, 2, 4)), jnp.arange(2))
    with pytest.raises(ValueError, match="init_cache"):
        _lm()(jnp.zeros((1, 1), jnp.int32), positions=jnp.zeros((1,), jnp.int32), decode=True)
    with pytest.raises(ValueError, match="no digit tokens"):
        make_scheme("abacus").bind_vocabulary(["<pad>", "a", "b"])


def _config(tmp_path, task: str):
    text = f"""
name: abacus_plan
schemes: [abacus]
tasks: [{task}]
model: {{d_model: 16, num_layers: 1, num_heads: 2}}
train: {{steps: 1, batch_size: 2, length: 3}}
eval: {{lengths: [4], batch_size: 2, num_batches: 1}}
"""
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return load_config(path)


def test_the_plan_binds_the_digits_of_the_task_vocabulary(tmp_path):
    (run,) = plan(_config(tmp_path, "reversed_addition"))
    names = run.task.token_names()
    assert [names[i] for i in run.scheme.digit_ids] == [str(d) for d in range(10)]
    with pytest.raises(ConfigError, match=r"schemes\[0\] \(abacus\).*no digit tokens"):
        plan(_config(tmp_path, "copy"))


def test_training_draws_the_offset_from_the_steps_noise_inside_a_jitted_gradient():
    """The harness's train step merges the model inside jax.grad: the offset's key comes
    from the batch's per-step noise, the same for every row of a step and resumable."""
    from posenc_jax.harness.config import TrainConfig
    from posenc_jax.harness.tasks import get_task
    from posenc_jax.harness.train import forward, training_batches

    task = get_task("reversed_addition")
    tcfg = TrainConfig(length=3, min_length=1, steps=3, batch_size=4)
    first = list(training_batches(task, [0, 1], tcfg))
    again = list(training_batches(task, [0, 1], tcfg, start_step=2))
    assert first[0]["noise"].shape == (2, 4)
    assert np.all(first[0]["noise"] == first[0]["noise"][:, :1])  # one draw per seed and step
    assert first[0]["noise"][0, 0] != first[0]["noise"][1, 0] != first[1]["noise"][1, 0]
    np.testing.assert_array_equal(again[0]["noise"], first[2]["noise"])

    digits = [task.token_id(d) for d in "0123456789"]
    model = TransformerLM(task.vocab_size, scheme={"name": "abacus", "digit_ids": digits},
                          num_layers=1, d_model=16, num_heads=2, rngs=nnx.Rngs(0))  # fmt: skip
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    batch = {k: jnp.asarray(v[0]) for k, v in first[0].items()}

    @jax.jit
    def loss(params, noise):
        m = nnx.merge(graphdef, params, rest)
        return forward(m, {**batch, "noise": noise}, deterministic=False).sum()

    grad = jax.jit(jax.grad(loss))
    g = grad(params, batch["noise"])
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(g))
    values = {float(loss(params, batch["noise"] + i)) for i in range(8)}
    assert len(values) > 1  # other keys, other offsets
    assert float(loss(params, batch["noise"])) == float(loss(params, batch["noise"]))
