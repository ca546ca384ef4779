"""Decoder-only tasks: the Kazemnejad et al. 2023 algorithmic tasks and two retrieval tasks.

Every sequence is ``<bos> prompt answer <eos>`` trained by teacher forcing (see
``posenc_jax.harness.tasks.base.decoder_batch``); the loss mask covers the answer and the final
``<eos>``. The prompt of the algorithmic tasks is ``input <sep>``; the retrieval tasks put the
question after ``<sep>`` (associative_recall) or end with it (passkey).

References: Kazemnejad et al. 2023, "The Impact of Positional Encoding on Length Generalization in
Transformers" (NeurIPS, arXiv 2305.19466); Mohtashami & Jaggi 2023, "Landmark Attention"
(arXiv 2305.16300) for the passkey test; Ba et al. 2016 / Zoology (Arora et al. 2023,
arXiv 2312.04927) for associative recall.
"""

import numpy as np

from posenc_jax.harness.tasks.base import (
    BOS,
    DIGITS,
    EOS,
    NUM_SPECIAL,
    PAD,
    SEP,
    Batch,
    DecoderTask,
    check_choice,
    check_int,
    check_rng,
)

# _REFERENCE_RANGES. Each Kazemnejad task declares the training range and the test lengths
# of the paper's split as ``train_lengths`` / ``eval_lengths``; the plan uses them when a
# config leaves ``train.length``, ``train.min_length`` or ``eval.lengths`` null. Copy and
# reverse: train up to 20, test 21..40 (splits ``*_tr20_ts40``); sort, summation, parity,
# addition: train up to 8, test 9..16 (``*_tr8_ts16``), the splits behind the paper's
# Figure 1 (McGill-NLP/length-generalization, notebooks/plot_aggregate_final.ipynb cells
# 18 and 21). The test set holds only L+1..2L: ``min_length = max_length + 1`` and
# ``max_length = max_length * 2`` (scripts/dataset_builders/make_addition_dataset.py
# L106-L107, the same in every builder). Shortest length 1: the paper samples lengths
# from U(1, L) (Sec. 3); the builders' own default is 4 (3 for parity).


def _with_sep(inputs: np.ndarray) -> np.ndarray:
    """Appends ``<sep>`` to ``[B, n]`` inputs: returns ``[B, n + 1]`` int32."""
    prompts = np.empty((inputs.shape[0], inputs.shape[1] + 1), dtype=np.int32)
    prompts[:, :-1] = inputs
    prompts[:, -1] = SEP
    return prompts


def _check_prompts(prompts: np.ndarray, *, task: str, ends_with_sep: bool = True) -> np.ndarray:
    prompts = np.asarray(prompts)
    if prompts.ndim != 2:
        raise ValueError(f"{task}: prompts must be [B, P]; got shape {prompts.shape}")
    if ends_with_sep and not np.all(prompts[:, -1] == SEP):
        raise ValueError(f"{task}: every prompt row must end with <sep> (id {SEP})")
    return prompts


class _SymbolSequenceTask(DecoderTask):
    """Prompt ``s_1 .. s_length <sep>`` over ``num_symbols`` symbols named ``s0``, ``s1``, ..."""

    def __init__(self, *, num_symbols: int) -> None:
        self.num_symbols = check_int("num_symbols", num_symbols, minimum=2)
        self.symbols = tuple(f"s{i}" for i in range(self.num_symbols))

    def prompt_length(self, length: int) -> int:
        return length + 1

    def output_length(self, length: int) -> int:
        return length

    def sample_prompts(self, rng: np.random.Generator, batch_size: int, length: int) -> np.ndarray:
        return _with_sep(NUM_SPECIAL + rng.integers(0, self.num_symbols, (batch_size, length)))


class Copy(_SymbolSequenceTask):
    """Copy a sequence.

    Prompt ``s_1 .. s_n <sep>`` with ``n = length`` uniform symbols out of ``num_symbols`` (100,
    as the multi-token copy data of the reference); answer ``s_1 .. s_n``.

    Example:
      ``<bos> s3 s1 <sep> s3 s1 <eos>``: tokens ``[2 8 6 3 8 6]``, targets ``[0 0 0 8 6 4]``.

    References: Kazemnejad et al. 2023 (arXiv 2305.19466), task "copy".
    """

    name = "copy"
    # Reference ranges (see _REFERENCE_RANGES): the copy splits *_tr20_ts40.
    train_lengths = (1, 20)
    eval_lengths = tuple(range(21, 41))

    def __init__(self, *, num_symbols: int = 100) -> None:
        super().__init__(num_symbols=num_symbols)

    def solve(self, prompts: np.ndarray) -> np.ndarray:
        prompts = _check_prompts(prompts, task=self.name)
        return prompts[:, :-1].astype(np.int32)


