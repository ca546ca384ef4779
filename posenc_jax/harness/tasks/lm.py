"""Language modelling on a local text corpus (never downloads anything): bytes, or the
tokens of a pretrained model's own tokenizer.

The corpus is either the Python standard library's own source (the default: every ``.py`` file
under ``sysconfig.get_paths()["stdlib"]``, ``site-packages`` excluded) or a file or folder given by
path (every UTF-8 text file under it; hidden entries and ``__pycache__`` skipped). Files are read
in sorted order of their relative paths until ``max_bytes`` bytes are read, so the corpus is
deterministic for a given Python install or folder. Files go to the validation split when a
SHA-256 hash of their relative path falls below ``valid_fraction``; with a single file, or when
the hash leaves one split empty, the concatenated bytes are split by range instead (the last
``valid_fraction`` of them are validation).

References: Press, Smith, Lewis 2022, "Train Short, Test Long" (arXiv 2108.12409): perplexity
of a model trained at one length and evaluated, non-overlapping, at longer ones.
"""

import codecs
import dataclasses
import hashlib
import os
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from posenc_jax.harness.tasks.base import Batch, Task, check_choice, check_int, check_rng

_SKIPPED_DIRS = frozenset({"site-packages", "dist-packages", "__pycache__"})


def _list_files(root: Path, *, python_only: bool) -> list[tuple[str, Path]]:
    """Returns ``(relative posix path, path)`` of the candidate files under ``root``, sorted."""
    if root.is_file():
        return [(root.name, root)]
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in _SKIPPED_DIRS and not d.startswith(".")]
        for filename in filenames:
            if filename.startswith(".") or (python_only and not filename.endswith(".py")):
                continue
            path = Path(dirpath) / filename
            if path.is_file():
                found.append((path.relative_to(root).as_posix(), path))
    found.sort()
    return found


def _read_text_prefix(path: Path, limit: int) -> bytes | None:
    """Returns up to ``limit`` bytes of ``path`` if that prefix is UTF-8 text, else None."""
    try:
        with open(path, "rb") as f:
            data = f.read(limit)
            complete = not f.read(1)
    except OSError:
        return None
    if b"\x00" in data:
        return None
    try:
        codecs.getincrementaldecoder("utf-8")().decode(data, final=complete)
    except UnicodeDecodeError:
        return None
    return data


