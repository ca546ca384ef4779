"""Flip-flop language modelling: remember the last written bit across distracting instructions.

A sequence is ``n`` instruction-data pairs over ``{w, r, i} x {0, 1}``: ``w b`` writes bit b,
``i b`` is noise to ignore, ``r b`` reads, and its b must be the most recent written bit.
The first instruction is always ``w`` and the last always ``r``; the others are drawn
with probabilities ``(p_write, p_read, 1 - p_write - p_read)``, and the bits after
``w`` and ``i`` uniformly. The model is trained as a language model on every next token
(the nondeterministic bits included) and scored on the bits after ``r``, the only
deterministic ones: ``accuracy`` is the share of reads right (1 - the paper's glitch
rate) and ``exact_match`` the share of sequences with every read right.

``length`` is the number of instruction-data pairs; the model sees ``2 * length``
tokens (``<bos>`` then every symbol but the last). The paper trains FFL(0.8) at T = 512
symbols (256 pairs) and tests sparse (``p_ignore`` 0.98) and dense (0.1) sequences of
the same length; here the task's reference range trains at 256 pairs and also tests
longer sequences, the question of this toolkit.

References: Liu, Ash, Goel, Krishnamurthy, Zhang 2023, "Exposing Attention Glitches with
Flip-Flop Language Modeling" (NeurIPS 2023, arXiv 2306.00946); canonical form (first
``w``, last ``r``, i.i.d. uniform bits) as in the validator of the flip-flop examples
(flipflop/playground.py: rules (i)-(iii)).
"""

import math

import numpy as np

from posenc_jax.harness.tasks.base import (
    BOS,
    NUM_SPECIAL,
    AlgorithmicTask,
    Batch,
    check_int,
    check_rng,
)

_W, _R, _I = 0, 1, 2  # instruction codes; symbol ids are NUM_SPECIAL + index in SYMBOLS
SYMBOLS = ("w", "r", "i", "0", "1")


class FlipFlop(AlgorithmicTask):
    """Flip-flop language modelling, FFL(p_write, p_read) at ``length`` instruction pairs.

    Example:
        >>> task = FlipFlop()
        >>> batch = task.sample_batch(np.random.default_rng(0), 2, 6)
        >>> batch.tokens.shape, task.decode(batch.tokens[0][:3])
        ((2, 12), ['<bos>', 'w', '0'])

    Options:
      p_write, p_read: probabilities of ``w`` and ``r`` for the instructions between the
        first (``w``) and the last (``r``); ``i`` takes the rest (default 0.1 and 0.1:
        the paper's FFL(0.8)).
    """

    name = "flip_flop"
    causal = True
    headline = "accuracy"
    train_lengths = (256, 256)
    eval_lengths = (256, 512, 1024)

    def __init__(self, *, p_write: float = 0.1, p_read: float = 0.1) -> None:
        for name, p in (("p_write", p_write), ("p_read", p_read)):
            if isinstance(p, bool) or not isinstance(p, int | float) or not 0 <= p <= 1:
                raise ValueError(f"flip_flop: {name} must be a number in [0, 1]; got {p!r}")
        if p_write + p_read > 1 + 1e-12 or not math.isfinite(p_write + p_read):
            raise ValueError(
                f"flip_flop: p_write + p_read must be <= 1 (p_ignore is the rest); got "
                f"p_write={p_write}, p_read={p_read}"
            )
        self.p_write, self.p_read = float(p_write), float(p_read)
        self.symbols = SYMBOLS

    @property
    def p_ignore(self) -> float:
        return max(0.0, 1.0 - self.p_write - self.p_read)

    def check_length(self, length: int) -> int:
        return check_int("length", length, minimum=2)  # a first write and a last read

    def sequence_length(self, length: int) -> int:
        return 2 * self.check_length(length)

    def output_length(self, length: int) -> int:
        return self.check_length(length)  # at most one read per pair

    def sample_symbols(self, rng: np.random.Generator, batch_size: int, length: int) -> np.ndarray:
        """``[B, 2 * length]`` symbol ids of canonical flip-flop strings."""
        rng = check_rng(rng)
        n = self.check_length(length)
        p = [self.p_write, self.p_read, self.p_ignore]
        instructions = rng.choice(3, size=(batch_size, n), p=np.asarray(p) / sum(p))
        instructions[:, 0], instructions[:, -1] = _W, _R
        bits = rng.integers(0, 2, size=(batch_size, n))
        steps = np.arange(n)
        last_write = np.maximum.accumulate(np.where(instructions == _W, steps, -1), axis=1)
        read_bits = np.take_along_axis(bits, last_write, axis=1)
        bits = np.where(instructions == _R, read_bits, bits)
        out = np.empty((batch_size, 2 * n), np.int32)
        out[:, 0::2] = NUM_SPECIAL + instructions
        out[:, 1::2] = NUM_SPECIAL + 3 + bits
        return out

    def sample_batch(self, rng: np.random.Generator, batch_size: int, length: int) -> Batch:
        symbols = self.sample_symbols(rng, batch_size, length)  # [B, 2n]
        tokens = np.concatenate([np.full((batch_size, 1), BOS, np.int32), symbols[:, :-1]], 1)
        reads = np.zeros(symbols.shape, bool)
        reads[:, 1::2] = symbols[:, 0::2] == NUM_SPECIAL + _R  # the bit after each r
        return Batch(
            tokens=tokens,
            targets=symbols,
            loss_mask=reads,
            train_mask=np.ones(symbols.shape, bool),  # language modelling: every token
        )
