"""Runs an experiment grid: every scheme x task (x learning rate), all seeds of a run
trained together.

`run(config)` reads the config (`posenc_jax.harness.config`), checks the whole grid first
(`posenc_jax.harness.plan`, so a bad config trains nothing and writes nothing), then runs
each cell stage by stage (`posenc_jax.harness.stages`: train, evaluate, context
extensions, fine-tune), appending its records to ``results.jsonl`` atomically, and
finally writes the CSV summary, the markdown table and the plots. Runs already in
the output folder (same config) are skipped; a run is (scheme, task, learning rate), so
the runs of a learning-rate sweep are kept apart in the records and the checkpoints.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import jax
import yaml
from jax.sharding import Mesh

from posenc_jax.harness import results as res
from posenc_jax.harness.checkpoint import RunCheckpointer, run_dir_name
from posenc_jax.harness.config import ConfigError, ExperimentConfig, config_to_dict, load_config
from posenc_jax.harness.figures.attention_maps import draw_run_attention_maps
from posenc_jax.harness.figures.results import plot_results
from posenc_jax.harness.plan import Run, describe_plan, mesh_shape, plan
from posenc_jax.harness.sharding import make_mesh
from posenc_jax.harness.stages import train_and_evaluate
from posenc_jax.harness.train import seconds_to_str

__all__ = ["Run", "plan", "run", "run_folder_name"]


def enable_compilation_cache(folder: str | Path) -> None:
    """Turns on JAX's persistent compilation cache in ``folder`` for every program."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(Path(folder).absolute()))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


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
    cfg, runs = _load_and_plan(config, overrides)
    mesh = make_mesh(mesh_shape(cfg, runs))
    # On several hosts every process trains its shards; only process 0 writes files.
    writer = jax.process_index() == 0
    out_dir = Path(out_dir or Path("runs") / cfg.name)
    cfg_dict = config_to_dict(cfg)
    records = _prepare_out_dir(out_dir, cfg_dict, overwrite if writer else False)
    if writer:
        _write_header(out_dir, cfg_dict, mesh)
    done = {_record_key(r, runs) for r in records}
    timings_path = out_dir / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.exists() and records else {}
    say = (lambda msg: print(msg, file=sys.stderr)) if verbose and writer else (lambda msg: None)
    for line in describe_plan(cfg, runs):
        say(line)
    t_start = time.perf_counter()
    for k, r in enumerate(runs):
        desc = f"[{k + 1}/{len(runs)}] {r.label}"
        if r.key in done:
            say(f"{desc}: done before, skipped")
            continue
        new, info, checkpointer = _run_cell(
            r, cfg, out_dir, mesh=mesh, desc=desc, progress=progress, writer=writer
        )
        records = records + new
        timings[r.label] = round(info["seconds"], 3)
        if writer:
            res.write_records(out_dir / res.RECORDS, records)
            res.atomic_write_text(timings_path, json.dumps(timings, indent=2) + "\n")
            checkpointer.remove()  # the records are safe; the checkpoint is not needed
        resumed = f" (resumed at step {info['resumed_from']})" if info["resumed_from"] else ""
        say(f"{desc}: {_one_line(new)}{resumed}")
    if writer:
        write_reports(out_dir, records)
        shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
    say(f"done in {seconds_to_str(time.perf_counter() - t_start)}; results in {out_dir}")
    return records


def run_folder_name(r: Run) -> str:
    """The folder name of a run's checkpoints and attention maps: ``scheme__task``, and
    ``__lr<rate>`` after it when its pair sweeps learning rates (each rate its own folder)."""
    if r.sweep_size > 1:
        return run_dir_name(r.scheme_label, f"{r.task_label}__lr{r.learning_rate:g}")
    return run_dir_name(r.scheme_label, r.task_label)


def _record_key(record: dict[str, Any], runs: list[Run]) -> tuple[str, str, float | None]:
    """The `Run.key` a record belongs to (records written before learning rates were
    recorded belong to their pair's only rate)."""
    lr = record.get("learning_rate")
    if lr is None:
        rates = {r.learning_rate for r in runs if r.task_label == record["task"]}
        lr = rates.pop() if len(rates) == 1 else None
    return (record["scheme"], record["task"], lr)


def _load_and_plan(
    config: ExperimentConfig | str | Path, overrides: tuple[str, ...]
) -> tuple[ExperimentConfig, list[Run]]:
    """The config (read from YAML when a path) and its checked grid of runs."""
    cfg = load_config(config, overrides) if isinstance(config, str | Path) else config
    source = str(config) if isinstance(config, str | Path) else f"config {cfg.name!r}"
    try:
        return cfg, plan(cfg)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None


def _write_header(out_dir: Path, cfg_dict: dict[str, Any], mesh: Mesh) -> None:
    """config.yaml and environment.json, before any run."""
    out_dir.mkdir(parents=True, exist_ok=True)
    res.atomic_write_text(out_dir / "config.yaml", yaml.safe_dump(cfg_dict, sort_keys=False))
    env = dict(res.environment(), mesh=dict(zip(mesh.axis_names, mesh.devices.shape, strict=True)))
    res.atomic_write_text(out_dir / "environment.json", json.dumps(env, indent=2) + "\n")


def _run_cell(
    r: Run,
    cfg: ExperimentConfig,
    out_dir: Path,
    *,
    mesh: Mesh,
    desc: str,
    progress: bool,
    writer: bool,
) -> tuple[list[dict[str, Any]], dict[str, Any], RunCheckpointer]:
    """One (scheme, task) cell with its checkpoint folder and attention-map file; returns
    (records, training info, its checkpointer)."""
    name = run_folder_name(r)
    checkpointer = RunCheckpointer(out_dir / "checkpoints" / name)
    records, info = train_and_evaluate(
        r,
        cfg,
        list(cfg.seeds),
        checkpointer=checkpointer,
        mesh=mesh,
        desc=desc,
        progress=progress and writer,
        attention_path=out_dir / "attention" / f"{name}.npz" if writer else None,
    )
    return records, info, checkpointer


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
    parts = [f"{n}: {sum(by_len[n]) / len(by_len[n]):.3g}" for n in res.shown_lengths(by_len)]
    return f"{metric} by length " + ", ".join(parts) + note