class Reverse(_SymbolSequenceTask):
    """Reverse a sequence.

    Prompt ``s_1 .. s_n <sep>`` (``n = length``, ``num_symbols`` symbols, 100 by default); answer
    ``s_n .. s_1``.

    Example:
      ``<bos> s1 s2 s3 <sep> s3 s2 s1 <eos>``.

    References: Kazemnejad et al. 2023 (arXiv 2305.19466), task "reverse".
    """

    name = "reverse"
    # Reference ranges (see _REFERENCE_RANGES): the reverse splits *_tr20_ts40.
    train_lengths = (1, 20)
    eval_lengths = tuple(range(21, 41))

    def __init__(self, *, num_symbols: int = 100) -> None:
        super().__init__(num_symbols=num_symbols)

    def solve(self, prompts: np.ndarray) -> np.ndarray:
        prompts = _check_prompts(prompts, task=self.name)
        return np.ascontiguousarray(prompts[:, -2::-1]).astype(np.int32)


class Sort(_SymbolSequenceTask):
    """Sort a sequence of single-token symbols.

    Prompt ``s_1 .. s_n <sep>`` (``n = length`` uniform symbols out of ``num_symbols``, 50 as the
    single-token sort data of the reference); answer the symbols in increasing id order.

    Example:
      ``<bos> s3 s0 s2 s0 <sep> s0 s0 s2 s3 <eos>``.

    References: Kazemnejad et al. 2023 (arXiv 2305.19466), task "sorting".
    """

    name = "sort"
    # Reference ranges (see _REFERENCE_RANGES): split s2s_sort/len_sngd_tr8_ts16.
    train_lengths = (1, 8)
    eval_lengths = tuple(range(9, 17))

    def __init__(self, *, num_symbols: int = 50) -> None:
        super().__init__(num_symbols=num_symbols)

    def solve(self, prompts: np.ndarray) -> np.ndarray:
        prompts = _check_prompts(prompts, task=self.name)
        return np.sort(prompts[:, :-1], axis=1).astype(np.int32)


class Summation(DecoderTask):
    """Sum of digits modulo ``modulus``.

    Symbols: digits ``"0"`` .. ``"9"``. Prompt ``d_1 .. d_n <sep>`` with ``n = length`` digits
    uniform in 1..9 (as the reference's ``sum_mod`` data); answer one digit,
    ``sum(d) mod modulus`` (10 by default).

    Example:
      ``<bos> 3 8 6 <sep> 7 <eos>`` (17 mod 10).

    References: Kazemnejad et al. 2023 (arXiv 2305.19466), task "summation".
    """

    name = "summation"
    # Reference ranges (see _REFERENCE_RANGES): split s2s_sum/len_tr8_ts16.
    train_lengths = (1, 8)
    eval_lengths = tuple(range(9, 17))

    def __init__(self, *, modulus: int = 10) -> None:
        self.modulus = check_int("modulus", modulus, minimum=2)
        if self.modulus > 10:
            raise ValueError(
                f"summation answers are one digit: modulus must be in 2..10; got modulus={modulus}"
            )
        self.symbols = DIGITS

    def prompt_length(self, length: int) -> int:
        return length + 1

    def output_length(self, length: int) -> int:
        return 1

    def sample_prompts(self, rng: np.random.Generator, batch_size: int, length: int) -> np.ndarray:
        return _with_sep(NUM_SPECIAL + rng.integers(1, 10, (batch_size, length)))

    def solve(self, prompts: np.ndarray) -> np.ndarray:
        prompts = _check_prompts(prompts, task=self.name)
        total = np.sum(prompts[:, :-1].astype(np.int64) - NUM_SPECIAL, axis=1) % self.modulus
        return (NUM_SPECIAL + total)[:, None].astype(np.int32)


