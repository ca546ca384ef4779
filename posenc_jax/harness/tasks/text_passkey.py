"""Passkey retrieval in natural language, for pretrained models read with their tokenizer.

The prompt is the one of Mohtashami & Jaggi's test as LongLoRA evaluates it
(dvlab-research/LongLoRA ``passkey_retrivial.py``, ``generate_prompt_landmark``): a task
description, ``n`` characters of the repeated filler sentences, the information line
with a random key in 1..50000, the rest of the filler, the question, each on its own
line. The answer is the key; a row counts as correct when every answer token is the
model's argmax after the right prefix (``passkey_retrieval_test`` there compares the
greedy continuation with the key's tokens: the same under teacher forcing).

Differences, stated: the length is in tokens (the reference sets characters, roughly
3.75 per token) and every row of a batch is right-padded to it (padding is causal
and unscored); the key's tokens are those that follow the prompt in the tokenized
``prompt + " " + key``, from the first that differs from the prompt's own tokens (the
reference tokenizes the key alone, which matches SentencePiece's leading-space piece for
Llama and differs for byte-level BPE).

References: Mohtashami & Jaggi 2023, "Landmark Attention" (arXiv 2305.16300); Chen et
al. 2023, LongLoRA (arXiv 2309.12307).
"""

from __future__ import annotations

import os

import numpy as np

from posenc_jax.harness.tasks.base import Batch, Task, check_int, check_rng
from posenc_jax.harness.tasks.lm import load_tokenizer

__all__ = ["TextPasskey"]

DESCRIPTION = (
    "There is an important info hidden inside a lot of irrelevant text. Find it and memorize "
    "them. I will quiz you about the important information there."
)
FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
QUESTION = "What is the pass key? The pass key is"


def passkey_text(n_filler: int, n_prefix: int, key: int) -> str:
    """The prompt with ``n_filler`` filler characters, ``n_prefix`` of them before the key
    (``generate_prompt_landmark`` of the reference, given its random draws)."""
    filler = " ".join([FILLER] * (n_filler // (len(FILLER) + 1) + 2))
    info = f"The pass key is {key}. Remember it. {key} is the pass key."
    lines = [DESCRIPTION, filler[:n_prefix], info, filler[: n_filler - n_prefix], QUESTION]
    return "\n".join(lines)


class TextPasskey(Task):
    """Passkey retrieval in text, at a length in tokens of a pretrained model's tokenizer.

    ``sample_batch(rng, B, length)``: each row draws a key in 1..50000 and a depth (uniform,
    or ``depth``), fills the prompt with as much filler as fits ``length`` tokens with the
    answer, and is right-padded to ``length``; the loss mask covers the key's tokens.
    Headline: exact match of the key.

    Args:
      tokenizer: the model's ``tokenizer.json`` or the directory holding it.
      depth: None (the key at a uniform character offset of the filler, as the
        reference) or a fraction in [0, 1] (the needle depth of a heat map).

    Raises:
      ValueError: naming ``tokenizer`` or ``depth``, or a length too short for the
        prompt without filler.

    References: Mohtashami & Jaggi 2023 (arXiv 2305.16300); Chen et al. 2023, LongLoRA
    (arXiv 2309.12307), ``passkey_retrivial.py``.
    """

    name = "passkey_text"
    causal = True
    headline = "exact_match"
    train_lengths = (256, 256)
    eval_lengths = (1024, 2048, 4096, 8192)

    def __init__(self, *, tokenizer: str | os.PathLike[str], depth: float | None = None) -> None:
        if depth is not None and (
            isinstance(depth, bool) or not isinstance(depth, int | float) or not 0 <= depth <= 1
        ):
            raise ValueError(f"depth must be None or a fraction in [0, 1]; got depth={depth!r}")
        self.depth = None if depth is None else float(depth)
        self._tok = load_tokenizer(tokenizer)
        self.tokenizer = str(tokenizer)
        self._chars_per_token = len(FILLER) / max(1, len(self._encode(FILLER)))

    @property
    def vocab_size(self) -> int:
        return int(self._tok.get_vocab_size())

    def sequence_length(self, length: int) -> int:
        return self.check_length(length)

    def _encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def _row(self, rng: np.random.Generator, length: int) -> tuple[list[int], int]:
        """(tokens of prompt + answer, number of answer tokens), at most ``length + 1``."""
        key = int(rng.integers(1, 50001))
        fraction = rng.random() if self.depth is None else self.depth
        n_filler = int(length * self._chars_per_token)
        for _ in range(20):  # shrink the filler until prompt and answer fit
            n_filler = max(n_filler, 0)
            prompt = passkey_text(n_filler, round(fraction * n_filler), key)
            ids = self._encode(prompt + " " + str(key))
            head = self._encode(prompt)
            # The answer starts where the tokens of prompt + key leave the prompt's own
            # (a token that merges the prompt's end with the key is scored too).
            pairs = enumerate(zip(ids, head, strict=False))
            same = next((i for i, (x, y) in pairs if x != y), len(head))
            answer = len(ids) - max(1, same)  # the first token is never a target
            if len(ids) <= length + 1:
                return ids, answer
            if n_filler == 0:
                break
            n_filler -= int((len(ids) - length - 1) * self._chars_per_token) + 1
        raise ValueError(
            f"passkey_text: length={length} tokens cannot hold the prompt and its answer "
            f"({len(ids)} tokens with {n_filler} filler characters); use a longer length"
        )

    def sample_batch(self, rng: np.random.Generator, batch_size: int, length: int) -> Batch:
        check_rng(rng)
        batch_size = check_int("batch_size", batch_size, minimum=1)
        length = self.check_length(length)
        tokens = np.zeros((batch_size, length + 1), np.int32)
        mask = np.zeros((batch_size, length), bool)
        for b in range(batch_size):
            ids, answer = self._row(rng, length)
            tokens[b, : len(ids)] = ids
            mask[b, len(ids) - 1 - answer : len(ids) - 1] = True  # targets = the key's tokens
        targets = np.where(mask, tokens[:, 1:], 0).astype(np.int32)
        return Batch(tokens=tokens[:, :-1], targets=targets, loss_mask=mask)
