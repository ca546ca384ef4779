"""Runs an experiment grid: every scheme x task, all seeds of a run trained together.

`run(config)` checks everything first (so a bad config trains nothing and writes
nothing), then trains and evaluates each run, appending its records to
``results.jsonl`` atomically, and finally writes the CSV summary, the markdown
table and the plots. Runs already in the output folder (same config) are skipped.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import yaml
from jax.sharding import Mesh

from experiments import results as res
from experiments.checkpoint import RunCheckpointer, run_dir_name
from experiments.config import (
    ConfigError,
    EvalConfig,
    ExperimentConfig,
    TrainConfig,
    build_section,
    config_to_dict,
    load_config,
    validate,
)
from experiments.figures.attention_maps import (
    attention_map_lengths,
    draw_run_attention_maps,
    run_attention_maps,
    save_attention_maps,
)
from experiments.figures.results import plot_results
from experiments.sharding import choose_mesh_shape, make_mesh
from experiments.tasks import get_task
from experiments.train import (
    build_model_fn,
    evaluate,
    graph_of,
    rope_scaling_variant,
    seconds_to_str,
    train,
)
from posenc_jax.schemes import Scheme, make_scheme

__all__ = ["Run", "plan", "run"]

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
        lengths = spec.get("eval_lengths", list(cfg.eval.lengths))
        if (
            not isinstance(lengths, list | tuple)
            or not lengths
            or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in lengths)
        ):
            raise ConfigError(
                f"tasks[{i}].eval_lengths must be a list of integers >= 1; got {lengths!r}"
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


def enable_compilation_cache(folder: str | Path) -> None:
    """Turns on JAX's persistent compilation cache in ``folder`` for every program."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(Path(folder).absolute()))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


def mesh_shape(cfg: ExperimentConfig, runs: list[Run]) -> tuple[int, int]:
    """The (seed, data) mesh for this config on the devices present."""
    batch_sizes = tuple({r.train.batch_size for r in runs} | {cfg.eval.batch_size})
    try:
        return choose_mesh_shape(
            jax.device_count(), len(cfg.seeds), batch_sizes, seed=cfg.mesh.seed, data=cfg.mesh.data
        )
    except ValueError as e:
        raise ConfigError(str(e)) from None


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
            train_length = tcfg.length
            limit = scheme.position_limit()
            stage_lengths = (train_length, *lengths)
            if tcfg.finetune_steps:
                stage_lengths += (tcfg.finetune_length,)
            needed = max(task.sequence_length(n) for n in stage_lengths)
            if tcfg.randomized_positions:
                if tcfg.randomized_positions < task.sequence_length(train_length):
                    raise ConfigError(
                        f"train.randomized_positions ({tcfg.randomized_positions}) must be >= "
                        f"the training sequence length {task.sequence_length(train_length)} "
                        f"of task {t_label}"
                    )
                needed = max(needed, tcfg.randomized_positions)
                longest = max(task.sequence_length(n) for n in lengths)
                if cfg.eval.randomized_positions and longest > tcfg.randomized_positions:
                    raise ConfigError(
                        f"eval.randomized_positions is on, so task {t_label} is evaluated on "
                        f"random positions from [0, train.randomized_positions = "
                        f"{tcfg.randomized_positions}), but its longest evaluation sequence "
                        f"has {longest} tokens; raise train.randomized_positions or set "
                        "eval.randomized_positions: false (positions 0..L-1)"
                    )
            if limit is not None and needed > limit:
                raise ConfigError(
                    f"schemes[{i}] ({s_label}): max_length {limit} is shorter than the longest "
                    f"sequence ({needed} positions for task {t_label}); raise max_length or "
                    "set out_of_range: clip"
                )
            if scheme.name == "rope":  # every zero-shot and fine-tune variant must build
                train_len = task.sequence_length(train_length)
                for method in cfg.eval.rope_scalings:
                    try:
                        rope_scaling_variant(
                            scheme, method, train_seq_len=train_len, eval_seq_len=needed
                        ).validate(
                            num_heads=cfg.model.num_heads,
                            head_dim=cfg.model.d_model // cfg.model.num_heads,
                            d_model=cfg.model.d_model,
                        )
                    except ValueError as e:
                        raise ConfigError(
                            f"eval.rope_scalings ({method}) with schemes[{i}] ({s_label}): {e}"
                        ) from None
            # Positions are checked here, once; the compiled steps need no run-time check.
            checked = scheme.with_positions_checked(needed)
            runs.append(Run(s_label, checked, t_label, task, tcfg, lengths))
    mesh_shape(cfg, runs)
    return runs


