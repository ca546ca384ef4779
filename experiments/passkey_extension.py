"""Passkey retrieval heat maps: context length x needle depth, per RoPE extension.

Trains the config's one scheme on its passkey task (configs/passkey_extension.yaml:
keys hidden at uniform depths in up to 64 filler tokens, every seed together), then
evaluates the trained parameters with no extension and with each of
``eval.context_extensions`` at every evaluation length, the key at fixed depths 0,
0.25, 0.5, 0.75 and 1 of the filler, as Jin et al. 2024 (SelfExtend, Fig. 3) and Peng
et al. 2023 (YaRN) show passkey results. The score is the whole key retrieved
(``sequence_accuracy``), averaged over seeds. Writes ``heatmap.md`` (one table per
method) and ``heatmap.png`` (one panel per method) to ``--out`` (default
``runs/passkey_extension``).

In the docs: docs/reproductions/passkey_extension.md.
From the repository root:

    python experiments/passkey_extension.py
    python experiments/passkey_extension.py train.steps=100 --out /tmp/pk   # overrides, as --set
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from posenc_jax.harness import load_config
from posenc_jax.harness.evaluation import evaluate
from posenc_jax.harness.plan import context_extensions, plan
from posenc_jax.harness.tasks import get_task
from posenc_jax.harness.train import build_model_fn, graph_of, train

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "passkey_extension.yaml"
DEPTHS = (0.0, 0.25, 0.5, 0.75, 1.0)


def heatmaps(cfg, run, *, progress: bool = True) -> dict[str, np.ndarray]:
    """{method: [depth, length] sequence accuracy, mean over seeds} for the config's one
    run (``plan(cfg)``)."""
    scheme = run.scheme.configure(causal=True)
    graphdef, state, _ = train(
        run.task, scheme, cfg.seeds, cfg.model, run.train, cfg.eval, progress=progress
    )
    train_len = run.task.sequence_length(run.train.length)
    options = {k: getattr(run.task, k) for k in ("digits", "filler")}
    out = {}
    for method in ("none", *context_extensions(scheme, cfg)):

        def graph_for(length, method=method):
            if method == "none":
                return graphdef
            eval_len = run.task.sequence_length(length)
            variant = scheme.extend_context(method, train_length=train_len, eval_length=eval_len)
            return graph_of(build_model_fn(run.task, variant, cfg.model, cfg.eval))

        grid = np.zeros((len(DEPTHS), len(run.eval_lengths)))
        for i, depth in enumerate(DEPTHS):
            task = get_task("passkey", **options, depth=depth)
            metrics = evaluate(task, graphdef, state, run.eval_lengths, cfg.eval,
                               graph_for_length=graph_for, progress=False)  # fmt: skip
            grid[i] = [float(np.mean(metrics[n]["sequence_accuracy"])) for n in run.eval_lengths]
        out[method] = grid
    return out


def write(maps: dict[str, np.ndarray], lengths, out: Path, train_length: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    for method, grid in maps.items():
        lines += [f"### {method}", "", "| depth | " + " | ".join(map(str, lengths)) + " |"]
        lines.append("|---" * (len(lengths) + 1) + "|")
        for depth, row in zip(DEPTHS, grid, strict=True):
            lines.append(f"| {depth:g} | " + " | ".join(f"{100 * v:.0f}" for v in row) + " |")
        lines.append("")
    (out / "heatmap.md").write_text("\n".join(lines))
    fig, axes = plt.subplots(1, len(maps), figsize=(2.2 * len(maps), 2.6), sharey=True)
    for ax, (method, grid) in zip(np.atleast_1d(axes), maps.items(), strict=True):
        ax.imshow(grid, vmin=0, vmax=1, cmap="RdYlGn", aspect="auto")
        for (i, j), value in np.ndenumerate(grid):
            ax.text(j, i, f"{100 * value:.0f}", ha="center", va="center", fontsize=6)
        ax.set_title(method, fontsize=9)
        ax.set_xticks(range(len(lengths)), [str(n) for n in lengths], fontsize=7)
        ax.set_xlabel(f"filler tokens (trained <= {train_length})", fontsize=7)
    np.atleast_1d(axes)[0].set_yticks(range(len(DEPTHS)), [f"{d:g}" for d in DEPTHS], fontsize=7)
    np.atleast_1d(axes)[0].set_ylabel("key depth", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "heatmap.png", dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("overrides", nargs="*", help="config overrides KEY=VALUE, as posenc run --set")
    p.add_argument("--out", default=None, help="output folder (default runs/<name>)")
    args = p.parse_args()
    cfg = load_config(CONFIG, args.overrides)
    out = Path(args.out or Path("runs") / cfg.name)
    (run,) = plan(cfg)
    maps = heatmaps(cfg, run, progress=sys.stderr.isatty())
    write(maps, run.eval_lengths, out, run.train.length)
    print((out / "heatmap.md").read_text())


if __name__ == "__main__":
    main()
