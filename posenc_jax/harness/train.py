"""Training several seeds together (one compiled program, vmapped) and per-length evaluation.

A run is one (scheme, task) pair: the model of every seed is created, trained
and evaluated inside ``jax.vmap`` over a leading seed axis, so S seeds cost one
compilation and run as one batched program.

Training batches of every length are right-padded to the sequence length of the
longest training length, with a padding mask, so training compiles once.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh
from tqdm.auto import tqdm

from posenc_jax.attention import AttentionConfig
from posenc_jax.harness.checkpoint import RunCheckpointer
from posenc_jax.harness.config import EvalConfig, ModelConfig, TrainConfig
from posenc_jax.harness.sharding import put_batch, put_state
from posenc_jax.nn import TransformerEncoder, TransformerLM
from posenc_jax.schemes import Scheme

__all__ = [
    "MAX_AUTO_MICRO_BATCHES",
    "MICRO_BATCH_SCORE_BYTES",
    "MICRO_BATCH_TOKENS",
    "Optimizer",
    "Randomization",
    "RunState",
    "build_model_fn",
    "inline_step_for",
    "make_optimizer",
    "micro_batches_for",
    "pad_batch",
    "randomization_for",
    "train",
]

PyTree = Any


@dataclasses.dataclass
class RunState:
    """Everything a run needs to continue: stacked over the seed axis."""

    step: int
    params: PyTree
    rest: PyTree
    opt_state: PyTree


def build_model_fn(task, scheme: Scheme, mcfg: ModelConfig, ecfg: EvalConfig) -> Callable:
    """Returns ``key -> model`` for a task (encoder or decoder-only by ``task.causal``).

    An encoder task's answers are tokens of its own vocabulary, so the encoder's
    head keeps its default of ``num_classes = task.vocab_size``.
    """
    if mcfg.pretrained:  # the checkpoint's architecture (posenc_jax.harness.pretrained)
        from posenc_jax.harness.pretrained import pretrained_model_fn

        return pretrained_model_fn(scheme, mcfg, ecfg)
    cls = TransformerLM if task.causal else TransformerEncoder
    dtype = jnp.bfloat16 if mcfg.dtype == "bfloat16" else None
    attention = AttentionConfig(
        blockwise_threshold=ecfg.blockwise_threshold, block_size=ecfg.block_size
    )

    def make(key: jax.Array) -> nnx.Module:
        pkey, dkey = jax.random.split(key)
        return cls(
            task.vocab_size,
            scheme=scheme,
            num_layers=mcfg.num_layers,
            d_model=mcfg.d_model,
            num_heads=mcfg.num_heads,
            num_kv_heads=mcfg.num_kv_heads,
            mlp_ratio=mcfg.mlp_ratio,
            norm=mcfg.norm,
            dropout_rate=mcfg.dropout,
            attention=attention,
            softmax_scale=mcfg.softmax_scale,
            layer_pattern=mcfg.layer_pattern,
            architecture=mcfg.architecture,
            dtype=dtype,
            rngs=nnx.Rngs(params=pkey, dropout=dkey),
        )

    return make


class Optimizer(NamedTuple):
    """An optax transformation (``init``, ``update``) and its ``shape``: (steps, warmup,
    grad_clip, weight_decay), everything its update program depends on. The learning
    rate is not part of it: the optimizer state carries it."""

    init: Callable
    update: Callable
    shape: tuple[int, int, float, float]


def make_optimizer(tcfg: TrainConfig) -> Optimizer:
    """AdamW with linear warmup and cosine decay (to 10%), global-norm clipping.

    ``optax.adamw(schedule)`` written as its parts, with the peak learning rate held in
    the optimizer state (``optax.inject_hyperparams``) and the schedule's shape (peak 1)
    in the program: ``-lr * s(t) * (adam(g) + weight_decay * p)``. Runs that differ only
    in their learning rate (a sweep) then share one compiled train step
    (`make_train_step` caches it per model graph and optimizer shape).
    """
    lr = tcfg.learning_rate
    if isinstance(lr, tuple | list):
        if len(lr) != 1:
            raise ValueError(
                f"train.learning_rate {list(lr)} is a sweep: one run trains at one rate "
                "(the plan makes a run per rate)"
            )
        (lr,) = lr
    return _optimizer(_optimizer_shape(tcfg), float(lr))


def _optimizer_shape(tcfg: TrainConfig) -> tuple[int, int, float, float]:
    """(steps, warmup, grad_clip, weight_decay): what the train step's program depends on."""
    warmup = min(tcfg.warmup_steps, max(tcfg.steps - 1, 0))
    return int(tcfg.steps), int(warmup), float(tcfg.grad_clip), float(tcfg.weight_decay)


