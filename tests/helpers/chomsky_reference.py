"""Independent reference solvers for the Deletang et al. 2023 tasks, in plain Python.

Each solver is a transcription of the task definition in the reference code,
google-deepmind/neural_networks_chomsky_hierarchy, ``tasks/{regular,dcf,cs}/*.py``. Line numbers
cite the 2024 versions of those files: commit 8084451 for even_pairs, parity_check,
cycle_navigation, stack_manipulation, reverse_string, missing_duplicate_string, binary_addition,
binary_multiplication and compute_sqrt; commit 2b8eb4b for modular_arithmetic,
modular_arithmetic_brackets, solve_equation, duplicate_string, odds_first and bucket_sort.

Nothing here imports the project: the solvers read symbol names (strings), and ``alphabet``
writes each task's symbol table out again from the task descriptions, so ids can be decoded
without the task's own ``decode``. Every solver also checks that its input lies in the domain
the reference samples from (operand widths, non-zero numbers, one ``?``, ...) and raises
AssertionError otherwise, so a sampler that drifts from the reference fails too.

Each solver takes the decoded input symbols and the task length and returns
``(answer, width)``: the scored answer symbols (ending with ``"<eos>"`` where the reference
appends a termination token) and the number of output positions of the task at that length.
"""

import itertools
import math

SPECIALS = ("<pad>", "<placeholder>", "<bos>", "<sep>", "<eos>")
EOS = "<eos>"


def _digits(count: int) -> tuple[str, ...]:
    return tuple(str(i) for i in range(count))


def alphabet(name: str, **options) -> tuple[str, ...]:
    """The task's symbols in id order (id ``5 + i`` for ``symbols[i]``)."""
    modulus = options.get("modulus", 5)
    num_symbols = options.get("num_symbols", 5 if name == "bucket_sort" else 2)
    tables = {
        "even_pairs": ("0", "1"),
        "parity_check": ("0", "1"),
        "cycle_navigation": (
            "L",
            "S",
            "R",
            *(f"s{i}" for i in range(options.get("cycle_length", 5))),
        ),
        "modular_arithmetic": (*_digits(modulus), "+", "-", "*"),
        "stack_manipulation": ("0", "1", "POP", "PUSH0", "PUSH1"),
        "reverse_string": _digits(num_symbols),
        "modular_arithmetic_brackets": (*_digits(modulus), "+", "-", "*", "(", ")"),
        "solve_equation": (*_digits(modulus), "+", "-", "(", ")", "x", "="),
        "duplicate_string": _digits(num_symbols),
        "missing_duplicate_string": ("0", "1", "?", "_"),
        "odds_first": _digits(num_symbols),
        "binary_addition": ("0", "1", "+"),
        "binary_multiplication": ("0", "1", "*"),
        "compute_sqrt": ("0", "1"),
        "bucket_sort": _digits(num_symbols),
    }
    return tables[name]


def decode(symbols: tuple[str, ...], ids) -> list[str]:
    """Names of ``ids`` under the layout of five special ids followed by ``symbols``."""
    names = SPECIALS + symbols
    return [names[int(i)] for i in ids]


def encode(symbols: tuple[str, ...], names) -> list[int]:
    """Ids of symbol names (specials included) under the same layout."""
    table = SPECIALS + symbols
    return [table.index(n) for n in names]


def input_length(name: str, length: int) -> int:
    """Number of input symbols at a task length."""
    if name == "modular_arithmetic":
        # regular/modular_arithmetic.py L169-170: an even length loses one symbol (odd inputs).
        return length if length % 2 == 1 else length - 1
    return length


# ------------------------------------------------------------------------------------------------
# Regular tasks.


def even_pairs(s: list[str], length: int) -> tuple[list[str], int]:
    # regular/even_pairs.py L45-53: class = (number of unequal adjacent pairs) mod 2.
    assert set(s) <= {"0", "1"}
    unequal = sum(1 for a, b in itertools.pairwise(s) if a != b)
    return [str(unequal % 2)], 1


