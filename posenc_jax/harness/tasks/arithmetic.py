"""Long addition with reversed digits: the formats of Abacus embeddings and of Zhou et al.

Both write every number least significant digit first, so the answer is produced in the
order a carry travels. ``length`` is the width of the longer operand.

* ``widths="independent"`` (McLeish et al. 2024, the default): the two operand widths are
  drawn independently; at length ``n`` the pair is uniform over the ``2n - 1`` pairs whose
  larger width is ``n`` (training draws ``n`` with weight ``2n - 1``, which makes every pair
  in ``[1, 20]^2`` equally likely, as the reference's round robin over pairs). Each operand
  is uniform over the numbers of exactly its width, ``randint(10**(w-1), 10**w - 1)``
  (width 1 is 1..9, as the reference). Prompt ``rev(a) + rev(b) =``, answer ``rev(a + b)``
  without padding; rows are right-padded after ``<eos>``. Reference ranges: train 1..20,
  test up to 100 (the reference's grid is every pair in ``[1, 100]^2``; here a length
  holds the pairs whose larger width is that length, equally many of each).
* ``widths="equal"`` with ``index_hints=True`` (Zhou et al. 2024): both operands have
  ``n`` digits, and the operands and the answer are zero-padded to ``n + 1`` digits (the
  extra one for a carry); every digit is preceded by an index hint, the same hint for
  the same significance in all three numbers, the hints a run of consecutive symbols
  from an ordered set of ``num_hints`` (102) starting at a uniform offset, for training
  and testing alike. Reference ranges: train 1..40, test up to 100.

Scored by exact match of the whole answer (teacher-forced argmax, which is greedy
decoding's exact match) and per-token accuracy.

References: McLeish et al. 2024, "Transformers Can Do Arithmetic with the Right
Embeddings" (arXiv 2405.17399), mcleish7/arithmetic create_data_split.py
``bucket_method_gen`` (``--n 20 --m 20 --reverse_all``: reversed operands and answer, no
padding) and arithmetic_eval_quicker.py (exact match of the whole answer, grid 1..100);
Zhou, Alon, Chen, Wang, Agarwal, Zhou 2024, "Transformers Can Achieve Length
Generalization But Not Robustly" (arXiv 2402.09371), Sec. 2.2 and 4.1 (reversed format,
index hints from 102 symbols sampled as a consecutive run, lengths 1..40 for training).
"""

import numpy as np

from posenc_jax.harness.tasks.base import (
    DIGITS,
    NUM_SPECIAL,
    Batch,
    DecoderTask,
    check_choice,
    check_int,
    check_rng,
)
from posenc_jax.harness.tasks.decoder import right_padded_decoder_batch, width_pairs