def _prepare_out_dir(out_dir: Path, cfg_dict: dict, overwrite: bool) -> list[dict[str, Any]]:
    """Returns the records already there (resume) or [] for a fresh folder."""
    cfg_path = out_dir / "config.yaml"
    if cfg_path.exists():
        old = yaml.safe_load(cfg_path.read_text())
        if old == cfg_dict:
            return res.read_records(out_dir / res.RECORDS)
        if not overwrite:
            raise ConfigError(
                f"--out {out_dir} holds results of a different config; choose another --out, "
                "or pass --overwrite to replace them"
            )
        for name in (res.RECORDS, "summary.csv", "results.md", "environment.json", "timings.json"):
            (out_dir / name).unlink(missing_ok=True)
        for png in out_dir.glob("length_*.png"):
            png.unlink()
        shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
    elif out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise ConfigError(
            f"--out {out_dir} is not empty and holds no posenc results; choose another --out, "
            "or pass --overwrite"
        )
    return []


def _records_for(
    run: Run, seeds, metrics: dict, *, scheme_label: str, diverged: dict[int, int]
) -> list[dict]:
    """One record per (seed, eval length); diverged seeds get one 'diverged' record."""
    out = []
    is_lm = getattr(run.task, "name", "") == "lm"
    base = {"scheme": scheme_label, "task": run.task_label, "train_length": run.train.length}
    for i, seed in enumerate(seeds):
        if int(seed) in diverged:
            out.append(
                {
                    **base,
                    "seed": int(seed),
                    "eval_length": None,
                    "status": "diverged",
                    "diverged_step": diverged[int(seed)],
                }
            )
            continue
        for length, m in metrics.items():
            r = {
                **base,
                "seed": int(seed),
                "eval_length": int(length),
                "accuracy": float(m["accuracy"][i]),
                "sequence_accuracy": float(m["sequence_accuracy"][i]),
                "loss": float(m["loss"][i]),
                "status": "ok",
            }
            if is_lm:
                r["perplexity"] = float(m["perplexity"][i])
            out.append(r)
    return out


def write_reports(out_dir: Path, records: list[dict[str, Any]]) -> None:
    """CSV summary, markdown table, length plots and attention maps from the records."""
    res.atomic_write_text(out_dir / "summary.csv", res.summary_csv(res.summarize(records)))
    res.atomic_write_text(out_dir / "results.md", res.markdown_table(records))
    plot_results(records, out_dir)
    draw_run_attention_maps(out_dir, records)


