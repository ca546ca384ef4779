"""CoPE's counting task: the value of a variable after a long program of increments.

A program is ``length`` statements over ``num_vars`` variables ``a, b, ...``: ``x = 0 ;``
(weight 1), ``pass;`` (weight 50) and ``x ++;`` (weight 7) on a variable already set
(never past 10); a statement that cannot be made (an increment before any set, or past
10) is drawn again. The question ``print x`` asks for the value of a variable that was
set; a program with none is drawn again. Tokens are the whitespace-separated words, as
the reference's simple tokenizer splits them; the prompt is ``program print x <sep>``
and the answer the value, scored (with ``<eos>``) by exact match. The reference trains
on programs of 3 to 512 statements (``random.randint(3, max_steps)``), the task's
reference range here; it evaluates on held-out programs of the same distribution.

References: Golovneva, Wang, Weston, Sukhbaatar 2024, "Contextual Position Encoding"
(arXiv 2405.18719), the counting task; generator facebookresearch/RAM,
projects/cope/scripts/count_data_gen.py (``OP_WEIGHTS = {SET: 1, DUMMY: 50, INCREMENT:
7}``, ``MAX_VAL = 10``, ``nsteps = random.randint(3, args.max_steps)``, retries on
``GenerationFail``) and run.sh (``--nvars`` 3 and 5, ``--train-on answer``).
"""

import string

import numpy as np

from posenc_jax.harness.tasks.base import (
    SEP,
    Batch,
    DecoderTask,
    check_int,
    check_rng,
)
from posenc_jax.harness.tasks.decoder import right_padded_decoder_batch

MAX_VAL = 10
_SET, _PASS, _INCREMENT = 0, 1, 2
_WEIGHTS = np.array([1.0, 50.0, 7.0]) / 58.0  # count_data_gen.py OP_WEIGHTS
_WORDS = ("=", ";", "pass;", "++;", "print")


class Counting(DecoderTask):
    """CoPE's counting task at ``length`` program statements.

    Example:
        >>> task = Counting(num_vars=3)
        >>> words, answer = task.sample_program(np.random.default_rng(0), 6)
        >>> " ".join(words), answer
        ('pass; pass; pass; a = 0 ; a ++; pass; print a', '1')

    Options:
      num_vars: variables the program may set (the reference runs 3 and 5; at most 26).
    """

    name = "counting"
    train_lengths = (3, 512)
    eval_lengths = (512, 1024, 2048)

    def __init__(self, *, num_vars: int = 3) -> None:
        self.num_vars = check_int("num_vars", num_vars, minimum=1)
        if self.num_vars > 26:
            raise ValueError(f"counting: num_vars must be at most 26; got num_vars={num_vars}")
        self.variables = tuple(string.ascii_lowercase[: self.num_vars])
        values = tuple(str(v) for v in range(MAX_VAL + 1))
        self.symbols = (*self.variables, *_WORDS, *values)

    def check_length(self, length: int) -> int:
        return check_int("length", length, minimum=1)

    def prompt_length(self, length: int) -> int:
        return 4 * self.check_length(length) + 3  # at most 4 words a statement, print x <sep>

    def output_length(self, length: int) -> int:
        return 1

    def sample_program(self, rng: np.random.Generator, length: int) -> tuple[list[str], str]:
        """One program's words (``print x`` included) and the answer, as the reference."""
        for _ in range(1000):
            values: dict[str, int] = {}
            words: list[str] = []
            for _ in range(length):
                words += self._statement(rng, values)
            if values:
                var = list(values)[int(rng.integers(len(values)))]
                return [*words, "print", var], str(values[var])
        raise ValueError("counting: failed to draw a program with a variable to print")

    def _statement(self, rng: np.random.Generator, values: dict[str, int]) -> list[str]:
        for _ in range(100):
            op = int(rng.choice(3, p=_WEIGHTS))
            if op == _SET:
                var = self.variables[int(rng.integers(self.num_vars))]
                values[var] = 0
                return [var, "=", "0", ";"]
            if op == _PASS:
                return ["pass;"]
            if not values:
                continue  # an increment needs a set variable
            var = list(values)[int(rng.integers(len(values)))]
            if values[var] + 1 > MAX_VAL:
                continue
            values[var] += 1
            return [var, "++;"]
        raise ValueError("counting: failed to draw a statement")

    def sample_batch(self, rng: np.random.Generator, batch_size: int, length: int) -> Batch:
        rng = check_rng(rng)
        batch_size = check_int("batch_size", batch_size, minimum=1)
        length = self.check_length(length)
        rows = []
        for _ in range(batch_size):
            words, answer = self.sample_program(rng, length)
            prompt = [*self.encode(words).tolist(), SEP]
            rows.append((prompt, self.encode([answer]).tolist()))
        return right_padded_decoder_batch(rows, self.sequence_length(length))
