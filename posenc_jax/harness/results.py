"""Results files: atomic writes, JSONL records, CSV summary, markdown table, environment."""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import os
import platform
import subprocess
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "at_best_learning_rate",
    "atomic_write_bytes",
    "atomic_write_text",
    "best_learning_rate",
    "best_of_runs",
    "environment",
    "lengths_text",
    "markdown_table",
    "mean_reciprocal_rank",
    "read_records",
    "run_scores",
    "summarize",
    "summary_csv",
    "write_records",
]

RECORDS = "results.jsonl"


def atomic_write_text(path: str | Path, text: str) -> None:
    """Writes a file so that readers see the old or the new content, never a part."""
    atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """`atomic_write_text` for bytes: write a temporary file, fsync, rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_records(path: str | Path, records: Sequence[dict[str, Any]]) -> None:
    """Writes all records as JSON lines, atomically (the file is rewritten whole)."""
    lines = [json.dumps({k: _clean(v) for k, v in r.items()}, sort_keys=True) for r in records]
    atomic_write_text(path, "".join(line + "\n" for line in lines))


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Reads a results.jsonl file ([] when absent)."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    vals = [v for v in values if v is not None]
    if not vals:
        return float("nan"), float("nan")
    mean = sum(vals) / len(vals)
    var = sum((v - mean) ** 2 for v in vals) / len(vals)
    return mean, math.sqrt(var)


UNITS = {
    "perplexity": "perplexity (lower is better)",
    "exact_match": "exact match % of the whole answer (= greedy generation)",
    "accuracy": "accuracy %",
}


def metric_of(task_records: Iterable[dict[str, Any]]) -> str:
    """The headline metric of a task: the one its records name (the task's ``headline``).

    Records written before tasks named it: perplexity when recorded, else accuracy.
    """
    task_records = list(task_records)
    named = {r["metric"] for r in task_records if "metric" in r}
    if len(named) > 1:
        raise ValueError(f"one task's records name several metrics: {sorted(named)}")
    if named:
        return named.pop()
    return "perplexity" if any("perplexity" in r for r in task_records) else "accuracy"


def summarize(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and std over seeds per (scheme, task, learning rate, eval_length)."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if r.get("status", "ok") != "ok":
            continue
        lr = r.get("learning_rate")
        groups[(r["task"], r["scheme"], -1.0 if lr is None else lr, r["eval_length"])].append(r)
    rows = []
    for (task, scheme, _, length), rs in sorted(groups.items()):
        row = {
            "task": task,
            "scheme": scheme,
            "train_length": rs[0]["train_length"],
            "eval_length": length,
            "seeds": len(rs),
        }
        if "learning_rate" in rs[0]:
            row["learning_rate"] = rs[0]["learning_rate"]
        for metric in ("accuracy", "sequence_accuracy", "exact_match", "loss", "perplexity"):
            if metric in rs[0]:
                row[f"{metric}_mean"], row[f"{metric}_std"] = _mean_std([r[metric] for r in rs])
        rows.append(row)
    return rows


def summary_csv(rows: Sequence[dict[str, Any]]) -> str:
    """CSV text of `summarize` rows."""
    fields: list[str] = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def _fmt_one(value: float, metric: str) -> str:
    if math.isnan(value):
        return "—"
    return f"{value:.2f}" if metric == "perplexity" else f"{100 * value:.1f}"


def _fmt(mean: float, std: float, metric: str) -> str:
    if math.isnan(mean):
        return "—"
    if metric == "perplexity":
        return f"{mean:.2f} ± {std:.2f}"
    return f"{100 * mean:.1f} ± {100 * std:.1f}"


def lengths_text(lengths: Iterable[int]) -> str:
    """Compact text of task lengths: ``21..40``, ``41..500 step 3``, or ``10, 20, 40``."""
    ns = sorted(int(n) for n in lengths)
    if len(ns) > 2:
        steps = {b - a for a, b in itertools.pairwise(ns)}
        if len(steps) == 1:
            (step,) = steps
            return f"{ns[0]}..{ns[-1]}" + (f" step {step}" if step > 1 else "")
    return ", ".join(str(n) for n in ns)


def run_scores(records: Iterable[dict[str, Any]], metric: str) -> dict[tuple, float]:
    """Each run's score: its mean ``metric`` over the evaluation lengths beyond its training
    length, keyed by (learning rate, seed); runs with no such length are left out.

    This is the score of Deletang et al. 2023 (App. A.4: "the per-sequence accuracy
    averaged over all sequences of unseen length", lengths N+1..M = 41..500) and of Ruoss
    et al. 2023, computed per (seed, learning rate) before any aggregation.
    """
    per_run: dict[tuple, list[float]] = defaultdict(list)
    for r in records:
        if r.get("status", "ok") == "ok" and r["eval_length"] > r["train_length"]:
            per_run[(r.get("learning_rate"), r["seed"])].append(r[metric])
    return {k: sum(v) / len(v) for k, v in per_run.items()}


def best_of_runs(records: Iterable[dict[str, Any]], metric: str) -> float:
    """The papers' aggregate of one (task, scheme): the best `run_scores` over every seed and
    learning rate (highest; lowest for perplexity); NaN without lengths beyond training.

    References: Deletang et al. 2023 (arXiv 2207.02098), Sec. 4 "We run our experiments over
    10 different network parameter initialization seeds and report the maximum score instead
    of the average" and App. A.4 "10 different random seeds ... and three learning rates
    (1e-4, 3e-4 and 5e-4), and we report the result obtained by the hyperparameters with
    the maximum score"; Ruoss et al. 2023 (arXiv 2305.16843) follow that protocol.
    """
    scores = list(run_scores(records, metric).values())
    if not scores:
        return float("nan")
    return min(scores) if metric == "perplexity" else max(scores)


def best_learning_rate(records: Iterable[dict[str, Any]], metric: str) -> float | None:
    """The learning rate of one (task, scheme) whose mean score over seeds is best (its
    `run_scores`; without lengths beyond training, its mean over every length); the first
    in record order on ties; None when the records carry no learning rate."""
    records = [r for r in records if r.get("status", "ok") == "ok"]
    rates = list(dict.fromkeys(r.get("learning_rate") for r in records))
    if len(rates) <= 1:
        return rates[0] if rates else None
    scores = run_scores(records, metric)
    if not scores:  # no length beyond training: judge by every length
        per_run: dict[tuple, list[float]] = defaultdict(list)
        for r in records:
            per_run[(r.get("learning_rate"), r["seed"])].append(r[metric])
        scores = {k: sum(v) / len(v) for k, v in per_run.items()}
    mean = {}
    for lr in rates:
        vals = [v for (rate, _), v in scores.items() if rate == lr]
        mean[lr] = sum(vals) / len(vals) if vals else float("nan")
    sign = -1.0 if metric == "perplexity" else 1.0
    ranked = [lr for lr in rates if not math.isnan(mean[lr])] or rates
    return max(ranked, key=lambda lr: sign * mean[lr])


def at_best_learning_rate(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """``records`` with each (task, scheme) kept at its `best_learning_rate` (unchanged
    without a learning-rate sweep): what the tables' mean ± std and the plots show."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        groups[(r["task"], r["scheme"])].append(r)
    keep = {}
    for (task, scheme), rs in groups.items():
        ok = [r for r in rs if r.get("status", "ok") == "ok"]
        if len({r.get("learning_rate") for r in rs}) > 1 and ok:
            keep[(task, scheme)] = best_learning_rate(ok, metric_of(ok))
    return [
        r
        for r in records
        if (r["task"], r["scheme"]) not in keep
        or r.get("learning_rate") == keep[(r["task"], r["scheme"])]
    ]


def mean_reciprocal_rank(records: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Each scheme's mean reciprocal rank over the (task, seed) queries (NaN: none).

    In each query the schemes are ranked by their `run_scores` score (the mean headline
    metric over the evaluation lengths beyond training: higher is better, lower for
    perplexity), at each (task, scheme)'s `best_learning_rate`; tied schemes share the
    mean of their ranks. A query counts only when every scheme has a score in it.

    References: Kazemnejad et al. 2023 (arXiv 2305.19466), Figure 1: the reciprocal rank
    of each positional encoding per (dataset split, seed), averaged (the authors'
    notebooks/plot_aggregate_final.ipynb breaks ties by row order instead).
    """
    ok = at_best_learning_rate([r for r in records if r.get("status", "ok") == "ok"])
    schemes = list(dict.fromkeys(r["scheme"] for r in ok))
    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in ok:
        by_task[r["task"]].append(r)
    reciprocal: dict[str, list[float]] = {s: [] for s in schemes}
    for rs in by_task.values():
        metric = metric_of(rs)
        sign = -1.0 if metric == "perplexity" else 1.0
        scores = {s: run_scores([r for r in rs if r["scheme"] == s], metric) for s in schemes}
        seeds = set.intersection(*({seed for _, seed in v} for v in scores.values()))
        for seed in sorted(seeds):
            value = {s: sign * next(v for (_, sd), v in scores[s].items() if sd == seed)
                     for s in schemes}  # fmt: skip
            for s in schemes:
                above = sum(value[o] > value[s] for o in schemes)
                tied = sum(value[o] == value[s] for o in schemes)  # itself included
                reciprocal[s].append(1.0 / (above + (tied + 1) / 2))
    return {s: (sum(v) / len(v) if v else float("nan")) for s, v in reciprocal.items()}


def _mrr_section(records: Sequence[dict[str, Any]]) -> list[str]:
    """The markdown of `mean_reciprocal_rank` when two schemes or more are compared on two
    tasks or more; [] otherwise."""
    ok = [r for r in records if r.get("status", "ok") == "ok"]
    tasks = {r["task"] for r in ok if r["eval_length"] > r["train_length"]}
    if len(tasks) < 2 or len({r["scheme"] for r in ok}) < 2:
        return []
    mrr = mean_reciprocal_rank(ok)
    ranked = sorted(mrr, key=lambda s: -mrr[s] if not math.isnan(mrr[s]) else math.inf)
    out = ["### All tasks — mean reciprocal rank\n"]
    out.append("| scheme | MRR |")
    out.append("|---|---|")
    out += [f"| {s} | {mrr[s]:.3f} |" for s in ranked]
    out.append("")
    out.append(
        "MRR: in each (task, seed), the schemes ranked by their score beyond the training "
        "length (ties share their mean rank); 1 / rank averaged over the queries "
        "(Kazemnejad et al. 2023, Figure 1).\n"
    )
    return out


def markdown_table(records: Sequence[dict[str, Any]]) -> str:
    """One table per task: schemes x eval lengths, mean ± std over seeds.

    Two more columns average the lengths within the training length ("in-dist.")
    and beyond it ("beyond"), per run and then over seeds. When a scheme has more than
    one run (seeds x learning rates), a "best" column gives the papers' aggregate
    (`best_of_runs`: the best run's "beyond" score, Deletang et al. 2023 / Ruoss et al.
    2023). With a learning-rate sweep, an "lr" column names the rate at which each
    row's mean ± std is taken (`best_learning_rate`). Each task shows its headline
    metric (`metric_of`): token accuracy in percent (encoder tasks), exact match of the
    whole answer in percent (decoder tasks), perplexity (language modelling); a last row
    gives the chance level, the input-blind best guess on the same evaluation data.
    Two schemes or more on two tasks or more add a table of `mean_reciprocal_rank`
    (Kazemnejad et al.'s aggregate over tasks). A
    line under each heading says which lengths the runs used and where they came from
    (the config or the task's reference ranges), one under each table what the columns
    are. Diverged runs are listed under the tables.
    """
    out = []
    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by_task[r["task"]].append(r)
    for task, rs in sorted(by_task.items()):
        ok = [r for r in rs if r.get("status", "ok") == "ok"]
        if not ok:
            continue
        metric = metric_of(ok)
        every = sorted({r["eval_length"] for r in ok})
        lengths = shown_lengths(every)
        train_length = ok[0]["train_length"]
        schemes = list(dict.fromkeys(r["scheme"] for r in ok))
        rates = {sc: {r.get("learning_rate") for r in ok if r["scheme"] == sc} for sc in schemes}
        sweep = any(len(v) > 1 for v in rates.values())
        runs = {sc: len({(r.get("learning_rate"), r["seed"]) for r in ok if r["scheme"] == sc})
                for sc in schemes}  # fmt: skip
        show_best = max(runs.values()) > 1
        shown = at_best_learning_rate(ok)
        out.append(f"### {task} — {UNITS[metric]}, trained at length {train_length}\n")
        origin = _lengths_line(ok, every)
        if origin:
            out.append(origin + "\n")
        if len(lengths) < len(every):
            out.append(
                f"{len(every)} evaluation lengths ({every[0]}..{every[-1]}); {len(lengths)} "
                "shown, in-dist. and beyond average all of them.\n"
            )
        lead = ["scheme", "lr"] if sweep else ["scheme"]
        header = [*lead, *[str(n) for n in lengths], "in-dist.", "beyond"]
        header += ["best"] if show_best else []
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + "---|" * len(header))
        for scheme in schemes:
            srs = [r for r in shown if r["scheme"] == scheme]
            cells = [scheme]
            if sweep:
                cells.append(f"{srs[0]['learning_rate']:g}")
            for n in lengths:
                cells.append(
                    _fmt(*_mean_std([r[metric] for r in srs if r["eval_length"] == n]), metric)
                )
            for inside in (True, False):
                sel = [r for r in srs if (r["eval_length"] <= train_length) == inside]
                per_seed: dict[int, list[float]] = defaultdict(list)
                for r in sel:
                    per_seed[r["seed"]].append(r[metric])
                means = [sum(v) / len(v) for v in per_seed.values()]
                cells.append(_fmt(*_mean_std(means), metric))
            if show_best:
                best = best_of_runs([r for r in ok if r["scheme"] == scheme], metric)
                cells.append(_fmt_one(best, metric))
            out.append("| " + " | ".join(cells) + " |")
        out.append(_chance_row(ok, metric, lengths, len(header), lead=len(lead)))
        out.append("")
        out.append(_columns_line(ok, metric, sweep=sweep, show_best=show_best) + "\n")
    out += _mrr_section(records)
    diverged = [r for r in records if r.get("status") == "diverged"]
    if diverged:
        out.append("Diverged runs (loss became NaN or infinite):\n")
        seen = set()
        for r in diverged:
            key = (r["scheme"], r["task"], r.get("learning_rate"), r["seed"])
            if key not in seen:
                seen.add(key)
                lr = f" / lr {r['learning_rate']:g}" if r.get("learning_rate") is not None else ""
                out.append(
                    f"- {r['scheme']} / {r['task']}{lr} / seed {r['seed']}: "
                    f"step {r.get('diverged_step')}"
                )
        out.append("")
    return "\n".join(out)


_SOURCES = {
    "task reference": "the task's reference range",
    "train": "train in the config",
    "eval.lengths": "eval.lengths in the config",
}


def _source(text: str) -> str:
    return " + ".join(_SOURCES.get(part, part) for part in text.split(" + "))


def _lengths_line(records: list[dict[str, Any]], every: list[int]) -> str:
    """Which lengths the runs used and where they came from, or "" for older records."""
    r = records[0]
    if "train_min_length" not in r:
        return ""
    text = f"Trained at lengths {r['train_min_length']}..{r['train_length']}"
    if "train_lengths_from" in r:
        text += f" ({_source(r['train_lengths_from'])})"
    text += f", evaluated at {lengths_text(every)}"
    if "eval_lengths_from" in r:
        text += f" ({_source(r['eval_lengths_from'])})"
    return text + "."


def _columns_line(records: list[dict[str, Any]], metric: str, *, sweep: bool, show_best: bool):
    """What the summary columns of a table are."""
    seeds = len({r["seed"] for r in records})
    rates = sorted({r["learning_rate"] for r in records if r.get("learning_rate") is not None})
    text = (
        "in-dist. / beyond: each run's mean over the evaluation lengths up to / beyond the "
        f"training length, then mean ± std over seeds ({seeds})."
    )
    if sweep:
        text += (
            " lr: of the learning rates swept "
            f"({', '.join(f'{lr:g}' for lr in rates)}), the one with the best mean beyond "
            "over seeds; the row's other columns are at that rate."
        )
    if show_best:
        best = "lowest" if metric == "perplexity" else "highest"
        runs = f"{seeds} seeds x {len(rates)} learning rates" if sweep else f"{seeds} seeds"
        text += (
            f" best: the {best} beyond of any single run ({runs}), the score the Chomsky "
            "papers report (Deletang et al. 2023, App. A.4; Ruoss et al. 2023)."
        )
    return text


def shown_lengths(lengths: Sequence[int], limit: int = 8) -> list[int]:
    """At most ``limit`` of ``lengths`` (sorted) for a table's columns: all of them when few,
    else evenly spaced ones with the first and the last."""
    lengths = sorted(lengths)
    if len(lengths) <= limit:
        return lengths
    picks = {round(i * (len(lengths) - 1) / (limit - 1)) for i in range(limit)}
    return [lengths[i] for i in sorted(picks)]


def _chance_row(
    records: list[dict[str, Any]], metric: str, lengths: list[int], width: int, lead: int = 1
) -> str:
    """The input-blind best guess at each length (the same data for every scheme), or ""."""
    key = f"chance_{metric}"
    if not any(key in r for r in records):
        return ""
    cells = ["*chance*"] + [""] * (lead - 1)
    for n in lengths:
        vals = [r[key] for r in records if r["eval_length"] == n and key in r]
        cells.append(f"*{100 * vals[0]:.1f}*" if vals else "—")
    cells += [""] * (width - len(cells))
    return "| " + " | ".join(cells) + " |"


def _git_commit() -> str | None:
    try:
        here = Path(__file__).resolve().parent
        res = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        return res.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def environment() -> dict[str, Any]:
    """Versions, devices and threads, recorded beside the results."""
    import flax
    import jax
    import numpy as np
    import optax

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "jax": jax.__version__,
        "jaxlib": getattr(__import__("jaxlib"), "__version__", None),
        "flax": flax.__version__,
        "optax": optax.__version__,
        "numpy": np.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "device_count": jax.device_count(),
        "cpu_count": os.cpu_count(),
        "xla_flags": os.environ.get("XLA_FLAGS"),
        "git_commit": _git_commit(),
    }
