"""Flip-flop language modelling against the canonical form of Liu et al. 2023.

Reference: the flip-flop validator's rules (flipflop/playground.py): (i) the first
instruction is always ``w`` and the last always ``r``; (ii) the others are drawn with
probabilities (p_w, p_r, p_i); (iii) the bits after ``w`` and ``i`` are i.i.d. uniform.
A read's bit is the most recent written bit (arXiv 2306.00946, Sec. 3). The checks
below re-derive every sampled string's reads with a plain Python interpreter.
"""

import numpy as np
import pytest

from posenc_jax.harness.tasks import BOS, get_task


def interpret(pairs):
    """Plain flip-flop semantics: the expected bit of every read, and validity."""
    assert pairs[0][0] == "w" and pairs[-1][0] == "r"
    memory, reads = None, []
    for instruction, bit in pairs:
        assert instruction in "wri" and bit in "01"
        if instruction == "w":
            memory = bit
        elif instruction == "r":
            reads.append(bit == memory)
    return reads


@pytest.mark.parametrize("length", [2, 3, 17, 64])
def test_every_string_is_canonical_and_every_read_returns_the_last_write(length):
    task = get_task("flip_flop")
    batch = task.sample_batch(np.random.default_rng(length), 16, length)
    assert batch.tokens.shape == batch.targets.shape == (16, 2 * length)
    assert np.all(batch.tokens[:, 0] == BOS)
    np.testing.assert_array_equal(batch.tokens[:, 1:], batch.targets[:, :-1])  # shifted by one
    assert batch.train_mask.all()  # a language model: every next token is trained
    for row in range(16):
        symbols = task.decode(batch.targets[row])
        pairs = list(zip(symbols[0::2], symbols[1::2], strict=True))
        assert all(interpret(pairs))
        scored = [symbols[j - 1] == "r" for j in range(1, 2 * length, 2)]
        assert list(batch.loss_mask[row, 1::2]) == scored  # exactly the bits after r
        assert not batch.loss_mask[row, 0::2].any()


def test_instruction_and_bit_frequencies_follow_the_options():
    task = get_task("flip_flop", p_write=0.2, p_read=0.3)
    targets = task.sample_batch(np.random.default_rng(0), 200, 202).targets
    inner = np.asarray(task.decode(targets[:, 2:-2:2].ravel()))  # not the fixed first/last
    for symbol, p in (("w", 0.2), ("r", 0.3), ("i", 0.5)):
        assert abs(np.mean(inner == symbol) - p) < 0.01, symbol
    bits = np.asarray(task.decode(targets[:, 1::2].ravel()))
    free = np.asarray(task.decode(targets[:, 0::2].ravel())) != "r"
    assert abs(np.mean(bits[free] == "1") - 0.5) < 0.01


def test_bad_options_and_lengths_are_clear_errors():
    with pytest.raises(ValueError, match=r"p_write \+ p_read must be <= 1"):
        get_task("flip_flop", p_write=0.7, p_read=0.5)
    with pytest.raises(ValueError, match="p_read must be a number in"):
        get_task("flip_flop", p_read=-0.1)
    with pytest.raises(ValueError, match="length must be an integer >= 2"):
        get_task("flip_flop").sample_batch(np.random.default_rng(0), 2, 1)
