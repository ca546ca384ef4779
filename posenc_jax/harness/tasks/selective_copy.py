"""Selective copy: copy the data tokens scattered among blank tokens, in order.

A prompt holds ``num_tokens`` data tokens (uniform over ``num_symbols`` values) at sorted
random positions among ``length + num_tokens`` slots, every other slot the blank ``_``;
then ``<sep>``. The answer is the data tokens in their order. ``length`` is the number of
blanks: the distance the model must count over, and the axis CoPE's test splits vary
(fewer blanks, "dense"; more, "sparse") at a fixed number of data tokens.

The generator is the reference's ``variable=True`` branch: ``M`` distinct positions drawn
without replacement from the first ``L + M`` slots and sorted, data values
``randint(1, A - 1)``, the blank 0 (state-spaces/s4,
src/dataloaders/datasets/copying.py, ``torch_copying_data`` lines 30-42). The reference
then appends ``M`` marker tokens and reads the ``M`` answers at the markers (lines 43-47,
loss on those ``M`` outputs only); a decoder here ends the prompt with ``<sep>`` and
generates the answer, scored (with ``<eos>``) by exact match and per-token accuracy.

Defaults follow Mamba's setting (16 data tokens, a vocabulary of 16 with the blank and the
marker, so 14 data values; Gu & Dao 2023, Appendix E.1) at CoPE's blank counts: training
at 128 blanks, tests at 64 (dense), 128 and 256 (sparse). CoPE's own split sizes are
known here only from a summary of its results table (128 data tokens among 128, 64 and
256 blanks); ``num_tokens=128`` gives that shape.

References: Gu & Dao 2023, "Mamba" (arXiv 2312.00752), selective copying; Golovneva, Wang,
Weston, Sukhbaatar 2024, "Contextual Position Encoding" (arXiv 2405.18719), the selective
copy task with dense and sparse test sets.
"""

import numpy as np

from posenc_jax.harness.tasks.base import (
    NUM_SPECIAL,
    SEP,
    DecoderTask,
    check_int,
)

BLANK = "_"


class SelectiveCopy(DecoderTask):
    """Selective copy of ``num_tokens`` data tokens among ``length`` blanks.

    Example:
        >>> task = SelectiveCopy(num_tokens=3, num_symbols=4)
        >>> prompts = task.sample_prompts(np.random.default_rng(0), 1, 4)
        >>> " ".join(task.decode(prompts[0])), " ".join(task.decode(task.solve(prompts)[0]))
        ('_ s3 s2 s2 _ _ _ <sep>', 's3 s2 s2')

    Options:
      num_tokens: data tokens to copy (the reference's M; 16 as Mamba).
      num_symbols: data values (14 as Mamba's vocabulary of 16 with the blank and marker).
    """

    name = "selective_copy"
    train_lengths = (128, 128)
    eval_lengths = (64, 128, 256)

    def __init__(self, *, num_tokens: int = 16, num_symbols: int = 14) -> None:
        self.num_tokens = check_int("num_tokens", num_tokens, minimum=1)
        self.num_symbols = check_int("num_symbols", num_symbols, minimum=2)
        self.symbols = (*(f"s{i}" for i in range(self.num_symbols)), BLANK)

    @property
    def blank_id(self) -> int:
        return NUM_SPECIAL + self.num_symbols

    def check_length(self, length: int) -> int:
        return check_int("length", length, minimum=0)

    def prompt_length(self, length: int) -> int:
        return self.check_length(length) + self.num_tokens + 1

    def output_length(self, length: int) -> int:
        return self.num_tokens

    def sample_prompts(self, rng: np.random.Generator, batch_size: int, length: int) -> np.ndarray:
        slots, m = length + self.num_tokens, self.num_tokens
        prompts = np.full((batch_size, slots + 1), self.blank_id, dtype=np.int32)
        prompts[:, -1] = SEP
        # M distinct slots per row, sorted: the order of a random permutation's first M.
        where = np.sort(np.argsort(rng.random((batch_size, slots)), axis=1)[:, :m], axis=1)
        values = NUM_SPECIAL + rng.integers(0, self.num_symbols, (batch_size, m))
        np.put_along_axis(prompts, where, values.astype(np.int32), axis=1)
        return prompts

    def solve(self, prompts: np.ndarray) -> np.ndarray:
        prompts = np.asarray(prompts)
        if prompts.ndim != 2 or not np.all(prompts[:, -1] == SEP):
            raise ValueError(f"{self.name}: prompts must be [B, P] rows ending with <sep>")
        data = prompts[:, :-1]
        is_data = data != self.blank_id
        counts = is_data.sum(axis=1)
        if np.any(counts != self.num_tokens):
            raise ValueError(
                f"{self.name}: every prompt must hold num_tokens={self.num_tokens} data "
                f"tokens; got {sorted(set(counts.tolist()))}"
            )
        # Stable order of the data slots first: their values in prompt order.
        order = np.argsort(~is_data, axis=1, kind="stable")[:, : self.num_tokens]
        return np.take_along_axis(data, order, axis=1).astype(np.int32)
