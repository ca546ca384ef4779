"""The four Kazemnejad et al. 2023 tasks generated from their definitions: polynomial, lego,
scan and pcfg.

Every sampled target is checked against an independent plain-Python transcription of the
reference definition, applied to the decoded prompt text: Python integers for the
polynomial (McGill-NLP/length-generalization, make_poly_dataset.py ``generate_data``), a
recursive resolution of the LEGO clauses (make_lego_dataset.py), a separately written SCAN
interpreter checked first on pairs published in brendenlake/SCAN, and a right-to-left stack
evaluator of PCFG SET inputs (MathijsMul/pcfg-set tasks/default.py) checked first on lines of
Hupkes et al.'s productivity test set (i-machine-think/am-i-compositional). Pure numpy and
Python: no model is built.
"""

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posenc_jax.harness.tasks import BOS, EOS, PAD, SEP, TASKS, get_task, task_options
from posenc_jax.harness.tasks.grammar import function_count, scan_commands

NEW_TASKS = ("polynomial", "lego", "scan", "pcfg")
PROPERTY = settings(max_examples=15, deadline=None)


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def examples(task, batch) -> list[tuple[list[str], list[str]]]:
    """Each row of a decoder batch as (prompt words without <sep>, answer words without <eos>)."""
    out = []
    for tokens, targets, mask in zip(batch.tokens, batch.targets, batch.loss_mask, strict=True):
        scored = np.flatnonzero(mask)
        first = scored[0]  # the <sep> position: its target is the first answer token
        assert tokens[0] == BOS and tokens[first] == SEP
        assert np.array_equal(scored, np.arange(first, scored[-1] + 1))  # one run
        answer = targets[scored]
        assert answer[-1] == EOS and not np.isin(answer[:-1], [EOS, SEP, BOS, PAD]).any()
        out.append((task.decode(tokens[1:first]), task.decode(answer[:-1])))
    return out


# ------------------------------------------------------------------------------------------------
# Independent references.


def poly_reference(words: list[str]) -> tuple[int, list[tuple[int, int]], int]:
    """(x, [(coefficient, degree)], answer) of a decoded polynomial prompt, with Python ints.

    make_poly_dataset.py: ``ans = sum([coeffs[i] * x ** degrees[i] ...])``; the processor
    takes ``answer % self.modulo_factor`` (10), Python's ``%``.
    """
    text = " ".join(words)
    head = re.fullmatch(r"x = (-?\d) in (.*)", text)
    assert head, text
    x = int(head.group(1))
    terms = [re.fullmatch(r"(-?\d) \* x \*\* (\d)", t) for t in head.group(2).split(" + ")]
    assert all(terms), text
    pairs = [(int(t.group(1)), int(t.group(2))) for t in terms]
    return x, pairs, sum(c * x**d for c, d in pairs) % 10


def lego_reference(words: list[str]) -> tuple[list[str], str, str]:
    """(variables in chain order, queried variable, its value) of a decoded LEGO prompt."""
    *body, mark, query = words
    assert mark == "?"
    definitions = {}
    for clause in " ".join(body).split(" , "):
        name, equals, *rest = clause.split()
        assert equals == "=" and name not in definitions
        definitions[name] = rest

    def value(name: str) -> int:
        rest = definitions[name]
        if len(rest) == 1:
            return {"+1": 1, "-1": -1}[rest[0]]
        sign, other = rest
        return (1 if sign == "+" else -1) * value(other)

    (root,) = [v for v, rest in definitions.items() if len(rest) == 1]
    chain, child = [root], {rest[1]: v for v, rest in definitions.items() if len(rest) == 2}
    while chain[-1] in child:
        chain.append(child[chain[-1]])
    return chain, query, "+1" if value(query) > 0 else "-1"


