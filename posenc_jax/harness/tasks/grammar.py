"""Kazemnejad et al. 2023's two grammar-generated tasks: SCAN and PCFG SET, generated here.

Both are decoder tasks (``<bos> command <sep> answer <eos>``, loss on the answer and
``<eos>``, headline exact match; see `posenc_jax.harness.tasks.base`) whose rows differ in
length at one task length: each row is right-padded after its ``<eos>`` (unscored) to
``sequence_length(length)``, the longest row possible at that length. Nothing is
downloaded: SCAN's commands are enumerated from its grammar, PCFG SET's inputs are drawn
from its grammar. The reference prefixes each command with "Solve: " and writes the SCAN
actions as words; the prefix is dropped and every word is one symbol here.

References: Kazemnejad et al. 2023, "The Impact of Positional Encoding on Length
Generalization in Transformers" (NeurIPS, arXiv 2305.19466), tasks "SCAN" (split
``mdlen_tr25_ts48``) and "PCFG" (split ``md_productivity``); Lake & Baroni 2018, "Generalization
without Systematicity" (ICML, arXiv 1711.00350), SCAN; Hupkes et al. 2020,
"Compositionality Decomposed: How do Neural Networks Generalise?" (JAIR 67, arXiv
1908.08351), PCFG SET.
"""

import functools
from collections.abc import Sequence

import numpy as np

from posenc_jax.harness.tasks.base import (
    SEP,
    Batch,
    DecoderTask,
    check_int,
    check_rng,
)
from posenc_jax.harness.tasks.decoder import right_padded_decoder_batch

# ------------------------------------------------------------------------------------------------
# SCAN.

_SCAN_VERBS = ("walk", "look", "run", "jump")
_SCAN_DIRECTIONS = ("left", "right")
_SCAN_WORDS = (*_SCAN_VERBS, "turn", *_SCAN_DIRECTIONS, "opposite", "around", "twice", "thrice",
               "and", "after")  # fmt: skip
_SCAN_ACTIONS = ("WALK", "LOOK", "RUN", "JUMP", "LTURN", "RTURN")
_SCAN_MAX_COMMAND = 9  # "walk around left thrice and run opposite right twice"


def _scan_phrases() -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """Every SCAN verb phrase (the grammar's ``S``) with its action sequence: 102 pairs."""
    verbs = []  # the grammar's V: 34 phrases
    for direction in _SCAN_DIRECTIONS:
        turn = "LTURN" if direction == "left" else "RTURN"
        verbs += [
            (("turn", direction), (turn,)),
            (("turn", "opposite", direction), (turn, turn)),
            (("turn", "around", direction), (turn,) * 4),
        ]
    for verb in _SCAN_VERBS:
        act = verb.upper()
        verbs.append(((verb,), (act,)))
        for direction in _SCAN_DIRECTIONS:
            turn = "LTURN" if direction == "left" else "RTURN"
            verbs += [
                ((verb, direction), (turn, act)),
                ((verb, "opposite", direction), (turn, turn, act)),
                ((verb, "around", direction), (turn, act) * 4),
            ]
    phrases = []
    for words, actions in verbs:
        phrases += [
            (words, actions),
            ((*words, "twice"), actions * 2),
            ((*words, "thrice"), actions * 3),
        ]
    return phrases


@functools.cache
def scan_commands() -> dict[int, tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]]:
    """Every SCAN command and its action sequence, by number of actions.

    Returns:
      ``{number of actions: ((command words, actions), ...)}``, 20 910 commands in all, in a
      fixed order (the grammar's enumeration order).

    Example:
      >>> commands = scan_commands()
      >>> sum(map(len, commands.values())), min(commands), max(commands), 23 in commands
      (20910, 1, 48, False)
      >>> words, actions = commands[4][0]
      >>> " ".join(words), " ".join(actions)
      ('turn opposite left twice', 'LTURN LTURN LTURN LTURN')

    References: Lake & Baroni 2018 (arXiv 1711.00350), the grammar and interpretation
    function of SCAN (its supplementary material); brendenlake/SCAN @0a5bbf5, README.md (L39:
    "Length is defined as the number of output actions").
    """
    phrases = _scan_phrases()
    commands = [*phrases]
    for first, first_actions in phrases:
        for second, second_actions in phrases:
            commands.append(((*first, "and", *second), first_actions + second_actions))
            commands.append(((*first, "after", *second), second_actions + first_actions))
    by_length: dict[int, list] = {}
    for words, actions in commands:
        by_length.setdefault(len(actions), []).append((words, actions))
    return {n: tuple(by_length[n]) for n in sorted(by_length)}


