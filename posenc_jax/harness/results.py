"""Results files: atomic writes, JSONL records, CSV summary, markdown table, environment."""

from __future__ import annotations

import csv
import io
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
    "atomic_write_bytes",
    "atomic_write_text",
    "environment",
    "markdown_table",
    "read_records",
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
    """Mean and std over seeds per (scheme, task, eval_length)."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if r.get("status", "ok") != "ok":
            continue
        groups[(r["task"], r["scheme"], r["eval_length"])].append(r)
    rows = []
    for (task, scheme, length), rs in sorted(groups.items()):
        row = {
            "task": task,
            "scheme": scheme,
            "train_length": rs[0]["train_length"],
            "eval_length": length,
            "seeds": len(rs),
        }
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


def _fmt(mean: float, std: float, metric: str) -> str:
    if math.isnan(mean):
        return "—"
    if metric == "perplexity":
        return f"{mean:.2f} ± {std:.2f}"
    return f"{100 * mean:.1f} ± {100 * std:.1f}"


def markdown_table(records: Sequence[dict[str, Any]]) -> str:
    """One table per task: schemes x eval lengths, mean ± std over seeds.

    Two more columns average the lengths within the training length ("in-dist.")
    and beyond it ("beyond"). Each task shows its headline metric (`metric_of`):
    token accuracy in percent (encoder tasks), exact match of the whole answer in
    percent (decoder tasks), perplexity (language modelling); a last row gives the
    chance level, the input-blind best guess on the same evaluation data. Diverged
    runs are listed under the tables.
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
        out.append(f"### {task} — {UNITS[metric]}, trained at length {train_length}\n")
        if len(lengths) < len(every):
            out.append(
                f"{len(every)} evaluation lengths ({every[0]}..{every[-1]}); {len(lengths)} "
                "shown, the last two columns average all of them.\n"
            )
        header = ["scheme", *[str(n) for n in lengths], "in-dist.", "beyond"]
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + "---|" * len(header))
        for scheme in schemes:
            cells = [scheme]
            srs = [r for r in ok if r["scheme"] == scheme]
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
            out.append("| " + " | ".join(cells) + " |")
        out.append(_chance_row(ok, metric, lengths, len(header)))
        out.append("")
    diverged = [r for r in records if r.get("status") == "diverged"]
    if diverged:
        out.append("Diverged runs (loss became NaN or infinite):\n")
        seen = set()
        for r in diverged:
            key = (r["scheme"], r["task"], r["seed"])
            if key not in seen:
                seen.add(key)
                out.append(
                    f"- {r['scheme']} / {r['task']} / seed {r['seed']}: "
                    f"step {r.get('diverged_step')}"
                )
        out.append("")
    return "\n".join(out)


def shown_lengths(lengths: Sequence[int], limit: int = 8) -> list[int]:
    """At most ``limit`` of ``lengths`` (sorted) for a table's columns: all of them when few,
    else evenly spaced ones with the first and the last."""
    lengths = sorted(lengths)
    if len(lengths) <= limit:
        return lengths
    picks = {round(i * (len(lengths) - 1) / (limit - 1)) for i in range(limit)}
    return [lengths[i] for i in sorted(picks)]


def _chance_row(records: list[dict[str, Any]], metric: str, lengths: list[int], width: int) -> str:
    """The input-blind best guess at each length (the same data for every scheme), or ""."""
    key = f"chance_{metric}"
    if not any(key in r for r in records):
        return ""
    cells = ["*chance*"]
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
