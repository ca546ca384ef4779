"""Tests of the task generators against hand-worked examples and independent references.

Independent references used here: plain-Python transcriptions of every Deletang et al. task from
its reference code (``tests/helpers/chomsky_reference.py``), Python's own ``eval`` for arithmetic
expressions, Python integers for binary arithmetic and square roots, a list-based stack
simulation, and the examples printed in the Deletang et al. / Ruoss et al. reference code
docstrings.
"""

import math
from collections import Counter

import numpy as np
import pytest
from helpers import chomsky_reference as reference
from hypothesis import given, settings
from hypothesis import strategies as st

from posenc_jax.harness.tasks import (
    BOS,
    EOS,
    PAD,
    PLACEHOLDER,
    SEP,
    TASKS,
    Batch,
    Task,
    get_task,
    task_options,
)

CHOMSKY = [
    "even_pairs",
    "modular_arithmetic",
    "parity_check",
    "cycle_navigation",
    "stack_manipulation",
    "reverse_string",
    "modular_arithmetic_brackets",
    "solve_equation",
    "duplicate_string",
    "missing_duplicate_string",
    "odds_first",
    "binary_addition",
    "binary_multiplication",
    "compute_sqrt",
    "bucket_sort",
]
DECODER = [
    "copy",
    "reverse",
    "sort",
    "addition",
    "summation",
    "parity",
    "associative_recall",
    "passkey",
]
ALGORITHMIC = CHOMSKY + DECODER
PROPERTY = settings(max_examples=25, deadline=None)


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def encoder_parts(task, batch: Batch, length: int):
    """Splits an encoder batch into inputs, answer targets and answer mask."""
    num_in = task.sequence_length(length) - task.output_length(length)
    return batch.tokens[:, :num_in], batch.targets[:, num_in:], batch.loss_mask[:, num_in:]


def decoder_parts(task, batch: Batch, length: int):
    """Splits a decoder batch into prompts (without <bos>) and answers (without <eos>)."""
    num_prompt = task.sequence_length(length) - task.output_length(length) - 1
    prompts = batch.tokens[:, 1 : num_prompt + 1]
    answers = batch.targets[:, num_prompt:-1]
    return prompts, answers


def names(task, ids) -> str:
    return " ".join(task.decode(ids))


def solve_one(task, text):
    outputs, mask = task.solve(task.encode(text)[None])
    return outputs[0], mask[0]


# ------------------------------------------------------------------------------------------------
# Registry and options.


def test_registry_names_and_kinds():
    # polynomial, lego, scan, pcfg: tests/test_kazemnejad_tasks.py; flip_flop, counting:
    # tests/test_flip_flop.py, tests/test_counting.py; passkey_text: tests/test_hf.py;
    # selective_copy, reversed_addition: tests/test_selective_copy.py, tests/test_arithmetic.py
    others = {"lm", "polynomial", "lego", "scan", "pcfg", "flip_flop", "counting", "passkey_text"}
    others |= {"selective_copy", "reversed_addition"}
    assert set(TASKS) == {*ALGORITHMIC, *others}
    for name in CHOMSKY:
        task = get_task(name)
        assert isinstance(task, Task) and task.name == name and task.causal is False
        assert task.train_lengths == (1, 40)
        assert task.eval_lengths[0] == 41 and task.eval_lengths[-1] == 500
    for name in DECODER:
        task = get_task(name)
        assert task.name == name and task.causal is True
    assert get_task("copy").train_lengths == (1, 20)
    assert max(get_task("copy").eval_lengths) == 40
    assert get_task("addition").train_lengths == (1, 8)
    assert max(get_task("addition").eval_lengths) == 16


def test_unknown_name_lists_choices():
    with pytest.raises(ValueError, match=r"unknown task name='nope'.*even_pairs"):
        get_task("nope")


def test_unknown_option_lists_valid_options():
    with pytest.raises(ValueError, match=r"unknown option 'modulo'.*\['modulus', 'operators'\]"):
        get_task("modular_arithmetic", modulo=5)
    with pytest.raises(ValueError, match=r"unknown option 'modulus'.*valid options: \[\]"):
        get_task("parity_check", modulus=3)
    assert task_options("lm") == ("corpus", "max_bytes", "valid_fraction", "packed", "tokenizer")


@pytest.mark.parametrize(
    ("name", "options", "pattern"),
    [
        ("modular_arithmetic", {"modulus": 1}, r"modulus.*modulus=1"),
        ("modular_arithmetic", {"operators": ["/"]}, r"operators.*\['/'\]"),
        ("cycle_navigation", {"cycle_length": 0}, r"cycle_length=0"),
        ("reverse_string", {"num_symbols": 1}, r"num_symbols=1"),
        ("duplicate_string", {"duplication": 0}, r"duplication=0"),
        ("bucket_sort", {"num_symbols": 2.5}, r"num_symbols=2.5"),
        ("modular_arithmetic_brackets", {"mult": "yes"}, r"mult='yes'"),
        ("summation", {"modulus": 11}, r"modulus=11"),
        ("addition", {"reverse_answer": 1}, r"reverse_answer"),
        ("associative_recall", {"num_values": 1}, r"num_values=1"),
        ("passkey", {"filler": "lorem"}, r"filler='lorem'.*'cycle', 'random'"),
        ("passkey", {"digits": 0}, r"digits=0"),
        ("lm", {"max_bytes": 0}, r"max_bytes=0"),
        ("lm", {"valid_fraction": 1.5}, r"valid_fraction=1.5"),
    ],
)
def test_invalid_option_values(name, options, pattern):
    with pytest.raises(ValueError, match=pattern):
        get_task(name, **options)


@pytest.mark.parametrize("name", ALGORITHMIC)
@pytest.mark.parametrize("length", [0, -3, 2.0, True])
def test_bad_length_raises(name, length):
    task = get_task(name)
    with pytest.raises(ValueError, match="length"):
        task.sample_batch(rng(), 2, length)
    with pytest.raises(ValueError, match="length"):
        task.sequence_length(length)


def test_bad_batch_size_rng_and_too_many_pairs():
    task = get_task("parity_check")
    with pytest.raises(ValueError, match="batch_size=0"):
        task.sample_batch(rng(), 0, 5)
    with pytest.raises(TypeError, match=r"numpy\.random\.Generator"):
        task.sample_batch(0, 2, 5)
    recall = get_task("associative_recall", num_keys=8)
    with pytest.raises(ValueError, match=r"length=9, num_keys=8"):
        recall.sample_batch(rng(), 2, 9)