class Parity(DecoderTask):
    """Parity of a bit string.

    Symbols: ``"0"``, ``"1"``. Prompt ``b_1 .. b_n <sep>`` (``n = length`` uniform bits); answer
    ``"0"`` if the number of ones is even, ``"1"`` if odd.

    Example:
      ``<bos> 1 0 1 1 <sep> 1 <eos>``.

    References: Kazemnejad et al. 2023 (arXiv 2305.19466), task "parity".
    """

    name = "parity"
    # Reference ranges (see _REFERENCE_RANGES): split s2s_parity/len_tr8_ts16.
    train_lengths = (1, 8)
    eval_lengths = tuple(range(9, 17))

    def __init__(self) -> None:
        self.symbols = ("0", "1")

    def prompt_length(self, length: int) -> int:
        return length + 1

    def output_length(self, length: int) -> int:
        return 1

    def sample_prompts(self, rng: np.random.Generator, batch_size: int, length: int) -> np.ndarray:
        return _with_sep(NUM_SPECIAL + rng.integers(0, 2, (batch_size, length)))

    def solve(self, prompts: np.ndarray) -> np.ndarray:
        prompts = _check_prompts(prompts, task=self.name)
        parity = np.sum(prompts[:, :-1].astype(np.int64) - NUM_SPECIAL, axis=1) % 2
        return (NUM_SPECIAL + parity)[:, None].astype(np.int32)


