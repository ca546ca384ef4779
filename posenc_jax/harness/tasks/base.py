"""Shared pieces of the task generators: the batch type, the base classes, the vocabulary layout.

Every algorithmic task uses one vocabulary layout: five special ids, then the task's own symbols.

- 0 ``<pad>``: target value at unscored positions; never an input token.
- 1 ``<placeholder>``: encoder tasks, the slots where the model writes its answer.
- 2 ``<bos>``: decoder tasks, first token of every sequence.
- 3 ``<sep>``: decoder tasks, end of the question; the answer follows.
- 4 ``<eos>``: end of an answer (decoder tasks; terminator of the variable-length encoder outputs
  of stack_manipulation, binary_addition and binary_multiplication).
- 5 and up: task symbols, ``task.symbols[i]`` has id ``5 + i``.

Encoder tasks (``causal=False``, the Deletang et al. 2023 / Ruoss et al. 2023 protocol) read
``tokens = input symbols + output_length placeholders``; the targets and the loss mask sit on the
placeholder positions only. Decoder tasks (``causal=True``, Kazemnejad et al. 2023) use teacher
forcing on ``<bos> prompt answer <eos>``: ``tokens`` is that sequence without its last token,
``targets`` the sequence shifted left by one, and the loss mask is True where the target is an
answer token or the final ``<eos>``.

References: Deletang et al. 2023 (arXiv 2207.02098) and Ruoss et al. 2023 (arXiv 2305.16843) for
the encoder protocol; Kazemnejad et al. 2023 (arXiv 2305.19466) for the decoder protocol.
"""

import dataclasses
from collections.abc import Sequence

import numpy as np

PAD = 0
PLACEHOLDER = 1
BOS = 2
SEP = 3
EOS = 4
NUM_SPECIAL = 5
DIGITS: tuple[str, ...] = tuple(str(i) for i in range(10))
"""The ten digit symbols "0".."9", in order (the arithmetic tasks' first symbols)."""
SPECIAL_NAMES = ("<pad>", "<placeholder>", "<bos>", "<sep>", "<eos>")


@dataclasses.dataclass(frozen=True)
class Batch:
    """One batch of a task, ready for a model.

    Attributes:
      tokens: ``[B, L]`` int32 model input ids.
      targets: ``[B, L]`` int32 target id at each position (0 where unscored).
      loss_mask: ``[B, L]`` bool, True where the position is scored (loss and accuracy).
      positions: ``[B, L]`` int32 positions, or None for ``0 .. L-1`` (packed rows restart
        them at each document).
      segment_ids: ``[B, L]`` int32 document ids of a packed row (equal ids attend to each
        other), or None when a row is one sequence.
      train_mask: ``[B, L]`` bool, the positions of the training loss when they differ from
        ``loss_mask`` (a reference that trains on padding slots too), else None.
    """

    tokens: np.ndarray
    targets: np.ndarray
    loss_mask: np.ndarray
    positions: np.ndarray | None = None
    segment_ids: np.ndarray | None = None
    train_mask: np.ndarray | None = None


