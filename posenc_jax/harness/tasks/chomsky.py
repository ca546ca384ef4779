"""The length-generalisation suite of Deletang et al. 2023, as used by Ruoss et al. 2023.

Encoder tasks (``causal=False``): the model reads the input symbols followed by
``output_length`` placeholders and writes its answer at the placeholders, as the transformer
encoders of the ``neural_networks_chomsky_hierarchy`` and ``randomized_positional_encodings`` code
do. Training lengths 1..40, evaluation lengths 41..500. Inputs are sampled as in that reference
code (same alphabets, output lengths, special cases at short lengths); ids follow the layout of
``posenc_jax.harness.tasks.base`` (five special ids, then ``task.symbols``).

Where a reference output has a variable length (stack_manipulation, binary_addition,
binary_multiplication), the answer is followed by ``<eos>`` and padded to a fixed length. The
reference trains on the padding too but scores accuracy only up to and including the terminator;
here the single ``loss_mask`` follows the accuracy mask, so loss and accuracy both stop at
``<eos>``.

References: Deletang et al. 2023, "Neural Networks and the Chomsky Hierarchy" (ICLR,
arXiv 2207.02098); Ruoss et al. 2023, "Randomized Positional Encodings Boost Length
Generalization of Transformers" (ACL, arXiv 2305.16843).
"""

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from posenc_jax.harness.tasks.base import EOS, NUM_SPECIAL, Batch, EncoderTask, check_int

_BITS = ("0", "1")


def _digit_symbols(count: int) -> tuple[str, ...]:
    return tuple(str(i) for i in range(count))


def _arange_rows(batch_size: int) -> np.ndarray:
    return np.arange(batch_size)


def _ids_to_bit_string(ids: np.ndarray, zero_id: int) -> str:
    """Returns the '0'/'1' string of a 1-D array of bit ids (``zero_id`` for 0, ``zero_id+1`` 1)."""
    return (np.asarray(ids, dtype=np.int64) - zero_id + 48).astype(np.uint8).tobytes().decode()


def _int_to_bits(value: int, *, width: int = 0, little_endian: bool) -> np.ndarray:
    """Returns the bits of ``value`` (at least ``width`` of them) as an int array."""
    text = format(value, "b").zfill(width)
    bits = np.frombuffer(text.encode(), dtype=np.uint8).astype(np.int32) - 48
    return bits[::-1] if little_endian else bits


def _sample_nonzero_bits(
    rng: np.random.Generator, shape: tuple[int, int], groups: Sequence[np.ndarray]
) -> np.ndarray:
    """Samples uniform bits such that every boolean position group holds at least one 1.

    Args:
      rng: numpy Generator.
      shape: ``(B, n)``.
      groups: ``[B, n]`` bool masks; a row is redrawn while any group of it is all zeros, so each
        group is a uniform non-zero number.

    Returns:
      ``[B, n]`` int bits.
    """
    bits = rng.integers(0, 2, size=shape)
    while True:
        bad = np.zeros(shape[0], dtype=bool)
        for group in groups:
            bad |= ~(bits.astype(bool) & group).any(axis=1)
        if not bad.any():
            return bits
        bits[bad] = rng.integers(0, 2, size=(int(bad.sum()), shape[1]))


# ------------------------------------------------------------------------------------------------
# Regular tasks.


