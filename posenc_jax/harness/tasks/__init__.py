"""Task generators for the length-extrapolation experiments (pure numpy).

Every task samples fixed-shape batches at a given task length::

    from posenc_jax.harness.tasks import get_task
    task = get_task("reverse_string")
    batch = task.sample_batch(np.random.default_rng(0), 64, 40)
    batch.tokens.shape == (64, task.sequence_length(40))  # [B, L]

``length`` is the task's own length as in the papers (input string length for the Deletang et al.
suite, number of items for copy/sort, digits per operand for addition (of the longer one for
reversed_addition), terms for polynomial, variables for lego, output actions for scan,
functions for pcfg, instruction pairs for flip_flop, statements for counting, blanks for
selective_copy, key-value pairs for associative_recall, filler tokens for passkey, bytes or
tokens for lm, tokens for passkey_text);
``task.sequence_length(length)``
is the model sequence length L. ``task.causal`` says whether the task is decoder-only
(next-token prediction) or an encoder task (answers read at placeholder positions).
``task.train_lengths`` is the inclusive ``(min, max)`` training range and ``task.eval_lengths``
the evaluation lengths of the task's reference (e.g. copy 1..20 then 21..40); an experiment
config that leaves its lengths null uses them (`posenc_jax.harness.plan`). The vocabulary
layout is described in ``posenc_jax.harness.tasks.base``.

References: Deletang et al. 2023 (arXiv 2207.02098); Ruoss et al. 2023 (arXiv 2305.16843);
Kazemnejad et al. 2023 (arXiv 2305.19466).
"""

import inspect
import types
from collections.abc import Mapping
from typing import Any

from posenc_jax.harness.tasks.arithmetic import ReversedAddition
from posenc_jax.harness.tasks.base import (
    BOS,
    EOS,
    NUM_SPECIAL,
    PAD,
    PLACEHOLDER,
    SEP,
    SPECIAL_NAMES,
    AlgorithmicTask,
    Batch,
    DecoderTask,
    EncoderTask,
    Task,
)
from posenc_jax.harness.tasks.chomsky import (
    CHOMSKY_TASKS,
    BinaryAddition,
    BinaryMultiplication,
    BucketSort,
    ComputeSqrt,
    CycleNavigation,
    DuplicateString,
    EvenPairs,
    MissingDuplicateString,
    ModularArithmetic,
    ModularArithmeticBrackets,
    OddsFirst,
    ParityCheck,
    ReverseString,
    SolveEquation,
    StackManipulation,
)
from posenc_jax.harness.tasks.counting import Counting
from posenc_jax.harness.tasks.decoder import (
    DECODER_TASKS,
    Addition,
    AssociativeRecall,
    Copy,
    Parity,
    Passkey,
    Reverse,
    Sort,
    Summation,
)
from posenc_jax.harness.tasks.flipflop import FlipFlop
from posenc_jax.harness.tasks.grammar import GRAMMAR_TASKS, Pcfg, Scan
from posenc_jax.harness.tasks.lm import LanguageModelling
from posenc_jax.harness.tasks.reasoning import REASONING_TASKS, Lego, Polynomial
from posenc_jax.harness.tasks.selective_copy import SelectiveCopy
from posenc_jax.harness.tasks.text_passkey import TextPasskey

TASKS: Mapping[str, type[Task]] = types.MappingProxyType(
    {
        cls.name: cls
        for cls in (
            *CHOMSKY_TASKS,
            *DECODER_TASKS,
            *REASONING_TASKS,
            *GRAMMAR_TASKS,
            FlipFlop,
            Counting,
            SelectiveCopy,
            ReversedAddition,
            LanguageModelling,
            TextPasskey,
        )
    }
)
"""Registry: task name -> task class."""


def task_options(name: str) -> tuple[str, ...]:
    """Returns the option names ``get_task(name, ...)`` accepts.

    Example:
      >>> task_options("modular_arithmetic")
      ('modulus', 'operators')

    References: option defaults follow the papers cited in each task class.
    """
    cls = _task_class(name)
    parameters = inspect.signature(cls.__init__).parameters.values()
    return tuple(p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY)


def _task_class(name: str) -> type[Task]:
    if name not in TASKS:
        raise ValueError(f"unknown task name={name!r}; valid choices: {sorted(TASKS)}")
    return TASKS[name]


def get_task(name: str, **options: Any) -> Task:
    """Builds a task by registry name.

    Args:
      name: a key of ``TASKS``, e.g. ``"parity_check"`` or ``"copy"``.
      **options: the task class's keyword-only options, e.g. ``modulus=5``.

    Returns:
      The task instance.

    Raises:
      ValueError: unknown name, unknown option (both listing the valid choices), or an invalid
        option value (naming the option).

    Example:
      >>> task = get_task("modular_arithmetic", modulus=5)
      >>> task.vocab_size, task.sequence_length(40)
      (13, 40)

    References: Deletang et al. 2023 (arXiv 2207.02098), task list of Ruoss et al. 2023.
    """
    cls = _task_class(name)
    valid = task_options(name)
    for option in options:
        if option not in valid:
            raise ValueError(
                f"unknown option {option!r} for task {name!r}; valid options: {list(valid)}"
            )
    return cls(**options)


__all__ = [
    "BOS",
    "CHOMSKY_TASKS",
    "DECODER_TASKS",
    "EOS",
    "GRAMMAR_TASKS",
    "NUM_SPECIAL",
    "PAD",
    "PLACEHOLDER",
    "REASONING_TASKS",
    "SEP",
    "SPECIAL_NAMES",
    "TASKS",
    "Addition",
    "AlgorithmicTask",
    "AssociativeRecall",
    "Batch",
    "BinaryAddition",
    "BinaryMultiplication",
    "BucketSort",
    "ComputeSqrt",
    "Copy",
    "Counting",
    "CycleNavigation",
    "DecoderTask",
    "DuplicateString",
    "EncoderTask",
    "EvenPairs",
    "FlipFlop",
    "LanguageModelling",
    "Lego",
    "MissingDuplicateString",
    "ModularArithmetic",
    "ModularArithmeticBrackets",
    "OddsFirst",
    "Parity",
    "ParityCheck",
    "Passkey",
    "Pcfg",
    "Polynomial",
    "Reverse",
    "ReverseString",
    "ReversedAddition",
    "Scan",
    "SelectiveCopy",
    "SolveEquation",
    "Sort",
    "StackManipulation",
    "Summation",
    "Task",
    "TextPasskey",
    "get_task",
    "task_options",
]