class Addition(DecoderTask):
    """Decimal addition, as Kazemnejad et al.'s data: operands of independent widths.

    Symbols: digits ``"0"`` .. ``"9"`` then ``"+"``. At task length ``n`` the pair of operand
    widths is uniform over the ``2n - 1`` pairs whose larger width is ``n``, as the
    reference's equal-count bins
    ``a-by-b`` grouped by ``max(a, b)``. Each operand is uniform over the numbers of exactly
    its width (any digit at width 1, a non-zero leading digit beyond). Prompt ``a + b <sep>``,
    answer the plain sum, most significant digit first, no padding; rows are right-padded
    after ``<eos>`` (unscored). Training draws the lengths ``1..8`` with weights ``2n - 1``
    (`length_weights`), which makes every pair of widths in ``[1, 8]^2`` equally likely, as
    the reference's training bins; evaluation 9..16 holds every pair with at least one
    operand beyond 8.

    ``widths="equal"``: the former variant, both operands of exactly ``n`` digits and the sum
    zero-padded to ``n + 1`` digits (``reverse_answer`` writes it least significant first).

    Example:
      ``<bos> 4 7 + 8 <sep> 5 5 <eos>``; length 1: ``<bos> 3 + 4 <sep> 7 <eos> <pad>``.

    References: Kazemnejad et al. 2023 (arXiv 2305.19466), task "addition";
    McGill-NLP/length-generalization, scripts make_addition_dataset.py (bins
    ``itertools.product(range(min_length, max_length + 1), ...)``, ``low = 10 **
    (a_num_digits - 1)``, ``if low == 1: low = 0``) and the addition instance processor
    (``" ".join(str(number))``: no padding, not reversed).
    """

    name = "addition"
    # Reference ranges (see _REFERENCE_RANGES): split s2s_addition/len_tr8_ts16, operand
    # widths 1..8 for training (make_addition_dataset.py L87-L88), 9..16 at test (L110-L128).
    train_lengths = (1, 8)
    eval_lengths = tuple(range(9, 17))
    WIDTHS = ("independent", "equal")

    def __init__(self, *, widths: str = "independent", reverse_answer: bool = False) -> None:
        check_choice("widths", widths, self.WIDTHS)
        if not isinstance(reverse_answer, bool):
            raise ValueError(f"reverse_answer must be True or False; got {reverse_answer!r}")
        if reverse_answer and widths == "independent":
            raise ValueError('reverse_answer needs widths="equal" (the reference never reverses)')
        self.widths = widths
        self.reverse_answer = reverse_answer
        self.symbols = (*DIGITS, "+")

    def check_length(self, length: int) -> int:
        length = check_int("length", length, minimum=1)
        if length > 18 and self.widths == "independent":  # int64 operands: 10**19 overflows
            raise ValueError(
                f"addition: length must be <= 18 digits with widths='independent'; got "
                f"length={length} (widths='equal' draws digit by digit, any length)"
            )
        return length

    def length_weights(self, lengths: np.ndarray) -> np.ndarray | None:
        """Training weight of each length: ``2n - 1`` pairs of widths have the larger ``n``."""
        return (2 * lengths - 1) / np.sum(2 * lengths - 1) if self.widths == "independent" else None

    def prompt_length(self, length: int) -> int:
        return 2 * length + 2

    def output_length(self, length: int) -> int:
        return length + 1

    def sample_batch(self, rng: np.random.Generator, batch_size: int, length: int) -> Batch:
        if self.widths == "equal":
            return super().sample_batch(rng, batch_size, length)
        check_rng(rng)
        batch_size = check_int("batch_size", batch_size, minimum=1)
        length = self.check_length(length)
        widths = width_pairs(rng, batch_size, length)
        low = np.where(widths == 1, 0, 10 ** (widths - 1))
        numbers = rng.integers(low, 10**widths)  # [B, 2], exact up to 18 digits
        rows = [self._row(int(a), int(b)) for a, b in numbers]
        return right_padded_decoder_batch(rows, self.sequence_length(length))

    def _row(self, a: int, b: int) -> tuple[list[int], list[int]]:
        digits = [self.token_id(d) for d in str(a)] + [self.token_id("+")]
        digits += [self.token_id(d) for d in str(b)] + [SEP]
        return digits, [self.token_id(d) for d in str(a + b)]

    def sample_prompts(self, rng: np.random.Generator, batch_size: int, length: int) -> np.ndarray:
        if self.widths != "equal":
            raise ValueError('sample_prompts gives fixed-width prompts: it needs widths="equal"')
        digits = rng.integers(0, 10, size=(batch_size, 2, length))
        if length > 1:
            digits[:, :, 0] = rng.integers(1, 10, size=(batch_size, 2))
        prompts = np.empty((batch_size, 2 * length + 2), dtype=np.int32)
        prompts[:, :length] = NUM_SPECIAL + digits[:, 0]
        prompts[:, length] = self.token_id("+")
        prompts[:, length + 1 : 2 * length + 1] = NUM_SPECIAL + digits[:, 1]
        prompts[:, -1] = SEP
        return prompts

    def solve(self, prompts: np.ndarray) -> np.ndarray:
        prompts = _check_prompts(prompts, task=self.name)
        length = (prompts.shape[1] - 2) // 2
        if prompts.shape[1] != 2 * length + 2 or not np.all(
            prompts[:, length] == self.token_id("+")
        ):
            raise ValueError(f"{self.name}: prompts must read 'a + b <sep>' with equal widths")
        a = prompts[:, :length].astype(np.int64) - NUM_SPECIAL
        b = prompts[:, length + 1 : 2 * length + 1].astype(np.int64) - NUM_SPECIAL
        answer = np.zeros((prompts.shape[0], length + 1), dtype=np.int64)
        carry = np.zeros(prompts.shape[0], dtype=np.int64)
        for i in range(length - 1, -1, -1):
            column = a[:, i] + b[:, i] + carry
            answer[:, i + 1] = column % 10
            carry = column // 10
        answer[:, 0] = carry
        if self.reverse_answer:
            answer = answer[:, ::-1]
        return (NUM_SPECIAL + answer).astype(np.int32)


def width_pairs(rng: np.random.Generator, batch_size: int, length: int) -> np.ndarray:
    """``[B, 2]`` operand widths, each row uniform over the ``2n - 1`` pairs whose larger
    width is ``n = length``: ``k < n`` is ``(n, k + 1)``, the others ``(k - n + 1, n)``, so
    ``(n, n)`` is drawn once, not once per side."""
    k = rng.integers(0, 2 * length - 1, size=batch_size)
    first_is_long = k < length
    other = np.where(first_is_long, k + 1, k - length + 1)
    return np.stack([np.where(first_is_long, length, other),
                     np.where(first_is_long, other, length)], axis=1)  # fmt: skip


