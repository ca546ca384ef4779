"""Draws the figures of the docs into docs/images/ (committed PNGs).

    python tools/docs_figures.py                 # every figure
    python tools/docs_figures.py --only alibi_lm # one reproduction (or "encodings")
    python tools/docs_figures.py --runs DIR      # results folders (default runs/)

* ``docs/images/encodings/``: the pictures of ``posenc viz`` (what each encoding
  computes, drawn from the library's pure functions; a few seconds).
* ``docs/images/reproductions/<name>/``: the figures of each reproduction page
  ``docs/reproductions/<name>.md``. When ``<runs>/<name>/results.jsonl`` exists (the
  run of ``configs/<name>.yaml``), they are drawn from its records, with a band from
  the lowest to the highest seed; otherwise from the numbers of the page's results
  table (the first table under its "## Results" heading: means over seeds), and the
  figure's title says which. Line figures use the harness's own plot
  (`posenc_jax.harness.figures.results.figure_length_plot`, as ``length_<task>.png``
  in a run's folder); the Ruoss et al. page has a bar chart, since its table keeps
  the accuracy at the training length and the mean beyond it, not each length.

PNGs are written with a 256-colour palette, which keeps each under 100 KB.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
IMAGES = DOCS / "images"
ENCODINGS = "encodings"

# ----------------------------------------------------------------------------------------
# Tables of the reproduction pages
# ----------------------------------------------------------------------------------------


def results_table(page: Path) -> tuple[list[str], list[list[str]]]:
    """The header and rows of the first Markdown table under a page's "## Results"."""
    text = page.read_text(encoding="utf-8")
    if "\n## Results" not in text:
        raise ValueError(f"{page}: no '## Results' section")
    section = text.split("\n## Results", 1)[1].split("\n## ", 1)[0]
    lines = [ln.strip() for ln in section.splitlines()]
    start = next(i for i, ln in enumerate(lines) if ln.startswith("|"))
    table = []
    for ln in lines[start:]:
        if not ln.startswith("|"):
            break
        table.append([c.strip() for c in ln.strip("|").split("|")])
    header, rule, *rows = table
    assert set("".join(rule)) <= set("-: "), f"{page}: not a table rule: {rule}"
    return header, rows


def _number(cell: str) -> float | None:
    m = re.match(r"^\s*([0-9]+(?:\.[0-9]+)?)", cell)
    return float(m.group(1)) if m else None


def records_by_length(
    page: Path, *, task: str, metric: str, scale: float = 1.0
) -> list[dict[str, Any]]:
    """A table with a length per row (first column) and a scheme per column, as records.

    A row marked "(train)" gives the training length; a row without a number in its
    first cell (such as "*after fine-tuning at 256:*") opens a new stage, whose
    columns are labelled ``<column> +ft``.
    """
    header, rows = results_table(page)
    records, suffix, train_length = [], "", None
    for row in rows:
        length = _number(row[0])
        if length is None:
            suffix = " +ft"
            continue
        if "train" in row[0]:
            train_length = int(length)
        for label, cell in zip(header[1:], row[1:], strict=True):
            value = _number(cell)
            if value is not None:
                records.append(
                    {
                        "scheme": label + suffix,
                        "task": task,
                        "eval_length": int(length),
                        metric: value * scale,
                    }
                )
    for r in records:
        r["train_length"] = train_length
    return records


def records_by_column(
    page: Path, *, metric: str, scale: float = 1.0, train_lengths: dict[str, int] | None = None
) -> list[dict[str, Any]]:
    """A table with a scheme per row and ``<task> <length>`` columns, as records.

    A task's training length is its ``(train)`` column, else ``train_lengths[task]``.
    """
    header, rows = results_table(page)
    records = []
    for row in rows:
        for column, cell in zip(header[1:], row[1:], strict=True):
            task, length = column.split()[:2]
            record = {"scheme": row[0], "task": task, "eval_length": int(length)}
            record[metric] = _number(cell) * scale
            if "(train)" in column:
                record["train"] = True
            records.append(record)
    for task in {r["task"] for r in records}:
        marked = {r["eval_length"] for r in records if r["task"] == task and "train" in r}
        (train_length,) = marked or {(train_lengths or {})[task]}
        for r in records:
            if r["task"] == task:
                r["train_length"] = train_length
                r.pop("train", None)
    return records


def run_records(runs: Path, name: str) -> list[dict[str, Any]] | None:
    """The records of ``<runs>/<name>/results.jsonl``, or None when there is no such file."""
    from posenc_jax.harness.results import read_records

    path = runs / name / "results.jsonl"
    if not path.is_file():
        return None
    return [r for r in read_records(path) if r.get("status", "ok") == "ok"]


# ----------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------