def run(
    config: ExperimentConfig | str | Path,
    *,
    out_dir: str | Path | None = None,
    overrides: tuple[str, ...] = (),
    overwrite: bool = False,
    progress: bool = True,
    verbose: bool = True,
    compile_cache: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Runs a config (object or YAML path) and returns the results table (list of records).

    Writes into ``out_dir`` (default ``runs/<name>``): config.yaml, environment.json,
    results.jsonl, summary.csv, results.md and length_<task>.png.
    ``compile_cache``: a folder for JAX's persistent compilation cache, so a second
    run of the same config compiles nothing.
    """
    if compile_cache is not None:
        enable_compilation_cache(compile_cache)
    cfg = load_config(config, overrides) if isinstance(config, str | Path) else config
    source = str(config) if isinstance(config, str | Path) else f"config {cfg.name!r}"
    try:
        runs = plan(cfg)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    mesh = make_mesh(mesh_shape(cfg, runs))
    # On several hosts every process trains its shards; only process 0 writes files.
    writer = jax.process_index() == 0
    out_dir = Path(out_dir or Path("runs") / cfg.name)
    cfg_dict = config_to_dict(cfg)
    records = _prepare_out_dir(out_dir, cfg_dict, overwrite if writer else False)
    if writer:
        out_dir.mkdir(parents=True, exist_ok=True)
        res.atomic_write_text(out_dir / "config.yaml", yaml.safe_dump(cfg_dict, sort_keys=False))
        env = dict(
            res.environment(), mesh=dict(zip(mesh.axis_names, mesh.devices.shape, strict=True))
        )
        res.atomic_write_text(out_dir / "environment.json", json.dumps(env, indent=2) + "\n")
    done = {(r["scheme"], r["task"]) for r in records}
    timings_path = out_dir / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.exists() and records else {}
    seeds = list(cfg.seeds)
    say = (lambda msg: print(msg, file=sys.stderr)) if verbose and writer else (lambda msg: None)
    t_start = time.perf_counter()
    for k, r in enumerate(runs):
        if (r.scheme_label, r.task_label) in done:
            say(f"[{k + 1}/{len(runs)}] {r.scheme_label} / {r.task_label}: done before, skipped")
            continue
        desc = f"[{k + 1}/{len(runs)}] {r.scheme_label}/{r.task_label}"
        ckpt = RunCheckpointer(out_dir / "checkpoints" / run_dir_name(r.scheme_label, r.task_label))
        new, info = _train_and_eval(
            r,
            cfg,
            seeds,
            checkpointer=ckpt,
            mesh=mesh,
            desc=desc,
            progress=progress and writer,
            attention_path=(
                out_dir / "attention" / f"{run_dir_name(r.scheme_label, r.task_label)}.npz"
                if writer
                else None
            ),
        )
        records = records + new
        timings[f"{r.scheme_label}/{r.task_label}"] = round(info["seconds"], 3)
        if writer:
            res.write_records(out_dir / res.RECORDS, records)
            res.atomic_write_text(out_dir / "timings.json", json.dumps(timings, indent=2) + "\n")
            ckpt.remove()  # the run's records are safe; its checkpoint is no longer needed
        resumed = f" (resumed at step {info['resumed_from']})" if info["resumed_from"] else ""
        say(f"{desc}: {_one_line(new)}{resumed}")
    if writer:
        write_reports(out_dir, records)
        shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
    say(f"done in {seconds_to_str(time.perf_counter() - t_start)}; results in {out_dir}")
    return records


def _one_line(records: list[dict[str, Any]]) -> str:
    if not records:
        return "no records"
    bad = {r["seed"]: r.get("diverged_step") for r in records if r.get("status") == "diverged"}
    note = f"; diverged seeds {bad}" if bad else ""
    records = [r for r in records if r.get("status") == "ok"]
    if not records:
        return f"every seed diverged {bad}"
    metric = "perplexity" if "perplexity" in records[0] else "accuracy"
    base = [r for r in records if "+" not in r["scheme"]]
    by_len: dict[int, list[float]] = {}
    for r in base:
        by_len.setdefault(r["eval_length"], []).append(r[metric])
    parts = [f"{n}: {sum(v) / len(v):.3g}" for n, v in sorted(by_len.items())]
    return f"{metric} by length " + ", ".join(parts) + note


def _evaluate_live_seeds(
    r: Run,
    cfg: ExperimentConfig,
    graphdef: Any,
    state: Any,
    seeds: list[int],
    diverged: dict[int, int],
    *,
    tcfg: TrainConfig,
    mesh: Mesh | None,
    progress: bool,
    desc: str,
    graph_for_length: Callable[[int], Any] | None = None,
) -> dict:
    """Per-length metrics of a model trained with ``tcfg``; {} when every seed diverged."""
    if len(diverged) >= len(seeds):
        return {}
    return evaluate(
        r.task,
        graphdef,
        state,
        r.eval_lengths,
        cfg.eval,
        graph_for_length=graph_for_length,
        mesh=mesh,
        progress=progress,
        desc=desc,
        randomized_range=eval_randomized_range(tcfg, cfg.eval),
    )


def eval_randomized_range(tcfg: TrainConfig, ecfg: EvalConfig) -> int | None:
    """N when a model trained with ``tcfg`` is evaluated on sorted random positions from
    [0, N) (trained so, and ``eval.randomized_positions`` on), else None.

    References: Ruoss et al. 2023 (arXiv 2305.16843) evaluate their randomized models
    on randomized positions too.
    """
    return tcfg.randomized_positions if ecfg.randomized_positions else None


def _train_and_eval(
    r: Run,
    cfg: ExperimentConfig,
    seeds: list[int],
    *,
    checkpointer: RunCheckpointer | None,
    mesh: Mesh | None,
    desc: str,
    progress: bool,
    attention_path: Path | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    scheme = r.scheme.configure(causal=r.task.causal)
    graphdef, state, info = train(
        r.task,
        scheme,
        seeds,
        cfg.model,
        r.train,
        cfg.eval,
        checkpointer=checkpointer,
        mesh=mesh,
        progress=progress,
        desc=desc,
    )
    diverged = info["diverged"]
    evaluate_trained = functools.partial(
        _evaluate_live_seeds,
        r,
        cfg,
        graphdef,
        state,
        seeds,
        diverged,
        tcfg=r.train,
        mesh=mesh,
        progress=progress,
    )
    metrics = evaluate_trained(desc=desc + " eval")
    records = _records_for(r, seeds, metrics, scheme_label=r.scheme_label, diverged=diverged)
    lengths = attention_map_lengths(
        r.task, r.train.length, r.eval_lengths, max_tokens=cfg.eval.attention_maps
    )
    if attention_path is not None and lengths and len(diverged) < len(seeds):
        first_ok = next(i for i, s in enumerate(seeds) if s not in diverged)
        maps = run_attention_maps(r.task, graphdef, state, lengths, seed_index=first_ok)
        save_attention_maps(
            attention_path,
            maps,
            scheme=r.scheme_label,
            task=r.task_label,
            train_length=r.train.length,
        )
    if scheme.name == "rope" and len(diverged) < len(seeds):
        train_len = r.task.sequence_length(r.train.length)
        for method in cfg.eval.rope_scalings:

            def graph_for(length, method=method):
                variant = rope_scaling_variant(
                    scheme,
                    method,
                    train_seq_len=train_len,
                    eval_seq_len=r.task.sequence_length(length),
                )
                return graph_of(build_model_fn(r.task, variant, cfg.model, cfg.eval))

            m = evaluate_trained(desc=f"{desc} eval {method}", graph_for_length=graph_for)
            records += _records_for(
                r, seeds, m, scheme_label=f"{r.scheme_label}+{method}", diverged=diverged
            )
    if r.train.finetune_steps and len(diverged) < len(seeds):
        records += _finetune_and_eval(
            r, cfg, seeds, scheme, state, diverged, mesh=mesh, desc=desc, progress=progress
        )
    return records, info


def finetune_config(tcfg: TrainConfig) -> TrainConfig:
    """The training settings of the fine-tune stage.

    Full-length sequences at ``finetune_length`` for ``finetune_steps`` steps at
    ``finetune_learning_rate`` (warmup a tenth of the steps), real positions, no
    checkpoints; the other settings as in training.
    """
    n = tcfg.finetune_length
    return dataclasses.replace(
        tcfg,
        length=n,
        min_length=n,
        steps=tcfg.finetune_steps,
        learning_rate=tcfg.finetune_learning_rate,
        warmup_steps=max(1, tcfg.finetune_steps // 10),
        randomized_positions=None,
        checkpoint_every=0,
        finetune_steps=0,
    )


def _finetune_and_eval(
    r: Run,
    cfg: ExperimentConfig,
    seeds: list[int],
    scheme: Scheme,
    state: Any,
    diverged: dict[int, int],
    *,
    mesh: Mesh | None,
    desc: str,
    progress: bool,
) -> list[dict[str, Any]]:
    """Continues training at the longer length and evaluates again.

    Every scheme gets ``<label>+ft`` (the same scheme fine-tuned); a RoPE scheme
    also gets ``<label>+<method>+ft`` for each of ``eval.rope_scalings``, the
    scaling factor being fine-tune length / training length (in sequence
    positions), as in position interpolation and YaRN fine-tuning.
    """
    ft = finetune_config(r.train)
    train_len = r.task.sequence_length(r.train.length)
    ft_len = r.task.sequence_length(ft.length)
    variants = [("ft", scheme)]
    if scheme.name == "rope":
        variants += [
            (
                f"{m}+ft",
                rope_scaling_variant(scheme, m, train_seq_len=train_len, eval_seq_len=ft_len),
            )
            for m in cfg.eval.rope_scalings
        ]
    out = []
    for suffix, variant in variants:
        graphdef, ft_state, info = train(
            r.task,
            variant,
            seeds,
            cfg.model,
            ft,
            cfg.eval,
            mesh=mesh,
            progress=progress,
            desc=f"{desc} fine-tune {suffix}",
            init_from=state,
        )
        bad = {**info["diverged"], **diverged}
        metrics = _evaluate_live_seeds(
            r,
            cfg,
            graphdef,
            ft_state,
            seeds,
            bad,
            tcfg=ft,
            mesh=mesh,
            progress=progress,
            desc=f"{desc} eval {suffix}",
        )
        records = _records_for(
            r, seeds, metrics, scheme_label=f"{r.scheme_label}+{suffix}", diverged=bad
        )
        for rec in records:
            rec["finetune_length"] = ft.length
            rec["finetune_steps"] = ft.steps
        out += records
    return out