def parity_check(s: list[str], length: int) -> tuple[list[str], int]:
    # regular/parity_check.py L45-47: class = (number of ones) mod 2.
    assert set(s) <= {"0", "1"}
    return [str(s.count("1") % 2)], 1


def cycle_navigation(s: list[str], length: int, cycle_length: int = 5) -> tuple[list[str], int]:
    # regular/cycle_navigation.py L55-57: actions 0/1/2 are steps -1/0/+1 (left/stay/right,
    # docstring L32-35); start at state 0; class = sum of steps mod the cycle length (5, L46-49).
    step = {"L": -1, "S": 0, "R": +1}
    position = 0
    for action in s:
        position = (position + step[action]) % cycle_length
    return [f"s{position}"], 1


def _evaluate_flat(tokens: list[str], modulus: int) -> int:
    """regular/modular_arithmetic.py L112-117: ``a - b`` is ``a + (-b)`` (L37-56), ``*``-joined
    residuals multiply into one additive term (L59-86), the terms are summed mod ``modulus``."""
    terms = []
    sign, product = 1, int(tokens[0])
    for op, digit in zip(tokens[1::2], tokens[2::2], strict=True):
        if op == "*":
            product *= int(digit)
        else:
            terms.append(sign * product)
            sign, product = (-1 if op == "-" else 1), int(digit)
    terms.append(sign * product)
    return sum(terms) % modulus


def modular_arithmetic(
    s: list[str], length: int, modulus: int = 5, operators=("+", "-", "*")
) -> tuple[list[str], int]:
    # regular/modular_arithmetic.py L169-181: residuals at even positions, operators (uniform
    # among the task's) at odd positions, odd length; value by the precedence of L112-117.
    assert len(s) % 2 == 1
    assert all(d in _digits(modulus) for d in s[0::2])
    assert all(op in operators for op in s[1::2])
    return [str(_evaluate_flat(s, modulus))], 1


# ------------------------------------------------------------------------------------------------
# Deterministic context-free tasks.


def stack_manipulation(s: list[str], length: int) -> tuple[list[str], int]:
    # dcf/stack_manipulation.py L59-78: the initial stack (bottom to top, 1..length-1 bits, L64;
    # a single bit at length 1, L59-61) then POP / PUSH0 / PUSH1 actions; POP on an empty stack
    # is ignored (L72-74). Answer: the final stack top to bottom (L78), the termination token
    # (L88) and padding to length + 1 positions (L91), scored up to the terminator (L118-134).
    num_bits = 0
    while num_bits < len(s) and s[num_bits] in ("0", "1"):
        num_bits += 1
    if length == 1:
        assert num_bits == 1
    else:
        assert 1 <= num_bits <= length - 1
    stack = list(s[:num_bits])
    for action in s[num_bits:]:
        if action == "POP":
            if stack:
                stack.pop()
        elif action == "PUSH0":
            stack.append("0")
        elif action == "PUSH1":
            stack.append("1")
        else:
            raise AssertionError(f"unexpected action {action!r} after the initial stack")
    return [*reversed(stack), EOS], length + 1


def reverse_string(s: list[str], length: int) -> tuple[list[str], int]:
    # dcf/reverse_string.py L45-46: the output is the input flipped.
    return s[::-1], length


def _evaluate_bracketed(tokens: list[str], modulus: int) -> int:
    """Value of an expression of the grammar of dcf/modular_arithmetic_brackets.py L58-89.

    ``E := d | -d | (d) | (-d) | (E op E)``, values mod ``modulus``. Recursive descent; raises
    AssertionError on anything outside the grammar or on tokens left over.
    """
    pos = 0

    def digit() -> int:
        nonlocal pos
        token = tokens[pos]
        assert token in _digits(modulus), f"expected a digit at {pos}: {tokens}"
        pos += 1
        return int(token)

    def expression() -> int:
        nonlocal pos
        if tokens[pos] == "-":  # L60-62: -d
            pos += 1
            return -digit() % modulus
        if tokens[pos] != "(":  # L58-59: d
            return digit()
        pos += 1
        start = pos
        left = expression()
        if tokens[pos] == ")":  # L63-68: (d) and (-d) only
            assert pos - start in (1, 2), f"bracketed non-terminal at {start}: {tokens}"
            value = left
        else:  # L81-89: (E op E)
            op = tokens[pos]
            pos += 1
            right = expression()
            value = {"+": left + right, "-": left - right, "*": left * right}[op] % modulus
        assert tokens[pos] == ")", f"expected ')' at {pos}: {tokens}"
        pos += 1
        return value

    value = expression()
    assert pos == len(tokens), f"tokens left after the expression: {tokens}"
    return value