def right_padded_decoder_batch(rows: list[tuple[list[int], list[int]]], width: int) -> Batch:
    """``<bos> prompt answer <eos>`` rows of varying length, right-padded to ``width`` tokens.

    Padding follows ``<eos>``, so a causal model's scored positions never see it; it is not
    scored. Targets and mask as `decoder_batch`.
    """
    tokens = np.full((len(rows), width), PAD, dtype=np.int32)
    targets = np.full((len(rows), width), PAD, dtype=np.int32)
    loss_mask = np.zeros((len(rows), width), dtype=bool)
    for i, (prompt, answer) in enumerate(rows):
        full = [BOS, *prompt, *answer, EOS]
        if len(full) - 1 > width:
            raise ValueError(f"row {i} needs {len(full) - 1} positions, more than width={width}")
        tokens[i, : len(full) - 1] = full[:-1]
        scored = slice(len(prompt), len(full) - 1)
        targets[i, scored] = full[len(prompt) + 1 :]
        loss_mask[i, scored] = True
    return Batch(tokens=tokens, targets=targets, loss_mask=loss_mask)


class AssociativeRecall(DecoderTask):
    """Recall the value bound to a queried key.

    Symbols: keys ``"k0"`` .. ``"k{num_keys-1}"`` then values ``"v0"`` .. ``"v{num_values-1}"``.
    Prompt ``k_1 v_1 .. k_n v_n <sep> q`` with ``n = length`` distinct uniform keys, uniform values
    and ``q`` one of the keys (uniform); answer the value bound to ``q``. Needs
    ``length <= num_keys``. Training lengths 1..32, evaluation 64..512 pairs.

    Example:
      ``<bos> k4 v1 k2 v7 <sep> k2 v7 <eos>``.

    References: Ba et al. 2016, "Using Fast Weights to Attend to the Recent Past"; Arora et al.
    2023, "Zoology" (arXiv 2312.04927), multi-query associative recall.
    """

    name = "associative_recall"
    train_lengths = (1, 32)
    eval_lengths = (64, 128, 256, 512)

    def __init__(self, *, num_keys: int = 512, num_values: int = 64) -> None:
        self.num_keys = check_int("num_keys", num_keys, minimum=1)
        self.num_values = check_int("num_values", num_values, minimum=2)
        self.symbols = tuple(f"k{i}" for i in range(self.num_keys)) + tuple(
            f"v{i}" for i in range(self.num_values)
        )

    def check_length(self, length: int) -> int:
        length = check_int("length", length, minimum=1)
        if length > self.num_keys:
            raise ValueError(
                f"associative_recall needs distinct keys: length must be <= num_keys; "
                f"got length={length}, num_keys={self.num_keys}"
            )
        return length

    def prompt_length(self, length: int) -> int:
        return 2 * length + 2

    def output_length(self, length: int) -> int:
        return 1

    def sample_prompts(self, rng: np.random.Generator, batch_size: int, length: int) -> np.ndarray:
        all_keys = np.broadcast_to(np.arange(self.num_keys), (batch_size, self.num_keys))
        keys = rng.permuted(all_keys, axis=1)[:, :length]
        values = rng.integers(0, self.num_values, size=(batch_size, length))
        query = keys[np.arange(batch_size), rng.integers(0, length, size=batch_size)]
        prompts = np.empty((batch_size, 2 * length + 2), dtype=np.int32)
        prompts[:, 0 : 2 * length : 2] = NUM_SPECIAL + keys
        prompts[:, 1 : 2 * length : 2] = NUM_SPECIAL + self.num_keys + values
        prompts[:, -2] = SEP
        prompts[:, -1] = NUM_SPECIAL + query
        return prompts

    def solve(self, prompts: np.ndarray) -> np.ndarray:
        prompts = _check_prompts(prompts, task=self.name, ends_with_sep=False)
        if not np.all(prompts[:, -2] == SEP):
            raise ValueError(f"{self.name}: prompts must end with '<sep> query'")
        keys = prompts[:, 0:-2:2]
        values = prompts[:, 1:-2:2]
        matches = keys == prompts[:, -1:]
        if not np.all(matches.any(axis=1)):
            raise ValueError(f"{self.name}: a query key does not occur in its prompt")
        # Last binding of the queried key (keys are distinct in sampled data).
        last = keys.shape[1] - 1 - np.argmax(matches[:, ::-1], axis=1)
        return values[np.arange(prompts.shape[0]), last][:, None].astype(np.int32)