# ------------------------------------------------------------------------------------------------
# Structure common to every task: shapes, ids, masks, determinism.


@pytest.mark.parametrize("name", ALGORITHMIC)
def test_batch_structure(name):
    # Fixed layouts; default addition right-pads rows of varying widths (tested on its own).
    task = get_task(name, **({"widths": "equal"} if name == "addition" else {}))
    for length in (1, 2, 3, 4, 5, 8, 13, 41):
        batch = task.sample_batch(rng(length), 6, length)
        seq = task.sequence_length(length)
        for array in (batch.tokens, batch.targets, batch.loss_mask):
            assert array.shape == (6, seq)
        assert batch.tokens.dtype == np.int32 and batch.targets.dtype == np.int32
        assert batch.loss_mask.dtype == np.bool_
        assert batch.tokens.min() >= 0 and batch.tokens.max() < task.vocab_size
        assert batch.targets.min() >= 0 and batch.targets.max() < task.vocab_size
        assert np.all(batch.targets[~batch.loss_mask] == PAD)
        assert np.all(batch.targets[batch.loss_mask] != PAD)
        num_out = task.output_length(length)
        if task.causal:
            # <bos> prompt answer <eos>: the mask covers the answer and the final <eos>.
            assert np.all(batch.tokens[:, 0] == BOS)
            assert np.all(batch.loss_mask[:, -(num_out + 1) :])
            assert not batch.loss_mask[:, : -(num_out + 1)].any()
            assert np.all(batch.tokens[:, -(num_out + 1)] == SEP) or name == "associative_recall"
            scored = batch.loss_mask[:, :-1]
            assert np.array_equal(batch.targets[:, :-1][scored], batch.tokens[:, 1:][scored])
            assert np.all(batch.targets[:, -1] == EOS)
        else:
            # inputs then placeholders; targets only on the placeholder positions.
            assert np.all(batch.tokens[:, seq - num_out :] == PLACEHOLDER)
            assert not np.any(batch.tokens[:, : seq - num_out] == PLACEHOLDER)
            assert not batch.loss_mask[:, : seq - num_out].any()
            assert batch.loss_mask[:, seq - num_out].all()  # the first answer slot is scored
        assert not np.isin(batch.tokens[:, 1:], [BOS, PAD]).any()


@pytest.mark.parametrize("name", ALGORITHMIC)
def test_determinism_per_seed(name):
    task = get_task(name)
    first = task.sample_batch(rng(7), 8, 12)
    second = task.sample_batch(rng(7), 8, 12)
    other = task.sample_batch(rng(8), 8, 12)
    for field in ("tokens", "targets", "loss_mask"):
        assert np.array_equal(getattr(first, field), getattr(second, field))
    assert not np.array_equal(first.tokens, other.tokens)


@pytest.mark.parametrize("name", ["modular_arithmetic_brackets", "solve_equation"])
def test_generated_answers_match_solver(name):
    # These two samplers take the answer from the generator (the value built alongside the
    # expression, the digit replaced by x), not from solve(); the two must agree. The other
    # tasks build targets with solve() itself: test_chomsky_targets_match_independent_reference
    # checks every task against an independent solver.
    task = get_task(name)
    for length in (1, 2, 3, 5, 9, 30):
        batch = task.sample_batch(rng(length), 16, length)
        inputs, targets, mask = encoder_parts(task, batch, length)
        outputs, solved_mask = task.solve(inputs)
        assert np.array_equal(mask, solved_mask)
        assert np.array_equal(targets, np.where(mask, outputs, PAD))


def test_sequence_lengths():
    expected = {
        "even_pairs": 41,
        "modular_arithmetic": 40,  # even length 40 -> 39 input tokens, one answer
        "stack_manipulation": 81,
        "reverse_string": 80,
        "duplicate_string": 120,
        "binary_addition": 81,
        "binary_multiplication": 80,
        "compute_sqrt": 60,
        "bucket_sort": 80,
        "parity_check": 41,
        "cycle_navigation": 41,
        "modular_arithmetic_brackets": 41,
        "solve_equation": 41,
        "missing_duplicate_string": 41,
        "odds_first": 80,
        "copy": 82,  # <bos> 40 symbols <sep> 40 symbols <eos>, less the shifted-out token
        "reverse": 82,
        "sort": 82,
        "parity": 43,
        "summation": 43,
        "addition": 124,
        "associative_recall": 84,
        "passkey": 53,
    }
    for name, seq in expected.items():
        options = {"widths": "equal"} if name == "addition" else {}
        assert get_task(name, **options).sequence_length(40) == seq, name
    with pytest.raises(ValueError, match="addition: length must be <= 18 digits"):
        get_task("addition").sequence_length(19)
    assert get_task("modular_arithmetic").sequence_length(41) == 42
    assert get_task("compute_sqrt").sequence_length(7) == 11


# ------------------------------------------------------------------------------------------------
# Deletang et al. suite: hand-checked cases (examples from the reference docstrings).


def test_vocabulary_layout():
    task = get_task("stack_manipulation")
    assert task.vocab_size == 10
    assert list(task.encode(["<pad>", "<placeholder>", "<bos>", "<sep>", "<eos>"])) == list(
        range(5)
    )
    assert list(task.encode(["0", "1", "POP", "PUSH0", "PUSH1"])) == [5, 6, 7, 8, 9]
    with pytest.raises(ValueError, match="unknown symbol='PUSH2'"):
        task.encode(["PUSH2"])


def test_even_pairs_and_parity_check_examples():
    even = get_task("even_pairs")
    assert names(even, solve_one(even, "001110")[0]) == "0"
    assert names(even, solve_one(even, "0101001")[0]) == "1"
    parity = get_task("parity_check")
    assert names(parity, solve_one(parity, "1010100")[0]) == "1"
    assert names(parity, solve_one(parity, "01111")[0]) == "0"


def test_cycle_navigation_examples():
    task = get_task("cycle_navigation")
    assert names(task, solve_one(task, "RLSLL")[0]) == "s3"  # 1 -1 0 -1 -1 -> -2 -> 3
    assert names(task, solve_one(task, "RRRL")[0]) == "s2"
    seven = get_task("cycle_navigation", cycle_length=7)
    assert names(seven, solve_one(seven, "LLL")[0]) == "s4"


