"""The experiment plan: a config resolved into its grid of runs, every check done first.

`plan(cfg)` builds every scheme and task of the config, checks every length each
run will meet (training, evaluation, fine-tuning, each context extension the
scheme offers), the position limits and the device mesh, and returns the runs. A
bad config therefore trains nothing and writes nothing.

Lengths a config leaves null take each task's reference ranges: the training range
from ``task.train_lengths`` when neither ``train.length`` nor ``train.min_length`` is
set (``length`` alone trains from 1, as before), and ``eval.lengths`` from
``task.eval_lengths`` (e.g. Kazemnejad et al. 2023: copy 1..20 then 21..40, parity
1..8 then 9..16); a task's own ``train:`` / ``eval_lengths`` come first, then the
global sections, then the reference. A list ``train.learning_rate`` is a sweep axis:
one run per rate, as Deletang et al. 2023 (App. A.4) sweep 3 rates x 10 seeds.
`describe_plan` says all of this in words.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax

from posenc_jax.harness.config import (
    ConfigError,
    ExperimentConfig,
    TrainConfig,
    build_section,
    expand_lengths,
    learning_rates,
    validate,
)
from posenc_jax.harness.pretrained import (
    PRETRAINED_TASKS,
    pretrained_context,
    pretrained_settings,
)
from posenc_jax.harness.results import lengths_text
from posenc_jax.harness.sharding import choose_mesh_shape
from posenc_jax.harness.tasks import get_task
from posenc_jax.harness.train import micro_batches_for, randomization_for
from posenc_jax.rope.rectified import RECTIFIED_METHODS
from posenc_jax.schemes import Scheme, make_scheme

__all__ = ["Run", "context_extensions", "describe_plan", "mesh_shape", "plan"]

TASK_RUN_KEYS = ("train", "eval_lengths", "label")


@dataclasses.dataclass(frozen=True)
class Run:
    """One (scheme, task, learning rate) cell of the grid, with everything resolved.

    ``train`` holds the run's own training lengths and its one learning rate;
    ``lengths_from`` says where the training and the evaluation lengths came from
    (``"task reference"``, the config's ``"train"`` / ``"eval.lengths"`` or the task's
    own ``"tasks[i].train"`` / ``"tasks[i].eval_lengths"``); ``sweep_size`` is the number
    of learning rates its (scheme, task) pair is trained at.
    """

    scheme_label: str
    scheme: Scheme
    task_label: str
    task: Any
    train: Any  # TrainConfig with the task's training lengths and one learning rate
    eval_lengths: tuple[int, ...]
    lengths_from: tuple[str, str] = ("train", "eval.lengths")
    sweep_size: int = 1

    @property
    def learning_rate(self) -> float:
        return self.train.learning_rate

    @property
    def key(self) -> tuple[str, str, float]:
        """What tells runs apart in results.jsonl: (scheme, task, learning rate)."""
        return (self.scheme_label, self.task_label, self.learning_rate)

    @property
    def label(self) -> str:
        """``scheme/task``, with ``lr=...`` when its pair sweeps learning rates."""
        lr = f" lr={self.learning_rate:g}" if self.sweep_size > 1 else ""
        return f"{self.scheme_label}/{self.task_label}{lr}"


def _label(spec: Any, name: str, all_specs: list[Any]) -> str:
    if isinstance(spec, Mapping) and "label" in spec:
        return str(spec["label"])
    same = [s for s in all_specs if (s if isinstance(s, str) else s.get("name")) == name]
    if len(same) <= 1 or isinstance(spec, str):
        return name
    extras = ",".join(f"{k}={v}" for k, v in spec.items() if k not in ("name", "label"))
    return f"{name}({extras})" if extras else name


def _head_sizes(cfg: ExperimentConfig) -> dict[str, int]:
    """num_heads, head_dim and d_model of the config's model (the pretrained one's when
    ``model.pretrained`` is set)."""
    if cfg.model.pretrained:
        s = pretrained_settings(cfg.model.pretrained)
        arch = s["architecture"]
        head_dim = arch.head_dim or s["d_model"] // s["num_heads"]
        return dict(num_heads=s["num_heads"], head_dim=head_dim, d_model=s["d_model"])
    m = cfg.model
    head_dim = m.d_model // m.num_heads
    if m.architecture is not None and m.architecture.head_dim is not None:
        head_dim = m.architecture.head_dim
    return dict(num_heads=m.num_heads, head_dim=head_dim, d_model=m.d_model)


def _resolve_schemes(cfg: ExperimentConfig) -> list[tuple[str, Scheme]]:
    if cfg.model.pretrained:  # the checkpoint's own scheme, labelled by its folder
        settings = pretrained_settings(cfg.model.pretrained)
        return [(Path(cfg.model.pretrained).name, make_scheme(settings["scheme"]))]
    out = []
    specs = list(cfg.schemes)
    for i, spec in enumerate(specs):
        body = (
            {k: v for k, v in spec.items() if k != "label"} if isinstance(spec, Mapping) else spec
        )
        try:
            scheme = make_scheme(body)
            scheme.configure(causal=True).validate(**_head_sizes(cfg))
        except (ValueError, TypeError) as e:
            raise ConfigError(f"schemes[{i}]: {e}") from None
        out.append((_label(spec, scheme.name, specs), scheme))
    labels = [label for label, _ in out]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"schemes: two entries share a label {labels}; add 'label: ...'")
    return out


def _task_train_config(cfg: ExperimentConfig, spec: Mapping, i: int, task: Any):
    """The global train section updated with the task's own ``train:`` mapping; returns
    (config, where its training lengths came from).

    The training range is the task's reference (``task.train_lengths``) when neither the
    task nor the global section sets ``length`` or ``min_length``. When only ``length`` is
    set, ``min_length`` is 1; when only ``min_length`` is, ``length`` is the reference
    maximum.
    """
    over = spec.get("train") or {}
    if not isinstance(over, Mapping):
        raise ConfigError(f"tasks[{i}].train must be a mapping of train keys; got {over!r}")
    merged = {**dataclasses.asdict(cfg.train), **over}
    keys = ("min_length", "length")
    sources = []
    for key in keys:
        if over.get(key) is not None:
            sources.append(f"tasks[{i}].train")
        elif merged[key] is not None:
            sources.append("train")
    if not sources:
        sources.append("task reference")
        merged["min_length"], merged["length"] = (int(n) for n in task.train_lengths)
    elif merged["min_length"] is None:
        merged["min_length"] = 1
    elif merged["length"] is None:
        merged["length"] = int(task.train_lengths[1])
        sources.append("task reference")
    source = " + ".join(dict.fromkeys(sources))
    try:
        tcfg = build_section(TrainConfig, merged, f"tasks[{i}].train")
        validate(dataclasses.replace(cfg, train=tcfg))
    except ConfigError as e:
        note = ""
        if "task reference" in source:
            lo, hi = task.train_lengths
            note = f" (the task's reference training range is {lo}..{hi})"
        raise ConfigError(str(e).replace("train.", f"tasks[{i}].train.") + note) from None
    return tcfg, source


def _eval_lengths(cfg: ExperimentConfig, spec: Mapping, i: int, task: Any):
    """Evaluation lengths: the task's ``eval_lengths``, else ``eval.lengths``, else the task's
    reference test lengths (``task.eval_lengths``); returns (lengths, where they came from)."""
    if spec.get("eval_lengths") is not None:
        key = f"tasks[{i}].eval_lengths"
        return expand_lengths(spec["eval_lengths"], key), key
    if cfg.eval.lengths is not None:
        return tuple(cfg.eval.lengths), "eval.lengths"
    return tuple(int(n) for n in task.eval_lengths), "task reference"


def _resolve_tasks(cfg: ExperimentConfig) -> list[tuple[str, Any, TrainConfig, tuple, tuple]]:
    out = []
    specs = list(cfg.tasks)
    for i, spec in enumerate(specs):
        if isinstance(spec, str):
            spec = {"name": spec}
        if not isinstance(spec, Mapping) or "name" not in spec:
            raise ConfigError(
                f"tasks[{i}]: a task is a name or a mapping with 'name'; got {spec!r}"
            )
        options = {k: v for k, v in spec.items() if k not in ("name", *TASK_RUN_KEYS)}
        if cfg.model.pretrained:
            options = _pretrained_task_options(cfg, spec["name"], options, i)
        try:
            task = get_task(spec["name"], **options)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"tasks[{i}]: {e}") from None
        tcfg, train_from = _task_train_config(cfg, spec, i, task)
        lengths, eval_from = _eval_lengths(cfg, spec, i, task)
        if cfg.model.pretrained:
            tcfg, train_from = _pretrained_train_config(cfg, task, tcfg, lengths, i)
        label = str(spec.get("label", spec["name"]))
        try:
            for n in (tcfg.min_length, tcfg.length, *lengths):
                task.sequence_length(n)
        except ValueError as e:
            raise ConfigError(f"tasks[{i}] ({label}): {e}") from None
        lengths = tuple(int(n) for n in lengths)
        _check_eval_windows(cfg, task, lengths, f"tasks[{i}] ({label})")
        out.append((label, task, tcfg, lengths, (train_from, eval_from)))
    labels = [x[0] for x in out]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"tasks: two entries share a label {labels}; add 'label: ...'")
    return out


def _check_eval_windows(cfg: ExperimentConfig, task: Any, lengths: tuple, where: str) -> None:
    """A corpus task (lm) holds a full evaluation batch at every length, checked before
    anything runs rather than when that length is reached."""
    if not hasattr(task, "num_eval_windows"):
        return
    for length in lengths:
        windows = task.num_eval_windows(length)
        if windows < cfg.eval.batch_size:
            raise ConfigError(
                f"{where}: the validation split holds {windows} windows of length {length}, "
                f"fewer than eval.batch_size={cfg.eval.batch_size}; read more text (task key "
                "max_bytes), or use shorter lengths or a smaller batch"
            )


def _pretrained_task_options(cfg: ExperimentConfig, name: str, options: dict, i: int) -> dict:
    """A pretrained model reads text with its own tokenizer (the directory's
    tokenizer.json unless the task names one)."""
    if name not in PRETRAINED_TASKS:
        raise ConfigError(
            f"tasks[{i}]: model.pretrained evaluates on its own tokens; the tasks for it are "
            f"{list(PRETRAINED_TASKS)}, not {name!r}"
        )
    return {"tokenizer": cfg.model.pretrained, **options}


def _pretrained_train_config(cfg: ExperimentConfig, task: Any, tcfg, lengths, i: int):
    """No training: the model's context length stands for the training length (what
    context extensions scale from); the longest evaluation length when config.json gives
    none. The tokenizer's ids must fit the model's vocabulary."""
    vocab = pretrained_settings(cfg.model.pretrained)["vocab_size"]
    if task.vocab_size > vocab:
        raise ConfigError(
            f"tasks[{i}]: the tokenizer has {task.vocab_size} ids, more than the model's "
            f"vocab_size {vocab}; give the model's own tokenizer (task key tokenizer)"
        )
    context = pretrained_context(cfg.model.pretrained)
    source = "pretrained context"
    if context is None:
        context, source = max(lengths), "pretrained (no context in config.json)"
    tcfg = dataclasses.replace(tcfg, length=int(context), min_length=1, finetune_steps=0)
    return tcfg, source


def mesh_shape(cfg: ExperimentConfig, runs: list[Run]) -> tuple[int, int]:
    """The (seed, data) mesh for this config on the devices present."""
    batch_sizes = tuple({r.train.batch_size for r in runs} | {cfg.eval.batch_size})
    try:
        return choose_mesh_shape(
            jax.device_count(), len(cfg.seeds), batch_sizes, seed=cfg.mesh.seed, data=cfg.mesh.data
        )
    except ValueError as e:
        raise ConfigError(str(e)) from None


def context_extensions(scheme: Scheme, cfg: ExperimentConfig) -> tuple[str, ...]:
    """The methods of ``eval.context_extensions`` that ``scheme`` offers, in config order."""
    return tuple(m for m in cfg.eval.context_extensions if m in scheme.context_extensions)


def _needed_positions(run: Run, cfg: ExperimentConfig) -> int:
    """The most positions any stage of ``run`` feeds the scheme."""
    task, tcfg = run.task, run.train
    stage_lengths = (tcfg.length, *run.eval_lengths)
    if tcfg.finetune_steps:
        stage_lengths += (tcfg.finetune_length,)
    needed = max(task.sequence_length(n) for n in stage_lengths)
    if not tcfg.randomized_positions:
        return needed
    if task.packed:
        raise ConfigError(
            f"task {run.task_label} is packed (positions restart per document), so "
            "train.randomized_positions cannot replace its positions; use one or the other"
        )
    try:
        randomization_for(tcfg, run.scheme, num_layers=cfg.model.num_layers)
    except ValueError as e:
        raise ConfigError(f"task {run.task_label}, scheme {run.scheme_label}: {e}") from None
    train_len = task.sequence_length(tcfg.length)
    if tcfg.randomized_positions < train_len:
        raise ConfigError(
            f"train.randomized_positions ({tcfg.randomized_positions}) must be >= "
            f"the training sequence length {train_len} of task {run.task_label}"
        )
    longest = max(task.sequence_length(n) for n in run.eval_lengths)
    if cfg.eval.randomized_positions and longest > tcfg.randomized_positions:
        raise ConfigError(
            f"eval.randomized_positions is on, so task {run.task_label} is evaluated on "
            f"random positions from [0, train.randomized_positions = "
            f"{tcfg.randomized_positions}), but its longest evaluation sequence "
            f"has {longest} tokens; raise train.randomized_positions or set "
            "eval.randomized_positions: false (positions 0..L-1)"
        )
    return max(needed, tcfg.randomized_positions)


def _check_extensions(run: Run, cfg: ExperimentConfig, needed: int, where: str) -> None:
    """Every context-extension variant of the run's scheme builds for this model."""
    train_len = run.task.sequence_length(run.train.length)
    for method in context_extensions(run.scheme, cfg):
        scaling = getattr(run.scheme, "scaling", None)
        if cfg.model.pretrained and scaling and method not in RECTIFIED_METHODS:
            raise ConfigError(
                f"eval.context_extensions ({method}): the checkpoint's RoPE has its own scaling "
                f"({scaling.get('rope_type')}), which {method} would replace; evaluate it as it "
                f"is, or with {list(RECTIFIED_METHODS)} (they keep its frequencies)"
            )
        try:
            variant = run.scheme.extend_context(method, train_length=train_len, eval_length=needed)
            variant.validate(**_head_sizes(cfg))
        except ValueError as e:
            raise ConfigError(f"eval.context_extensions ({method}) with {where}: {e}") from None


