"""The experiment plan: a config resolved into its grid of runs, every check done first.

`plan(cfg)` builds every scheme and task of the config, checks every length each
run will meet (training, evaluation, fine-tuning, each context extension the
scheme offers), the position limits and the device mesh, and returns the runs. A
bad config therefore trains nothing and writes nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax

from posenc_jax.harness.config import (
    ConfigError,
    ExperimentConfig,
    TrainConfig,
    build_section,
    expand_lengths,
    validate,
)
from posenc_jax.harness.sharding import choose_mesh_shape
from posenc_jax.harness.tasks import get_task
from posenc_jax.schemes import Scheme, make_scheme

__all__ = ["Run", "context_extensions", "mesh_shape", "plan"]

TASK_RUN_KEYS = ("train", "eval_lengths", "label")


@dataclasses.dataclass(frozen=True)
class Run:
    """One (scheme, task) cell of the grid, with everything resolved."""

    scheme_label: str
    scheme: Scheme
    task_label: str
    task: Any
    train: Any  # TrainConfig with the task's training length
    eval_lengths: tuple[int, ...]


def _label(spec: Any, name: str, all_specs: list[Any]) -> str:
    if isinstance(spec, Mapping) and "label" in spec:
        return str(spec["label"])
    same = [s for s in all_specs if (s if isinstance(s, str) else s.get("name")) == name]
    if len(same) <= 1 or isinstance(spec, str):
        return name
    extras = ",".join(f"{k}={v}" for k, v in spec.items() if k not in ("name", "label"))
    return f"{name}({extras})" if extras else name


def _resolve_schemes(cfg: ExperimentConfig) -> list[tuple[str, Scheme]]:
    out = []
    specs = list(cfg.schemes)
    for i, spec in enumerate(specs):
        body = (
            {k: v for k, v in spec.items() if k != "label"} if isinstance(spec, Mapping) else spec
        )
        try:
            scheme = make_scheme(body)
            m = cfg.model
            scheme.configure(causal=True).validate(
                num_heads=m.num_heads, head_dim=m.d_model // m.num_heads, d_model=m.d_model
            )
        except (ValueError, TypeError) as e:
            raise ConfigError(f"schemes[{i}]: {e}") from None
        out.append((_label(spec, scheme.name, specs), scheme))
    labels = [label for label, _ in out]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"schemes: two entries share a label {labels}; add 'label: ...'")
    return out


def _task_train_config(cfg: ExperimentConfig, spec: Mapping, i: int) -> TrainConfig:
    """The global train section updated with the task's own ``train:`` mapping."""
    over = spec.get("train") or {}
    if not isinstance(over, Mapping):
        raise ConfigError(f"tasks[{i}].train must be a mapping of train keys; got {over!r}")
    merged = {**dataclasses.asdict(cfg.train), **over}
    try:
        tcfg = build_section(TrainConfig, merged, f"tasks[{i}].train")
        validate(dataclasses.replace(cfg, train=tcfg))
    except ConfigError as e:
        raise ConfigError(str(e).replace("train.", f"tasks[{i}].train.")) from None
    return tcfg


def _resolve_tasks(cfg: ExperimentConfig) -> list[tuple[str, Any, TrainConfig, tuple[int, ...]]]:
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
        try:
            task = get_task(spec["name"], **options)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"tasks[{i}]: {e}") from None
        tcfg = _task_train_config(cfg, spec, i)
        lengths = expand_lengths(
            spec.get("eval_lengths", cfg.eval.lengths), f"tasks[{i}].eval_lengths"
        )
        label = str(spec.get("label", spec["name"]))
        try:
            for n in (tcfg.min_length, tcfg.length, *lengths):
                task.sequence_length(n)
        except ValueError as e:
            raise ConfigError(f"tasks[{i}] ({label}): {e}") from None
        out.append((label, task, tcfg, tuple(int(n) for n in lengths)))
    labels = [x[0] for x in out]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"tasks: two entries share a label {labels}; add 'label: ...'")
    return out


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
    m = cfg.model
    train_len = run.task.sequence_length(run.train.length)
    for method in context_extensions(run.scheme, cfg):
        try:
            variant = run.scheme.extend_context(method, train_length=train_len, eval_length=needed)
            variant.validate(
                num_heads=m.num_heads, head_dim=m.d_model // m.num_heads, d_model=m.d_model
            )
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
    runs = []
    for i, (s_label, scheme) in enumerate(schemes):
        for t_label, task, tcfg, lengths in tasks:
            run = Run(s_label, scheme, t_label, task, tcfg, lengths)
            needed = _needed_positions(run, cfg)
            limit = scheme.position_limit()
            if limit is not None and needed > limit:
                raise ConfigError(
                    f"schemes[{i}] ({s_label}): the scheme encodes at most {limit} positions, "
                    f"fewer than the longest sequence ({needed} positions for task {t_label}); "
                    "raise its max_length if it has one, or set out_of_range: clip"
                )
            _check_extensions(run, cfg, needed, f"schemes[{i}] ({s_label})")
            # Positions are checked here, once; the compiled steps need no run-time check.
            runs.append(dataclasses.replace(run, scheme=scheme.assume_positions_below(needed)))
    mesh_shape(cfg, runs)
    return runs