def modular_arithmetic_brackets(
    s: list[str], length: int, modulus: int = 5, mult: bool = True
) -> tuple[list[str], int]:
    # dcf/modular_arithmetic_brackets.py L58-89: an expression of exactly ``length`` tokens;
    # ``*`` only with mult (L79).
    assert len(s) == length and (mult or "*" not in s)
    return [str(_evaluate_bracketed(s, modulus))], 1


def solve_equation(s: list[str], length: int, modulus: int = 5) -> tuple[list[str], int]:
    # dcf/solve_equation.py L143-151: below length 3, all-zero inputs and answer 0.
    if length < 3:
        assert s == ["0"] * length
        return ["0"], 1
    # L51-67: an expression of length - 2 tokens without '*' (L57), one digit replaced by 'x',
    # then '=' and the expression's value. The answer is the replaced digit: the x that makes
    # both sides equal, unique because x appears once with coefficient +-1.
    assert s[-2] == "=" and s.count("x") == 1 and "*" not in s
    lhs, rhs = s[:-2], int(s[-1])
    roots = [
        c
        for c in range(modulus)
        if _evaluate_bracketed([str(c) if t == "x" else t for t in lhs], modulus) == rhs
    ]
    assert len(roots) == 1, f"{len(roots)} solutions for {s}"
    return [str(roots[0])], 1


# ------------------------------------------------------------------------------------------------
# Context-sensitive tasks.


def duplicate_string(s: list[str], length: int, duplication: int = 2) -> tuple[list[str], int]:
    # cs/duplicate_string.py L55-58: the string written twice, no separator (the project
    # generalises the count).
    return s * duplication, duplication * length


def missing_duplicate_string(s: list[str], length: int) -> tuple[list[str], int]:
    # cs/missing_duplicate_string.py L54-62: at length 1 input "1" and answer "1".
    if length == 1:
        assert s == ["1"]
        return ["1"], 1
    # L65-81: length // 2 bits written twice, one position masked with '?' (token 2), a '_'
    # (token 3) appended at odd lengths; the answer is the masked bit: the one bit that makes
    # the two halves equal again.
    half = length // 2
    if length % 2:
        assert s[-1] == "_"
        s = s[:-1]
    assert "_" not in s and s.count("?") == 1
    fits = []
    for bit in "01":
        filled = [bit if c == "?" else c for c in s]
        if filled[:half] == filled[half:]:
            fits.append(bit)
    assert len(fits) == 1, f"{len(fits)} bits fill {s}"
    return fits, 1


def odds_first(s: list[str], length: int) -> tuple[list[str], int]:
    # cs/odds_first.py L58-59: x[:, 1::2] then x[:, ::2], i.e. the symbols at odd 0-based
    # positions first (the docstring, L33 and L36-37, counts from 1 and so reads the other way).
    odd = [s[i] for i in range(len(s)) if i % 2 == 1]
    even = [s[i] for i in range(len(s)) if i % 2 == 0]
    return odd + even, length


def _little_endian(bits: list[str]) -> int:
    return sum(1 << i for i, bit in enumerate(bits) if bit == "1")


def _to_little_endian(value: int) -> list[str]:
    # cs/binary_addition.py L43-46 with length 0: f'{num:b}' reversed, so "0" for zero.
    return list(f"{value:b}"[::-1])