def plan(cfg: ExperimentConfig) -> list[Run]:
    """Resolves and checks the whole grid before anything runs.

    Raises:
      ConfigError: unknown scheme/task names or settings, lengths a task cannot
        take, evaluation beyond a learned table without an explicit policy, ...
    """
    schemes = _resolve_schemes(cfg)
    tasks = _resolve_tasks(cfg)
    platform = jax.devices()[0].platform
    runs = []
    for i, (s_label, scheme) in enumerate(schemes):
        for t_label, task, tcfg, lengths, sources in tasks:
            rates = learning_rates(tcfg)
            try:  # a scheme that reads the tokens (Abacus) learns the task's vocabulary
                bound = scheme.bind_vocabulary(getattr(task, "token_names", lambda: ())())
            except ValueError as e:
                raise ConfigError(f"schemes[{i}] ({s_label}) on task {t_label}: {e}") from None
            for lr in rates:
                one = dataclasses.replace(tcfg, learning_rate=lr)
                run = Run(s_label, bound, t_label, task, one, lengths, sources, len(rates))
                needed = _needed_positions(run, cfg)
                limit = scheme.position_limit()
                if limit is not None and needed > limit:
                    raise ConfigError(
                        f"schemes[{i}] ({s_label}): the scheme encodes at most {limit} "
                        f"positions, fewer than the longest sequence ({needed} positions for "
                        f"task {t_label}); raise its max_length if it has one, or set "
                        "out_of_range: clip"
                    )
                _check_extensions(run, cfg, needed, f"schemes[{i}] ({s_label})")
                try:
                    micro_batches_for(
                        one,
                        cfg.model,
                        bound,
                        platform=platform,
                        seeds=len(cfg.seeds),
                        length=task.sequence_length(one.length),
                    )
                except ValueError as e:
                    raise ConfigError(f"schemes[{i}] ({s_label}), task {t_label}: {e}") from None
                # Positions are checked here, once; the compiled steps need no run-time check.
                runs.append(dataclasses.replace(run, scheme=bound.assume_positions_below(needed)))
    mesh_shape(cfg, runs)
    return runs


