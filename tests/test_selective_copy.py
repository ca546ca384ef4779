"""The selective copy task against its reference generator.

Reference: state-spaces/s4, src/dataloaders/datasets/copying.py, ``torch_copying_data``
with ``variable=True`` (lines 30-42): ``M`` data values among ``L + M`` slots at
positions ``sort(randperm(L + M)[:M])``, every other slot the blank; the target is the
``M`` values in order (lines 46-47). Below, every sampled row is read back by a plain
filter, and the slot and value frequencies are checked against the uniform law the
reference's ``randperm`` and ``randint`` give.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posenc_jax.harness.tasks import BOS, EOS, NUM_SPECIAL, SEP, get_task


@pytest.mark.parametrize(("num_tokens", "length"), [(1, 0), (4, 9), (16, 64)])
def test_answer_is_the_data_tokens_in_order_and_only_the_answer_is_scored(num_tokens, length):
    task = get_task("selective_copy", num_tokens=num_tokens, num_symbols=5)
    batch = task.sample_batch(np.random.default_rng(length), 6, length)
    seq = task.sequence_length(length)
    assert batch.tokens.shape == (6, seq) == (6, length + 2 * num_tokens + 2)
    for row in range(6):
        tokens = [int(t) for t in batch.tokens[row]]
        assert tokens[0] == BOS
        sep = 1 + length + num_tokens
        assert tokens[sep] == SEP
        names = task.decode(tokens[1:sep])
        assert names.count("_") == length
        data = [t for t, n in zip(tokens[1:sep], names, strict=True) if n != "_"]
        assert len(data) == num_tokens
        assert tokens[sep + 1 :] == data  # teacher forcing: the answer follows <sep>
        target = [int(t) for t in batch.targets[row, sep:]]
        assert target == [*data, EOS]
        assert list(np.flatnonzero(batch.loss_mask[row])) == list(range(sep, seq))


def test_slots_and_values_are_uniform_as_the_reference_draws_them():
    """Every slot of L + M holds data with probability M / (L + M) (a uniform M-subset),
    and the values are uniform over the data symbols."""
    task = get_task("selective_copy", num_tokens=4, num_symbols=3)
    prompts = task.sample_prompts(np.random.default_rng(0), 6000, 8)
    is_data = prompts[:, :-1] != task.blank_id
    p = 4 / 12
    sd = np.sqrt(p * (1 - p) / 6000)
    np.testing.assert_allclose(is_data.mean(axis=0), p, atol=5 * sd)
    values = prompts[:, :-1][is_data] - NUM_SPECIAL
    freq = np.bincount(values, minlength=3) / values.size
    np.testing.assert_allclose(freq, 1 / 3, atol=5 * np.sqrt(2 / 9 / values.size))
    # Pairs of slots: data in both with probability M(M-1) / ((L+M)(L+M-1)).
    both = (is_data[:, 0] & is_data[:, 11]).mean()
    q = 4 * 3 / (12 * 11)
    assert abs(both - q) < 5 * np.sqrt(q * (1 - q) / 6000)


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_solve_keeps_data_tokens_in_prompt_order(data):
    task = get_task("selective_copy", num_tokens=data.draw(st.integers(1, 6)), num_symbols=4)
    length = data.draw(st.integers(0, 10))
    seed = data.draw(st.integers(0, 2**32 - 1))
    prompts = task.sample_prompts(np.random.default_rng(seed), 3, length)
    answers = task.solve(prompts)
    for prompt, answer in zip(prompts, answers, strict=True):
        assert answer.tolist() == [int(t) for t in prompt[:-1] if t != task.blank_id]


def test_eval_lengths_are_the_dense_and_sparse_splits():
    task = get_task("selective_copy")
    assert (task.num_tokens, task.vocab_size - NUM_SPECIAL) == (16, 15)  # 14 values + blank
    assert task.train_lengths == (128, 128)
    assert task.eval_lengths == (64, 128, 256)


def test_bad_options_and_prompts_are_named_errors():
    with pytest.raises(ValueError, match="num_tokens"):
        get_task("selective_copy", num_tokens=0)
    with pytest.raises(ValueError, match="num_symbols"):
        get_task("selective_copy", num_symbols=1)
    task = get_task("selective_copy", num_tokens=2)
    with pytest.raises(ValueError, match="length"):
        task.sample_batch(np.random.default_rng(0), 1, -1)
    with pytest.raises(ValueError, match="num_tokens=2"):
        task.solve(np.array([[NUM_SPECIAL, task.blank_id, SEP]]))
    with pytest.raises(ValueError, match="<sep>"):
        task.solve(np.array([[NUM_SPECIAL, NUM_SPECIAL]]))