def scan_reference(command: str) -> list[str]:
    """Lake & Baroni's interpretation function, written apart from the task's enumeration."""
    if " after " in command:
        first, second = command.split(" after ")
        return scan_reference(second) + scan_reference(first)
    if " and " in command:
        first, second = command.split(" and ")
        return scan_reference(first) + scan_reference(second)
    words = command.split()
    times = {"twice": 2, "thrice": 3}.get(words[-1], 1)
    if times > 1:
        words = words[:-1]
    act = [] if words[0] == "turn" else [words[0].upper()]
    if len(words) == 1:
        return act * times
    turn = ["LTURN" if words[-1] == "left" else "RTURN"]
    if words[1] == "opposite":
        unit = turn + turn + act
    elif words[1] == "around":
        unit = (turn + act) * 4
    else:
        unit = turn + act
    return unit * times


PCFG_FUNCTIONS = {  # MathijsMul/pcfg-set tasks/default.py, as written there
    "copy": lambda s: s,
    "reverse": lambda s: s[::-1],
    "shift": lambda s: s[1:] + [s[0]],  # noqa: RUF005
    "echo": lambda s: s + [s[-1]],  # noqa: RUF005
    "swap_first_last": lambda s: [s[-1]] + s[1:-1] + [s[0]],  # noqa: RUF005
    "repeat": lambda s: s + s,
    "append": lambda a, b: a + b,
    "prepend": lambda a, b: b + a,
    "remove_first": lambda a, b: b,
    "remove_second": lambda a, b: a,
}
PCFG_ARITY = {name: f.__code__.co_argcount for name, f in PCFG_FUNCTIONS.items()}


def pcfg_reference(words: list[str]) -> tuple[list[str], list[list[str]]]:
    """(output, string arguments) of an input without brackets, evaluated right to left.

    Letters gather into the current string; ``,`` closes it; a function closes it, pops its
    arguments (the first on top) and pushes its result. An algorithm unlike the task's
    recursive descent.
    """
    stack, current, strings = [], [], []
    for word in reversed(words):
        if word == ",":
            if current:
                stack.append(current)
                strings.append(current)
            current = []
        elif word in PCFG_FUNCTIONS:
            if current:
                stack.append(current)
                strings.append(current)
            current = []
            args = [stack.pop() for _ in range(PCFG_ARITY[word])]
            stack.append(PCFG_FUNCTIONS[word](*args))
        else:
            current = [word, *current]
    assert not current and len(stack) == 1, words
    return stack[0], strings


# Published pairs: brendenlake/SCAN @0a5bbf5, README.md, the examples table (L16-L22).
SCAN_README = [
    ("jump", "JUMP"),
    ("jump left", "LTURN JUMP"),
    ("jump around right", "RTURN JUMP RTURN JUMP RTURN JUMP RTURN JUMP"),
    ("turn left twice", "LTURN LTURN"),
    ("jump thrice", "JUMP JUMP JUMP"),
    ("jump opposite left and walk thrice", "LTURN LTURN JUMP WALK WALK WALK"),
    (
        "jump opposite left after walk around left",
        "LTURN WALK LTURN WALK LTURN WALK LTURN WALK LTURN LTURN JUMP",
    ),
]
# brendenlake/SCAN simple_split/size_variations/tasks_test_simple_p1.txt @6450bb1, lines 1, 3,
# 4, 20, 21, 28 and 35 (the data files write I_WALK ... I_TURN_LEFT for WALK ... LTURN).
SCAN_FILE = [
    (
        "walk opposite right after turn right twice",
        "I_TURN_RIGHT I_TURN_RIGHT I_TURN_RIGHT I_TURN_RIGHT I_WALK",
    ),
    (
        "run and look opposite right twice",
        "I_RUN I_TURN_RIGHT I_TURN_RIGHT I_LOOK I_TURN_RIGHT I_TURN_RIGHT I_LOOK",
    ),
    ("turn right and look left twice", "I_TURN_RIGHT I_TURN_LEFT I_LOOK I_TURN_LEFT I_LOOK"),
    ("turn left after look around left thrice", "I_TURN_LEFT I_LOOK " * 12 + "I_TURN_LEFT"),
    (
        "run around right after walk left",
        "I_TURN_LEFT I_WALK I_TURN_RIGHT I_RUN I_TURN_RIGHT I_RUN I_TURN_RIGHT I_RUN "
        "I_TURN_RIGHT I_RUN",
    ),
    ("turn opposite left thrice and run left", "I_TURN_LEFT " * 7 + "I_RUN"),
    (
        "turn around left and run around left",
        "I_TURN_LEFT I_TURN_LEFT I_TURN_LEFT I_TURN_LEFT I_TURN_LEFT I_RUN I_TURN_LEFT I_RUN "
        "I_TURN_LEFT I_RUN I_TURN_LEFT I_RUN",
    ),
]
SCAN_NAMES = {"I_TURN_LEFT": "LTURN", "I_TURN_RIGHT": "RTURN", "I_WALK": "WALK",
              "I_LOOK": "LOOK", "I_RUN": "RUN", "I_JUMP": "JUMP"}  # fmt: skip