def describe_plan(cfg: ExperimentConfig, runs: list[Run]) -> list[str]:
    """Lines that say what ``runs`` will do: how many runs and why (schemes x tasks x
    learning rates), and per task the training and evaluation lengths and where they came
    from (the config or the task's reference ranges)."""
    schemes = list(dict.fromkeys(r.scheme_label for r in runs))
    tasks = list(dict.fromkeys(r.task_label for r in runs))
    rates = {
        t: tuple(dict.fromkeys(r.learning_rate for r in runs if r.task_label == t)) for t in tasks
    }
    grid = f"{_count(len(schemes), 'scheme')} x {_count(len(tasks), 'task')}"
    if len(set(rates.values())) == 1:
        (lrs,) = set(rates.values())
        if len(lrs) > 1:
            grid += f" x {len(lrs)} learning rates ({', '.join(f'{lr:g}' for lr in lrs)})"
    else:
        grid += " x each task's learning rates"
    seeds = len(cfg.seeds)
    each = f"each training {_count(seeds, 'seed')}"
    if cfg.model.pretrained:
        each = f"evaluating the pretrained weights of {cfg.model.pretrained} (no training)"
    lines = [f"plan: {grid} = {_count(len(runs), 'run')}, {each}"]
    for t in tasks:
        r = next(r for r in runs if r.task_label == t)
        train_from, eval_from = r.lengths_from
        n = len(r.eval_lengths)
        lr = "" if len(set(rates.values())) == 1 else f"; learning rates {list(rates[t])}"
        trained = f"trained at lengths {r.train.min_length}..{r.train.length}"
        if cfg.model.pretrained:
            trained = f"model context {r.train.length}"
        lines.append(
            f"  {t}: {trained} ({train_from}), "
            f"evaluated at {lengths_text(r.eval_lengths)} ({_count(n, 'length')}, "
            f"{eval_from}){lr}"
        )
    return lines


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"