def _operands(s: list[str], length: int, op: str) -> tuple[int, ...]:
    """The two operands of a sampled binary expression, or the lone number at length <= 2."""
    if length <= 2:
        # cs/binary_addition.py L119-124: one number in [0, 2**length - 2], fixed width.
        assert set(s) <= {"0", "1"} and len(s) == length
        number = _little_endian(s)
        assert number <= 2**length - 2
        return (number,)
    # L127-136: n of length_n bits (1..length-2), the operator, m of length-1-length_n bits;
    # both uniform in [1, 2**width - 1], little-endian with leading zeros (L130-134).
    assert s.count(op) == 1
    at = s.index(op)
    left, right = s[:at], s[at + 1 :]
    assert 1 <= len(left) <= length - 2 and len(left) + len(right) == length - 1
    n, m = _little_endian(left), _little_endian(right)
    assert n >= 1 and m >= 1
    return n, m


def binary_addition(s: list[str], length: int) -> tuple[list[str], int]:
    operands = _operands(s, length, "+")
    if len(operands) == 1:  # L119-124: the answer is the number itself
        return [*_to_little_endian(operands[0]), EOS], length + 1
    # L138-139: the sum in little-endian without trailing zeros; L156: terminator, padding to
    # length + 1 positions.
    return [*_to_little_endian(operands[0] + operands[1]), EOS], length + 1


def binary_multiplication(s: list[str], length: int) -> tuple[list[str], int]:
    operands = _operands(s, length, "*")
    if len(operands) == 1:
        # cs/binary_multiplication.py L71-76: the answer is length - 1 zeros.
        return [*(["0"] * (length - 1)), EOS], length
    # L92-94: the product, little-endian without trailing zeros; L117: terminator, padding to
    # length positions.
    return [*_to_little_endian(operands[0] * operands[1]), EOS], length


def compute_sqrt(s: list[str], length: int) -> tuple[list[str], int]:
    # cs/compute_sqrt.py L46-52: a big-endian number in [1, 2**length - 1]; the answer is
    # isqrt of it, big-endian, zero-filled to ceil(length / 2) bits. (The docstring example of
    # L38 writes 6 as 101; the code computes 110.)
    number = int("".join(s), 2)
    assert number >= 1
    width = math.ceil(length / 2)
    root = math.isqrt(number)
    assert root * root <= number < (root + 1) ** 2
    return list(f"{root:b}".zfill(width)), width


def bucket_sort(s: list[str], length: int) -> tuple[list[str], int]:
    # cs/bucket_sort.py L57-59: the string sorted in increasing order.
    return sorted(s, key=int), length


SOLVERS = {
    "even_pairs": even_pairs,
    "parity_check": parity_check,
    "cycle_navigation": cycle_navigation,
    "modular_arithmetic": modular_arithmetic,
    "stack_manipulation": stack_manipulation,
    "reverse_string": reverse_string,
    "modular_arithmetic_brackets": modular_arithmetic_brackets,
    "solve_equation": solve_equation,
    "duplicate_string": duplicate_string,
    "missing_duplicate_string": missing_duplicate_string,
    "odds_first": odds_first,
    "binary_addition": binary_addition,
    "binary_multiplication": binary_multiplication,
    "compute_sqrt": compute_sqrt,
    "bucket_sort": bucket_sort,
}

# Options a solver needs (the rest only change the alphabet).
_SOLVER_OPTIONS = {
    "cycle_navigation": ("cycle_length",),
    "modular_arithmetic": ("modulus", "operators"),
    "modular_arithmetic_brackets": ("modulus", "mult"),
    "solve_equation": ("modulus",),
    "duplicate_string": ("duplication",),
}


def solve(name: str, s: list[str], length: int, **options) -> tuple[list[str], int]:
    """Reference ``(answer, width)`` of one decoded input of task ``name`` at ``length``."""
    kwargs = {k: v for k, v in options.items() if k in _SOLVER_OPTIONS.get(name, ())}
    return SOLVERS[name](s, length, **kwargs)