# i-machine-think/am-i-compositional @3bdced8, data/pcfgset/productivity/test.src and
# test.tgt, lines 1-5.
PCFG_PRODUCTIVITY_TEST = [
    (
        "append X6 Z11 T16 H9 , reverse remove_second Q13 Y2 C11 , repeat repeat prepend append "
        "L8 P13 X1 , D8 U1 V18 , remove_second V10 J5 I8 , copy I10 K18 J18 C4",
        "X6 Z11 T16 H9 C11 Y2 Q13",
    ),
    (
        "remove_first shift remove_second S13 E4 M11 A7 , swap_first_last remove_second L13 M18 "
        ", M7 X4 , remove_second remove_first remove_second E10 E3 U4 H7 Z2 , remove_second N7 "
        "G11 D1 I19 , M9 D7 , U15 F2 , F8 J19 B19 D9 M16",
        "U15 F2",
    ),
    (
        "swap_first_last repeat append repeat remove_first echo swap_first_last copy B10 V8 A7 "
        "W14 A14 , K16 H5 B8 , repeat Z12 F16 H19 S5",
        "S5 H5 B8 K16 H5 B8 Z12 F16 H19 S5 Z12 F16 H19 S5 K16 H5 B8 K16 H5 B8 Z12 F16 H19 S5 "
        "Z12 F16 H19 K16",
    ),
    (
        "swap_first_last remove_first shift append shift Y4 E8 P7 , repeat Q20 T14 X11 , echo "
        "append X5 U14 , remove_second D19 U1 T1 L14 Y15 , U12 O4 F12",
        "Y15 U14 D19 U1 T1 L14 Y15 X5",
    ),
    (
        "repeat append repeat repeat shift F7 T19 G14 A2 , repeat copy echo swap_first_last V16 "
        "H6 M12 W16",
        "T19 G14 A2 F7 T19 G14 A2 F7 T19 G14 A2 F7 T19 G14 A2 F7 W16 H6 M12 V16 V16 W16 H6 M12 "
        "V16 V16 T19 G14 A2 F7 T19 G14 A2 F7 T19 G14 A2 F7 T19 G14 A2 F7 W16 H6 M12 V16 V16 W16 "
        "H6 M12 V16 V16",
    ),
]


def split(text: str) -> list[str]:
    return text.split()


def solve_words(task, command: list[str]) -> list[str]:
    prompt = np.append(task.encode(command), SEP)[None]
    answer = task.solve(prompt)[0]
    return task.decode(answer[answer != PAD])


# ------------------------------------------------------------------------------------------------
# The references on published pairs.


def test_scan_reference_and_task_reproduce_the_published_pairs():
    task = get_task("scan")
    pairs = SCAN_README + [
        (c, " ".join(SCAN_NAMES[a] for a in out.split())) for c, out in SCAN_FILE
    ]
    for command, actions in pairs:
        assert " ".join(scan_reference(command)) == actions, command
        assert " ".join(solve_words(task, command.split())) == actions, command


def test_pcfg_reference_and_task_reproduce_the_productivity_test_lines():
    task = get_task("pcfg")
    for source, target in PCFG_PRODUCTIVITY_TEST:
        words = source.split()
        assert " ".join(pcfg_reference(words)[0]) == target
        assert " ".join(solve_words(task, words)) == target
        # The productivity test holds the inputs beyond training: 9 or more functions.
        assert function_count(words) >= 9 > max(task.train_lengths)
        assert function_count(words) == sum(w in PCFG_FUNCTIONS for w in words)