def test_modular_arithmetic_examples():
    task = get_task("modular_arithmetic")
    assert names(task, solve_one(task, "1+2*3")[0]) == "2"
    assert names(task, solve_one(task, "1-1-1")[0]) == "4"
    assert names(task, solve_one(task, "0*1+4*3-2")[0]) == "0"
    assert names(task, solve_one(task, "4")[0]) == "4"
    assert names(task, solve_one(task, "2-3*4*4+1")[0]) == "0"  # 2 - 48 + 1 = -45


def test_stack_manipulation_examples():
    task = get_task("stack_manipulation")
    outputs, mask = solve_one(task, ["0", "1", "1", "0", "PUSH1", "POP", "POP"])
    assert names(task, outputs) == "1 1 0 <eos> <pad> <pad> <pad> <pad>"
    assert mask.tolist() == [True] * 4 + [False] * 4
    outputs, mask = solve_one(task, ["1", "1", "0", "POP", "POP", "POP"])
    assert names(task, outputs[:1]) == "<eos>" and mask.tolist() == [True] + [False] * 6
    outputs, _ = solve_one(task, ["1", "POP", "POP", "PUSH0", "PUSH1"])
    assert names(task, outputs[:3]) == "1 0 <eos>"


def test_reverse_duplicate_odds_first_bucket_sort_examples():
    reverse = get_task("reverse_string")
    assert names(reverse, solve_one(reverse, "011010")[0]) == "0 1 0 1 1 0"
    duplicate = get_task("duplicate_string")
    assert names(duplicate, solve_one(duplicate, "101")[0]) == "1 0 1 1 0 1"
    triple = get_task("duplicate_string", duplication=3, num_symbols=3)
    assert names(triple, solve_one(triple, "21")[0]) == "2 1 2 1 2 1"
    odds = get_task("odds_first")
    assert names(odds, solve_one(odds, "00110101")[0]) == "0 1 1 1 0 1 0 0"
    assert names(odds, solve_one(odds, "110")[0]) == "1 1 0"
    bucket = get_task("bucket_sort")
    assert names(bucket, solve_one(bucket, "10204112")[0]) == "0 0 1 1 1 2 2 4"


def test_missing_duplicate_string_examples():
    task = get_task("missing_duplicate_string")
    assert names(task, solve_one(task, "01100?10")[0]) == "1"
    assert names(task, solve_one(task, "1011?1_")[0]) == "0"
    assert names(task, solve_one(task, "?1")[0]) == "1"
    assert names(task, solve_one(task, "1")[0]) == "1"  # length 1, as the reference
    with pytest.raises(ValueError, match=r"exactly one '\?'"):
        task.solve(task.encode("0101")[None])


def test_binary_addition_examples():
    task = get_task("binary_addition")
    # 0b101 + 0b011 = 5 + 3 = 8, little-endian: "101" + "110" -> "0001".
    outputs, mask = solve_one(task, "101+110")
    assert names(task, outputs) == "0 0 0 1 <eos> <pad> <pad> <pad>"
    assert mask.sum() == 5
    outputs, mask = solve_one(task, "001+01101")  # 4 + 22 = 26 = 01011 (little-endian)
    assert names(task, outputs[: mask.sum()]) == "0 1 0 1 1 <eos>"
    outputs, mask = solve_one(task, "1001+000001")  # 9 + 32 = 41
    assert names(task, outputs[: mask.sum()]) == "1 0 0 1 0 1 <eos>"
    outputs, mask = solve_one(task, "01")  # short lengths: the number itself, as the reference
    assert names(task, outputs[: mask.sum()]) == "0 1 <eos>"


def test_binary_multiplication_examples():
    task = get_task("binary_multiplication")
    outputs, mask = solve_one(task, "001*01101")  # 4 * 22 = 88
    assert names(task, outputs) == "0 0 0 1 1 0 1 <eos> <pad>"
    assert mask.sum() == 8
    outputs, mask = solve_one(task, "1001*000001")  # 9 * 32 = 288
    assert names(task, outputs[: mask.sum()]) == "0 0 0 0 0 1 0 0 1 <eos>"
    outputs, mask = solve_one(task, "1")  # length 1: empty product, as the reference
    assert names(task, outputs) == "<eos>" and mask.tolist() == [True]


def test_compute_sqrt_examples():
    task = get_task("compute_sqrt")
    assert names(task, solve_one(task, "100101")[0]) == "1 1 0"  # isqrt(37) = 6
    assert names(task, solve_one(task, "111")[0]) == "1 0"  # isqrt(7) = 2
    assert names(task, solve_one(task, "0000001")[0]) == "0 0 0 1"
    assert names(task, solve_one(task, "11111111")[0]) == "1 1 1 1"  # isqrt(255) = 15


def test_bracket_examples():
    task = get_task("modular_arithmetic_brackets")
    assert names(task, solve_one(task, "((1+2)*-3)")[0]) == "1"
    assert names(task, solve_one(task, "(-4)")[0]) == "1"
    assert names(task, solve_one(task, "(4--3)")[0]) == "2"
    with pytest.raises(ValueError, match="expression"):
        task.solve(task.encode("(1+2")[None])


def test_solve_equation_examples():
    task = get_task("solve_equation")
    assert names(task, solve_one(task, "(x-(3+4))=0")[0]) == "2"
    assert names(task, solve_one(task, "(-x)=2")[0]) == "3"
    assert names(task, solve_one(task, "((1-x)+4)=1")[0]) == "4"
    # Lengths 1 and 2 hold no equation: all-"0" inputs and answer "0", as the reference.
    batch = task.sample_batch(rng(), 3, 2)
    assert names(task, batch.tokens[0]) == "0 0 <placeholder>"
    assert names(task, batch.targets[0, -1:]) == "0"


# ------------------------------------------------------------------------------------------------
# Deletang et al. suite: properties on generated batches against independent references.

# Each task with its default options (the paper's settings), and the options that change what
# the solver computes or which symbols it sees.
REFERENCE_CASES = [
    ("even_pairs", {}),
    ("parity_check", {}),
    ("cycle_navigation", {}),
    ("cycle_navigation", {"cycle_length": 7}),
    ("modular_arithmetic", {}),
    ("modular_arithmetic", {"modulus": 7, "operators": ["-", "*"]}),
    ("modular_arithmetic", {"modulus": 3, "operators": ["+"]}),
    ("stack_manipulation", {}),
    ("reverse_string", {}),
    ("reverse_string", {"num_symbols": 4}),
    ("modular_arithmetic_brackets", {}),
    ("modular_arithmetic_brackets", {"modulus": 7, "mult": False}),
    ("solve_equation", {}),
    ("solve_equation", {"modulus": 7}),
    ("duplicate_string", {}),
    ("duplicate_string", {"num_symbols": 3, "duplication": 3}),
    ("missing_duplicate_string", {}),
    ("odds_first", {}),
    ("odds_first", {"num_symbols": 3}),
    ("binary_addition", {}),
    ("binary_multiplication", {}),
    ("compute_sqrt", {}),
    ("bucket_sort", {}),
    ("bucket_sort", {"num_symbols": 3}),
]
# The special cases at lengths 1..4, odd and even lengths, training lengths, evaluation lengths.
REFERENCE_LENGTHS = (1, 2, 3, 4, 5, 6, 7, 8, 11, 16, 25, 40, 41, 64, 99)