def check_int(name: str, value: object, *, minimum: int) -> int:
    """Returns ``value`` as an int, or raises ValueError naming ``name`` if it is not >= minimum."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an integer >= {minimum}; got {name}={value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {name}={value!r}")
    return int(value)


def check_choice(name: str, value: object, choices: Sequence[object]) -> None:
    """Raises ValueError naming ``name`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"unknown {name}={value!r}; valid choices: {list(choices)}")


def check_rng(rng: object) -> np.random.Generator:
    """Returns ``rng`` if it is a numpy Generator, else raises TypeError saying how to make one."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"rng must be a numpy.random.Generator, e.g. np.random.default_rng(0); "
            f"got {type(rng).__name__}"
        )
    return rng


class Task:
    """Base class of every task: a batch sampler at a given task length.

    Class attributes:
      name: registry name (``get_task(name)``).
      causal: True for decoder-only tasks (causal mask, next-token prediction), False for encoder
        tasks (bidirectional attention, answers read at placeholder positions).
      train_lengths: ``(min, max)`` inclusive range of task lengths the task's reference trains
        at; the plan uses it when a config leaves ``train.min_length`` / ``train.length`` null.
      eval_lengths: the reference's test lengths; the plan uses them when a config leaves
        ``eval.lengths`` (and the task's own ``eval_lengths``) unset.
      headline: the metric that results.md and the plots show: ``"accuracy"`` (token
        accuracy of the answer, encoder tasks), ``"exact_match"`` (decoder tasks: the whole
        answer and its end token right; with argmax decoding this is exactly the greedy
        generation's exact match, since each step then sees the right prefix) or
        ``"perplexity"`` (language modelling).
    """

    name: str = ""
    causal: bool = False
    headline: str = "accuracy"
    packed: bool = False  # rows of several documents with their own positions (lm)
    train_lengths: tuple[int, int] = (1, 40)
    eval_lengths: tuple[int, ...] = tuple(range(41, 501))

    @property
    def vocab_size(self) -> int:
        """Model vocabulary size, every special token included."""
        raise NotImplementedError

    def sequence_length(self, length: int) -> int:
        """Returns L, the number of model positions of a batch at task length ``length``."""
        raise NotImplementedError

    def sample_batch(self, rng: np.random.Generator, batch_size: int, length: int) -> Batch:
        """Returns a batch of ``batch_size`` examples at task length ``length``."""
        raise NotImplementedError

    def check_length(self, length: int) -> int:
        """Returns ``length`` as an int, or raises ValueError if the task cannot use it."""
        return check_int("length", length, minimum=1)

    def length_weights(self, lengths: np.ndarray) -> np.ndarray | None:
        """Training probabilities of ``lengths`` (``[K]``), or None for uniform."""
        del lengths
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, vocab_size={self.vocab_size})"


class AlgorithmicTask(Task):
    """A task over a small symbol alphabet laid out after the five special ids.

    Subclasses set ``self.symbols`` (a tuple of symbol names) in ``__init__``.
    """

    symbols: tuple[str, ...] = ()

    @property
    def vocab_size(self) -> int:
        return NUM_SPECIAL + len(self.symbols)

    def token_names(self) -> tuple[str, ...]:
        """Every token's name, indexed by id (the specials, then the symbols)."""
        return (*SPECIAL_NAMES, *self.symbols)

    def token_id(self, symbol: str) -> int:
        """Returns the id of a symbol name or of a special name such as ``"<eos>"``."""
        if symbol in SPECIAL_NAMES:
            return SPECIAL_NAMES.index(symbol)
        try:
            return NUM_SPECIAL + self.symbols.index(symbol)
        except ValueError:
            raise ValueError(
                f"unknown symbol={symbol!r} for task {self.name!r}; valid symbols: "
                f"{list(SPECIAL_NAMES) + list(self.symbols)}"
            ) from None

    def encode(self, symbols: str | Sequence[str]) -> np.ndarray:
        """Returns the int32 ids of a sequence of symbol names.

        A plain string is read one character per symbol (``"0110"``); pass a list for
        multi-character names (``["0", "1", "POP"]``).
        """
        return np.array([self.token_id(s) for s in symbols], dtype=np.int32)

    def decode(self, ids: Sequence[int] | np.ndarray) -> list[str]:
        """Returns the symbol names of a sequence of ids."""
        names = SPECIAL_NAMES + self.symbols
        return [names[int(i)] for i in ids]

    def output_length(self, length: int) -> int:
        """Number of answer positions at task length ``length`` (without a decoder's ``<eos>``)."""
        raise NotImplementedError


class EncoderTask(AlgorithmicTask):
    """Encoder task: input symbols, then ``output_length`` placeholders holding the answer.

    ``tokens = inputs + [<placeholder>] * output_length``; ``targets`` and ``loss_mask`` are
    non-zero only on the placeholder positions. Subclasses implement ``sample_inputs`` and
    ``solve`` (or override ``_sample`` when sampling yields the answer directly).
    """

    causal = False
    train_lengths = (1, 40)
    eval_lengths = tuple(range(41, 501))

    def input_length(self, length: int) -> int:
        """Number of input symbols at task length ``length``."""
        return length

    def sequence_length(self, length: int) -> int:
        length = self.check_length(length)
        return self.input_length(length) + self.output_length(length)

    def sample_inputs(self, rng: np.random.Generator, batch_size: int, length: int) -> np.ndarray:
        """Returns ``[B, input_length]`` int32 input ids."""
        raise NotImplementedError

    def solve(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Returns the answer to each input row.

        Args:
          inputs: ``[B, input_length]`` input ids.

        Returns:
          ``(outputs, mask)``: ``[B, output_length]`` int32 answer ids (0 where unscored) and the
          ``[B, output_length]`` bool mask of scored answer positions.
        """
        raise NotImplementedError

    def _sample(
        self, rng: np.random.Generator, batch_size: int, length: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        inputs = self.sample_inputs(rng, batch_size, length)
        outputs, mask = self.solve(inputs)
        return inputs, outputs, mask

    def sample_batch(self, rng: np.random.Generator, batch_size: int, length: int) -> Batch:
        check_rng(rng)
        batch_size = check_int("batch_size", batch_size, minimum=1)
        length = self.check_length(length)
        inputs, outputs, mask = self._sample(rng, batch_size, length)
        return encoder_batch(inputs, outputs, mask)


class DecoderTask(AlgorithmicTask):
    """Decoder-only task trained by teacher forcing on ``<bos> prompt answer <eos>``.

    The prompt ends with ``<sep>`` (retrieval tasks put the query after it). Subclasses implement
    ``prompt_length``, ``output_length``, ``sample_prompts`` and ``solve``.
    """

    causal = True
    headline = "exact_match"
    train_lengths = (1, 20)
    eval_lengths = tuple(range(21, 41))

    def prompt_length(self, length: int) -> int:
        """Number of prompt tokens (between ``<bos>`` and the first answer token)."""
        raise NotImplementedError

    def sequence_length(self, length: int) -> int:
        length = self.check_length(length)
        # <bos> + prompt + answer + <eos>, minus the one position lost to the shift.
        return self.prompt_length(length) + self.output_length(length) + 1

    def sample_prompts(self, rng: np.random.Generator, batch_size: int, length: int) -> np.ndarray:
        """Returns ``[B, prompt_length]`` int32 prompt ids."""
        raise NotImplementedError

    def solve(self, prompts: np.ndarray) -> np.ndarray:
        """Returns the ``[B, output_length]`` int32 answer ids of ``[B, prompt_length]`` prompts."""
        raise NotImplementedError

    def sample_batch(self, rng: np.random.Generator, batch_size: int, length: int) -> Batch:
        check_rng(rng)
        batch_size = check_int("batch_size", batch_size, minimum=1)
        length = self.check_length(length)
        prompts = self.sample_prompts(rng, batch_size, length)
        return decoder_batch(prompts, self.solve(prompts))


def encoder_batch(inputs: np.ndarray, outputs: np.ndarray, mask: np.ndarray) -> Batch:
    """Assembles an encoder batch.

    Args:
      inputs: ``[B, I]`` input ids.
      outputs: ``[B, O]`` answer ids.
      mask: ``[B, O]`` bool, scored answer positions.

    Returns:
      A Batch with ``L = I + O``: placeholders after the inputs, targets on the last O positions.
    """
    batch_size, num_in = inputs.shape
    num_out = outputs.shape[1]
    tokens = np.empty((batch_size, num_in + num_out), dtype=np.int32)
    tokens[:, :num_in] = inputs
    tokens[:, num_in:] = PLACEHOLDER
    targets = np.zeros_like(tokens)
    targets[:, num_in:] = np.where(mask, outputs, PAD)
    loss_mask = np.zeros(tokens.shape, dtype=bool)
    loss_mask[:, num_in:] = mask
    return Batch(tokens=tokens, targets=targets, loss_mask=loss_mask)


def decoder_batch(prompts: np.ndarray, answers: np.ndarray) -> Batch:
    """Assembles a teacher-forced decoder batch from ``<bos> prompt answer <eos>``.

    Args:
      prompts: ``[B, P]`` prompt ids.
      answers: ``[B, A]`` answer ids.

    Returns:
      A Batch with ``L = P + A + 1``; ``targets[:, t]`` is token ``t + 1`` of the full sequence and
      ``loss_mask`` is True on the ``A + 1`` positions whose target is an answer token or ``<eos>``.
    """
    batch_size, num_prompt = prompts.shape
    num_answer = answers.shape[1]
    full = np.empty((batch_size, num_prompt + num_answer + 2), dtype=np.int32)
    full[:, 0] = BOS
    full[:, 1 : num_prompt + 1] = prompts
    full[:, num_prompt + 1 : num_prompt + 1 + num_answer] = answers
    full[:, -1] = EOS
    loss_mask = np.zeros((batch_size, full.shape[1] - 1), dtype=bool)
    loss_mask[:, num_prompt:] = True
    targets = np.where(loss_mask, full[:, 1:], PAD).astype(np.int32)
    return Batch(tokens=full[:, :-1].copy(), targets=targets, loss_mask=loss_mask)