def test_polynomial_and_lego_worked_examples():
    # make_poly_dataset.py's template, assembled: x = -2 in 3 x^0 - 1 x^2 -> -1 % 10 = 9.
    poly = get_task("polynomial")
    words = split("x = -2 in 3 * x ** 0 + -1 * x ** 2")
    assert solve_words(poly, words) == ["9"] and poly_reference(words)[2] == 9
    words = split("x = 2 in -3 * x ** 3 + 1 * x ** 1")  # -24 + 2 = -22 -> 8 (Python %)
    assert solve_words(poly, words) == ["8"] and poly_reference(words)[2] == 8
    lego = get_task("lego")
    words = split("a = +1 , b = - a , c = + b ? c")
    assert solve_words(lego, words) == ["-1"] and lego_reference(words)[2] == "-1"
    words = split("c = + b , a = -1 , b = - a ? c")  # clauses in any order resolve
    assert solve_words(lego, words) == ["+1"] and lego_reference(words)[2] == "+1"


# ------------------------------------------------------------------------------------------------
# Sampled targets against the references, and length bookkeeping.


def check_polynomial(task, batch, length):
    for prompt, answer in examples(task, batch):
        x, pairs, expected = poly_reference(prompt)
        assert len(pairs) == length and -2 <= x <= 2
        assert all(-3 <= c <= 3 and 0 <= d <= 3 for c, d in pairs)
        assert answer == [str(expected)]


def check_lego(task, batch, length):
    for prompt, answer in examples(task, batch):
        chain, query, expected = lego_reference(prompt)
        assert len(chain) == length == len(set(chain))
        # make_lego_dataset.py: queries from n // 2 (even n) or n // 2 + 1 (odd n) to n - 1.
        first = length // 2 if length % 2 == 0 else length // 2 + 1
        assert first <= chain.index(query) < length
        assert answer == [expected]


def check_scan(task, batch, length):
    for prompt, answer in examples(task, batch):
        assert 1 <= len(prompt) <= 9
        assert answer == scan_reference(" ".join(prompt)) and len(answer) == length


def check_pcfg(task, batch, length):
    for prompt, answer in examples(task, batch):
        expected, strings = pcfg_reference(prompt)
        assert function_count(prompt) == length
        assert answer == expected and 2 <= len(answer) <= task.max_answer
        assert all(2 <= len(s) <= 5 for s in strings)  # generate.py --lengths [2, 3, 4, 5]
        assert len(" ".join(prompt)) < 500  # generate.py keeps written trees under 500 chars


CHECKS = {"polynomial": check_polynomial, "lego": check_lego, "scan": check_scan,
          "pcfg": check_pcfg}  # fmt: skip


@pytest.mark.parametrize("name", NEW_TASKS)
def test_every_reference_length_samples_right_targets(name):
    task = get_task(name)
    lo, hi = task.train_lengths
    for length in (*range(lo, hi + 1), *task.eval_lengths):
        if name == "scan" and length not in scan_commands():
            continue
        batch = task.sample_batch(rng(length), 8, length)
        CHECKS[name](task, batch, length)


@PROPERTY
@given(seed=st.integers(0, 2**32 - 1), length=st.integers(1, 16), permute=st.booleans())
def test_sampled_targets_match_references_property(seed, length, permute):
    check_polynomial(get_task("polynomial"), get_task("polynomial").sample_batch(rng(seed), 4,
                     length), length)  # fmt: skip
    lego = get_task("lego", permute_clauses=permute)
    check_lego(lego, lego.sample_batch(rng(seed), 4, length + 1), length + 1)
    pcfg = get_task("pcfg")
    check_pcfg(pcfg, pcfg.sample_batch(rng(seed), 4, length), length)
    scan = get_task("scan")
    scan_length = sorted(scan_commands())[seed % len(scan_commands())]
    check_scan(scan, scan.sample_batch(rng(seed), 4, scan_length), scan_length)