def _case_id(case):
    name, options = case
    values = {k: "".join(v) if isinstance(v, list) else v for k, v in options.items()}
    return name + "".join(f"-{k}={v}" for k, v in values.items())


@pytest.mark.parametrize("case", REFERENCE_CASES, ids=_case_id)
def test_chomsky_targets_match_independent_reference(case):
    # Decodes every sampled input with a symbol table written out apart from the task, solves it
    # with a plain-Python transcription of the reference task (tests/helpers/chomsky_reference.py)
    # and requires the batch's placeholders, targets and loss mask to be exactly that answer.
    name, options = case
    task = get_task(name, **options)
    symbols = reference.alphabet(name, **options)
    assert task.symbols == symbols and task.vocab_size == 5 + len(symbols)
    pad, placeholder = reference.encode(symbols, ["<pad>", "<placeholder>"])
    for length in REFERENCE_LENGTHS:
        num_in = reference.input_length(name, length)
        for seed in range(3):
            batch = task.sample_batch(rng(100 * length + seed), 32, length)
            for tokens, targets, mask in zip(
                batch.tokens.tolist(), batch.targets.tolist(), batch.loss_mask.tolist(), strict=True
            ):
                inputs = reference.decode(symbols, tokens[:num_in])
                where = f"{name} {options} length={length} inputs={' '.join(inputs)}"
                assert not set(inputs) & set(reference.SPECIALS), where
                try:
                    answer, width = reference.solve(name, inputs, length, **options)
                except AssertionError as error:
                    pytest.fail(f"input outside the reference task's domain: {where}: {error}")
                free = width - len(answer)
                assert free >= 0, where
                assert tokens[num_in:] == [placeholder] * width, where
                assert (
                    targets == [pad] * num_in + reference.encode(symbols, answer) + [pad] * free
                ), where
                assert mask == [False] * num_in + [True] * len(answer) + [False] * free, where


def test_reference_solvers_on_the_reference_docstring_examples():
    # Checks of the reference solvers themselves: the examples printed in the reference task
    # files (compute_sqrt and odds_first as the reference code computes them, see the helper's
    # comments), plus hand-worked bracket expressions and one equation.
    solve = reference.solve
    assert solve("even_pairs", list("001110"), 6) == (["0"], 1)
    assert solve("even_pairs", list("0101001"), 7) == (["1"], 1)
    assert solve("parity_check", list("1010100"), 7) == (["1"], 1)
    assert solve("parity_check", list("01111"), 5) == (["0"], 1)
    assert solve("cycle_navigation", list("RLSLL"), 5) == (["s3"], 1)
    assert solve("cycle_navigation", list("RRRL"), 4) == (["s2"], 1)
    assert solve("modular_arithmetic", list("1+2*3"), 5) == (["2"], 1)
    assert solve("modular_arithmetic", list("1-1-1"), 5) == (["4"], 1)
    assert solve("modular_arithmetic", list("0*1+4*3-2"), 9) == (["0"], 1)
    ops = ["0", "1", "1", "0", "PUSH1", "POP", "POP"]
    assert solve("stack_manipulation", ops, 7) == (["1", "1", "0", "<eos>"], 8)
    assert solve("stack_manipulation", ["1", "1", "0", "POP", "POP", "POP"], 6) == (["<eos>"], 7)
    assert solve("reverse_string", list("011010"), 6) == (list("010110"), 6)
    assert solve("modular_arithmetic_brackets", list("((1+2)*-3)"), 10) == (["1"], 1)
    assert solve("modular_arithmetic_brackets", list("(-3+2)"), 6) == (["4"], 1)
    assert solve("solve_equation", list("(x-(3+4))=0"), 11) == (["2"], 1)
    assert solve("duplicate_string", list("101"), 3) == (list("101101"), 6)
    assert solve("missing_duplicate_string", list("01100?10"), 8) == (["1"], 1)
    assert solve("missing_duplicate_string", list("1011?1_"), 7) == (["0"], 1)
    assert solve("odds_first", list("00110101"), 8) == (list("01110100"), 8)
    assert solve("binary_addition", list("001+01101"), 9) == ([*"01011", "<eos>"], 10)
    assert solve("binary_addition", list("1001+000001"), 11) == ([*"100101", "<eos>"], 12)
    assert solve("binary_multiplication", list("001*01101"), 9) == ([*"0001101", "<eos>"], 9)
    assert solve("binary_multiplication", list("0"), 1) == (["<eos>"], 1)
    assert solve("compute_sqrt", list("100101"), 6) == (list("110"), 3)
    assert solve("compute_sqrt", list("111"), 3) == (list("10"), 2)
    assert solve("bucket_sort", list("10204112"), 8) == (list("00111224"), 8)
    with pytest.raises(AssertionError):  # outside the grammar: a bracketed sum without brackets
        solve("modular_arithmetic_brackets", list("1+2"), 3)


def _text(task, ids) -> str:
    return "".join(task.decode(ids))


@PROPERTY
@given(seed=st.integers(0, 2**32 - 1), length=st.integers(1, 60))
def test_modular_arithmetic_matches_python_eval(seed, length):
    task = get_task("modular_arithmetic")
    batch = task.sample_batch(rng(seed), 8, length)
    inputs, targets, _ = encoder_parts(task, batch, length)
    assert inputs.shape[1] % 2 == 1
    for row, target in zip(inputs, targets[:, 0], strict=True):
        expected = eval(_text(task, row)) % 5  # digits and + - * only
        assert task.decode([target]) == [str(expected)]