@functools.cache
def _scan_table() -> dict[tuple[str, ...], tuple[str, ...]]:
    return {words: actions for pool in scan_commands().values() for words, actions in pool}


class Scan(DecoderTask):
    """SCAN: translate a navigation command into its action sequence.

    Symbols: the 13 command words (``"walk"``, ``"look"``, ``"run"``, ``"jump"``,
    ``"turn"``, ``"left"``, ``"right"``, ``"opposite"``, ``"around"``, ``"twice"``,
    ``"thrice"``, ``"and"``, ``"after"``), then the six actions ``"WALK"``, ``"LOOK"``,
    ``"RUN"``, ``"JUMP"``, ``"LTURN"``, ``"RTURN"``. Task length ``n`` is the number of
    actions of the answer (SCAN's length split: "Length is defined as the number of output
    actions"); a batch at length ``n`` holds commands drawn uniformly from the fixed pool of
    every SCAN command with ``n`` actions (`scan_commands`; 6 commands have 1 action, 64
    have 36, 128 have 48, and none has 23). Prompt ``command <sep>`` (1..9 words), answer
    the actions; rows are right-padded to ``n + 11`` tokens.

    The split is Kazemnejad et al.'s ``mdlen_tr25_ts48``: the 20 910 SCAN commands
    (Lake & Baroni's length split, train and test merged) split again at 25 actions:
    training lengths 1..25, weighted by the number of commands at each length
    (`length_weights`), so a training command is uniform over the 17 774 commands with at
    most 25 actions, as the reference's training file; test lengths are the nine lengths
    26..48 that occur (3 136 commands).

    Example:
      The README's example ``jump opposite left after walk around left``:

      >>> import numpy as np
      >>> task = Scan()
      >>> words = "jump opposite left after walk around left".split()
      >>> prompt = np.append(task.encode(words), 3)[None]  # ... <sep>
      >>> " ".join(task.decode(task.solve(prompt)[0]))
      'LTURN WALK LTURN WALK LTURN WALK LTURN WALK LTURN LTURN JUMP'

    References: Lake & Baroni 2018 (arXiv 1711.00350); brendenlake/SCAN @0a5bbf5, README.md (the
    examples table, L16-L22); Kazemnejad et al. 2023 (arXiv 2305.19466), task "SCAN";
    McGill-NLP/length-generalization @d06170e, scripts/dataset_builders/make_scan_dataset.py
    (``load_dataset("scan", "length", split="train+test")``, ``target_length =
    len(tgt.split())``, ``if target_length > 25: split = test``).
    """

    name = "scan"
    train_lengths = (1, 25)
    eval_lengths = (26, 27, 28, 30, 32, 33, 36, 40, 48)

    def __init__(self) -> None:
        self.symbols = (*_SCAN_WORDS, *_SCAN_ACTIONS)

    def check_length(self, length: int) -> int:
        length = check_int("length", length, minimum=1)
        if length not in scan_commands():
            raise ValueError(
                f"no SCAN command has {length} actions; valid lengths: {sorted(scan_commands())}"
            )
        return length

    def length_weights(self, lengths: np.ndarray) -> np.ndarray | None:
        """Weight of each length: its number of commands (every command alike)."""
        counts = np.array([len(scan_commands().get(int(n), ())) for n in lengths], np.float64)
        if counts.sum() == 0:
            raise ValueError(f"no SCAN command has any of the lengths {list(lengths)}")
        return counts / counts.sum()

    def prompt_length(self, length: int) -> int:
        return _SCAN_MAX_COMMAND + 1

    def output_length(self, length: int) -> int:
        return length

    def sample_batch(self, rng: np.random.Generator, batch_size: int, length: int) -> Batch:
        check_rng(rng)
        batch_size = check_int("batch_size", batch_size, minimum=1)
        length = self.check_length(length)
        pool = scan_commands()[length]
        picks = rng.integers(0, len(pool), size=batch_size)
        rows = [([*self.encode(pool[i][0]).tolist(), SEP], self.encode(pool[i][1]).tolist())
                for i in picks]  # fmt: skip
        return right_padded_decoder_batch(rows, self.sequence_length(length))

    def solve(self, prompts: np.ndarray) -> np.ndarray:
        """Interprets ``[B, P]`` commands ``words <sep> <pad>...``; returns ``[B, A]`` actions.

        Rows with fewer actions than the longest are right-padded with ``<pad>`` (id 0).
        """
        prompts = np.asarray(prompts)
        if prompts.ndim != 2:
            raise ValueError(f"{self.name}: prompts must be [B, P]; got shape {prompts.shape}")
        table = _scan_table()
        answers = []
        for row in prompts:
            ends = np.flatnonzero(row == SEP)
            if not len(ends):
                raise ValueError(f"{self.name}: every prompt row must hold <sep> (id {SEP})")
            words = tuple(self.decode(row[: ends[0]]))
            if words not in table:
                raise ValueError(f"{self.name}: not a SCAN command: {' '.join(words)!r}")
            answers.append(self.encode(table[words]))
        out = np.zeros((len(answers), max(map(len, answers))), dtype=np.int32)
        for i, answer in enumerate(answers):
            out[i, : len(answer)] = answer
        return out


