"""CoPE's counting task against its reference generator's rules.

Reference: facebookresearch/RAM, projects/cope/scripts/count_data_gen.py: statements
``x = 0 ;`` / ``pass;`` / ``x ++;`` drawn with weights 1 / 50 / 7, increments only of a
set variable and never past ``MAX_VAL = 10``, then ``print x`` of a set variable whose
value is the answer. Every sampled program is re-run below by a plain interpreter of
that little language.
"""

import numpy as np
import pytest

from posenc_jax.harness.tasks import BOS, EOS, SEP, get_task


def run_program(words):
    """Executes the statements; returns the value printed."""
    values, i = {}, 0
    while words[i] != "print":
        if words[i] == "pass;":
            i += 1
        elif words[i + 1] == "=":
            assert words[i + 2 : i + 4] == ["0", ";"]
            values[words[i]] = 0
            i += 4
        else:
            assert words[i + 1] == "++;" and words[i] in values  # only a set variable
            values[words[i]] += 1
            assert values[words[i]] <= 10
            i += 2
    assert i == len(words) - 2
    return str(values[words[-1]])


@pytest.mark.parametrize(("num_vars", "length"), [(3, 3), (3, 40), (5, 200)])
def test_every_answer_is_the_printed_value_of_its_program(num_vars, length):
    task = get_task("counting", num_vars=num_vars)
    batch = task.sample_batch(np.random.default_rng(length), 8, length)
    assert batch.tokens.shape == (8, task.sequence_length(length))
    for row in range(8):
        tokens = list(batch.tokens[row])
        assert tokens[0] == BOS
        sep = tokens.index(SEP)
        words = task.decode(tokens[1:sep])
        statements = sum(w in ("pass;", "++;", ";") for w in words)
        assert statements == length
        answer = task.decode([batch.targets[row, sep]])[0]
        assert answer == run_program(words)
        assert batch.targets[row, sep + 1] == EOS
        assert list(np.flatnonzero(batch.loss_mask[row])) == [sep, sep + 1]


def test_statement_mix_follows_the_reference_weights_and_retries():
    """Each statement is pass / set / increment with weights 50 / 1 / 7, an increment that
    cannot be made (no variable set, or the chosen one at 10) redrawn: given the state,
    P(pass) = 50 / (51 + 7 u / m), m variables set, u of them below 10."""
    task = get_task("counting", num_vars=3)
    rng = np.random.default_rng(0)
    expected = variance = observed = 0.0
    for _ in range(30):
        words = task.sample_program(rng, 300)[0][:-2]
        values, i = {}, 0
        while i < len(words):
            m = len(values)
            u = sum(v < 10 for v in values.values())
            p = 50 / (51 + (7 * u / m if m else 0.0))
            expected, variance = expected + p, variance + p * (1 - p)
            observed += words[i] == "pass;"
            if words[i] == "pass;":
                i += 1
            elif words[i + 1] == "=":
                values[words[i]], i = 0, i + 4
            else:
                values[words[i]], i = values[words[i]] + 1, i + 2
    assert abs(observed - expected) < 4 * variance**0.5, (observed, expected, variance**0.5)


def test_bad_options_are_clear_errors():
    with pytest.raises(ValueError, match="num_vars must be at most 26"):
        get_task("counting", num_vars=27)
    with pytest.raises(ValueError, match="num_vars must be an integer >= 1"):
        get_task("counting", num_vars=0)