@PROPERTY
@given(seed=st.integers(0, 2**32 - 1), length=st.integers(1, 60))
def test_brackets_match_python_eval(seed, length):
    task = get_task("modular_arithmetic_brackets")
    batch = task.sample_batch(rng(seed), 8, length)
    inputs, targets, _ = encoder_parts(task, batch, length)
    assert inputs.shape == (8, length)
    for row, target in zip(inputs, targets[:, 0], strict=True):
        text = _text(task, row)
        assert len(text) == length
        assert task.decode([target]) == [str(eval(text) % 5)]


@PROPERTY
@given(seed=st.integers(0, 2**32 - 1), length=st.integers(3, 60))
def test_solve_equation_answer_is_the_unique_root(seed, length):
    task = get_task("solve_equation")
    batch = task.sample_batch(rng(seed), 8, length)
    inputs, targets, _ = encoder_parts(task, batch, length)
    for row, target in zip(inputs, targets[:, 0], strict=True):
        text = _text(task, row)
        assert text.count("x") == 1 and "*" not in text and text[-2] == "="
        lhs, rhs = text[:-2], int(text[-1])
        roots = [c for c in range(5) if eval(lhs.replace("x", str(c))) % 5 == rhs]
        assert task.decode([target]) == [str(c) for c in roots]


def _stack_reference(ops: list[str]) -> list[str]:
    stack: list[str] = []
    for i, op in enumerate(ops):
        if op in ("0", "1"):
            assert all(o in ("0", "1") for o in ops[:i])  # the initial stack comes first
            stack.append(op)
        elif op == "POP":
            if stack:
                stack.pop()
        else:
            stack.append(op[-1])
    return stack[::-1]


@PROPERTY
@given(seed=st.integers(0, 2**32 - 1), length=st.integers(1, 60))
def test_stack_manipulation_matches_list_simulation(seed, length):
    task = get_task("stack_manipulation")
    batch = task.sample_batch(rng(seed), 8, length)
    inputs, targets, mask = encoder_parts(task, batch, length)
    for row, target, row_mask in zip(inputs, targets, mask, strict=True):
        expected = [*_stack_reference(task.decode(row)), "<eos>"]
        assert task.decode(target[row_mask]) == expected
        assert row_mask.tolist() == [True] * len(expected) + [False] * (length + 1 - len(expected))


@PROPERTY
@given(seed=st.integers(0, 2**32 - 1), length=st.integers(1, 60))
def test_regular_tasks_match_closed_forms(seed, length):
    even = get_task("even_pairs")
    inputs, targets, _ = encoder_parts(even, even.sample_batch(rng(seed), 8, length), length)
    for row, target in zip(inputs, targets[:, 0], strict=True):
        bits = _text(even, row)
        assert even.decode([target]) == ["1" if bits[0] != bits[-1] else "0"]
    parity = get_task("parity_check")
    inputs, targets, _ = encoder_parts(parity, parity.sample_batch(rng(seed), 8, length), length)
    for row, target in zip(inputs, targets[:, 0], strict=True):
        assert parity.decode([target]) == [str(_text(parity, row).count("1") % 2)]
    cycle = get_task("cycle_navigation")
    inputs, targets, _ = encoder_parts(cycle, cycle.sample_batch(rng(seed), 8, length), length)
    for row, target in zip(inputs, targets[:, 0], strict=True):
        walk = _text(cycle, row)
        assert cycle.decode([target]) == [f"s{(walk.count('R') - walk.count('L')) % 5}"]


@PROPERTY
@given(seed=st.integers(0, 2**32 - 1), length=st.integers(1, 60))
def test_string_tasks_properties(seed, length):
    reverse = get_task("reverse_string")
    inputs, targets, _ = encoder_parts(reverse, reverse.sample_batch(rng(seed), 8, length), length)
    assert np.array_equal(targets[:, ::-1], inputs)  # reversing twice is the identity
    duplicate = get_task("duplicate_string")
    batch = duplicate.sample_batch(rng(seed), 8, length)
    inputs, targets, _ = encoder_parts(duplicate, batch, length)
    assert np.array_equal(targets[:, :length], inputs)
    assert np.array_equal(targets[:, length:], inputs)
    bucket = get_task("bucket_sort")
    inputs, targets, _ = encoder_parts(bucket, bucket.sample_batch(rng(seed), 8, length), length)
    assert np.all(np.diff(targets, axis=1) >= 0)
    for row, target in zip(inputs, targets, strict=True):
        assert Counter(row.tolist()) == Counter(target.tolist())
    odds = get_task("odds_first")
    inputs, targets, _ = encoder_parts(odds, odds.sample_batch(rng(seed), 8, length), length)
    for row, target in zip(inputs, targets, strict=True):
        s = _text(odds, row)
        assert _text(odds, target) == "".join(s[i] for i in range(1, length, 2)) + "".join(
            s[i] for i in range(0, length, 2)
        )


@PROPERTY
@given(seed=st.integers(0, 2**32 - 1), length=st.integers(2, 60))
def test_missing_duplicate_fills_the_gap(seed, length):
    task = get_task("missing_duplicate_string")
    inputs, targets, _ = encoder_parts(task, task.sample_batch(rng(seed), 8, length), length)
    for row, target in zip(inputs, targets[:, 0], strict=True):
        text = _text(task, row)
        assert text.count("?") == 1 and text.endswith("_") == (length % 2 == 1)
        filled = text.replace("?", task.decode([target])[0]).rstrip("_")
        half = length // 2
        assert filled[:half] == filled[half:]


@PROPERTY
@given(seed=st.integers(0, 2**32 - 1), length=st.integers(1, 70))
def test_binary_tasks_match_python_integers(seed, length):
    for name, op, width in (
        ("binary_addition", "+", length + 1),
        ("binary_multiplication", "*", length),
    ):
        task = get_task(name)
        inputs, targets, mask = encoder_parts(task, task.sample_batch(rng(seed), 8, length), length)
        assert targets.shape[1] == width
        for row, target, row_mask in zip(inputs, targets, mask, strict=True):
            text = _text(task, row)
            if length <= 2:
                assert op not in text
                continue
            left, right = text.split(op)
            assert left and right and "1" in left and "1" in right  # non-zero operands
            a, b = int(left[::-1], 2), int(right[::-1], 2)
            value = a + b if op == "+" else a * b
            assert _text(task, target[row_mask]) == format(value, "b")[::-1] + "<eos>"
    task = get_task("compute_sqrt")
    inputs, targets, _ = encoder_parts(task, task.sample_batch(rng(seed), 8, length), length)
    for row, target in zip(inputs, targets, strict=True):
        x, r = int(_text(task, row), 2), int(_text(task, target), 2)
        assert x >= 1 and r * r <= x < (r + 1) * (r + 1)
        assert len(target) == math.ceil(length / 2)


