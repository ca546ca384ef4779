"""Reversed-digit addition in the formats of McLeish et al. (Abacus) and Zhou et al.

References: mcleish7/arithmetic create_data_split.py ``bucket_method_gen`` (operand widths
i, j in 1..20 round-robin, ``randint(10**(i-1), 10**i - 1)``, every number reversed, no
padding: ``rev(a) + "+" + rev(b) + "=" + rev(a + b)``); Zhou et al. 2024 (arXiv
2402.09371) Sec. 2.2 and Fig. 2 (``576+361=937 -> a6b7c5+a1b6c3=a7b3c9``: the same hint
before the digits of one significance, hints a consecutive run of an ordered set of 102).
Every sampled row is parsed back and its answer recomputed with Python integers.
"""

import collections

import numpy as np
import pytest

from posenc_jax.harness.tasks import BOS, EOS, SEP, get_task


def parse(task, tokens, targets, mask):
    """(a, b, answer digits, hints of a, b, answer) from one row, reading reversed numbers."""
    names = task.decode(tokens)
    assert names[0] == "<bos>" and SEP not in tokens
    eq = names.index("=")
    plus = names.index("+")
    answer = [task.decode([t])[0] for t, m in zip(targets, mask, strict=True) if m]
    assert answer[-1] == "<eos>"
    answer = answer[:-1]

    def split(seq):
        if task.index_hints:
            assert all(h.startswith("h") for h in seq[0::2]), seq
            return "".join(seq[1::2]), [int(h[1:]) for h in seq[0::2]]
        return "".join(seq), []

    a, ha = split(names[1:plus])
    b, hb = split(names[plus + 1 : eq])
    c, hc = split(answer)
    return a, b, c, ha, hb, hc


@pytest.mark.parametrize("length", [1, 3, 25])
def test_mcleish_rows_are_reversed_unpadded_sums_of_exact_widths(length):
    task = get_task("reversed_addition")
    batch = task.sample_batch(np.random.default_rng(length), 200, length)
    assert batch.tokens.shape == (200, task.sequence_length(length))
    widths = collections.Counter()
    for row in range(200):
        tokens = [int(t) for t in batch.tokens[row]]
        a, b, c, *_ = parse(task, tokens, batch.targets[row], batch.loss_mask[row])
        assert a[-1] != "0" and b[-1] != "0"  # exact widths: no leading zero (width 1: 1..9)
        assert c == str(int(a[::-1]) + int(b[::-1]))[::-1]
        assert max(len(a), len(b)) == length
        widths[len(a), len(b)] += 1
        first_answer = tokens.index(task.token_id("=")) + 1
        assert tokens[0] == BOS and batch.targets[row][first_answer - 1] != EOS
    # The 2n - 1 pairs whose larger width is n come equally often.
    assert len(widths) == 2 * length - 1 if length <= 3 else len(widths) > 20
    if length == 3:
        counts = np.array(list(widths.values()))
        assert np.all(np.abs(counts - 40) < 5 * np.sqrt(40))


def test_mcleish_training_weights_make_every_pair_of_widths_equally_likely():
    task = get_task("reversed_addition")
    lengths = np.arange(1, 21)
    weights = task.length_weights(lengths)
    per_pair = weights / (2 * lengths - 1)  # each length's pairs share its weight
    np.testing.assert_allclose(per_pair, 1 / 400)
    assert task.train_lengths == (1, 20) and task.eval_lengths[-1] == 100


def test_zhou_rows_have_hinted_padded_digits_aligned_by_significance():
    task = get_task("reversed_addition", widths="equal", index_hints=True)
    assert task.train_lengths == (1, 40) and task.num_hints == 102
    length = 5
    batch = task.sample_batch(np.random.default_rng(0), 300, length)
    starts = []
    for row in range(300):
        a, b, c, ha, hb, hc = parse(
            task, [int(t) for t in batch.tokens[row]], batch.targets[row], batch.loss_mask[row]
        )
        assert len(a) == len(b) == len(c) == length + 1  # padded for the carry
        assert a[-1] == b[-1] == "0" and a[-2] != "0" and b[-2] != "0"
        assert int(c[::-1]) == int(a[::-1]) + int(b[::-1])
        assert ha == hb == hc == list(range(ha[0], ha[0] + length + 1))  # consecutive, shared
        starts.append(ha[0])
    # The run's start is uniform over the 102 - 6 + 1 runs that fit.
    assert min(starts) >= 0 and max(starts) <= 102 - (length + 1)
    assert len(set(starts)) > 60


def test_examples_in_the_papers_formats():
    zhou = get_task("reversed_addition", widths="equal", index_hints=True)
    prompt, answer = zhou.encode_example(576, 361, first_hint=0, pad_to=3)
    assert " ".join(zhou.decode(prompt)) == "h0 6 h1 7 h2 5 + h0 1 h1 6 h2 3 ="
    assert " ".join(zhou.decode(answer)) == "h0 7 h1 3 h2 9"  # Zhou et al. Fig. 2
    mcleish = get_task("reversed_addition")
    prompt, answer = mcleish.encode_example(98, 9)
    assert "".join(mcleish.decode(prompt)) + "".join(mcleish.decode(answer)) == "89+9=701"


def test_bad_options_are_named_errors():
    with pytest.raises(ValueError, match="widths"):
        get_task("reversed_addition", widths="same")
    with pytest.raises(ValueError, match='index_hints needs widths="equal"'):
        get_task("reversed_addition", index_hints=True)
    task = get_task("reversed_addition", widths="equal", index_hints=True, num_hints=10)
    with pytest.raises(ValueError, match="at most num_hints - 1 = 9"):
        task.sample_batch(np.random.default_rng(0), 1, 10)
    with pytest.raises(ValueError, match="operands"):
        task.encode_example(-1, 2)