# ------------------------------------------------------------------------------------------------
# PCFG SET.

PCFG_UNARY = ("copy", "reverse", "shift", "echo", "swap_first_last", "repeat")
PCFG_BINARY = ("append", "prepend", "remove_first", "remove_second")


def pcfg_apply(function: str, *args: Sequence[str]) -> list[str]:
    """Applies one PCFG SET string-edit function to its argument strings.

    Example:
      >>> pcfg_apply("swap_first_last", ["A1", "B1", "C1"]), pcfg_apply("prepend", ["A1"], ["B1"])
      (['C1', 'B1', 'A1'], ['B1', 'A1'])

    References: MathijsMul/pcfg-set @6934512, tasks/default.py (the ten functions).
    """
    if function in PCFG_UNARY and len(args) == 1:
        s = list(args[0])
        return {
            "copy": lambda: s,
            "reverse": lambda: s[::-1],
            "shift": lambda: s[1:] + s[:1],
            "echo": lambda: s + s[-1:],
            "swap_first_last": lambda: s[-1:] + s[1:-1] + s[:1],  # one letter: doubled
            "repeat": lambda: s + s,
        }[function]()
    if function in PCFG_BINARY and len(args) == 2:
        a, b = list(args[0]), list(args[1])
        return {"append": a + b, "prepend": b + a, "remove_first": b, "remove_second": a}[function]
    raise ValueError(
        f"unknown PCFG function {function!r} with {len(args)} arguments; unary: "
        f"{list(PCFG_UNARY)}, binary: {list(PCFG_BINARY)}"
    )