# ------------------------------------------------------------------------------------------------
# Decoder tasks.


def test_decoder_layout_for_copy():
    task = get_task("copy", num_symbols=4)
    batch = task.sample_batch(rng(3), 1, 2)
    a, b = batch.tokens[0, 1:3]
    assert batch.tokens[0].tolist() == [BOS, a, b, SEP, a, b]
    assert batch.targets[0].tolist() == [PAD, PAD, PAD, a, b, EOS]
    assert batch.loss_mask[0].tolist() == [False, False, False, True, True, True]


def test_decoder_hand_cases():
    def answer(name, prompt, **options):
        task = get_task(name, **options)
        return names(task, task.solve(task.encode(prompt)[None])[0])

    assert answer("copy", ["s3", "s1", "s4", "<sep>"]) == "s3 s1 s4"
    assert answer("reverse", ["s1", "s2", "s3", "<sep>"]) == "s3 s2 s1"
    assert answer("sort", ["s3", "s0", "s2", "s0", "<sep>"]) == "s0 s0 s2 s3"
    assert answer("summation", ["3", "8", "6", "<sep>"]) == "7"
    assert answer("summation", ["3", "8", "6", "<sep>"], modulus=5) == "2"
    assert answer("parity", ["1", "0", "1", "1", "<sep>"]) == "1"
    equal = {"widths": "equal"}
    assert answer("addition", ["4", "7", "+", "8", "5", "<sep>"], **equal) == "1 3 2"
    assert answer("addition", ["3", "+", "4", "<sep>"], **equal) == "0 7"
    prompt = ["4", "7", "+", "8", "5", "<sep>"]
    assert answer("addition", prompt, **equal, reverse_answer=True) == "2 3 1"
    assert answer("associative_recall", ["k4", "v1", "k2", "v7", "<sep>", "k2"]) == "v7"
    prompt = ["f0", "f1", "KEY", "4", "0", "7", "f2", "<sep>"]
    assert answer("passkey", prompt, digits=3) == "4 0 7"
    with pytest.raises(ValueError, match="<sep>"):
        get_task("copy").solve(get_task("copy").encode(["s1", "s2"])[None])


@PROPERTY
@given(seed=st.integers(0, 2**32 - 1), length=st.integers(1, 40))
def test_decoder_sequence_tasks_properties(seed, length):
    reverse = get_task("reverse")
    prompts, answers = decoder_parts(reverse, reverse.sample_batch(rng(seed), 8, length), length)
    assert np.array_equal(answers[:, ::-1], prompts[:, :-1])  # reversing twice is the identity
    copy = get_task("copy")
    prompts, answers = decoder_parts(copy, copy.sample_batch(rng(seed), 8, length), length)
    assert np.array_equal(answers, prompts[:, :-1])
    sort = get_task("sort")
    prompts, answers = decoder_parts(sort, sort.sample_batch(rng(seed), 8, length), length)
    assert np.all(np.diff(answers, axis=1) >= 0)
    for prompt, ans in zip(prompts, answers, strict=True):
        assert Counter(prompt[:-1].tolist()) == Counter(ans.tolist())
    summation = get_task("summation")
    batch = summation.sample_batch(rng(seed), 8, length)
    prompts, answers = decoder_parts(summation, batch, length)
    for prompt, ans in zip(prompts, answers, strict=True):
        digits = [int(d) for d in summation.decode(prompt[:-1])]
        assert min(digits) >= 1 and summation.decode(ans) == [str(sum(digits) % 10)]
    parity = get_task("parity")
    prompts, answers = decoder_parts(parity, parity.sample_batch(rng(seed), 8, length), length)
    for prompt, ans in zip(prompts, answers, strict=True):
        assert parity.decode(ans) == [str(parity.decode(prompt[:-1]).count("1") % 2)]


@PROPERTY
@given(seed=st.integers(0, 2**32 - 1), length=st.integers(1, 16))
def test_addition_matches_python_integers(seed, length):
    for reverse_answer in (False, True):
        task = get_task("addition", widths="equal", reverse_answer=reverse_answer)
        prompts, answers = decoder_parts(task, task.sample_batch(rng(seed), 8, length), length)
        for prompt, ans in zip(prompts, answers, strict=True):
            text = "".join(task.decode(prompt[:-1]))
            left, right = text.split("+")
            assert len(left) == len(right) == length
            assert length == 1 or (left[0] != "0" and right[0] != "0")
            total = str(int(left) + int(right)).zfill(length + 1)
            got = "".join(task.decode(ans))
            assert got == (total[::-1] if reverse_answer else total)


@PROPERTY
@given(seed=st.integers(0, 2**32 - 1), length=st.integers(1, 16))
def test_addition_follows_the_reference_widths_and_answers(seed, length):
    """Kazemnejad et al.'s data: the larger width is the length, the other one any of 1..n,
    operands of exactly their width (0..9 at width 1), the plain sum, right padding."""
    task = get_task("addition")
    batch = task.sample_batch(rng(seed), 16, length)
    assert batch.tokens.shape == (16, task.sequence_length(length))
    for tokens, targets, mask in zip(batch.tokens, batch.targets, batch.loss_mask, strict=True):
        words = task.decode(tokens)
        sep = words.index("<sep>")
        left, right = "".join(words[1:sep]).split("+")
        assert max(len(left), len(right)) == length and min(len(left), len(right)) >= 1
        assert all(len(x) == 1 or x[0] != "0" for x in (left, right))
        answer = task.decode(targets[mask])
        assert answer == [*str(int(left) + int(right)), "<eos>"]
        end = sep + len(answer)  # the last token fed to the model is the answer's last digit
        assert np.all(tokens[end:] == PAD) and not mask[end:].any()


def test_addition_trains_every_pair_of_widths_alike():
    task = get_task("addition")
    weights = task.length_weights(np.arange(1, 9))
    # Pairs (a, b) in [1, 8]^2 with max(a, b) = n: 2n - 1 of the 64.
    assert np.allclose(weights, [(2 * n - 1) / 64 for n in range(1, 9)])
    seen = Counter()
    for seed in range(40):
        batch = task.sample_batch(rng(seed), 64, 3)
        for tokens in batch.tokens:
            words = task.decode(tokens)
            left, right = "".join(words[1 : words.index("<sep>")]).split("+")
            seen[(len(left), len(right))] += 1
    assert set(seen) == {(3, 1), (3, 2), (3, 3), (1, 3), (2, 3)}
    assert max(seen.values()) < 1.3 * min(seen.values())  # 2560 rows, 5 equally likely pairs
    assert get_task("addition", widths="equal").length_weights(np.arange(1, 9)) is None
    with pytest.raises(ValueError, match='reverse_answer needs widths="equal"'):
        get_task("addition", reverse_answer=True)