class EvenPairs(EncoderTask):
    """Is the number of ``01`` and ``10`` pairs in a binary string even?

    Input: ``length`` random bits. Output (1 position): ``"0"`` if the count of unequal adjacent
    pairs is even, ``"1"`` if odd (equivalently: whether the first and last bits differ).

    Example:
      ``0 0 1 1 1 0`` (one ``01``, one ``10``: even) ->
      tokens ``[5 5 6 6 6 5 1]``, targets ``[0 0 0 0 0 0 5]``, loss_mask on the last position.

    References: Deletang et al. 2023 (arXiv 2207.02098), task "even_pairs".
    """

    name = "even_pairs"

    def __init__(self) -> None:
        self.symbols = _BITS

    def output_length(self, length: int) -> int:
        return 1

    def sample_inputs(self, rng: np.random.Generator, batch_size: int, length: int) -> np.ndarray:
        return (NUM_SPECIAL + rng.integers(0, 2, size=(batch_size, length))).astype(np.int32)

    def solve(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        bits = inputs - NUM_SPECIAL
        odd = np.sum(bits[:, 1:] != bits[:, :-1], axis=1) % 2
        outputs = (NUM_SPECIAL + odd)[:, None].astype(np.int32)
        return outputs, np.ones(outputs.shape, dtype=bool)


class ParityCheck(EncoderTask):
    """Is the number of ones in a binary string even?

    Input: ``length`` random bits. Output (1 position): ``"0"`` if the number of ``1`` is even,
    ``"1"`` if odd.

    Example:
      ``1 0 1 0 1 0 0`` (three ones) -> answer ``"1"`` (id 6) at the single placeholder.

    References: Deletang et al. 2023 (arXiv 2207.02098), task "parity_check".
    """

    name = "parity_check"

    def __init__(self) -> None:
        self.symbols = _BITS

    def output_length(self, length: int) -> int:
        return 1

    def sample_inputs(self, rng: np.random.Generator, batch_size: int, length: int) -> np.ndarray:
        return (NUM_SPECIAL + rng.integers(0, 2, size=(batch_size, length))).astype(np.int32)

    def solve(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        parity = np.sum(inputs - NUM_SPECIAL, axis=1) % 2
        outputs = (NUM_SPECIAL + parity)[:, None].astype(np.int32)
        return outputs, np.ones(outputs.shape, dtype=bool)


class CycleNavigation(EncoderTask):
    """Final position on a cycle after a walk of left/stay/right steps, starting at 0.

    Symbols: the actions ``"L"`` (-1), ``"S"`` (0), ``"R"`` (+1), then the states ``"s0"`` ..
    ``"s{cycle_length-1}"``. Input: ``length`` uniform actions. Output (1 position): the state
    ``sum(steps) mod cycle_length``.

    Example (cycle_length=5):
      ``R L S L L`` -> -2 mod 5 = 3 -> answer ``"s3"``.

    References: Deletang et al. 2023 (arXiv 2207.02098), task "cycle_navigation".
    """

    name = "cycle_navigation"

    def __init__(self, *, cycle_length: int = 5) -> None:
        self.cycle_length = check_int("cycle_length", cycle_length, minimum=2)
        self.symbols = ("L", "S", "R", *(f"s{i}" for i in range(self.cycle_length)))

    def output_length(self, length: int) -> int:
        return 1

    def sample_inputs(self, rng: np.random.Generator, batch_size: int, length: int) -> np.ndarray:
        return (NUM_SPECIAL + rng.integers(0, 3, size=(batch_size, length))).astype(np.int32)

    def solve(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        steps = inputs.astype(np.int64) - NUM_SPECIAL - 1  # L, S, R -> -1, 0, +1
        state = np.sum(steps, axis=1) % self.cycle_length
        outputs = (NUM_SPECIAL + 3 + state)[:, None].astype(np.int32)
        return outputs, np.ones(outputs.shape, dtype=bool)


class ModularArithmetic(EncoderTask):
    """Value of an arithmetic expression without brackets, modulo ``modulus``.

    Symbols: digits ``"0"`` .. ``"{modulus-1}"`` then ``"+"``, ``"-"``, ``"*"``. Input: an
    alternation ``d op d op ... d`` of odd length (``length``, or ``length - 1`` when ``length``
    is even, as the reference does); digits and operators uniform. Output (1 position): the value
    with the usual precedence (``*`` before ``+``/``-``, left to right), modulo ``modulus``.

    Example (modulus=5):
      ``1 + 2 * 3`` -> 7 mod 5 = 2; ``1 - 1 - 1`` -> 4; ``0 * 1 + 4 * 3 - 2`` -> 0.

    References: Deletang et al. 2023 (arXiv 2207.02098), task "modular_arithmetic" (mod 5).
    """

    name = "modular_arithmetic"
    _OPERATORS = ("+", "-", "*")

    def __init__(self, *, modulus: int = 5, operators: Sequence[str] = ("+", "-", "*")) -> None:
        self.modulus = check_int("modulus", modulus, minimum=2)
        operators = tuple(operators)
        if not operators or any(op not in self._OPERATORS for op in operators):
            raise ValueError(
                f"operators must be a non-empty subset of {list(self._OPERATORS)}; "
                f"got operators={list(operators)}"
            )
        self.operators = operators
        self.symbols = _digit_symbols(self.modulus) + self._OPERATORS

    def input_length(self, length: int) -> int:
        return length if length % 2 == 1 else length - 1

    def output_length(self, length: int) -> int:
        return 1

    def sample_inputs(self, rng: np.random.Generator, batch_size: int, length: int) -> np.ndarray:
        num_in = self.input_length(length)
        digits = rng.integers(0, self.modulus, size=(batch_size, num_in // 2 + 1))
        op_ids = np.array([self.token_id(op) for op in self.operators])
        ops = op_ids[rng.integers(0, len(op_ids), size=(batch_size, num_in // 2))]
        inputs = np.empty((batch_size, num_in), dtype=np.int32)
        inputs[:, 0::2] = NUM_SPECIAL + digits
        inputs[:, 1::2] = ops
        return inputs

    def solve(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        m = self.modulus
        values = inputs[:, 0::2].astype(np.int64) - NUM_SPECIAL  # [B, K]
        ops = inputs[:, 1::2]  # [B, K-1]
        batch_size, num_terms = values.shape
        plus, minus = self.token_id("+"), self.token_id("-")
        # A product term starts at the first value and after every + or -.
        starts = np.ones((batch_size, num_terms), dtype=bool)
        starts[:, 1:] = (ops == plus) | (ops == minus)
        signs = np.ones((batch_size, num_terms), dtype=np.int64)
        signs[:, 1:] = np.where(ops == minus, -1, 1)
        # Segmented inclusive product scan (Hillis-Steele): after the loop prod[:, i] is the
        # product, mod m, of the values from the start of i's term up to i.
        prod = values % m
        flag = starts.copy()
        shift = 1
        while shift < num_terms:
            take = ~flag[:, shift:]
            combined = prod[:, shift:] * prod[:, :-shift] % m
            prod[:, shift:] = np.where(take, combined, prod[:, shift:])
            flag[:, shift:] = flag[:, shift:] | flag[:, :-shift]
            shift *= 2
        ends = np.ones((batch_size, num_terms), dtype=bool)
        ends[:, :-1] = starts[:, 1:]
        # The sign of a term is the sign at its start; carry it to the term's end.
        start_pos = np.where(starts, np.arange(num_terms), 0)
        start_of_term = np.maximum.accumulate(start_pos, axis=1)
        term_sign = np.take_along_axis(signs, start_of_term, axis=1)
        result = np.sum(np.where(ends, term_sign * prod, 0), axis=1) % m
        outputs = (NUM_SPECIAL + result)[:, None].astype(np.int32)
        return outputs, np.ones(outputs.shape, dtype=bool)


# ------------------------------------------------------------------------------------------------
# Deterministic context-free tasks.


class _VariableLengthOutput(EncoderTask):
    """An answer of varying length: the answer, ``<eos>``, then padding slots.

    ``loss="answer"`` trains on the answer and its ``<eos>`` (the slots that accuracy
    scores). ``loss="all_slots"`` trains, as the reference code does, on every output slot:
    the padding slots target the symbol ``"0"`` (the reference pads targets with class 0,
    which is also its bit 0) and the loss averages over all of them; accuracy still stops
    at ``<eos>``. Reference: google-deepmind/neural_networks_chomsky_hierarchy,
    tasks/dcf/stack_manipulation.py (``result += [0] * (length + 1 - len(result))``),
    tasks/cs/binary_addition.py and binary_multiplication.py (``res + [2] + [0] * ...``),
    and the loss ``jnp.mean(jnp.sum(task.pointwise_loss_fn(output, target), axis=-1))`` of
    experiments/example.py: a mean over batch x every output slot.
    """

    LOSSES = ("answer", "all_slots")

    def __init__(self, *, loss: str = "answer") -> None:
        if loss not in self.LOSSES:
            raise ValueError(f"unknown loss={loss!r}; valid choices: {list(self.LOSSES)}")
        self.loss = loss

    def sample_batch(self, rng: np.random.Generator, batch_size: int, length: int) -> Batch:
        batch = super().sample_batch(rng, batch_size, length)
        if self.loss == "answer":
            return batch
        outputs = np.zeros(batch.tokens.shape, dtype=bool)
        outputs[:, -self.output_length(self.check_length(length)) :] = True
        padding = outputs & ~batch.loss_mask
        targets = np.where(padding, self.token_id("0"), batch.targets).astype(np.int32)
        return dataclasses.replace(batch, targets=targets, train_mask=outputs)


class StackManipulation(_VariableLengthOutput):
    """Run stack actions on an initial stack and output the final stack, top first.

    Symbols: ``"0"``, ``"1"``, ``"POP"``, ``"PUSH0"``, ``"PUSH1"``. Input: the initial stack
    bottom-to-top (``k`` uniform bits, ``k`` uniform in 1..length-1) then ``length - k`` uniform
    actions; at length 1 a single bit. ``POP`` on an empty stack does nothing. Output
    (``length + 1`` positions): the final stack top-to-bottom, then ``<eos>``, then padding; the
    loss mask covers the stack and the ``<eos>``.

    Example:
      ``0 1 1 0 PUSH1 POP POP`` -> stack ``0 1 1`` -> answer ``1 1 0 <eos>`` then 4 unscored
      positions.

    References: Deletang et al. 2023 (arXiv 2207.02098), task "stack_manipulation".
    """

    name = "stack_manipulation"

    def __init__(self, *, loss: str = "answer") -> None:
        super().__init__(loss=loss)
        self.symbols = ("0", "1", "POP", "PUSH0", "PUSH1")

    def output_length(self, length: int) -> int:
        return length + 1

    def sample_inputs(self, rng: np.random.Generator, batch_size: int, length: int) -> np.ndarray:
        if length == 1:
            return (NUM_SPECIAL + rng.integers(0, 2, size=(batch_size, 1))).astype(np.int32)
        stack_length = rng.integers(1, length, size=batch_size)
        bits = rng.integers(0, 2, size=(batch_size, length))
        actions = rng.integers(2, 5, size=(batch_size, length))
        in_stack = np.arange(length) < stack_length[:, None]
        return (NUM_SPECIAL + np.where(in_stack, bits, actions)).astype(np.int32)

    def solve(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        codes = inputs.astype(np.int64) - NUM_SPECIAL  # 0/1 initial bits, 2 POP, 3/4 PUSH0/1
        batch_size, num_in = codes.shape
        is_push = codes != 2
        pushed = np.where(codes >= 3, codes - 3, codes)
        # Height after each step of a walk clamped at 0: h = S - min(0, running min of S).
        walk = np.cumsum(np.where(is_push, 1, -1), axis=1)
        height = walk - np.minimum(np.minimum.accumulate(walk, axis=1), 0)
        # A pushed element survives iff the height never drops below its level afterwards.
        later_min = np.minimum.accumulate(height[:, ::-1], axis=1)[:, ::-1]
        survives = is_push & (later_min >= height)
        final = height[:, -1]
        outputs = np.zeros((batch_size, num_in + 1), dtype=np.int32)
        rows, cols = np.nonzero(survives)
        outputs[rows, final[rows] - height[rows, cols]] = NUM_SPECIAL + pushed[rows, cols]
        outputs[_arange_rows(batch_size), final] = EOS
        mask = np.arange(num_in + 1) <= final[:, None]
        return outputs, mask


class ReverseString(EncoderTask):
    """Reverse a string.

    Symbols: ``"0"`` .. ``"{num_symbols-1}"`` (binary in the paper). Input: ``length`` uniform
    symbols. Output (``length`` positions): the input reversed.

    Example:
      ``0 1 1 0 1 0`` -> ``0 1 0 1 1 0``.

    References: Deletang et al. 2023 (arXiv 2207.02098), task "reverse_string".
    """

    name = "reverse_string"

    def __init__(self, *, num_symbols: int = 2) -> None:
        self.num_symbols = check_int("num_symbols", num_symbols, minimum=2)
        self.symbols = _digit_symbols(self.num_symbols)

    def output_length(self, length: int) -> int:
        return length

    def sample_inputs(self, rng: np.random.Generator, batch_size: int, length: int) -> np.ndarray:
        return (NUM_SPECIAL + rng.integers(0, self.num_symbols, (batch_size, length))).astype(
            np.int32
        )

    def solve(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        outputs = np.ascontiguousarray(inputs[:, ::-1]).astype(np.int32)
        return outputs, np.ones(outputs.shape, dtype=bool)


def _generate_bracket_expression(
    uniforms: np.ndarray, length: int, modulus: int, mult: bool, ids: dict[str, int]
) -> tuple[list[int], int]:
    """Generates one bracketed expression of exactly ``length`` tokens and its value.

    The grammar of the reference generator: length 1 ``d``, 2 ``-d``, 3 ``(d)``, 4 ``(-d)``;
    length >= 5 ``(E op E)`` with the left part's length uniform in 1..length-4 and ``op`` uniform
    in ``+ -`` (``+ - *`` when ``mult``). Randomness is read in order from ``uniforms`` (numbers in
    [0, 1); at most ``length`` of them are used). Iterative, so any length works.

    Returns:
      The token ids and the value modulo ``modulus``.
    """
    num_ops = 3 if mult else 2
    op_ids = (ids["+"], ids["-"], ids["*"])
    out: list[int] = []
    values: list[int] = []
    work: list[tuple[str, int]] = [("gen", length)]
    draw = 0
    while work:
        kind, arg = work.pop()
        if kind == "emit":
            out.append(arg)
        elif kind == "combine":
            right, left = values.pop(), values.pop()
            if arg == 0:
                values.append((left + right) % modulus)
            elif arg == 1:
                values.append((left - right) % modulus)
            else:
                values.append((left * right) % modulus)
        elif arg <= 4:
            digit = int(uniforms[draw] * modulus)
            draw += 1
            token = NUM_SPECIAL + digit
            if arg == 1:
                out.append(token)
            elif arg == 2:
                out.extend((ids["-"], token))
            elif arg == 3:
                out.extend((ids["("], token, ids[")"]))
            else:
                out.extend((ids["("], ids["-"], token, ids[")"]))
            values.append(digit if arg in (1, 3) else -digit % modulus)
        else:
            left_length = 1 + int(uniforms[draw] * (arg - 4))
            op = int(uniforms[draw + 1] * num_ops)
            draw += 2
            work.extend(
                [
                    ("combine", op),
                    ("emit", ids[")"]),
                    ("gen", arg - 3 - left_length),
                    ("emit", op_ids[op]),
                    ("gen", left_length),
                    ("emit", ids["("]),
                ]
            )
    return out, values[0]


def _evaluate_bracket_expression(tokens: Sequence[int], modulus: int, ids: dict[str, int]) -> int:
    """Evaluates a fully bracketed expression ``E := d | -d | (E) | (E op E)`` modulo ``modulus``.

    Unary minus applies to the digit right after it. Raises ValueError on malformed input.
    """
    stack: list[object] = []
    negate = False
    names = {v: k for k, v in ids.items()}
    for token in tokens:
        token = int(token)
        if NUM_SPECIAL <= token < NUM_SPECIAL + modulus:
            stack.append((-(token - NUM_SPECIAL) if negate else token - NUM_SPECIAL) % modulus)
            negate = False
        elif token == ids["-"] and (not stack or isinstance(stack[-1], str)):
            negate = True
        elif token == ids[")"]:
            inner = []
            while stack and stack[-1] != "(":
                inner.append(stack.pop())
            if not stack:
                raise ValueError(f"unbalanced ')' in expression tokens={list(tokens)}")
            stack.pop()
            inner.reverse()
            if len(inner) == 1:
                stack.append(inner[0])
            elif len(inner) == 3:
                left, op, right = inner
                if op == "+":
                    stack.append((left + right) % modulus)
                elif op == "-":
                    stack.append((left - right) % modulus)
                else:
                    stack.append((left * right) % modulus)
            else:
                raise ValueError(f"malformed bracket group in expression tokens={list(tokens)}")
        elif token in names and names[token] in ("(", "+", "-", "*"):
            stack.append(names[token])
        else:
            raise ValueError(f"unexpected token id {token} in expression tokens={list(tokens)}")
    if len(stack) != 1 or isinstance(stack[0], str):
        raise ValueError(f"malformed expression tokens={list(tokens)}")
    return int(stack[0])


class ModularArithmeticBrackets(EncoderTask):
    """Value of a fully bracketed arithmetic expression, modulo ``modulus``.

    Symbols: digits ``"0"`` .. ``"{modulus-1}"`` then ``"+"``, ``"-"``, ``"*"``, ``"("``,
    ``")"``. Input: an expression of exactly ``length`` tokens from the reference grammar (length
    1 ``d``, 2 ``-d``, 3 ``(d)``, 4 ``(-d)``, >= 5 ``(E op E)`` with a uniform split and a uniform
    operator; ``*`` only if ``mult``, True in the paper's runs). Output (1 position): the value.

    Example (modulus=5):
      ``( ( 1 + 2 ) * - 3 )`` -> -9 mod 5 = 1.

    References: Deletang et al. 2023 (arXiv 2207.02098), task "modular_arithmetic_brackets".
    """

    name = "modular_arithmetic_brackets"

    def __init__(self, *, modulus: int = 5, mult: bool = True) -> None:
        self.modulus = check_int("modulus", modulus, minimum=2)
        if not isinstance(mult, bool):
            raise ValueError(f"mult must be True or False; got mult={mult!r}")
        self.mult = mult
        self.symbols = (*_digit_symbols(self.modulus), "+", "-", "*", "(", ")")
        self._ids = {s: self.token_id(s) for s in ("+", "-", "*", "(", ")")}

    def output_length(self, length: int) -> int:
        return 1

    def _sample(
        self, rng: np.random.Generator, batch_size: int, length: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        uniforms = rng.random((batch_size, length + 1))
        inputs = np.empty((batch_size, length), dtype=np.int32)
        values = np.empty(batch_size, dtype=np.int64)
        for b in range(batch_size):
            tokens, values[b] = _generate_bracket_expression(
                uniforms[b], length, self.modulus, self.mult, self._ids
            )
            inputs[b] = tokens
        outputs = (NUM_SPECIAL + values)[:, None].astype(np.int32)
        return inputs, outputs, np.ones(outputs.shape, dtype=bool)

    def sample_inputs(self, rng: np.random.Generator, batch_size: int, length: int) -> np.ndarray:
        return self._sample(rng, batch_size, length)[0]

    def solve(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        values = [_evaluate_bracket_expression(row, self.modulus, self._ids) for row in inputs]
        outputs = (NUM_SPECIAL + np.array(values, dtype=np.int64))[:, None].astype(np.int32)
        return outputs, np.ones(outputs.shape, dtype=bool)


class SolveEquation(EncoderTask):
    """Solve a bracketed linear equation modulo ``modulus`` for the unknown ``x``.

    Symbols: digits ``"0"`` .. ``"{modulus-1}"`` then ``"+"``, ``"-"``, ``"("``, ``")"``,
    ``"x"``, ``"="``. Input (``length`` tokens): an expression of ``length - 2`` tokens from the
    modular_arithmetic_brackets grammar without ``*``, in which one digit (the first digit at or
    after a uniform position, cyclically) is replaced by ``x``, then ``=`` and the expression's
    value. Output (1 position): the replaced digit, the unique solution. Lengths 1 and 2 cannot
    hold an equation; as in the reference their inputs are all ``"0"`` and the answer is ``"0"``.

    Example (modulus=5):
      ``( x - ( 3 + 4 ) ) = 0`` -> x = 2.

    References: Deletang et al. 2023 (arXiv 2207.02098), task "solve_equation".
    """

    name = "solve_equation"

    def __init__(self, *, modulus: int = 5) -> None:
        self.modulus = check_int("modulus", modulus, minimum=2)
        self.symbols = (*_digit_symbols(self.modulus), "+", "-", "(", ")", "x", "=")
        self._ids = {s: self.token_id(s) for s in ("+", "-", "(", ")")}
        self._ids["*"] = -1  # never generated: solve_equation has no multiplication

    def output_length(self, length: int) -> int:
        return 1

    def _sample(
        self, rng: np.random.Generator, batch_size: int, length: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        mask = np.ones((batch_size, 1), dtype=bool)
        if length < 3:
            inputs = np.full((batch_size, length), NUM_SPECIAL, dtype=np.int32)
            return inputs, np.full((batch_size, 1), NUM_SPECIAL, dtype=np.int32), mask
        num_expr = length - 2
        uniforms = rng.random((batch_size, num_expr + 2))
        inputs = np.empty((batch_size, length), dtype=np.int32)
        solutions = np.empty(batch_size, dtype=np.int64)
        x_id, eq_id = self.token_id("x"), self.token_id("=")
        for b in range(batch_size):
            tokens, value = _generate_bracket_expression(
                uniforms[b], num_expr, self.modulus, False, self._ids
            )
            idx = int(uniforms[b, -1] * num_expr)
            while not NUM_SPECIAL <= tokens[idx] < NUM_SPECIAL + self.modulus:
                idx = (idx + 1) % num_expr
            solutions[b] = tokens[idx] - NUM_SPECIAL
            tokens[idx] = x_id
            inputs[b] = [*tokens, eq_id, NUM_SPECIAL + value]
        return inputs, (NUM_SPECIAL + solutions)[:, None].astype(np.int32), mask

    def sample_inputs(self, rng: np.random.Generator, batch_size: int, length: int) -> np.ndarray:
        return self._sample(rng, batch_size, length)[0]

    def solve(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Finds x by trying every residue; rows without ``x`` (lengths 1, 2) answer ``"0"``."""
        x_id, eq_id = self.token_id("x"), self.token_id("=")
        answers = []
        for row in np.asarray(inputs):
            row = [int(t) for t in row]
            if x_id not in row:
                answers.append(0)
                continue
            if eq_id not in row or row.index(eq_id) != len(row) - 2:
                raise ValueError(f"equation must end with '= d'; got inputs row {row}")
            rhs = row[-1] - NUM_SPECIAL
            lhs = row[:-2]
            found = [
                c
                for c in range(self.modulus)
                if _evaluate_bracket_expression(
                    [NUM_SPECIAL + c if t == x_id else t for t in lhs], self.modulus, self._ids
                )
                == rhs
            ]
            if len(found) != 1:
                raise ValueError(f"equation has {len(found)} solutions, expected 1; row {row}")
            answers.append(found[0])
        outputs = (NUM_SPECIAL + np.array(answers, dtype=np.int64))[:, None].astype(np.int32)
        return outputs, np.ones(outputs.shape, dtype=bool)


# ------------------------------------------------------------------------------------------------
# Context-sensitive tasks.


class DuplicateString(EncoderTask):
    """Write the input string ``duplication`` times.

    Symbols: ``"0"`` .. ``"{num_symbols-1}"`` (binary in the paper). Output
    (``duplication * length`` positions): the input repeated, no separator.

    Example:
      ``1 0 1`` -> ``1 0 1 1 0 1``.

    References: Deletang et al. 2023 (arXiv 2207.02098), task "duplicate_string".
    """

    name = "duplicate_string"

    def __init__(self, *, num_symbols: int = 2, duplication: int = 2) -> None:
        self.num_symbols = check_int("num_symbols", num_symbols, minimum=2)
        self.duplication = check_int("duplication", duplication, minimum=1)
        self.symbols = _digit_symbols(self.num_symbols)

    def output_length(self, length: int) -> int:
        return self.duplication * length

    def sample_inputs(self, rng: np.random.Generator, batch_size: int, length: int) -> np.ndarray:
        return (NUM_SPECIAL + rng.integers(0, self.num_symbols, (batch_size, length))).astype(
            np.int32
        )

    def solve(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        outputs = np.tile(inputs, (1, self.duplication)).astype(np.int32)
        return outputs, np.ones(outputs.shape, dtype=bool)


class MissingDuplicateString(EncoderTask):
    """Find the bit hidden in a string written twice.

    Symbols: ``"0"``, ``"1"``, ``"?"`` (the hidden bit), ``"_"`` (padding). Input: ``length // 2``
    uniform bits written twice, one uniform position replaced by ``?``, then ``_`` if ``length`` is
    odd. Output (1 position): the hidden bit. At length 1 the input is ``1`` and the answer ``1``,
    as in the reference.

    Example:
      ``0 1 1 0 0 ? 1 0`` -> ``1``; ``1 0 1 1 ? 1 _`` -> ``0``.

    References: Deletang et al. 2023 (arXiv 2207.02098), task "missing_duplicate_string".
    """

    name = "missing_duplicate_string"

    def __init__(self) -> None:
        self.symbols = ("0", "1", "?", "_")

    def output_length(self, length: int) -> int:
        return 1

    def sample_inputs(self, rng: np.random.Generator, batch_size: int, length: int) -> np.ndarray:
        if length == 1:
            return np.full((batch_size, 1), NUM_SPECIAL + 1, dtype=np.int32)
        half = length // 2
        bits = rng.integers(0, 2, size=(batch_size, half))
        hidden = rng.integers(0, 2 * half, size=batch_size)
        inputs = np.full((batch_size, length), self.token_id("_"), dtype=np.int32)
        inputs[:, : 2 * half] = NUM_SPECIAL + np.concatenate([bits, bits], axis=1)
        inputs[_arange_rows(batch_size), hidden] = self.token_id("?")
        return inputs

    def solve(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        batch_size, length = inputs.shape
        mask = np.ones((batch_size, 1), dtype=bool)
        if length == 1:
            return np.full((batch_size, 1), NUM_SPECIAL + 1, dtype=np.int32), mask
        half = length // 2
        is_hidden = inputs == self.token_id("?")
        if not np.all(is_hidden.sum(axis=1) == 1):
            raise ValueError("each inputs row must hold exactly one '?'")
        hidden = np.argmax(is_hidden, axis=1)
        partner = np.where(hidden < half, hidden + half, hidden - half)
        outputs = inputs[_arange_rows(batch_size), partner][:, None].astype(np.int32)
        return outputs, mask


class OddsFirst(EncoderTask):
    """Write the symbols at odd (0-based) positions, then those at even positions.

    Symbols: ``"0"`` .. ``"{num_symbols-1}"`` (binary in the paper). Output (``length``
    positions): ``s[1::2] + s[0::2]`` for 0-based ``s``. This is what the reference code computes
    (``concatenate([x[:, 1::2], x[:, ::2]])``); its docstring example lists the other order.

    Example:
      ``0 0 1 1 0 1 0 1`` -> ``0 1 1 1 0 1 0 0``.

    References: Deletang et al. 2023 (arXiv 2207.02098), task "odds_first".
    """

    name = "odds_first"

    def __init__(self, *, num_symbols: int = 2) -> None:
        self.num_symbols = check_int("num_symbols", num_symbols, minimum=2)
        self.symbols = _digit_symbols(self.num_symbols)

    def output_length(self, length: int) -> int:
        return length

    def sample_inputs(self, rng: np.random.Generator, batch_size: int, length: int) -> np.ndarray:
        return (NUM_SPECIAL + rng.integers(0, self.num_symbols, (batch_size, length))).astype(
            np.int32
        )

    def solve(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        outputs = np.concatenate([inputs[:, 1::2], inputs[:, 0::2]], axis=1).astype(np.int32)
        return outputs, np.ones(outputs.shape, dtype=bool)


class _BinaryOperation(_VariableLengthOutput):
    """Shared sampling and decoding of ``n op m`` with little-endian binary operands."""

    _operator = "+"

    def __init__(self, *, loss: str = "answer") -> None:
        super().__init__(loss=loss)
        self.symbols = ("0", "1", self._operator)

    def sample_inputs(self, rng: np.random.Generator, batch_size: int, length: int) -> np.ndarray:
        if length <= 2:
            # As the reference: one number in [0, 2**length - 2], fixed width, no operator.
            numbers = rng.integers(0, 2**length - 1, size=batch_size)
            bits = (numbers[:, None] >> np.arange(length)) & 1
            return (NUM_SPECIAL + bits).astype(np.int32)
        first_length = rng.integers(1, length - 1, size=batch_size)
        pos = np.arange(length)
        first = pos < first_length[:, None]
        second = pos > first_length[:, None]
        bits = _sample_nonzero_bits(rng, (batch_size, length), [first, second])
        is_op = pos == first_length[:, None]
        inputs = np.where(is_op, self.token_id(self._operator), NUM_SPECIAL + bits)
        return inputs.astype(np.int32)

    def _combine(self, left: int, right: int) -> int:
        raise NotImplementedError

    def _no_operator_result(self, number: int, length: int) -> np.ndarray:
        raise NotImplementedError

    def solve(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        batch_size, length = inputs.shape
        num_out = self.output_length(length)
        op_id = self.token_id(self._operator)
        outputs = np.zeros((batch_size, num_out), dtype=np.int32)
        mask = np.zeros((batch_size, num_out), dtype=bool)
        for b, row in enumerate(np.asarray(inputs)):
            ops = np.flatnonzero(row == op_id)
            if len(ops) == 0:
                number = int(_ids_to_bit_string(row, NUM_SPECIAL)[::-1] or "0", 2)
                bits = self._no_operator_result(number, length)
            elif len(ops) == 1:
                p = int(ops[0])
                left = int(_ids_to_bit_string(row[:p], NUM_SPECIAL)[::-1] or "0", 2)
                right = int(_ids_to_bit_string(row[p + 1 :], NUM_SPECIAL)[::-1] or "0", 2)
                bits = _int_to_bits(self._combine(left, right), little_endian=True)
            else:
                raise ValueError(f"inputs row holds {len(ops)} operators, expected one: {row}")
            if len(bits) + 1 > num_out:
                raise ValueError(
                    f"result of inputs row {row.tolist()} needs {len(bits) + 1} output positions, "
                    f"only {num_out} available"
                )
            outputs[b, : len(bits)] = NUM_SPECIAL + bits
            outputs[b, len(bits)] = EOS
            mask[b, : len(bits) + 1] = True
        return outputs, mask


class BinaryAddition(_BinaryOperation):
    """Add two little-endian binary numbers.

    Symbols: ``"0"``, ``"1"``, ``"+"``. Input (``length`` tokens): ``n + m`` with ``n`` of ``k``
    bits (``k`` uniform in 1..length-2) and ``m`` of ``length-1-k`` bits, each number uniform among
    the non-zero numbers of its width (leading zeros allowed). Output (``length + 1`` positions):
    the sum, little-endian without trailing zeros (``0`` for zero), then ``<eos>``, then padding.
    At lengths 1 and 2 the input is one number in ``[0, 2**length - 2]`` and the answer is that
    number, as in the reference.

    Example:
      ``1 0 1 + 1 1 0`` (5 + 3) -> ``0 0 0 1 <eos>`` (8), then 3 unscored positions.

    References: Deletang et al. 2023 (arXiv 2207.02098), task "binary_addition".
    """

    name = "binary_addition"
    _operator = "+"

    def output_length(self, length: int) -> int:
        return length + 1

    def _combine(self, left: int, right: int) -> int:
        return left + right

    def _no_operator_result(self, number: int, length: int) -> np.ndarray:
        return _int_to_bits(number, little_endian=True)


class BinaryMultiplication(_BinaryOperation):
    """Multiply two little-endian binary numbers.

    Symbols: ``"0"``, ``"1"``, ``"*"``. Input as binary_addition with ``*``. Output (``length``
    positions): the product, little-endian without trailing zeros, then ``<eos>``, then padding.
    At lengths 1 and 2 the input is one number and the answer is ``length - 1`` zeros (none at
    length 1), as in the reference.

    Example:
      ``0 0 1 * 0 1 1 0 1`` (4 * 22) -> ``0 0 0 1 1 0 1 <eos>`` (88), then 1 unscored position.

    References: Deletang et al. 2023 (arXiv 2207.02098), task "binary_multiplication".
    """

    name = "binary_multiplication"
    _operator = "*"

    def output_length(self, length: int) -> int:
        return length

    def _combine(self, left: int, right: int) -> int:
        return left * right

    def _no_operator_result(self, number: int, length: int) -> np.ndarray:
        return np.zeros(length - 1, dtype=np.int32)


class ComputeSqrt(EncoderTask):
    """Floor of the square root of a big-endian binary number.

    Symbols: ``"0"``, ``"1"``. Input: ``length`` bits, uniform among non-zero numbers (leading
    zeros allowed). Output (``ceil(length / 2)`` positions): ``isqrt`` of the number, big-endian,
    zero-filled to that width.

    Example:
      ``1 0 0 1 0 1`` (37) -> ``1 1 0`` (6).

    References: Deletang et al. 2023 (arXiv 2207.02098), task "compute_sqrt".
    """

    name = "compute_sqrt"

    def __init__(self) -> None:
        self.symbols = _BITS

    def output_length(self, length: int) -> int:
        return math.ceil(length / 2)

    def sample_inputs(self, rng: np.random.Generator, batch_size: int, length: int) -> np.ndarray:
        everything = np.ones((batch_size, length), dtype=bool)
        bits = _sample_nonzero_bits(rng, (batch_size, length), [everything])
        return (NUM_SPECIAL + bits).astype(np.int32)

    def solve(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        batch_size, length = inputs.shape
        width = self.output_length(length)
        outputs = np.empty((batch_size, width), dtype=np.int32)
        for b, row in enumerate(np.asarray(inputs)):
            root = math.isqrt(int(_ids_to_bit_string(row, NUM_SPECIAL), 2))
            outputs[b] = NUM_SPECIAL + _int_to_bits(root, width=width, little_endian=False)
        return outputs, np.ones(outputs.shape, dtype=bool)


class BucketSort(EncoderTask):
    """Sort a string over a fixed alphabet.

    Symbols: ``"0"`` .. ``"{num_symbols-1}"`` (5 in the paper). Output (``length`` positions):
    the input sorted in increasing order.

    Example (num_symbols=5):
      ``1 0 2 0 4 1 1 2`` -> ``0 0 1 1 1 2 2 4``.

    References: Deletang et al. 2023 (arXiv 2207.02098), task "bucket_sort".
    """

    name = "bucket_sort"

    def __init__(self, *, num_symbols: int = 5) -> None:
        self.num_symbols = check_int("num_symbols", num_symbols, minimum=2)
        self.symbols = _digit_symbols(self.num_symbols)

    def output_length(self, length: int) -> int:
        return length

    def sample_inputs(self, rng: np.random.Generator, batch_size: int, length: int) -> np.ndarray:
        return (NUM_SPECIAL + rng.integers(0, self.num_symbols, (batch_size, length))).astype(
            np.int32
        )

    def solve(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        outputs = np.sort(inputs, axis=1).astype(np.int32)
        return outputs, np.ones(outputs.shape, dtype=bool)


CHOMSKY_TASKS: tuple[type[EncoderTask], ...] = (
    EvenPairs,
    ModularArithmetic,
    ParityCheck,
    CycleNavigation,
    StackManipulation,
    ReverseString,
    ModularArithmeticBrackets,
    SolveEquation,
    DuplicateString,
    MissingDuplicateString,
    OddsFirst,
    BinaryAddition,
    BinaryMultiplication,
    ComputeSqrt,
    BucketSort,
)