class Passkey(DecoderTask):
    """Retrieve a passkey hidden in filler text.

    Symbols: digits ``"0"`` .. ``"9"``, the marker ``"KEY"``, then filler symbols ``"f0"`` ..
    ``"f9"``. Prompt: ``length`` filler tokens with ``KEY d_1 .. d_k`` (``k = digits`` uniform
    digits) inserted at a uniform position 0..length, then ``<sep>``; answer ``d_1 .. d_k``. With
    ``filler="cycle"`` the filler is the fixed cycle ``f0 f1 .. f9 f0 ..`` (the repeated
    sentences of the original test), with ``filler="random"`` uniform filler symbols.
    ``depth`` (a fraction in [0, 1]) puts the key at ``round(depth * length)`` instead of
    a uniform position: the needle depth of the passkey heat maps (Jin et al. 2024,
    SelfExtend, Fig. 3). Training lengths 1..256, evaluation 512..4096 filler tokens.

    Example (digits=3, filler="cycle", position 2):
      ``<bos> f0 f1 KEY 4 0 7 f2 f3 <sep> 4 0 7 <eos>``.

    References: Mohtashami & Jaggi 2023, "Landmark Attention" (arXiv 2305.16300), passkey
    retrieval; used for RoPE context extension by Chen et al. 2023 (arXiv 2306.15595).
    """

    name = "passkey"
    train_lengths = (1, 256)
    eval_lengths = (512, 1024, 2048, 4096)
    _FILLERS = ("cycle", "random")
    _NUM_FILLER = 10

    def __init__(
        self, *, digits: int = 5, filler: str = "cycle", depth: float | None = None
    ) -> None:
        self.digits = check_int("digits", digits, minimum=1)
        check_choice("filler", filler, self._FILLERS)
        self.filler = filler
        if depth is not None and (
            isinstance(depth, bool) or not isinstance(depth, int | float) or not 0 <= depth <= 1
        ):
            raise ValueError(f"depth must be None or a fraction in [0, 1]; got depth={depth!r}")
        self.depth = None if depth is None else float(depth)
        self.symbols = (*DIGITS, "KEY", *(f"f{i}" for i in range(self._NUM_FILLER)))

    def prompt_length(self, length: int) -> int:
        return length + self.digits + 2

    def output_length(self, length: int) -> int:
        return self.digits

    def sample_prompts(self, rng: np.random.Generator, batch_size: int, length: int) -> np.ndarray:
        first_filler = self.token_id("f0")
        if self.filler == "cycle":
            fill = np.broadcast_to(np.arange(length) % self._NUM_FILLER, (batch_size, length))
        else:
            fill = rng.integers(0, self._NUM_FILLER, size=(batch_size, length))
        fill = first_filler + fill
        where = rng.integers(0, length + 1, size=batch_size)[:, None]  # [B, 1]
        if self.depth is not None:
            where = np.full_like(where, round(self.depth * length))
        key = NUM_SPECIAL + rng.integers(0, 10, size=(batch_size, self.digits))
        span = self.digits + 1
        pos = np.arange(length + span)  # [length + k + 1]
        before = pos < where
        inside = (pos >= where) & (pos < where + span)
        fill_index = np.clip(np.where(before, pos, pos - span), 0, max(length - 1, 0))
        filler_tok = np.take_along_axis(fill, np.broadcast_to(fill_index, before.shape), axis=1)
        key_index = np.clip(pos - where - 1, 0, self.digits - 1)
        key_tok = np.take_along_axis(key, key_index, axis=1)
        is_marker = pos == where
        key_part = np.where(is_marker, self.token_id("KEY"), key_tok)
        body = np.where(inside, key_part, filler_tok)
        return _with_sep(body)

    def solve(self, prompts: np.ndarray) -> np.ndarray:
        prompts = _check_prompts(prompts, task=self.name)
        is_marker = prompts == self.token_id("KEY")
        if not np.all(is_marker.sum(axis=1) == 1):
            raise ValueError(f"{self.name}: every prompt must hold exactly one KEY marker")
        start = np.argmax(is_marker, axis=1)[:, None] + 1 + np.arange(self.digits)
        if np.any(start >= prompts.shape[1] - 1):
            raise ValueError(f"{self.name}: the passkey after KEY is cut off by <sep>")
        return np.take_along_axis(prompts, start, axis=1).astype(np.int32)


DECODER_TASKS: tuple[type[DecoderTask], ...] = (
    Copy,
    Reverse,
    Sort,
    Addition,
    Summation,
    Parity,
    AssociativeRecall,
    Passkey,
)