class Pcfg(DecoderTask):
    """PCFG SET: evaluate nested string-edit functions (Hupkes et al.'s productivity split).

    Symbols: the six unary functions ``copy``, ``reverse``, ``shift``, ``echo``,
    ``swap_first_last``, ``repeat``, the four binary ``append``, ``prepend``,
    ``remove_first``, ``remove_second``, the separator ``","``, then the letters ``"A1"`` ..
    ``"Z{alphabet_ratio}"`` (520 with the default 20, as the published set). Inputs are
    written as PCFG SET writes them, in prefix order without brackets: a unary function
    ``f ARG``, a binary one ``f ARG1 , ARG2``; a string argument is 2..5 uniform letters.
    The answer is the input evaluated bottom-up (strings never get shorter than 2 letters).

    Task length ``n`` is the number of functions in the input (Kazemnejad et al.'s category
    for this data set). A tree with ``n`` functions is grown from a root function by placing
    each next function in a uniformly chosen open argument slot; a function is unary with
    probability ``prob_unary`` (0.75, the generator's ``--prob_unary`` default) and
    uniform among its kind; the slots left open take strings. As the published generator,
    inputs of 500 characters or more are redrawn; so are answers longer than
    ``max_answer`` symbols (96 by default; ``repeat`` doubles a string). Prompt
    ``input <sep>``, answer the evaluated string; rows are right-padded to
    ``sequence_length(n)``. Productivity split: train on 1..8 functions, test on 9..16
    (the inputs of Hupkes et al.'s productivity test set hold 9 functions or more; the
    upper end, 16, is this package's choice, twice the training range as the other tasks).

    **Not the naturalised distribution.** The published PCFG SET (and Kazemnejad et al.'s
    ``md_productivity`` copy of Hupkes et al.'s productivity split) was drawn with random
    rule probabilities per sample and then reshaped to match the length and depth
    distribution of an English corpus (``--naturalize``), which needs that corpus; this
    generator keeps the grammar, the functions, the alphabet and the written form but not
    that distribution (nor the reference's rule that string arguments never repeat), so
    scores are comparable in kind, not in number, with the published set.

    Example:
      >>> import numpy as np
      >>> task = Pcfg()
      >>> words = "echo remove_first D1 K1 , E1 F1".split()
      >>> prompt = np.append(task.encode(words), 3)[None]  # ... <sep>
      >>> task.decode(task.solve(prompt)[0])
      ['E1', 'F1', 'F1']

    References: Hupkes et al. 2020 (arXiv 1908.08351), PCFG SET and its productivity test;
    MathijsMul/pcfg-set @3e44ba7, generate.py (``MarkovTree``: ``function_next``,
    ``unary_next``, ``binary_next``, ``write`` with ``omit_brackets``; ``--lengths`` default
    ``[2, 3, 4, 5]``, ``--prob_unary`` 0.75, ``if len(written_tree) < 500``; alphabet
    ``letter + str(i) ... range(1, opt.alphabet_ratio + 1)`` with ``--alphabet_ratio 20``)
    and tasks/default.py @6934512 (the functions); i-machine-think/am-i-compositional
    @3bdced8, data/pcfgset/productivity/; McGill-NLP/length-generalization @d06170e,
    scripts/dataset_builders/make_pcfg_dataset.py (category = number of function words).
    """

    name = "pcfg"
    train_lengths = (1, 8)
    eval_lengths = tuple(range(9, 17))
    MAX_CHARS = 500  # generate.py: only written inputs shorter than 500 characters are kept
    STRING_LENGTHS = (2, 3, 4, 5)

    def __init__(
        self, *, alphabet_ratio: int = 20, prob_unary: float = 0.75, max_answer: int = 96
    ) -> None:
        self.alphabet_ratio = check_int("alphabet_ratio", alphabet_ratio, minimum=1)
        if isinstance(prob_unary, bool) or not isinstance(prob_unary, int | float):
            raise ValueError(f"prob_unary must be a number in [0, 1]; got {prob_unary!r}")
        if not 0.0 <= prob_unary <= 1.0:
            raise ValueError(f"prob_unary must be in [0, 1]; got prob_unary={prob_unary}")
        self.prob_unary = float(prob_unary)
        self.max_answer = check_int("max_answer", max_answer, minimum=max(self.STRING_LENGTHS))
        letters = tuple(
            f"{c}{i}" for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" for i in range(1, alphabet_ratio + 1)
        )
        self.letters = letters
        self.symbols = (*PCFG_UNARY, *PCFG_BINARY, ",", *letters)

    def prompt_length(self, length: int) -> int:
        # n functions, at most n commas, at most n + 1 strings of at most 5 letters, <sep>.
        return length + length + (length + 1) * max(self.STRING_LENGTHS) + 1

    def output_length(self, length: int) -> int:
        return self.max_answer

    def sample_tree(self, rng: np.random.Generator, length: int) -> list:
        """One input tree with ``length`` functions: nested ``[name, arg, ...]`` lists, strings
        as lists of letters."""
        unary = rng.random(length) < self.prob_unary  # [n] arity of each function in order
        root: list = [None]
        open_slots = [(root, 0)]
        for is_unary in unary:
            parent, index = open_slots.pop(int(rng.integers(len(open_slots))))
            names = PCFG_UNARY if is_unary else PCFG_BINARY
            node: list = [names[int(rng.integers(len(names)))]] + [None] * (1 if is_unary else 2)
            parent[index] = node
            open_slots += [(node, i) for i in range(1, len(node))]
        for parent, index in open_slots:
            size = self.STRING_LENGTHS[int(rng.integers(len(self.STRING_LENGTHS)))]
            letters = rng.integers(len(self.letters), size=size)
            parent[index] = [self.letters[int(i)] for i in letters]
        return root[0]

    @staticmethod
    def write(tree: list) -> list[str]:
        """The words of a tree as PCFG SET writes it without brackets."""
        if tree[0] in PCFG_UNARY:
            return [tree[0], *Pcfg.write(tree[1])]
        if tree[0] in PCFG_BINARY:
            return [tree[0], *Pcfg.write(tree[1]), ",", *Pcfg.write(tree[2])]
        return list(tree)

    @staticmethod
    def evaluate(tree: list) -> list[str]:
        """The string a tree denotes (bottom-up, as ``MarkovTree.evaluate_tree``)."""
        if tree[0] in PCFG_UNARY or tree[0] in PCFG_BINARY:
            return pcfg_apply(tree[0], *(Pcfg.evaluate(arg) for arg in tree[1:]))
        return list(tree)

    def sample_batch(self, rng: np.random.Generator, batch_size: int, length: int) -> Batch:
        check_rng(rng)
        batch_size = check_int("batch_size", batch_size, minimum=1)
        length = self.check_length(length)
        rows = []
        while len(rows) < batch_size:
            tree = self.sample_tree(rng, length)
            words = self.write(tree)
            answer = self.evaluate(tree)
            if len(" ".join(words)) >= self.MAX_CHARS or len(answer) > self.max_answer:
                continue
            rows.append(([*self.encode(words).tolist(), SEP], self.encode(answer).tolist()))
        return right_padded_decoder_batch(rows, self.sequence_length(length))

    def parse(self, words: Sequence[str]) -> list:
        """Reads the tree of an input written without brackets (prefix order, known arities)."""
        position = 0

        def node() -> list:
            nonlocal position
            if position >= len(words):
                raise ValueError(f"{self.name}: the input ends inside an argument: {words}")
            word = words[position]
            if word in PCFG_UNARY or word in PCFG_BINARY:
                position += 1
                args = [node()]
                if word in PCFG_BINARY:
                    if position >= len(words) or words[position] != ",":
                        raise ValueError(f"{self.name}: {word} needs ', ' between its arguments")
                    position += 1
                    args.append(node())
                return [word, *args]
            start = position
            while position < len(words) and words[position] in self.letters:
                position += 1
            if position == start:
                raise ValueError(f"{self.name}: expected a function or a letter at {word!r}")
            return list(words[start:position])

        tree = node()
        if position != len(words):
            raise ValueError(f"{self.name}: words left after the input: {words[position:]}")
        return tree

    def solve(self, prompts: np.ndarray) -> np.ndarray:
        """Evaluates ``[B, P]`` inputs ``words <sep> <pad>...``; returns ``[B, A]`` answers.

        Rows with shorter answers than the longest are right-padded with ``<pad>`` (id 0).
        """
        prompts = np.asarray(prompts)
        if prompts.ndim != 2:
            raise ValueError(f"{self.name}: prompts must be [B, P]; got shape {prompts.shape}")
        answers = []
        for row in prompts:
            ends = np.flatnonzero(row == SEP)
            if not len(ends):
                raise ValueError(f"{self.name}: every prompt row must hold <sep> (id {SEP})")
            answers.append(self.encode(self.evaluate(self.parse(self.decode(row[: ends[0]])))))
        out = np.zeros((len(answers), max(1, *map(len, answers))), dtype=np.int32)
        for i, answer in enumerate(answers):
            out[i, : len(answer)] = answer
        return out


def function_count(words: Sequence[str]) -> int:
    """Number of PCFG SET function words in an input (Kazemnejad et al.'s category)."""
    return sum(word in PCFG_UNARY or word in PCFG_BINARY for word in words)


GRAMMAR_TASKS: tuple[type[DecoderTask], ...] = (Scan, Pcfg)
