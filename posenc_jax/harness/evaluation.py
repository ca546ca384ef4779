"""Per-length evaluation of the models of every seed of a run (one compiled program per width).

Evaluation batches are the same for every scheme and seed: they depend only on the
task, the length and the config. With ``eval.bucket`` they are right-padded to a
power of two, so neighbouring lengths share one compiled program.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Iterator, Sequence

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh
from tqdm.auto import tqdm

from posenc_jax.harness.config import EvalConfig, TrainConfig
from posenc_jax.harness.sharding import put_batch
from posenc_jax.harness.train import (
    Randomization,
    RunState,
    forward,
    masked_metrics,
    on_the_calling_thread,
    pad_batch,
    randomization_for,
    runs_inline,
)
from posenc_jax.schemes import Scheme

__all__ = ["ChanceLevel", "bucket_width", "eval_batches", "eval_randomization", "evaluate"]


def bucket_width(seq_len: int) -> int:
    """The padded width of an evaluation bucket: the next power of two (at least 8)."""
    return max(8, 1 << (int(seq_len) - 1).bit_length())


def eval_batches(
    task, length: int, ecfg: EvalConfig, *, randomization: Randomization | None = None
) -> Iterator[dict[str, np.ndarray]]:
    """Deterministic evaluation batches at one task length (the same for every scheme and seed).

    With ``ecfg.bucket`` the batches are right-padded to `bucket_width`, so all
    lengths in a bucket share one compiled program. ``randomization``: each row's
    positions are a sorted random subset of [0, N), or each batch has its own distance
    tables (see `posenc_jax.harness.train.Randomization`), drawn from their own
    generator (the tokens do not change), as Ruoss et al. evaluate models trained
    that way; None: positions 0..L-1.
    """
    width = task.sequence_length(length)
    if ecfg.bucket:
        width = bucket_width(width)
    if hasattr(task, "eval_batches"):
        batches = task.eval_batches(length, ecfg.batch_size, ecfg.num_batches)
    else:
        rng = np.random.default_rng([length, 104729])
        batches = (task.sample_batch(rng, ecfg.batch_size, length) for _ in range(ecfg.num_batches))
    position_rng = np.random.default_rng([length, 104723])
    for batch in batches:
        if randomization is None:
            yield pad_batch(batch, width)
        else:
            yield randomization.apply(position_rng, batch, width)


def evaluate(
    task,
    graphdef: nnx.GraphDef,
    state: RunState,
    lengths: Sequence[int],
    ecfg: EvalConfig,
    *,
    graph_for_length: Callable[[int], nnx.GraphDef] | None = None,
    mesh: Mesh | None = None,
    progress: bool = True,
    desc: str = "eval",
    randomization: Randomization | None = None,
) -> dict[int, dict[str, np.ndarray]]:
    """Per-length metrics for every seed: {length: {metric: [S]}}.

    ``graph_for_length(length)`` returns the model graph to evaluate with at that
    length (zero-shot RoPE scaling swaps the scheme; the parameters are shared).
    ``randomization`` evaluates on random positions or distance tables (see
    `eval_batches`).
    """

    out = {}
    for length in tqdm(lengths, desc=desc, disable=not progress, leave=False):
        graph = graphdef if graph_for_length is None else graph_for_length(length)
        fn = _metrics_fn(graph)
        totals: dict[str, np.ndarray] = {}
        chance = ChanceLevel()
        batches = eval_batches(task, length, ecfg, randomization=randomization)
        for batch in batches:
            chance.add(batch["targets"], batch["loss_mask"])
            if mesh is not None:
                batch = put_batch(batch, mesh, stacked=False)
            m = jax.device_get(fn(state.params, state.rest, batch))
            for k, v in m.items():
                totals[k] = totals.get(k, 0.0) + np.asarray(v, np.float64)
        tokens = np.maximum(totals["tokens"], 1.0)
        loss = totals["loss_sum"] / tokens
        out[length] = {
            "loss": loss,
            "accuracy": totals["correct"] / tokens,
            "sequence_accuracy": totals["seq_correct"] / np.maximum(totals["sequences"], 1.0),
            "perplexity": np.exp(np.minimum(loss, 700.0)),
            **chance.levels(),
        }
    return out


@functools.lru_cache(maxsize=64)
def _metrics_fn(graph: nnx.GraphDef) -> Callable:
    """The jitted metrics of one batch for every seed; shared by every evaluation of an
    equal model graph in this process (seeds, learning rates, reruns)."""

    def run_one(params, rest, batch):
        model = nnx.merge(graph, params, rest)
        return masked_metrics(forward(model, batch), batch["targets"], batch["loss_mask"])

    every_seed = jax.vmap(run_one, in_axes=(0, 0, None))

    def run(params, rest, batch):
        # A large batch on one CPU device runs on the calling thread, so that its scratch
        # buffer comes from the kept main heap, as a large train step does.
        seeds, (rows, length) = jax.tree.leaves(params)[0].shape[0], batch["tokens"].shape[:2]
        platform, devices = jax.default_backend(), jax.device_count()
        if runs_inline(platform=platform, devices=devices, tokens=seeds * rows * length):
            on_the_calling_thread()
        return every_seed(params, rest, batch)

    return jax.jit(run)


class ChanceLevel:
    """The best input-blind guess on evaluation batches: what a model scores without reading.

    ``chance_accuracy``: the share of scored targets equal to the most common target of
    their column (one fixed answer per answer slot); ``chance_exact_match``: the share of
    rows whose scored targets equal the most common whole answer. Counted on the very
    batches the models are scored on. A decoder's end token sits in one slot at a fixed
    length, so it counts as guessed: parity (one bit, then the end token) gives about
    0.75 and 0.5; copying 10 of 20 symbols about 0.14 and 0.0.
    """

    def __init__(self) -> None:
        self.slots: Counter = Counter()  # (column, target) -> count
        self.answers: Counter = Counter()  # a row's masked targets -> count
        self.rows = 0

    def add(self, targets: np.ndarray, loss_mask: np.ndarray) -> None:
        """targets, loss_mask: [B, L] numpy arrays of one batch."""
        targets, loss_mask = np.asarray(targets, np.int64), np.asarray(loss_mask, bool)
        has = loss_mask.any(axis=1)
        rows, cols = np.nonzero(loss_mask[has])
        pairs, counts = np.unique(
            np.stack([cols, targets[has][rows, cols]], axis=1), axis=0, return_counts=True
        )
        self.slots.update(dict(zip(map(tuple, pairs.tolist()), counts.tolist(), strict=True)))
        masked = np.where(loss_mask[has], targets[has], -1)  # [B', L]: unscored slots as -1
        self.answers.update(row.tobytes() for row in masked)
        self.rows += int(has.sum())

    def levels(self) -> dict[str, float]:
        if not self.rows:
            return {}
        best: dict[int, int] = {}
        for (col, _), count in self.slots.items():
            best[col] = max(best.get(col, 0), count)
        return {
            "chance_accuracy": sum(best.values()) / sum(self.slots.values()),
            "chance_exact_match": max(self.answers.values()) / self.rows,
        }


def eval_randomization(
    tcfg: TrainConfig, ecfg: EvalConfig, scheme: Scheme, *, num_layers: int
) -> Randomization | None:
    """The randomization a model trained with ``tcfg`` is evaluated with: its training
    one (random positions or distance tables, see
    `posenc_jax.harness.train.randomization_for`) when ``eval.randomized_positions`` is
    on, else None (positions 0..L-1).

    References: Ruoss et al. 2023 (arXiv 2305.16843) evaluate their randomized models
    on randomized positions too.
    """
    if not ecfg.randomized_positions:
        return None
    return randomization_for(tcfg, scheme, num_layers=num_layers)