@PROPERTY
@given(seed=st.integers(0, 2**32 - 1), length=st.integers(1, 64))
def test_associative_recall_answers_the_bound_value(seed, length):
    task = get_task("associative_recall", num_keys=64, num_values=8)
    prompts, answers = decoder_parts(task, task.sample_batch(rng(seed), 8, length), length)
    for prompt, ans in zip(prompts, answers, strict=True):
        words = task.decode(prompt)
        keys, values = words[0:-2:2], words[1:-2:2]
        assert len(set(keys)) == length and all(k.startswith("k") for k in keys)
        assert all(v.startswith("v") for v in values)
        assert words[-2] == "<sep>"
        assert task.decode(ans) == [dict(zip(keys, values, strict=True))[words[-1]]]


@PROPERTY
@given(
    seed=st.integers(0, 2**32 - 1),
    length=st.integers(1, 300),
    filler=st.sampled_from(["cycle", "random"]),
)
def test_passkey_is_retrievable(seed, length, filler):
    task = get_task("passkey", digits=4, filler=filler)
    prompts, answers = decoder_parts(task, task.sample_batch(rng(seed), 8, length), length)
    for prompt, ans in zip(prompts, answers, strict=True):
        words = task.decode(prompt)
        assert words.count("KEY") == 1 and words[-1] == "<sep>"
        at = words.index("KEY")
        assert words[at + 1 : at + 5] == task.decode(ans)
        assert all(d.isdigit() for d in task.decode(ans))
        fill = words[:at] + words[at + 5 : -1]
        assert len(fill) == length and all(w.startswith("f") for w in fill)
        if filler == "cycle":
            assert fill == [f"f{i % 10}" for i in range(length)]


def test_passkey_position_is_spread():
    task = get_task("passkey")
    batch = task.sample_batch(rng(0), 256, 100)
    where = np.argmax(batch.tokens == task.token_id("KEY"), axis=1) - 1
    assert where.min() <= 10 and where.max() >= 90


@pytest.mark.parametrize(("depth", "where"), [(0.0, 0), (0.5, 50), (0.25, 25), (1.0, 100)])
def test_passkey_depth_fixes_the_key_position(depth, where):
    task = get_task("passkey", digits=3, depth=depth)
    batch = task.sample_batch(rng(1), 8, 100)
    found = np.argmax(batch.tokens == task.token_id("KEY"), axis=1) - 1  # after <bos>
    np.testing.assert_array_equal(found, where)
    with pytest.raises(ValueError, match=r"depth must be None or a fraction in \[0, 1\]"):
        get_task("passkey", depth=1.5)


# ------------------------------------------------------------------------------------------------
# Byte-level language modelling.


def _write_corpus(root, count=60):
    root.mkdir(parents=True, exist_ok=True)
    contents = {}
    for i in range(count):
        text = f"file {i:03d}: " + "".join(chr(97 + (i * 7 + j) % 26) for j in range(200)) + "\n"
        (root / f"doc{i:03d}.txt").write_text(text, encoding="utf-8")
        contents[f"doc{i:03d}.txt"] = text.encode()
    return contents


