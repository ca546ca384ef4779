"""Result plots: metric against evaluation length, one line per scheme, band over seeds."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from posenc_jax.harness.figures import save_figure
from posenc_jax.harness.results import at_best_learning_rate, metric_of

__all__ = ["figure_length_plot", "plot_results"]


def figure_length_plot(records: Sequence[dict[str, Any]], *, title: str = "") -> Figure:
    """One task's records: the metric against evaluation length, one line per scheme.

    x: evaluation length (log scale), y: the task's headline metric (accuracy, exact
    match, or perplexity on a log scale), the training length marked by a dashed line
    and the chance level (input-blind best guess) by a dotted one; each scheme a line
    at the seed mean with a band from the seed minimum to maximum.
    """
    metric = metric_of(records)
    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.subplots()
    for scheme in dict.fromkeys(r["scheme"] for r in records):
        srs = [r for r in records if r["scheme"] == scheme]
        lengths = sorted({r["eval_length"] for r in srs})
        vals = [np.array([r[metric] for r in srs if r["eval_length"] == n], float) for n in lengths]
        mean = np.array([v.mean() for v in vals])
        (line,) = ax.plot(lengths, mean, marker="o", ms=3, label=scheme)
        if max(len(v) for v in vals) > 1:
            ax.fill_between(
                lengths,
                [v.min() for v in vals],
                [v.max() for v in vals],
                color=line.get_color(),
                alpha=0.15,
                linewidth=0,
            )
    ax.axvline(
        records[0]["train_length"], color="gray", linestyle="--", linewidth=1, label="train length"
    )
    chance = {r["eval_length"]: r[f"chance_{metric}"] for r in records if f"chance_{metric}" in r}
    if chance:
        xs = sorted(chance)
        ax.plot(xs, [chance[n] for n in xs], color="black", linestyle=":", label="chance")
    ax.set_xscale("log")
    if metric == "perplexity":
        ax.set_yscale("log")
    ax.set_xlabel("evaluation length")
    ax.set_ylabel(metric)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    return fig


def plot_results(records: Sequence[dict[str, Any]], out_dir: str | Path) -> list[Path]:
    """Writes one PNG per task (``length_<task>.png``, see `figure_length_plot`); returns them.

    Records whose status is not "ok" are left out; with a learning-rate sweep each
    scheme is drawn at its best rate (`at_best_learning_rate`, as in results.md).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in at_best_learning_rate(records):
        if r.get("status", "ok") == "ok":
            by_task[r["task"]].append(r)
    return [
        save_figure(figure_length_plot(rs, title=task), out_dir / f"length_{task}.png")
        for task, rs in sorted(by_task.items())
    ]