def _optimizer(shape: tuple[int, int, float, float], lr: float) -> Optimizer:
    steps, warmup, grad_clip, weight_decay = shape
    unit = optax.warmup_cosine_decay_schedule(  # the schedule of peak 1 (0.1 at the end)
        init_value=0.0 if warmup else 1.0,
        peak_value=1.0,
        warmup_steps=warmup,
        decay_steps=max(steps, warmup + 1),
        end_value=0.1,
    )
    parts = [optax.clip_by_global_norm(grad_clip)] if grad_clip > 0 else []
    parts += [
        optax.scale_by_adam(),
        optax.add_decayed_weights(weight_decay),
        optax.scale_by_schedule(unit),
        optax.inject_hyperparams(optax.scale)(step_size=-lr),
    ]
    tx = optax.chain(*parts)
    return Optimizer(tx.init, tx.update, shape)


def pad_batch(batch, width: int, positions: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Right-pads a task batch ([B, L]) to ``width`` columns with a padding mask.

    Padding columns get position 0, so they never exceed a learned table or raise
    the current length seen by dynamic RoPE scaling; they are masked as keys and
    unscored as queries, so they change no result. ``positions`` (randomized ones)
    replace the batch's own; a packed batch keeps its per-document positions and adds
    ``segment_ids`` (-1 on padding columns).

    Returns a dict of numpy arrays: tokens, targets, loss_mask, padding_mask, positions
    (and segment_ids for a packed batch).
    """
    b, length = batch.tokens.shape
    if length > width:
        raise ValueError(f"batch length {length} exceeds the padded width {width}")
    out = {}
    for name, fill in (("tokens", 0), ("targets", 0), ("loss_mask", False)):
        arr = getattr(batch, name)
        padded = np.full((b, width), fill, dtype=arr.dtype)
        padded[:, :length] = arr
        out[name] = padded
    out["padding_mask"] = np.zeros((b, width), bool)
    out["padding_mask"][:, :length] = True
    if positions is None:
        positions = batch.positions
    if positions is None:
        positions = np.broadcast_to(np.arange(length, dtype=np.int32), (b, length))
    pos = np.zeros((b, width), np.int32)
    pos[:, :length] = positions
    out["positions"] = pos
    if batch.train_mask is not None:
        out["train_mask"] = np.zeros((b, width), bool)
        out["train_mask"][:, :length] = batch.train_mask
    if batch.segment_ids is not None:
        out["segment_ids"] = np.full((b, width), -1, np.int32)
        out["segment_ids"][:, :length] = batch.segment_ids
    return out


def randomized_positions(rng: np.random.Generator, batch: int, length: int, max_position: int):
    """Sorted random subsets of [0, max_position) of size ``length``, one per row.

    References: Ruoss et al. 2023, "Randomized Positional Encodings Boost Length
    Generalization of Transformers" (arXiv 2305.16843).
    """
    if length > max_position:
        raise ValueError(
            f"train.randomized_positions ({max_position}) must be >= the sequence length {length}"
        )
    keys = rng.random((batch, max_position))
    idx = np.argpartition(keys, length - 1, axis=1)[:, :length]
    return np.sort(idx, axis=1).astype(np.int32)


def distance_tables(
    rng: np.random.Generator,
    *,
    layers: int,
    length: int,
    width: int,
    max_distance: int,
    both_sides: bool = False,
) -> np.ndarray:
    """One distance table per layer, ``[layers, 2 width - 1]`` int32 (Ruoss et al.).

    Per layer: ``length - 1`` distinct distances from [1, max_distance), sorted (a second
    draw for the left side with ``both_sides``), laid out as
    `posenc_jax.random_distances.toeplitz_table` does; offsets beyond ``length - 1``
    (padding columns) continue one by one past the largest distance.

    References: Ruoss et al. 2023 (arXiv 2305.16843); reference code
    google-deepmind/randomized_positional_encodings, models/positional_encodings.py,
    ``compute_noisy_alibi_encodings_biases`` (one draw per call and per layer, shared
    by the batch).
    """
    if length > max_distance:
        raise ValueError(
            f"train.randomized_positions ({max_distance}) must be >= the sequence length {length}"
        )
    extra = np.arange(1, width - length + 1)  # [width - length]

    def side() -> np.ndarray:  # [width - 1]
        d = np.sort(rng.choice(max_distance - 1, size=length - 1, replace=False) + 1)
        top = d[-1] if d.size else 0
        return np.concatenate([d, top + extra])

    out = np.empty((layers, 2 * width - 1), np.int32)
    for i in range(layers):
        right = side()
        left = side() if both_sides else right
        out[i] = np.concatenate([-left[::-1], [0], right])
    return out


@dataclasses.dataclass(frozen=True)
class Randomization:
    """How a run randomizes positions (Ruoss et al. 2023), resolved for its scheme.

    ``max_position`` N: positions or distances come from [0, N). ``distance_layers`` > 0:
    Toeplitz distance tables for that many layers (the batch key "distances",
    ``[B, layers, W]``, the same table in every row) and ordinary positions; 0: sorted
    random positions per row.
    """

    max_position: int
    distance_layers: int = 0
    both_sides: bool = False

    def apply(self, rng: np.random.Generator, batch, width: int) -> dict[str, np.ndarray]:
        """The padded batch (see `pad_batch`) of a task batch, randomized."""
        b, length = batch.tokens.shape
        if not self.distance_layers:
            positions = randomized_positions(rng, b, length, self.max_position)
            return pad_batch(batch, width, positions)
        out = pad_batch(batch, width)
        tables = distance_tables(
            rng,
            layers=self.distance_layers,
            length=length,
            width=width,
            max_distance=self.max_position,
            both_sides=self.both_sides,
        )
        out["distances"] = np.broadcast_to(tables, (b, *tables.shape)).copy()
        return out


def randomization_for(
    tcfg: TrainConfig, scheme: Scheme, *, num_layers: int
) -> Randomization | None:
    """The run's `Randomization` (None without ``train.randomized_positions``).

    Raises:
      ValueError: ``train.randomization: distances`` for a scheme that cannot read a
        distance table.
    """
    if not tcfg.randomized_positions:
        return None
    mode = tcfg.randomization
    if mode == "auto":
        mode = "distances" if scheme.distances_by_default else "positions"
    if mode == "distances" and not scheme.accepts_distances:
        raise ValueError(
            f"train.randomization: distances needs a scheme whose bias is a function of "
            f"k - q alone (alibi, t5, kerple, shaw, deberta, xl); {scheme.name} is not one: use "
            "positions (or auto)"
        )
    layers = num_layers if mode == "distances" else 0
    return Randomization(tcfg.randomized_positions, layers, tcfg.randomize_both_sides)


def masked_metrics(logits, targets, loss_mask):
    """Sums over positions: loss, token hits, scored tokens, sequence hits, sequences."""
    mask = loss_mask.astype(jnp.float32)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    hits = (jnp.argmax(logits, -1) == targets) & loss_mask
    has_target = jnp.any(loss_mask, axis=-1)
    seq_ok = jnp.all(hits | ~loss_mask, axis=-1) & has_target
    return {
        "loss_sum": jnp.sum(ce * mask),
        "correct": jnp.sum(hits.astype(jnp.float32)),
        "tokens": jnp.sum(mask),
        "seq_correct": jnp.sum(seq_ok.astype(jnp.float32)),
        "sequences": jnp.sum(has_target.astype(jnp.float32)),
    }


def forward(model, batch, deterministic=True):
    rngs = None
    if not deterministic and "noise" in batch:  # the step's own training randomness
        rngs = nnx.Rngs(dropout=jax.random.key(batch["noise"][0]))
    return model(
        batch["tokens"],
        positions=batch["positions"],
        padding_mask=batch["padding_mask"],
        segment_ids=batch.get("segment_ids"),  # packed rows only
        deterministic=deterministic,
        rngs=rngs,
        relative_distances=batch.get("distances"),  # Toeplitz randomization only
    )


def init_state(make_model, seeds: Sequence[int], tx) -> tuple[nnx.GraphDef, RunState]:
    """Creates the models of every seed (stacked) and their optimizer states."""
    graphdef = graph_of(make_model)

    def init_one(key):
        _, params, rest = nnx.split(make_model(key), nnx.Param, ...)
        return params, rest

    keys = jnp.stack([jax.random.key(int(s)) for s in seeds])
    # Eager, not jitted: each operation is compiled once per shape and reused by every
    # model after the first, where a jitted init compiled a program per model (the
    # quick job's 14 runs: 5.9 s of inits against 23.9 s). The values are the jitted
    # ones to float32 rounding (XLA fuses the jitted init's arithmetic).
    params, rest = jax.vmap(init_one)(keys)
    opt_state = jax.vmap(tx.init)(params)
    return graphdef, RunState(step=0, params=params, rest=rest, opt_state=opt_state)


def make_train_step(graphdef, tx, *, micro_batches: int = 1, inline: bool = False):
    """One optimizer step for every seed: vmapped over the leading seed axis, jitted.

    For an `Optimizer` from `make_optimizer`, the jitted step is shared by every call
    with an equal model graph, optimizer shape (steps, warmup, clipping, weight
    decay) and ``micro_batches``, whatever the learning rate, which the optimizer
    state carries: the runs of a learning-rate sweep, and reruns in one process,
    compile it once. Any other optax transformation gets a step of its own.

    ``micro_batches`` M > 1: the rows are split into M equal parts, each part's loss
    sum differentiated on its own and the gradients added before one division by
    the scored tokens, so the update is the unsplit one (to float rounding); the
    parts are independent computations that XLA:CPU runs side by side (see
    `micro_batches_for`). The model must draw no training randomness.

    ``inline``: the step carries an empty host callback, which has XLA:CPU run it on
    the calling thread even under JAX's asynchronous dispatch, so that its scratch
    buffer comes from the main thread's heap (see `inline_step_for`). For a single
    CPU device only.
    """
    if not isinstance(micro_batches, int) or micro_batches < 1:
        raise ValueError(f"micro_batches must be an int >= 1; got {micro_batches!r}")
    if isinstance(tx, Optimizer):
        return _shared_train_step(graphdef, tx.shape, micro_batches, bool(inline))
    return _train_step(graphdef, tx, micro_batches, bool(inline))


@functools.lru_cache(maxsize=32)
def _shared_train_step(graphdef, shape, micro_batches=1, inline=False):
    # the rate comes from the state
    return _train_step(graphdef, _optimizer(shape, 1.0), micro_batches, inline)


MICRO_BATCH_TOKENS = 4096
"""``train.micro_batches: auto`` splits a CPU step of at least this many tokens (all seeds)."""

MICRO_BATCH_SCORE_BYTES = 16 * 2**20
"""``auto`` splits a CPU step until a part's attention scores (float32, every seed and
head) take at most this many bytes, in at most `MAX_AUTO_MICRO_BATCHES` parts."""

MAX_AUTO_MICRO_BATCHES = 8


def _auto_micro_batches(rows: int, row_score_bytes: int) -> int:
    """The fewest parts (even, dividing ``rows``, at most `MAX_AUTO_MICRO_BATCHES`) whose
    scores fit `MICRO_BATCH_SCORE_BYTES`; the most such parts if none fits; 1 if no
    even count divides (two cores take the parts two at a time)."""
    counts = [m for m in range(2, min(rows, MAX_AUTO_MICRO_BATCHES) + 1, 2) if rows % m == 0]
    for m in counts:
        if rows // m * row_score_bytes <= MICRO_BATCH_SCORE_BYTES:
            return m
    return counts[-1] if counts else 1


def micro_batches_for(
    tcfg: TrainConfig,
    mcfg: ModelConfig,
    scheme: Scheme,
    *,
    platform: str,
    seeds: int,
    length: int,
    data_shards: int = 1,
) -> int:
    """The run's ``train.micro_batches``, "auto" resolved.

    On a CPU, "auto" splits a step of at least `MICRO_BATCH_TOKENS` tokens (``seeds``
    x rows x ``length``, the tokens of a row) whose rows are not sharded over a data
    axis (slicing them would move them between devices) and whose model draws no
    training randomness (``model.dropout``, a scheme that reads the tokens): into the
    fewest parts, an even number, whose attention scores ([seeds, rows / M, heads,
    length, length] float32) fit `MICRO_BATCH_SCORE_BYTES`, at most
    `MAX_AUTO_MICRO_BATCHES`, each a divisor of the rows. Elsewhere it is 1. On two
    CPU cores two parts' operations run side by side: the train step of a 2-layer,
    d=64 LM at batch 32 and length 128 is 0.90x to 0.93x as long in 2 parts as in
    one (run inline, `inline_step_for`); at length 512, 2, 4 or 8 parts differ by
    less than the noise between runs (8%). A smaller step gains nothing and
    compiles the program once per part (the quick job: 1664 tokens a step); on an
    accelerator one larger operation is better (docs/performance.md).

    Raises:
      ValueError: an explicit count > 1 with training randomness, or one that does
        not divide the (per-shard) batch.
    """
    value = tcfg.micro_batches
    random = mcfg.dropout > 0 or scheme.reads_tokens
    rows = tcfg.batch_size // max(data_shards, 1)
    if value == "auto":
        split = (
            platform == "cpu"
            and seeds * tcfg.batch_size * length >= MICRO_BATCH_TOKENS
            and data_shards == 1
            and not random
        )
        row_bytes = 4 * seeds * mcfg.num_heads * length * length
        return _auto_micro_batches(rows, row_bytes) if split else 1
    if value > 1 and random:
        raise ValueError(
            f"train.micro_batches ({value}) > 1 needs a model that draws no training "
            f"randomness; this one does (model.dropout {mcfg.dropout}, scheme "
            f"{scheme.name} reads the tokens: {scheme.reads_tokens}): use 1 or auto"
        )
    if rows % value:
        raise ValueError(f"train.micro_batches ({value}) must divide the rows per device ({rows})")
    return value


def _on_the_calling_thread() -> None:
    """The empty host callback of an inline train step (`make_train_step`)."""


def inline_step_for(
    tcfg: TrainConfig, *, platform: str, seeds: int, length: int, devices: int = 1
) -> bool:
    """Whether `train` runs its step inline (`make_train_step`'s ``inline``).

    On one CPU device, for a step of at least `MICRO_BATCH_TOKENS` tokens (``seeds``
    x rows x ``length``). JAX's asynchronous CPU dispatch runs a program on a thread
    of XLA's, whose glibc heap holds no block over 64 MiB: a larger scratch buffer
    is mapped afresh, and faulted in page by page, on every step, whatever
    `posenc_jax.harness.runtime.keep_freed_memory` sets. Run on the calling thread,
    the step's scratch comes from the main heap, which keeps it. The train step of a
    2-layer, d=64 LM at batch 32 and length 128 (a 73 MiB scratch buffer): 19,650
    page faults and 58 ms a step, inline 5 and 43 ms (2 cores). A small step keeps
    the asynchronous dispatch, which prepares the next batch while a step runs.
    """
    return runs_inline(platform=platform, devices=devices, tokens=seeds * tcfg.batch_size * length)


def runs_inline(*, platform: str, devices: int, tokens: int) -> bool:
    """A program over ``tokens`` tokens runs on the calling thread (`inline_step_for`)."""
    return platform == "cpu" and devices == 1 and tokens >= MICRO_BATCH_TOKENS


def on_the_calling_thread() -> None:
    """Has XLA:CPU run the program being traced on the calling thread (`inline_step_for`):
    an empty host callback."""
    jax.debug.callback(_on_the_calling_thread)


def _train_step(graphdef, tx, micro_batches=1, inline=False):

    def loss_sums(p, rest, part):
        """The loss summed over the scored tokens of ``part``, its metrics and new state."""
        model = nnx.merge(graphdef, p, rest)
        logits = forward(model, part, deterministic=False)
        # The training loss covers train_mask where a task sets one (padding slots too).
        m = masked_metrics(logits, part["targets"], part.get("train_mask", part["loss_mask"]))
        return m["loss_sum"], (m, nnx.state(model, nnx.Not(nnx.Param)))

    def gradients(params, rest, batch):
        """Summed gradients of the loss sums, summed metrics, the model's new state."""
        rows = batch["tokens"].shape[0]
        size = rows // micro_batches
        grads = metrics = None
        for i in range(micro_batches):  # unrolled: independent computations
            part = {key: value[i * size : (i + 1) * size] for key, value in batch.items()}
            g, (m, new_rest) = jax.grad(loss_sums, has_aux=True)(params, rest, part)
            grads = g if grads is None else jax.tree.map(jnp.add, grads, g)
            metrics = m if metrics is None else jax.tree.map(jnp.add, metrics, m)
        return grads, metrics, new_rest

    def step(params, rest, opt_state, batch):
        grads, metrics, new_rest = gradients(params, rest, batch)
        tokens = jnp.maximum(metrics["tokens"], 1.0)
        loss = metrics["loss_sum"] / tokens
        grads = jax.tree.map(lambda g: g / tokens, grads)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        metrics = dict(metrics, loss=loss, finite=jnp.isfinite(loss))
        return params, new_rest, opt_state, metrics

    def seeds_step(params, rest, opt_state, batch):
        if inline:
            on_the_calling_thread()
        return jax.vmap(step)(params, rest, opt_state, batch)

    return jax.jit(seeds_step, donate_argnums=(0, 1, 2))


def training_batches(
    task,
    seeds: Sequence[int],
    tcfg: TrainConfig,
    *,
    start_step: int = 0,
    randomization: Randomization | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """Deterministic stream of stacked batches [S, B, L_max], resumable at any step.

    A step's task length is uniform in ``[min_length, length]``, or drawn with the task's
    ``length_weights(lengths)`` where it has them (addition: every pair of widths alike).

    Each step's data depend only on (seed, step), so a resumed run sees exactly
    the batches an uninterrupted run would. ``randomization``: see `randomization_for`;
    default: random positions from ``train.randomized_positions`` when it is set.
    """
    if tcfg.length is None:
        raise ValueError(
            "train.length must be set to train outside an experiment config (the plan "
            "fills in the task's reference range)"
        )
    if randomization is None and tcfg.randomized_positions:
        randomization = Randomization(tcfg.randomized_positions)
    low = 1 if tcfg.min_length is None else tcfg.min_length
    width = task.sequence_length(tcfg.length)
    lengths = np.arange(low, tcfg.length + 1)
    weights = task.length_weights(lengths)  # None: uniform
    for step in range(start_step, tcfg.steps):
        length_rng = np.random.default_rng([step, 7919])
        if weights is None:
            length = int(length_rng.integers(low, tcfg.length + 1))
        else:
            length = int(length_rng.choice(lengths, p=weights))
        per_seed = []
        for seed in seeds:
            rng = np.random.default_rng([int(seed), step])
            batch = task.sample_batch(rng, tcfg.batch_size, length)
            if randomization is not None:
                padded = randomization.apply(rng, batch, width)
            else:
                padded = pad_batch(batch, width)
            # One draw per (seed, step), in every row (the batch is sharded by rows): the
            # key of the step's training randomness (Abacus's offset), resumable as the data.
            noise = np.random.default_rng([int(seed), step, 104729]).integers(2**31)
            padded["noise"] = np.full((tcfg.batch_size,), noise, np.int32)
            per_seed.append(padded)
        yield {k: np.stack([b[k] for b in per_seed]) for k in per_seed[0]}


def train(
    task,
    scheme: Scheme,
    seeds: Sequence[int],
    mcfg: ModelConfig,
    tcfg: TrainConfig,
    ecfg: EvalConfig,
    *,
    checkpointer: RunCheckpointer | None = None,
    mesh: Mesh | None = None,
    progress: bool = True,
    desc: str = "",
    init_from: RunState | None = None,
) -> tuple[nnx.GraphDef, RunState, dict[str, Any]]:
    """Trains every seed of one (scheme, task) run, resuming from a checkpoint if any.

    ``init_from``: start from these (stacked) parameters instead of a fresh model,
    with a fresh optimizer state: the fine-tune stage. The scheme may differ from
    the one they were trained with (a RoPE scaling), as long as the parameters match.

    The loss of every seed is checked every ``log_every`` steps and at the end; a
    seed whose loss is NaN or infinite is recorded as diverged at that step (the
    other seeds, independent under vmap, go on; training stops when all diverged).

    Returns:
      (graphdef, state, info): info["diverged"] maps seed -> step for diverged
      seeds, info["seconds"] is the training wall time of this call,
      info["resumed_from"] the checkpoint step it started from (or None).
      With ``mesh``, the state is sharded over its "seed" axis and the batches over
      ("seed", "data"); a checkpoint restores onto whatever mesh is given.
    """
    tx = make_optimizer(tcfg)
    graphdef, state = starting_state(
        build_model_fn(task, scheme, mcfg, ecfg), seeds, tx, init_from=init_from, mesh=mesh
    )
    divergence = Divergence(len(seeds))
    info: dict[str, Any] = {"resumed_from": None}
    if checkpointer is not None:
        restored = _restore(checkpointer, state, divergence)
        if restored is not None:
            state, divergence = restored
            info["resumed_from"] = state.step
    data_shards = 1 if mesh is None else mesh.shape["data"]
    step_shape = dict(
        platform=jax.devices()[0].platform,
        seeds=len(seeds),
        length=task.sequence_length(tcfg.length),
    )
    micro = micro_batches_for(tcfg, mcfg, scheme, **step_shape, data_shards=data_shards)
    inline = inline_step_for(tcfg, **step_shape, devices=1 if mesh is None else mesh.size)
    step_fn = make_train_step(graphdef, tx, micro_batches=micro, inline=inline)
    bar = tqdm(
        total=tcfg.steps,
        initial=state.step,
        desc=desc or "train",
        disable=not progress,
        leave=False,
        dynamic_ncols=True,
    )
    t0 = time.perf_counter()
    randomization = randomization_for(tcfg, scheme, num_layers=mcfg.num_layers)
    batches = training_batches(
        task, seeds, tcfg, start_step=state.step, randomization=randomization
    )
    for batch in batches:
        if mesh is not None:
            batch = put_batch(batch, mesh, stacked=True)
        params, rest, opt_state, metrics = step_fn(state.params, state.rest, state.opt_state, batch)
        state = RunState(step=state.step + 1, params=params, rest=rest, opt_state=opt_state)
        bar.update(1)
        if (tcfg.log_every and state.step % tcfg.log_every == 0) or state.step == tcfg.steps:
            summary = divergence.check(state.step, jax.device_get(metrics))
            if summary is None:
                break  # every seed diverged
            bar.set_postfix(summary)
        if checkpointer is not None and _checkpoint_due(state.step, tcfg):
            checkpointer.save(state.step, _checkpoint_tree(state, divergence.steps))
    bar.close()
    info["seconds"] = time.perf_counter() - t0
    info["diverged"] = divergence.by_seed(seeds)
    return graphdef, state, info


def starting_state(
    make_model: Callable,
    seeds: Sequence[int],
    tx: optax.GradientTransformation,
    *,
    init_from: RunState | None = None,
    mesh: Mesh | None = None,
) -> tuple[nnx.GraphDef, RunState]:
    """Fresh models of every seed, or copies of ``init_from``'s parameters with a fresh
    optimizer state (the fine-tune stage); sharded over ``mesh`` when given."""
    graphdef, state = init_state(make_model, seeds, tx)
    if init_from is not None:
        # Copies, since the train step donates its inputs and the caller keeps init_from.
        params = jax.tree.map(jnp.copy, init_from.params)
        rest = jax.tree.map(jnp.copy, init_from.rest)
        state = RunState(0, params, rest, jax.vmap(tx.init)(params))
    if mesh is not None:
        state = RunState(
            0, *(put_state(x, mesh) for x in (state.params, state.rest, state.opt_state))
        )
    return graphdef, state


class Divergence:
    """Which seeds diverged, and at which step: a NaN or infinite loss at a check.

    Seeds are independent under vmap, so the others go on; ``check`` returns None
    once every seed has diverged (training then stops).
    """

    def __init__(self, num_seeds: int, steps: np.ndarray | None = None):
        self.steps = np.full(num_seeds, -1, np.int64) if steps is None else np.asarray(steps)

    def check(self, step: int, metrics: dict[str, np.ndarray]) -> dict[str, str] | None:
        """Records seeds whose loss is not finite; returns the live seeds' mean loss and
        accuracy for the progress bar, or None when no seed is left."""
        newly = (~np.asarray(metrics["finite"])) & (self.steps < 0)
        self.steps[newly] = step
        ok = self.steps < 0
        if not ok.any():
            return None
        acc = metrics["correct"][ok] / np.maximum(metrics["tokens"][ok], 1)
        return {"loss": f"{float(np.mean(metrics['loss'][ok])):.3f}", "acc": f"{np.mean(acc):.3f}"}

    def by_seed(self, seeds: Sequence[int]) -> dict[int, int]:
        """{seed: step} for the diverged seeds."""
        return {int(s): int(d) for s, d in zip(seeds, self.steps, strict=True) if d >= 0}


def _checkpoint_due(step: int, tcfg: TrainConfig) -> bool:
    return bool(tcfg.checkpoint_every) and step % tcfg.checkpoint_every == 0 and step < tcfg.steps


def _restore(
    checkpointer: RunCheckpointer, state: RunState, divergence: Divergence
) -> tuple[RunState, Divergence] | None:
    """The latest checkpoint restored onto ``state``'s shapes and shardings, or None."""
    restored = checkpointer.restore(_checkpoint_tree(state, divergence.steps))
    if restored is None:
        return None
    step, tree = restored
    state = RunState(step, tree["params"], tree["rest"], tree["opt_state"])
    return state, Divergence(len(divergence.steps), np.asarray(tree["diverged"]))


def _checkpoint_tree(state: RunState, diverged: np.ndarray) -> dict[str, Any]:
    return {
        "params": state.params,
        "rest": state.rest,
        "opt_state": state.opt_state,
        "diverged": np.asarray(diverged),
    }


def graph_of(make_model: Callable) -> nnx.GraphDef:
    """The static graph of a model, without allocating its parameters."""
    return nnx.graphdef(nnx.eval_shape(lambda: make_model(jax.random.key(0))))


def seconds_to_str(seconds: float) -> str:
    """'1m05s' style duration."""
    m, s = divmod(math.ceil(seconds), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"