def test_lm_split_by_file_is_disjoint_and_deterministic(tmp_path):
    contents = _write_corpus(tmp_path / "a")
    (tmp_path / "a" / "binary.bin").write_bytes(b"\x00\x01\xff\xfe" * 10)
    (tmp_path / "a" / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    task = get_task("lm", corpus=str(tmp_path / "a"))
    assert task.vocab_size == 256 and task.causal and task.split_by == "file"
    assert set(task.train_files).isdisjoint(task.valid_files)
    assert set(task.train_files) | set(task.valid_files) == set(contents)  # non-text skipped
    assert task.valid_files and len(task.valid_files) < len(task.train_files)
    expected_train = b"".join(contents[f] for f in sorted(task.train_files))
    expected_valid = b"".join(contents[f] for f in sorted(task.valid_files))
    assert task.data("train").tobytes() == expected_train
    assert task.data("valid").tobytes() == expected_valid
    # The split depends only on relative paths: another copy, plus one file, splits alike.
    _write_corpus(tmp_path / "b")
    (tmp_path / "b" / "extra.txt").write_text("more text\n" * 5)
    again = get_task("lm", corpus=tmp_path / "b")
    assert set(task.valid_files) == set(again.valid_files) - {"extra.txt"}
    assert set(task.train_files) == set(again.train_files) - {"extra.txt"}


def test_lm_windows(tmp_path):
    _write_corpus(tmp_path)
    task = get_task("lm", corpus=str(tmp_path))
    train = task.data("train").tobytes()
    batch = task.sample_batch(rng(1), 16, 50)
    assert batch.tokens.shape == batch.targets.shape == batch.loss_mask.shape == (16, 50)
    assert batch.tokens.dtype == np.int32 and batch.loss_mask.all()
    assert np.array_equal(batch.targets[:, :-1], batch.tokens[:, 1:])
    for tokens, targets in zip(batch.tokens, batch.targets, strict=True):
        window = bytes(tokens.astype(np.uint8).tolist()) + bytes([int(targets[-1])])
        assert window in train
    same = task.sample_batch(rng(1), 16, 50)
    assert np.array_equal(batch.tokens, same.tokens)
    valid = task.data("valid").tobytes()
    vbatch = task.sample_batch(rng(2), 4, 20, split="valid")
    assert all(bytes(t.astype(np.uint8).tolist()) in valid for t in vbatch.tokens)
    with pytest.raises(ValueError, match=r"split='test'.*'train', 'valid'"):
        task.sample_batch(rng(), 2, 10, split="test")


def test_lm_eval_batches_are_consecutive(tmp_path):
    _write_corpus(tmp_path, count=200)
    task = get_task("lm", corpus=tmp_path)
    valid = task.data("valid")
    length, batch_size = 30, 4
    batches = list(task.eval_batches(length, batch_size))
    assert (
        len(batches)
        == (len(valid) - 1) // length // batch_size
        == task.num_eval_windows(length) // batch_size
    )
    tokens = np.concatenate([b.tokens for b in batches]).reshape(-1)
    targets = np.concatenate([b.targets for b in batches]).reshape(-1)
    assert np.array_equal(tokens, valid[: len(tokens)])
    assert np.array_equal(targets, valid[1 : len(tokens) + 1])
    assert len(list(task.eval_batches(length, batch_size, num_batches=1))) == 1


@pytest.mark.parametrize("name", ["stack_manipulation", "binary_addition", "binary_multiplication"])
def test_variable_length_outputs_can_train_on_every_slot_as_the_reference(name):
    """loss="all_slots": the reference's targets (answer, terminator, then class 0, i.e. the
    symbol "0") on every output slot for the loss; accuracy still stops at <eos>."""
    plain = get_task(name)
    task = get_task(name, loss="all_slots")
    a, b = plain.sample_batch(rng(4), 32, 9), task.sample_batch(rng(4), 32, 9)
    assert a.train_mask is None and np.array_equal(a.tokens, b.tokens)
    assert np.array_equal(a.loss_mask, b.loss_mask)
    num_out = task.output_length(9)
    width = b.tokens.shape[1]
    outputs = np.broadcast_to(np.arange(width) >= width - num_out, b.tokens.shape)
    assert np.array_equal(b.train_mask, outputs)
    zero = task.token_id("0")
    for row in range(32):
        out = b.targets[row, -num_out:]
        end = int(np.flatnonzero(out == EOS)[0])
        assert np.array_equal(out[:end], a.targets[row, -num_out:][:end])  # the answer
        assert np.all(out[end + 1 :] == zero)  # padding slots: class 0 of the reference
    assert (b.targets != a.targets).any()  # some rows are shorter than the output
    with pytest.raises(ValueError, match=r"loss='mean'.*\['answer', 'all_slots'\]"):
        get_task(name, loss="mean")


def _letter_corpus(folder, count=20):
    """Files of one distinct letter each, so a document boundary is a change of letter."""
    folder.mkdir(parents=True, exist_ok=True)
    lengths = np.random.default_rng(5).integers(3, 40, size=count)
    for k, n in enumerate(lengths):
        (folder / f"f{k:02d}.txt").write_text(chr(ord("a") + k) * int(n))
    return folder


def _expected_packing(tokens, targets):
    """Positions, segment ids and scored targets read off the letters (independent of lm.py)."""
    pos, seg, scored = np.zeros_like(tokens), np.zeros_like(tokens), np.ones(tokens.shape, bool)
    for b in range(tokens.shape[0]):
        for i in range(tokens.shape[1]):
            new = i > 0 and tokens[b, i] != tokens[b, i - 1]
            pos[b, i] = 0 if i == 0 or new else pos[b, i - 1] + 1
            seg[b, i] = 0 if i == 0 else seg[b, i - 1] + new
            scored[b, i] = targets[b, i] == tokens[b, i]
    return pos, seg, scored


@pytest.mark.parametrize("split", ["train", "valid"])
def test_lm_packed_rows_restart_positions_at_each_document(tmp_path, split):
    task = get_task("lm", corpus=_letter_corpus(tmp_path), valid_fraction=0.3, packed=True)
    assert task.split_by == "file" and task.valid_files
    plain = get_task("lm", corpus=tmp_path, valid_fraction=0.3)
    batches = [task.sample_batch(rng(3), 16, 24, split=split)]
    batches += list(task.eval_batches(8, 2)) if split == "valid" else []
    for batch in batches:
        pos, seg, scored = _expected_packing(batch.tokens, batch.targets)
        assert np.array_equal(batch.positions, pos)
        assert np.array_equal(batch.segment_ids, seg)
        assert np.array_equal(batch.loss_mask, scored)
        assert seg.max() > 0  # the rows do cross documents
    same = plain.sample_batch(rng(3), 16, 24, split=split)  # the same windows, unpacked
    assert np.array_equal(same.tokens, batches[0].tokens) and same.segment_ids is None
    with pytest.raises(ValueError, match="packed must be true or false"):
        get_task("lm", corpus=tmp_path, packed="yes")


def test_lm_single_file_splits_by_bytes_and_caps(tmp_path):
    path = tmp_path / "one.txt"
    text = ("lorem ipsum dolor sit amet " * 200).encode()
    path.write_bytes(text)
    task = get_task("lm", corpus=str(path), valid_fraction=0.1)
    assert task.split_by == "bytes"
    assert task.data("train").tobytes() + task.data("valid").tobytes() == text
    assert len(task.data("valid")) == round(len(text) * 0.1)
    capped = get_task("lm", corpus=str(path), max_bytes=1000)
    assert capped.data("train").tobytes() + capped.data("valid").tobytes() == text[:1000]


def test_lm_errors_name_the_corpus(tmp_path):
    missing = tmp_path / "missing"
    with pytest.raises(ValueError, match=r"corpus=.*missing.*does not exist"):
        get_task("lm", corpus=str(missing))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"corpus=.*empty.*no non-empty UTF-8"):
        get_task("lm", corpus=str(empty))
    (empty / "blob.bin").write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match=r"corpus=.*empty"):
        get_task("lm", corpus=str(empty))
    short = tmp_path / "short.txt"
    short.write_text("x" * 100)
    task = get_task("lm", corpus=str(short))
    with pytest.raises(ValueError, match=r"corpus=.*short\.txt.*length=200"):
        task.sample_batch(rng(), 2, 200)
    with pytest.raises(ValueError, match=r"corpus=.*short\.txt.*batch_size=8"):
        next(task.eval_batches(2, 8))
    with pytest.raises(ValueError, match="length"):
        task.sample_batch(rng(), 2, 0)


def test_lm_default_corpus_is_the_standard_library():
    task = get_task("lm", max_bytes=300_000)
    again = get_task("lm", max_bytes=300_000)
    assert task.train_files == again.train_files and task.valid_files == again.valid_files
    assert all(f.endswith(".py") for f in task.train_files + task.valid_files)
    assert not any("site-packages" in f for f in task.train_files + task.valid_files)
    assert len(task.data("train")) + len(task.data("valid")) == 300_000
    batch = task.sample_batch(rng(), 2, 64)
    assert batch.tokens.shape == (2, 64) and task.sequence_length(64) == 64
    train = task.data("train").tobytes()
    assert np.array_equal(batch.targets[:, :-1], batch.tokens[:, 1:])
    for tokens, targets in zip(batch.tokens, batch.targets, strict=True):
        assert bytes(tokens.astype(np.uint8).tolist()) + bytes([int(targets[-1])]) in train