@pytest.mark.parametrize("name", NEW_TASKS)
def test_batch_layout(name):
    task = get_task(name)
    for length in (task.train_lengths[0], task.train_lengths[1], task.eval_lengths[-1]):
        batch = task.sample_batch(rng(length), 6, length)
        width = task.sequence_length(length)
        for array in (batch.tokens, batch.targets, batch.loss_mask):
            assert array.shape == (6, width)
        assert batch.tokens.dtype == np.int32 and batch.targets.dtype == np.int32
        assert batch.loss_mask.dtype == np.bool_
        assert batch.tokens.min() >= 0 and batch.tokens.max() < task.vocab_size
        assert np.all(batch.targets[~batch.loss_mask] == PAD)
        # Teacher forcing: each scored target is the next input token, but for the <eos>.
        scored = batch.loss_mask[:, :-1] & (batch.targets[:, :-1] != EOS)
        assert np.array_equal(batch.targets[:, :-1][scored], batch.tokens[:, 1:][scored])
        for tokens, mask in zip(batch.tokens, batch.loss_mask, strict=True):
            end = np.flatnonzero(mask)[-1] + 1  # the position after the one predicting <eos>
            assert np.all(tokens[end:] == PAD) and not np.isin(tokens[1:end], [BOS, PAD]).any()
        if name in ("polynomial", "lego"):  # fixed layouts: the answer ends every row
            assert np.all(batch.targets[:, -1] == EOS)
            assert task.output_length(length) == 1


@pytest.mark.parametrize("name", NEW_TASKS)
def test_determinism_per_seed(name):
    task = get_task(name)
    length = task.train_lengths[1]
    first, second = (task.sample_batch(rng(7), 8, length) for _ in range(2))
    other = task.sample_batch(rng(8), 8, length)
    for field in ("tokens", "targets", "loss_mask"):
        assert np.array_equal(getattr(first, field), getattr(second, field))
    assert not np.array_equal(first.tokens, other.tokens)


# ------------------------------------------------------------------------------------------------
# The splits.


def test_reference_ranges_are_declared_and_disjoint():
    expected = {
        "polynomial": ((1, 8), tuple(range(9, 17))),
        "lego": ((2, 8), tuple(range(9, 17))),
        "scan": ((1, 25), (26, 27, 28, 30, 32, 33, 36, 40, 48)),
        "pcfg": ((1, 8), tuple(range(9, 17))),
    }
    for name, (train, test) in expected.items():
        task = get_task(name)
        assert isinstance(task, TASKS[name]) and task.causal and task.headline == "exact_match"
        assert (task.train_lengths, task.eval_lengths) == (train, test)
        assert max(task.train_lengths) < min(task.eval_lengths)


def test_scan_enumeration_is_the_scan_set_and_its_length_split():
    commands = scan_commands()
    pairs = [(" ".join(w), list(a)) for pool in commands.values() for w, a in pool]
    assert len(pairs) == len({c for c, _ in pairs}) == 20910  # "over 20,000 SCAN commands"
    for n, pool in commands.items():
        assert pool and all(len(actions) == n for _, actions in pool)
    for command, actions in pairs[::37]:
        assert scan_reference(command) == actions
    count = {n: len(pool) for n, pool in commands.items()}
    # Lake & Baroni's length split (train <= 22 actions): 16 990 / 3 920 commands.
    assert sum(c for n, c in count.items() if n <= 22) == 16990
    # make_scan_dataset.py: ``if target_length > 25: split = test``.
    assert sum(c for n, c in count.items() if n <= 25) == 17774
    assert tuple(n for n in count if n > 25) == get_task("scan").eval_lengths
    assert sum(c for n, c in count.items() if n > 25) == 3136
    assert 23 not in count and max(count) == 48