def _is_valid_file(relative_path: str, valid_fraction: float) -> bool:
    digest = hashlib.sha256(relative_path.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") < valid_fraction * 2.0**64


class LanguageModelling(Task):
    """Byte-level next-token prediction on a local corpus.

    Vocabulary: the 256 byte values, nothing else, or a pretrained model's tokens
    (``tokenizer``: its ``tokenizer.json``, read with the ``tokenizers`` package; lengths
    then count tokens). ``sample_batch(rng, B, length, split)``
    returns ``B`` uniform random windows: ``tokens = data[i : i + length]``,
    ``targets = data[i + 1 : i + length + 1]``, ``loss_mask`` all True. ``eval_batches`` walks the
    validation split in consecutive non-overlapping windows from its start, for perplexity.

    Example:
      >>> task = LanguageModelling(max_bytes=200_000)  # or corpus="notes/" for a folder
      >>> batch = task.sample_batch(np.random.default_rng(0), 8, 256)
      >>> batch.tokens.shape, int(batch.targets[0, 0]) == int(batch.tokens[0, 1])
      ((8, 256), True)

    Args:
      corpus: None for the Python standard library's source, else a file or folder path.
      max_bytes: cap on the bytes read (default 4 MB; the standard library loads in well under a
        second).
      valid_fraction: expected fraction of the corpus held out for validation.
      packed: False: a window is one sequence (positions ``0 .. L-1``, attention across the
        files it spans). True: rows are packed, as language models are trained: each file
        of the corpus is a document, positions restart at each document inside a row,
        ``segment_ids`` keep attention within a document, and the byte that starts the
        next document is not a target. Evaluation windows are packed the same way.
      tokenizer: None (bytes), or a Hugging Face ``tokenizer.json`` or the model
        directory holding it: each file's text becomes that tokenizer's ids (no special
        tokens), for the models `posenc_jax.nn.from_hf` loads.

    Raises:
      ValueError: naming ``corpus`` and the path when it does not exist or holds no UTF-8 text.

    References: Press, Smith, Lewis 2022 (arXiv 2108.12409), non-overlapping evaluation.
    """

    name = "lm"
    causal = True
    headline = "perplexity"
    train_lengths = (256, 256)
    eval_lengths = (256, 512, 1024, 2048)
    SPLITS = ("train", "valid")

    def __init__(
        self,
        *,
        corpus: str | os.PathLike[str] | None = None,
        max_bytes: int = 4_000_000,
        valid_fraction: float = 0.05,
        packed: bool = False,
        tokenizer: str | os.PathLike[str] | None = None,
    ) -> None:
        if not isinstance(packed, bool):
            raise ValueError(f"packed must be true or false; got packed={packed!r}")
        self.packed = packed
        self.max_bytes = check_int("max_bytes", max_bytes, minimum=2)
        if not isinstance(valid_fraction, int | float) or not 0.0 < valid_fraction < 1.0:
            raise ValueError(
                f"valid_fraction must be a number in (0, 1); got valid_fraction={valid_fraction!r}"
            )
        self.valid_fraction = float(valid_fraction)
        if corpus is None:
            root = Path(sysconfig.get_paths()["stdlib"])
            python_only = True
        else:
            root = Path(corpus)
            python_only = False
        self.corpus_path = str(root)
        if not root.exists():
            raise ValueError(f"corpus={self.corpus_path!r} does not exist (no such file or folder)")

        train_parts, valid_parts = [], []
        train_files, valid_files = [], []
        remaining = self.max_bytes
        for relative, path in _list_files(root, python_only=python_only):
            if remaining <= 0:
                break
            data = _read_text_prefix(path, remaining)
            if not data:
                continue
            remaining -= len(data)
            if _is_valid_file(relative, self.valid_fraction):
                valid_parts.append(data)
                valid_files.append(relative)
            else:
                train_parts.append(data)
                train_files.append(relative)
        if not train_parts and not valid_parts:
            raise ValueError(f"corpus={self.corpus_path!r} holds no non-empty UTF-8 text file")
        self.tokenizer = None if tokenizer is None else str(tokenizer)
        encode, self._vocab_size = _encoder(tokenizer)
        train_parts = [encode(part) for part in train_parts]
        valid_parts = [encode(part) for part in valid_parts]
        if train_parts and valid_parts:
            self.split_by = "file"
            train = np.concatenate(train_parts)
            valid = np.concatenate(valid_parts)
            train_starts, valid_starts = _starts(train_parts), _starts(valid_parts)
        else:
            self.split_by = "bytes"
            parts = train_parts + valid_parts
            everything = np.concatenate(parts)
            cut = len(everything) - max(1, round(len(everything) * self.valid_fraction))
            train, valid = everything[:cut], everything[cut:]
            train_files = valid_files = sorted(train_files + valid_files)
            starts = _starts(parts)
            train_starts = starts[starts < cut]
            valid_starts = np.concatenate([[0], starts[starts > cut] - cut])
        self.train_files = tuple(train_files)
        self.valid_files = tuple(valid_files)
        self._data = {"train": train, "valid": valid}
        for data in self._data.values():
            data.flags.writeable = False
        # Where each document (file) begins in a split's tokens; packed rows restart there.
        self._doc_starts = {"train": train_starts, "valid": valid_starts}

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    def sequence_length(self, length: int) -> int:
        return self.check_length(length)

    def data(self, split: str = "train") -> np.ndarray:
        """Returns a split (``"train"`` or ``"valid"``), read-only: uint8 bytes, or int32
        token ids with a ``tokenizer``."""
        check_choice("split", split, self.SPLITS)
        return self._data[split]

    def _check_window(self, split: str, length: int) -> np.ndarray:
        data = self.data(split)
        if len(data) < length + 1:
            raise ValueError(
                f"corpus={self.corpus_path!r}: the {split} split holds {len(data)} tokens, fewer "
                f"than a window of length={length} needs ({length + 1}); use a larger corpus or "
                f"max_bytes, or a shorter length"
            )
        return data

    def sample_batch(
        self, rng: np.random.Generator, batch_size: int, length: int, split: str = "train"
    ) -> Batch:
        """Returns ``batch_size`` uniform random windows of ``length`` tokens (bytes without a
        tokenizer) from ``split``.

        Returns:
          A Batch of ``[B, length]`` arrays: ``tokens`` and ``targets`` (the next tokens) as
          int32, ``loss_mask`` all True.
        """
        check_rng(rng)
        batch_size = check_int("batch_size", batch_size, minimum=1)
        length = self.check_length(length)
        data = self._check_window(split, length)
        starts = rng.integers(0, len(data) - length, size=batch_size)  # s + length < len(data)
        return self._batch(split, starts, length)

    def _batch(self, split: str, starts: np.ndarray, length: int) -> Batch:
        batch = _windows(self.data(split), starts, length)
        if not self.packed:
            return batch
        return _packed(batch, self._doc_starts[split], starts)

    def num_eval_windows(self, length: int) -> int:
        """Number of non-overlapping validation windows of ``length`` tokens."""
        length = self.check_length(length)
        return (len(self.data("valid")) - 1) // length

    def eval_batches(
        self, length: int, batch_size: int, num_batches: int | None = None
    ) -> Iterator[Batch]:
        """Yields consecutive non-overlapping validation windows, deterministic.

        Window ``j`` covers ``tokens = valid[j*length : (j+1)*length]`` and the next tokens as
        targets. Only full batches are yielded; ``num_batches`` (None: all) caps their number.
        """
        length = self.check_length(length)
        batch_size = check_int("batch_size", batch_size, minimum=1)
        if num_batches is not None:
            num_batches = check_int("num_batches", num_batches, minimum=1)
        data = self._check_window("valid", length)
        available = (len(data) - 1) // length // batch_size
        if available == 0:
            raise ValueError(
                f"corpus={self.corpus_path!r}: the valid split holds "
                f"{(len(data) - 1) // length} windows of length={length}, fewer than "
                f"batch_size={batch_size}"
            )
        count = available if num_batches is None else min(num_batches, available)
        for i in range(count):
            starts = (i * batch_size + np.arange(batch_size)) * length
            yield self._batch("valid", starts, length)


def _windows(data: np.ndarray, starts: np.ndarray, length: int) -> Batch:
    """Returns the Batch of byte windows ``data[s : s + length + 1]`` for each start ``s``."""
    index = starts[:, None] + np.arange(length + 1)  # [B, length + 1]
    chunk = data[index].astype(np.int32)
    return Batch(
        tokens=np.ascontiguousarray(chunk[:, :-1]),
        targets=np.ascontiguousarray(chunk[:, 1:]),
        loss_mask=np.ones((len(starts), length), dtype=bool),
    )


def load_tokenizer(tokenizer: str | os.PathLike[str]):
    """A Hugging Face ``tokenizers.Tokenizer`` from a ``tokenizer.json`` or the model
    directory holding it; errors name ``tokenizer`` and the missing package."""
    path = Path(tokenizer)
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        raise ValueError(
            f"tokenizer={str(tokenizer)!r}: no tokenizer.json there (give the file or the "
            "model directory that holds it)"
        )
    try:
        from tokenizers import Tokenizer
    except ImportError:
        message = "tokenizer= needs the tokenizers package: pip install -e '.[hf]'"
        raise ValueError(message) from None
    return Tokenizer.from_file(str(path))


def _encoder(tokenizer: str | os.PathLike[str] | None):
    """(bytes -> 1-D array, vocabulary size): the bytes themselves (uint8, 256 values),
    or the ids of a Hugging Face ``tokenizer.json`` (a file or a folder holding one)."""
    if tokenizer is None:
        return (lambda data: np.frombuffer(data, dtype=np.uint8)), 256
    tok = load_tokenizer(tokenizer)

    def encode(data: bytes) -> np.ndarray:
        text = data.decode("utf-8", errors="replace")
        return np.asarray(tok.encode(text, add_special_tokens=False).ids, dtype=np.int32)

    return encode, int(tok.get_vocab_size())


def _starts(parts: list[np.ndarray]) -> np.ndarray:
    """Offsets where each part begins in their concatenation: ``[len(parts)]`` int64."""
    return np.concatenate([[0], np.cumsum([len(p) for p in parts])[:-1]]).astype(np.int64)


def _packed(batch: Batch, doc_starts: np.ndarray, starts: np.ndarray) -> Batch:
    """Marks the documents inside each window of a packed batch.

    Token ``i`` of the window starting at ``s`` is byte ``g = s + i``; its document is
    the last one starting at or before ``g``. Positions count from the later of the
    document's start and the window's start (a document cut by the window edge restarts
    at 0, as a row of a packed corpus does), segment ids number the documents of the
    row from 0, and a token whose target is the first byte of the next document is not
    scored (nothing in its own document predicts it).
    """
    length = batch.tokens.shape[1]
    g = starts[:, None] + np.arange(length)  # [B, L] byte index of each token
    doc = np.searchsorted(doc_starts, g, side="right") - 1  # [B, L]
    begin = np.maximum(doc_starts[doc], starts[:, None])
    next_is_new = np.isin(g + 1, doc_starts)
    return dataclasses.replace(
        batch,
        positions=(g - begin).astype(np.int32),
        segment_ids=(doc - doc[:, :1]).astype(np.int32),
        loss_mask=batch.loss_mask & ~next_is_new,
    )