def length_figure(records: Sequence[dict[str, Any]], title: str) -> Figure:
    """The harness's length plot, with the evaluation lengths as plain tick labels."""
    from matplotlib.ticker import FormatStrFormatter, NullFormatter

    from posenc_jax.harness.figures.results import figure_length_plot

    fig = figure_length_plot(records, title=title)
    (ax,) = fig.axes
    ax.set_xticks(sorted({r["eval_length"] for r in records}))
    ax.xaxis.set_major_formatter(FormatStrFormatter("%d"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    if ax.get_yscale() == "log":
        ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    return fig


def _source_note(from_runs: bool, name: str) -> str:
    return f"from runs/{name}/results.jsonl" if from_runs else "drawn from the table"


def _lm_perplexity_page(name: str, runs: Path) -> dict[str, Figure]:
    """The length figure of a byte-LM page: from its run when present, else its table."""
    records = run_records(runs, name)
    from_runs = records is not None
    if not from_runs:
        records = records_by_length(DOCS / "reproductions" / f"{name}.md", task="lm",
                                    metric="perplexity")  # fmt: skip
    title = f"{name}: validation perplexity per byte ({_source_note(from_runs, name)})"
    return {"length_lm.png": length_figure(records, title)}


def alibi_lm(runs: Path) -> dict[str, Figure]:
    return _lm_perplexity_page("alibi_lm", runs)


def recent_schemes_lm(runs: Path) -> dict[str, Figure]:
    return _lm_perplexity_page("recent_schemes_lm", runs)


ROPE_EXTENSION_LABELS = {
    "rope": "none",
    "rope+linear": "linear (PI)",
    "rope+ntk": "NTK-aware",
    "rope+dynamic": "dynamic NTK",
    "rope+yarn": "YaRN",
}


def rope_extension(runs: Path) -> dict[str, Figure]:
    name = "rope_extension"
    records = run_records(runs, name)
    from_runs = records is not None
    if from_runs:
        renamed = []
        for r in records:
            base = r["scheme"].removesuffix("+ft")
            label = ROPE_EXTENSION_LABELS.get(base, base)
            renamed.append({**r, "scheme": label + (" +ft" if r["scheme"] != base else "")})
        alibi = [
            {**r, "scheme": "ALiBi (`alibi_lm`)"}
            for r in run_records(runs, "alibi_lm") or []
            if r["scheme"] == "alibi" and r["eval_length"] <= max(x["eval_length"] for x in records)
        ]
        records = renamed + alibi
    else:
        records = records_by_length(DOCS / "reproductions" / f"{name}.md", task="lm",
                                    metric="perplexity")  # fmt: skip
    note = _source_note(from_runs, name)
    zero_shot = [r for r in records if not r["scheme"].endswith("+ft")]
    tuned = [r for r in records if r["scheme"].endswith("+ft")]
    figures = {"length_lm_zero_shot.png": length_figure(zero_shot, f"zero shot ({note})")}
    if tuned:
        for r in tuned:
            r.update(train_length=256)  # the fine-tuning length, marked on the plot
        figures["length_lm_finetuned.png"] = length_figure(
            tuned, f"after fine-tuning at 256 bytes ({note})"
        )
    return figures


KAZEMNEJAD_TRAIN = {"copy": 20, "reverse": 20}  # the tasks' reference training lengths


def kazemnejad(runs: Path) -> dict[str, Figure]:
    name = "kazemnejad"
    records = run_records(runs, name)
    from_runs = records is not None
    if not from_runs:
        records = records_by_column(DOCS / "reproductions" / f"{name}.md", metric="accuracy",
                                    scale=0.01, train_lengths=KAZEMNEJAD_TRAIN)  # fmt: skip
    note = _source_note(from_runs, name)
    return {
        f"length_{task}.png": length_figure(
            [r for r in records if r["task"] == task], f"{task}: token accuracy ({note})"
        )
        for task in ("copy", "reverse")
    }


def _by_column_page(name: str, runs: Path, tasks: dict[str, str]) -> dict[str, Figure]:
    """One length figure per task of a page whose table has a scheme per row and
    ``<task> <length>`` columns of the task's headline metric in % (``tasks``: task
    label -> headline metric)."""
    records = run_records(runs, name)
    from_runs = records is not None
    if not from_runs:
        records = records_by_column(DOCS / "reproductions" / f"{name}.md",
                                    metric="value", scale=0.01)  # fmt: skip
        records = [r for r in records if r["task"] in tasks]
        for r in records:
            r["metric"] = tasks[r["task"]]
            r[r["metric"]] = r.pop("value")
    note = _source_note(from_runs, name)
    return {
        f"length_{task.replace('+', '_')}.png": length_figure(
            [r for r in records if r["task"] == task], f"{task}: {metric} ({note})"
        )
        for task, metric in tasks.items()
    }


def arithmetic(runs: Path) -> dict[str, Figure]:
    # Zhou et al.'s format is not learned at this budget (0% everywhere): no figure.
    return _by_column_page("arithmetic", runs, {"mcleish": "exact_match"})


def cope_tasks(runs: Path) -> dict[str, Figure]:
    tasks = {"counting": "exact_match", "selective_copy": "exact_match", "flip_flop": "accuracy"}
    return _by_column_page("cope_tasks", runs, tasks)


CHOMSKY_TASKS = {"even_pairs": 50.0, "cycle_navigation": 20.0, "bucket_sort": None}  # chance


def chomsky_summary(runs: Path) -> tuple[dict[str, dict[str, list[float]]], bool]:
    """task -> scheme -> [plain at 40, plain beyond, +rand at 40, +rand beyond] (%)."""
    records = run_records(runs, "chomsky")
    out: dict[str, dict[str, list[float]]] = {t: {} for t in CHOMSKY_TASKS}
    if records is not None:
        for task in CHOMSKY_TASKS:
            for r0 in records:
                if r0["task"] != task:
                    continue
                scheme, values = r0["scheme"], []
                for label in (task, f"{task}+rand"):
                    rs = [r for r in records if r["task"] == label and r["scheme"] == scheme]
                    at = [r["accuracy"] for r in rs if r["eval_length"] == r["train_length"]]
                    beyond = [r["accuracy"] for r in rs if r["eval_length"] > r["train_length"]]
                    values += [100 * np.mean(at), 100 * np.mean(beyond)]
                out[task][scheme] = values
        return out, True
    header, rows = results_table(DOCS / "reproductions" / "chomsky.md")
    for i, task in enumerate(CHOMSKY_TASKS):  # four columns per task, in this order
        assert task.startswith(header[1 + 4 * i].split()[0].rstrip(".")), header
    for row in rows:
        cells = [_number(c) for c in row[1:]]
        for i, task in enumerate(CHOMSKY_TASKS):
            out[task][row[0]] = cells[4 * i : 4 * i + 4]
    return out, False


def chomsky(runs: Path) -> dict[str, Figure]:
    summary, from_runs = chomsky_summary(runs)
    fig = Figure(figsize=(10.5, 3.6), layout="constrained")
    axes = fig.subplots(1, len(CHOMSKY_TASKS), sharey=True)
    for ax, (task, chance) in zip(axes, CHOMSKY_TASKS.items(), strict=True):
        schemes = list(summary[task])
        x = np.arange(len(schemes))
        vals = np.array([summary[task][s] for s in schemes])  # [scheme, 4]
        ax.bar(x - 0.2, vals[:, 1], 0.4, color="#9ecae1", label="plain, 80-320")
        ax.bar(x + 0.2, vals[:, 3], 0.4, color="#08519c", label="+rand, 80-320")
        ax.plot(x - 0.2, vals[:, 0], "k_", ms=12, mew=2, label="at 40 (train)")
        ax.plot(x + 0.2, vals[:, 2], "k_", ms=12, mew=2)
        if chance is not None:
            ax.axhline(chance, color="gray", ls=":", lw=1, label="chance")
        ax.set_xticks(x, schemes, rotation=45, ha="right", fontsize=8)
        ax.set_title(task, fontsize=10)
        ax.set_ylim(0, 100)
        ax.grid(True, axis="y", alpha=0.3)
    axes[0].set_ylabel("token accuracy %")
    fig.legend(*axes[0].get_legend_handles_labels(), fontsize=8, loc="outside right center")
    fig.suptitle(
        "chomsky: accuracy beyond the training length, plain and randomized "
        "(positions; distances where marked) "
        f"({_source_note(from_runs, 'chomsky')})",
        fontsize=10,
    )
    return {"accuracy.png": fig}


REPRODUCTIONS: dict[str, Callable[[Path], dict[str, Figure]]] = {
    "alibi_lm": alibi_lm,
    "recent_schemes_lm": recent_schemes_lm,
    "kazemnejad": kazemnejad,
    "chomsky": chomsky,
    "rope_extension": rope_extension,
    "arithmetic": arithmetic,
    "cope_tasks": cope_tasks,
}
"""Reproduction (config name) -> its figures, by file name."""


# ----------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------


def shrink_png(path: Path, colors: int = 256) -> Path:
    """Rewrites a PNG with a palette of ``colors`` (lossless for line plots)."""
    from PIL import Image

    with Image.open(path) as im:
        small = im.convert("RGB").quantize(colors=colors, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)
    return path


def write(fig: Figure, path: Path) -> Path:
    from posenc_jax.harness.figures import save_figure

    return shrink_png(save_figure(fig, path))


def draw_encodings(out_dir: Path) -> list[Path]:
    from posenc_jax.harness.figures.encodings import draw_all

    return [shrink_png(p) for p in draw_all(out_dir)]


def main(argv: Sequence[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=Path, default=ROOT / "runs", help="results folders")
    parser.add_argument("--out", type=Path, default=IMAGES, help="default docs/images")
    parser.add_argument("--only", choices=[ENCODINGS, *REPRODUCTIONS], action="append")
    args = parser.parse_args(argv)
    only = args.only or [ENCODINGS, *REPRODUCTIONS]
    paths = []
    if ENCODINGS in only:
        paths += draw_encodings(args.out / ENCODINGS)
    for name, draw in REPRODUCTIONS.items():
        if name in only:
            for file, fig in draw(args.runs).items():
                paths.append(write(fig, args.out / "reproductions" / name / file))
    for p in paths:
        print(f"{p}  ({p.stat().st_size // 1024} KB)")
    return paths


if __name__ == "__main__":
    main()