def test_scan_trains_every_command_alike_and_refuses_empty_lengths():
    task = get_task("scan")
    lengths = np.arange(1, 26)
    weights = task.length_weights(lengths)
    counts = np.array([len(scan_commands().get(int(n), ())) for n in lengths])
    np.testing.assert_allclose(weights, counts / 17774)
    assert weights[lengths == 23] == 0.0
    with pytest.raises(ValueError, match="no SCAN command has 23 actions; valid lengths"):
        task.sample_batch(rng(), 2, 23)
    with pytest.raises(ValueError, match="no SCAN command has 49"):
        task.sequence_length(49)
    # A length's fixed pool: every command of length 48 turns up in enough draws.
    batch = task.sample_batch(rng(0), 2000, 48)
    seen = {" ".join(p) for p, _ in examples(task, batch)}
    assert seen == {" ".join(w) for w, _ in scan_commands()[48]}


def test_split_samples_stay_in_their_range():
    for name in NEW_TASKS:
        task = get_task(name)
        measure = {
            "polynomial": lambda p: len(poly_reference(p)[1]),
            "lego": lambda p: len(lego_reference(p)[0]),
            "scan": lambda p: len(scan_reference(" ".join(p))),
            "pcfg": function_count,
        }[name]
        lo, hi = task.train_lengths
        train = [n for n in range(lo, hi + 1) if name != "scan" or n in scan_commands()]
        for lengths, beyond in ((train, False), (task.eval_lengths, True)):
            for length in lengths:
                batch = task.sample_batch(rng(length + 100), 4, length)
                for prompt, _ in examples(task, batch):
                    n = measure(prompt)
                    assert n > hi if beyond else lo <= n <= hi


def test_answers_are_balanced_where_the_reference_is():
    # LEGO values are uniform bits: +1 and -1 alike whatever the query.
    lego = get_task("lego")
    answers = [a[0] for _, a in examples(lego, lego.sample_batch(rng(3), 2000, 12))]
    assert 0.45 < answers.count("+1") / len(answers) < 0.55
    # Polynomial coefficients, degrees and x cover their whole ranges.
    poly = get_task("polynomial")
    parsed = [poly_reference(p) for p, _ in examples(poly, poly.sample_batch(rng(4), 500, 4))]
    assert {x for x, _, _ in parsed} == set(range(-2, 3))
    assert {c for _, t, _ in parsed for c, _ in t} == set(range(-3, 4))
    assert {d for _, t, _ in parsed for _, d in t} == set(range(4))


# ------------------------------------------------------------------------------------------------
# Options and errors.


def test_options_and_errors_name_the_fix():
    assert task_options("polynomial") == ("modulus",)
    assert task_options("lego") == ("permute_clauses",)
    assert task_options("scan") == ()
    assert task_options("pcfg") == ("alphabet_ratio", "prob_unary", "max_answer")
    assert get_task("pcfg").vocab_size == 5 + 10 + 1 + 520  # A1..Z20 as the published set
    assert get_task("pcfg", alphabet_ratio=1).letters[-1] == "Z1"
    assert solve_words(get_task("polynomial", modulus=7), split("x = 2 in 3 * x ** 2")) == ["5"]
    with pytest.raises(ValueError, match=r"modulus must be in 2\.\.10"):
        get_task("polynomial", modulus=11)
    for length in (1, 27):
        with pytest.raises(ValueError, match="length must"):
            get_task("lego").sample_batch(rng(), 2, length)
    with pytest.raises(ValueError, match="prob_unary must be in"):
        get_task("pcfg", prob_unary=1.5)
    with pytest.raises(ValueError, match="permute_clauses must be True or False"):
        get_task("lego", permute_clauses=1)
    with pytest.raises(ValueError, match="not a SCAN command"):
        solve_words(get_task("scan"), ["walk", "walk"])
    with pytest.raises(ValueError, match="needs ', ' between its arguments"):
        solve_words(get_task("pcfg"), split("append A1 B1"))


def test_pcfg_arities_follow_prob_unary():
    unary_only = get_task("pcfg", prob_unary=1.0)
    for prompt, _ in examples(unary_only, unary_only.sample_batch(rng(5), 16, 6)):
        assert "," not in prompt and function_count(prompt) == 6
    binary_only = get_task("pcfg", prob_unary=0.0)
    for prompt, _ in examples(binary_only, binary_only.sample_batch(rng(6), 16, 6)):
        assert prompt.count(",") == 6  # one separator per binary function