class ReversedAddition(DecoderTask):
    """Addition with every number written least significant digit first.

    Example:
        >>> task = ReversedAddition()
        >>> prompt, answer = task.encode_example(576, 61)
        >>> " ".join(task.decode(prompt)), " ".join(task.decode(answer))
        ('6 7 5 + 1 6 =', '7 3 6')
        >>> zhou = ReversedAddition(widths="equal", index_hints=True)
        >>> prompt, answer = zhou.encode_example(576, 361, first_hint=0)
        >>> " ".join(zhou.decode(prompt))
        'h0 6 h1 7 h2 5 h3 0 + h0 1 h1 6 h2 3 h3 0 ='
        >>> " ".join(zhou.decode(answer))
        'h0 7 h1 3 h2 9 h3 0'

    Options:
      widths: "independent" (McLeish et al.) or "equal" (Zhou et al.).
      index_hints: put an index hint before every digit (needs ``widths="equal"``).
      num_hints: size of the ordered hint set (102 as Zhou et al.); the longest length is
        ``num_hints - 1``.
    """

    name = "reversed_addition"
    WIDTHS = ("independent", "equal")

    def __init__(
        self, *, widths: str = "independent", index_hints: bool = False, num_hints: int = 102
    ) -> None:
        check_choice("widths", widths, self.WIDTHS)
        self.widths = widths
        if not isinstance(index_hints, bool):
            raise ValueError(f"index_hints must be True or False; got {index_hints!r}")
        if index_hints and widths != "equal":
            raise ValueError('index_hints needs widths="equal" (the format of Zhou et al.)')
        self.index_hints = index_hints
        self.num_hints = check_int("num_hints", num_hints, minimum=2)
        hints = tuple(f"h{i}" for i in range(self.num_hints)) if index_hints else ()
        self.symbols = (*DIGITS, "+", "=", *hints)
        if widths == "equal":
            self.train_lengths, self.eval_lengths = (1, 40), (40, 50, 60, 80, 100)
        else:
            self.train_lengths, self.eval_lengths = (1, 20), (20, 30, 40, 50, 60, 80, 100)

    def check_length(self, length: int) -> int:
        length = check_int("length", length, minimum=1)
        if self.index_hints and length + 1 > self.num_hints:
            raise ValueError(
                f"{self.name}: length must be at most num_hints - 1 = {self.num_hints - 1} "
                f"(one hint per digit of the padded numbers); got length={length}"
            )
        return length

    def length_weights(self, lengths: np.ndarray) -> np.ndarray | None:
        """Training weight of each length: ``2n - 1`` pairs of widths have the larger ``n``."""
        if self.widths == "equal":
            return None
        return (2 * lengths - 1) / np.sum(2 * lengths - 1)

    @property
    def tokens_per_digit(self) -> int:
        """2 with index hints (hint, digit), else 1."""
        return 2 if self.index_hints else 1

    def prompt_length(self, length: int) -> int:
        if self.widths == "equal":
            return 2 * self.tokens_per_digit * (length + 1) + 2
        return 2 * length + 2

    def output_length(self, length: int) -> int:
        return self.tokens_per_digit * (length + 1)

    def encode_example(
        self, a: int, b: int, *, first_hint: int = 0, pad_to: int | None = None
    ) -> tuple[list[int], list[int]]:
        """The prompt and answer ids of ``a + b``.

        Args:
          a, b: the operands (>= 0).
          first_hint: the first index hint (with ``index_hints``).
          pad_to: digits of every padded number (``widths="equal"``; default: the longer
            operand's width plus one).
        """
        if a < 0 or b < 0:
            raise ValueError(f"{self.name}: operands must be >= 0; got {a} and {b}")
        numbers = [str(a)[::-1], str(b)[::-1], str(a + b)[::-1]]
        if self.widths == "equal":
            width = max(len(numbers[0]), len(numbers[1])) + 1 if pad_to is None else pad_to
            numbers = [n.ljust(width, "0") for n in numbers]
        ids = [self._number(n, first_hint) for n in numbers]
        return [*ids[0], self.token_id("+"), *ids[1], self.token_id("=")], ids[2]

    def _number(self, reversed_digits: str, first_hint: int) -> list[int]:
        out = []
        for i, d in enumerate(reversed_digits):
            if self.index_hints:
                out.append(self.token_id(f"h{first_hint + i}"))
            out.append(NUM_SPECIAL + int(d))
        return out

    def sample_batch(self, rng: np.random.Generator, batch_size: int, length: int) -> Batch:
        check_rng(rng)
        batch_size = check_int("batch_size", batch_size, minimum=1)
        length = self.check_length(length)
        if self.widths == "equal":
            widths = np.full((batch_size, 2), length)
        else:
            widths = width_pairs(rng, batch_size, length)
        rows = []
        for w_a, w_b in widths:
            a, b = _number_of_width(rng, int(w_a)), _number_of_width(rng, int(w_b))
            first = 0
            if self.index_hints:  # a run of length + 1 consecutive hints, uniform start
                first = int(rng.integers(0, self.num_hints - length))
            pad = length + 1 if self.widths == "equal" else None
            rows.append(self.encode_example(a, b, first_hint=first, pad_to=pad))
        return right_padded_decoder_batch(rows, self.sequence_length(length))


def _number_of_width(rng: np.random.Generator, width: int) -> int:
    """Uniform over the numbers of exactly ``width`` digits (1..9 at width 1, as the
    reference's ``randint(10**(w-1), 10**w - 1)``); any width, digit by digit."""
    digits = [int(rng.integers(1, 10)), *rng.integers(0, 10, size=width - 1).tolist()]
    return int("".join(map(str, digits)))
