"""The papers' protocols in the harness: each task's reference train/test ranges, the
learning-rate sweep axis, and the Chomsky papers' aggregate (mean over the unseen lengths
per run, then the best run over seeds and learning rates)."""

import contextlib
import io
import math
from pathlib import Path

import pytest
import yaml

from posenc_jax.harness.config import ConfigError, config_from_dict, load_config
from posenc_jax.harness.plan import describe_plan, plan
from posenc_jax.harness.results import (
    at_best_learning_rate,
    best_learning_rate,
    best_of_runs,
    markdown_table,
    read_records,
    run_scores,
)
from posenc_jax.harness.tasks import get_task

ROOT = Path(__file__).resolve().parents[1]

TINY_MODEL = {"num_layers": 1, "d_model": 16, "num_heads": 2}


def _cfg(**changes):
    base = {
        "name": "proto",
        "schemes": ["nope"],
        "tasks": ["copy"],
        "seeds": [0],
        "model": TINY_MODEL,
        "train": {"steps": 2, "batch_size": 2},
    }
    return config_from_dict({**base, **changes})


# Kazemnejad et al. 2023, the splits behind Figure 1 (McGill-NLP/length-generalization,
# notebooks/plot_aggregate_final.ipynb cells 18 and 21): *_tr20_ts40 for copy and
# reverse, *_tr8_ts16 for the others; test = L+1..2L (make_addition_dataset.py L106-L107).
REFERENCE = {
    "copy": ((1, 20), list(range(21, 41))),
    "reverse": ((1, 20), list(range(21, 41))),
    "sort": ((1, 8), list(range(9, 17))),
    "summation": ((1, 8), list(range(9, 17))),
    "parity": ((1, 8), list(range(9, 17))),
    "addition": ((1, 8), list(range(9, 17))),
}


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_decoder_tasks_declare_the_papers_ranges(name):
    task = get_task(name)
    train, test = REFERENCE[name]
    assert tuple(task.train_lengths) == train
    assert list(task.eval_lengths) == test


def test_a_config_without_lengths_uses_each_tasks_reference_ranges():
    cfg = _cfg(tasks=["copy", "parity"])
    runs = {r.task_label: r for r in plan(cfg)}
    assert (runs["copy"].train.min_length, runs["copy"].train.length) == (1, 20)
    assert runs["copy"].eval_lengths == tuple(range(21, 41))
    assert (runs["parity"].train.min_length, runs["parity"].train.length) == (1, 8)
    assert runs["parity"].eval_lengths == tuple(range(9, 17))
    for r in runs.values():
        assert r.lengths_from == ("task reference", "task reference")
    text = "\n".join(describe_plan(cfg, list(runs.values())))
    assert "copy: trained at lengths 1..20 (task reference), evaluated at 21..40 (20" in text
    assert "parity: trained at lengths 1..8 (task reference), evaluated at 9..16 (8" in text


def test_the_config_overrides_the_reference_ranges():
    cfg = _cfg(
        tasks=[
            "copy",
            {"name": "parity", "train": {"min_length": 2, "length": 5}, "eval_lengths": [6, 7]},
            {"name": "sort", "label": "sort_short", "train": {"length": 4}},
        ],
        train={"steps": 2, "batch_size": 2, "length": 12},
        eval={"lengths": [4, {"from": 24, "to": 26}]},
    )
    runs = {r.task_label: r for r in plan(cfg)}
    # copy: the global sections; length alone trains from 1.
    assert (runs["copy"].train.min_length, runs["copy"].train.length) == (1, 12)
    assert runs["copy"].eval_lengths == (4, 24, 25, 26)
    assert runs["copy"].lengths_from == ("train", "eval.lengths")
    # parity: its own train and eval_lengths win over everything.
    assert (runs["parity"].train.min_length, runs["parity"].train.length) == (2, 5)
    assert runs["parity"].eval_lengths == (6, 7)
    assert runs["parity"].lengths_from == ("tasks[1].train", "tasks[1].eval_lengths")
    assert (runs["sort_short"].train.min_length, runs["sort_short"].train.length) == (1, 4)
    assert runs["sort_short"].lengths_from[0] == "tasks[2].train"
    # min_length alone: up to the reference maximum (parity 8).
    (run,) = plan(_cfg(tasks=["parity"], train={"min_length": 3}))
    assert (run.train.min_length, run.train.length) == (3, 8)
    assert run.lengths_from == ("train + task reference", "task reference")


def test_a_minimum_above_the_reference_maximum_is_refused():
    with pytest.raises(
        ConfigError,
        match=r"tasks\[0\]\.train\.min_length \(9\) must be <= tasks\[0\]\.train\.length \(8\) "
        r"\(the task's reference training range is 1\.\.8\)",
    ):
        plan(_cfg(tasks=[{"name": "parity", "train": {"min_length": 9}}]))


def test_learning_rate_is_a_sweep_axis_counted_by_the_plan():
    cfg = _cfg(
        schemes=["nope", "alibi"],
        seeds=[0, 1],
        train={"steps": 2, "batch_size": 2, "learning_rate": [1.0e-4, "3e-4", 5.0e-4]},
    )
    assert cfg.train.learning_rate == (1.0e-4, 3.0e-4, 5.0e-4)
    runs = plan(cfg)
    assert len(runs) == 2 * 3  # schemes x learning rates; the 2 seeds train together
    assert sorted(r.train.learning_rate for r in runs) == sorted([1e-4, 3e-4, 5e-4] * 2)
    assert len({r.key for r in runs}) == 6
    assert all(isinstance(r.train.learning_rate, float) for r in runs)
    first = "\n".join(describe_plan(cfg, runs)).splitlines()[0]
    assert first == (
        "plan: 2 schemes x 1 task x 3 learning rates (0.0001, 0.0003, 0.0005) = 6 runs, "
        "each training 2 seeds"
    )
    # a task's own train section may sweep its own rates
    cfg = _cfg(tasks=["copy", {"name": "parity", "train": {"learning_rate": [1e-3, 2e-3]}}])
    assert sorted((r.task_label, r.learning_rate) for r in plan(cfg)) == [
        ("copy", 1e-3),
        ("parity", 1e-3),
        ("parity", 2e-3),
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "train.learning_rate must be a number or a non-empty list"),
        ([1e-3, 1e-3], r"train.learning_rate must list distinct rates; got \[0.001, 0.001\]"),
        ([1e-3, -1.0], r"train.learning_rate\[1\] must be > 0"),
        ("fast", r"train.learning_rate must be a number or a list of numbers .*got 'fast'"),
        ([1e-3, "x"], r"train.learning_rate must be a number or a list of numbers"),
    ],
)
def test_bad_learning_rates_name_the_key(value, message):
    with pytest.raises(ConfigError, match=message):
        _cfg(train={"learning_rate": value})


def _records(metric="accuracy"):
    """Fabricated records of one task trained at length 2, evaluated at 1..4: scheme "a" at
    two learning rates x two seeds, scheme "b" at one rate and seed (a diverged seed too)."""
    values = {  # (scheme, lr, seed): accuracy at lengths 1, 2, 3, 4
        ("a", 1e-4, 0): [1.0, 1.0, 0.50, 0.30],  # beyond: 0.40
        ("a", 1e-4, 1): [1.0, 0.9, 0.70, 0.50],  # beyond: 0.60
        ("a", 3e-4, 0): [1.0, 1.0, 0.90, 0.60],  # beyond: 0.75  <- best run
        ("a", 3e-4, 1): [1.0, 1.0, 0.20, 0.00],  # beyond: 0.10
        ("b", 1e-4, 0): [0.8, 0.6, 0.40, 0.20],  # beyond: 0.30
    }
    out = []
    for (scheme, lr, seed), accs in values.items():
        for n, acc in zip((1, 2, 3, 4), accs, strict=True):
            out.append(
                {"scheme": scheme, "task": "t", "train_length": 2, "train_min_length": 1,
                 "learning_rate": lr, "seed": seed, "eval_length": n, metric: acc,
                 "metric": metric, "status": "ok", "train_lengths_from": "task reference",
                 "eval_lengths_from": "eval.lengths"}
            )  # fmt: skip
    diverged = {"scheme": "b", "task": "t", "train_length": 2, "learning_rate": 1e-4, "seed": 1}
    out.append({**diverged, "eval_length": None, "status": "diverged", "diverged_step": 3})
    return out


def test_the_papers_aggregate_is_the_best_run_over_seeds_and_learning_rates():
    records = _records()
    a = [r for r in records if r["scheme"] == "a"]
    scores = run_scores(a, "accuracy")
    assert scores == pytest.approx({(1e-4, 0): 0.40, (1e-4, 1): 0.60, (3e-4, 0): 0.75,
                                    (3e-4, 1): 0.10})  # fmt: skip
    assert best_of_runs(a, "accuracy") == pytest.approx(0.75)
    # The best single run is at 3e-4, but the best mean over seeds is at 1e-4 (0.50 > 0.425).
    assert best_learning_rate(a, "accuracy") == 1e-4
    kept = at_best_learning_rate(records)
    assert {r["learning_rate"] for r in kept if r["scheme"] == "a"} == {1e-4}
    assert len([r for r in kept if r["scheme"] == "b"]) == 5  # no sweep: untouched
    # Perplexity: lower is better, for the best run and the best rate alike.
    # As perplexity 2 - accuracy, run scores are 1.6, 1.4, 1.25, 1.9: the best run 1.25,
    # the best mean over seeds 1.5 at 1e-4 (1.575 at 3e-4); max would pick 1.9 and 3e-4.
    ppl = [{**r, "perplexity": 2.0 - r.pop("accuracy"), "metric": "perplexity"} for r in a]
    assert best_of_runs(ppl, "perplexity") == pytest.approx(1.25)
    assert best_learning_rate(ppl, "perplexity") == 1e-4


def test_results_table_shows_the_best_run_and_the_learning_rate_beside_mean_and_std():
    table = markdown_table(_records())
    lines = table.splitlines()
    assert "Trained at lengths 1..2 (the task's reference range), evaluated at 1..4 " \
        "(eval.lengths in the config)." in table  # fmt: skip
    assert "| scheme | lr | 1 | 2 | 3 | 4 | in-dist. | beyond | best |" in lines
    # a at 1e-4 (its best mean): lengths 3 -> 60 ± 10, 4 -> 40 ± 10; in-dist. per seed
    # 1.0 and 0.95; beyond 0.40 and 0.60; best over all four runs 75.0.
    assert "| a | 0.0001 | 100.0 ± 0.0 | 95.0 ± 5.0 | 60.0 ± 10.0 | 40.0 ± 10.0 | " \
        "97.5 ± 2.5 | 50.0 ± 10.0 | 75.0 |" in lines  # fmt: skip
    assert "| b | 0.0001 | 80.0 ± 0.0 | 60.0 ± 0.0 | 40.0 ± 0.0 | 20.0 ± 0.0 | " \
        "70.0 ± 0.0 | 30.0 ± 0.0 | 30.0 |" in lines  # fmt: skip
    explained = next(line for line in lines if line.startswith("in-dist. / beyond:"))
    assert "best: the highest beyond of any single run (2 seeds x 2 learning rates)" in explained
    assert "Deletang et al. 2023, App. A.4" in explained
    assert "- b / t / lr 0.0001 / seed 1: step 3" in lines


def test_mean_reciprocal_rank_across_tasks_and_seeds():
    """Kazemnejad et al.'s Figure 1 aggregate, worked by hand: per (task, seed) the schemes
    ranked by their score beyond training (perplexity: lower first), ties at their mean
    rank, 1 / rank averaged; a query some scheme lacks (a diverged seed) is left out."""
    from posenc_jax.harness.results import mean_reciprocal_rank

    scores = {  # (task, metric): {seed: (x, y, z)}
        ("t1", "accuracy"): {0: (0.9, 0.5, 0.5), 1: (0.2, 0.8, 0.1)},
        ("t2", "perplexity"): {0: (3.0, 2.0, 4.0), 1: (2.0, 2.0, 2.0)},
        ("t3", "accuracy"): {0: (0.1, 0.2, 0.3), 1: (0.5, 0.6, None)},
    }
    records = []
    for (task, metric), by_seed in scores.items():
        for seed, values in by_seed.items():
            for scheme, v in zip("xyz", values, strict=True):
                base = {"scheme": scheme, "task": task, "train_length": 2, "seed": seed}
                if v is None:
                    records.append({**base, "eval_length": None, "status": "diverged"})
                    continue
                for n in (2, 3):  # length 2 is in range: it does not count
                    value = v if n == 3 else 123.0
                    records.append({**base, "eval_length": n, metric: value, "metric": metric,
                                    "status": "ok"})  # fmt: skip
    # ranks: t1/0 x1 y2.5 z2.5; t1/1 y1 x2 z3; t2/0 y1 x2 z3; t2/1 all 2; t3/0 z1 y2 x3
    want = {
        "x": (1 + 1 / 2 + 1 / 2 + 1 / 2 + 1 / 3) / 5,
        "y": (1 / 2.5 + 1 + 1 + 1 / 2 + 1 / 2) / 5,
        "z": (1 / 2.5 + 1 / 3 + 1 / 3 + 1 / 2 + 1) / 5,
    }
    assert mean_reciprocal_rank(records) == pytest.approx(want)
    table = markdown_table(records)
    assert "### All tasks — mean reciprocal rank" in table
    lines = table.splitlines()
    first = lines.index("| scheme | MRR |")
    assert lines[first + 2 : first + 5] == [
        f"| y | {want['y']:.3f} |", f"| x | {want['x']:.3f} |", f"| z | {want['z']:.3f} |"
    ]  # fmt: skip
    one_task = [r for r in records if r["task"] == "t1"]
    assert "mean reciprocal rank" not in markdown_table(one_task)


def test_one_run_per_scheme_needs_no_best_column():
    records = [r for r in _records() if r["scheme"] == "b" and r["status"] == "ok"]
    header = next(line for line in markdown_table(records).splitlines() if line.startswith("| s"))
    assert header == "| scheme | 1 | 2 | 3 | 4 | in-dist. | beyond |"


@pytest.fixture(scope="module")
def sweep_run(tmp_path_factory):
    """One tiny run: parity trained on its reference range 1..8 and evaluated at the
    config's lengths 9 and 13 (one compiled evaluation bucket), one scheme, 2 seeds x 2
    learning rates. Returns (config path, output folder, stderr)."""
    from posenc_jax.harness.runner import run

    tmp = tmp_path_factory.mktemp("sweep")
    cfg = {
        "name": "sweep",
        "schemes": ["nope"],
        "tasks": ["parity"],
        "seeds": [0, 1],
        "model": TINY_MODEL,
        "train": {"steps": 3, "batch_size": 4, "warmup_steps": 1, "learning_rate": [1e-3, 3e-3]},
        "eval": {"lengths": [9, 13], "batch_size": 4, "attention_maps": 0},
    }
    path = tmp / "sweep.yaml"
    path.write_text(yaml.safe_dump(cfg))
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        run(path, out_dir=tmp / "out", progress=False)
    return path, tmp / "out", err.getvalue()


def test_a_sweep_run_records_rates_and_reference_lengths(sweep_run):
    _, out, err = sweep_run
    assert "plan: 1 scheme x 1 task x 2 learning rates (0.001, 0.003) = 2 runs" in err
    assert "parity: trained at lengths 1..8 (task reference), evaluated at 9, 13 (2 lengths, " \
        "eval.lengths)" in err  # fmt: skip
    assert "[1/2] nope/parity lr=0.001" in err and "[2/2] nope/parity lr=0.003" in err
    records = read_records(out / "results.jsonl")
    assert len(records) == 2 * 2 * 2  # learning rates x seeds x lengths
    assert {(r["learning_rate"], r["seed"]) for r in records} == {
        (lr, s) for lr in (1e-3, 3e-3) for s in (0, 1)
    }
    for r in records:
        assert (r["train_min_length"], r["train_length"]) == (1, 8)
        assert r["eval_length"] in (9, 13)
        assert r["train_lengths_from"] == "task reference"
        assert r["eval_lengths_from"] == "eval.lengths"
    summary = (out / "summary.csv").read_text().splitlines()
    assert "learning_rate" in summary[0].split(",")
    assert len(summary) == 1 + 2 * 2  # one row per (learning rate, length)
    table = (out / "results.md").read_text()
    assert "| scheme | lr | 9 | 13 | in-dist. | beyond | best |" in table
    assert "Trained at lengths 1..8 (the task's reference range), evaluated at 9, 13 " \
        "(eval.lengths in the config)." in table  # fmt: skip
    best = max(run_scores(records, "exact_match").values())
    row = next(line for line in table.splitlines() if line.startswith("| nope |"))
    assert row.endswith(f"| {100 * best:.1f} |")
    assert not math.isnan(best)


def test_a_rerun_skips_each_learning_rate_it_has(sweep_run, tmp_path):
    import shutil

    from posenc_jax.harness.runner import run

    path, done, _ = sweep_run
    out = tmp_path / "out"
    shutil.copytree(done, out)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        again = run(path, out_dir=out, progress=False)
    assert err.getvalue().count("done before, skipped") == 2
    assert again == read_records(done / "results.jsonl")


def test_runs_at_other_learning_rates_keep_their_own_folders():
    from posenc_jax.harness.runner import run_folder_name

    cfg = _cfg(train={"steps": 2, "batch_size": 2, "learning_rate": [1e-4, 3e-4]})
    names = {run_folder_name(r) for r in plan(cfg)}
    assert names == {"nope__copy__lr0.0001", "nope__copy__lr0.0003"}
    (single,) = plan(_cfg())
    assert run_folder_name(single) == "nope__copy"


def test_kazemnejad_config_uses_the_reference_data():
    runs = plan(load_config(ROOT / "configs" / "kazemnejad.yaml"))
    schemes = {r.scheme.name for r in runs}
    assert "sinusoidal" in schemes and "learned" not in schemes  # the paper's APE
    for r in runs:
        train, test = REFERENCE[r.task.name]
        assert (r.train.min_length, r.train.length) == train
        assert list(r.eval_lengths) == test
        if r.task.name in ("copy", "reverse"):
            assert r.task.num_symbols == 100


def test_chomsky_full_config_follows_the_protocol():
    cfg = load_config(ROOT / "configs" / "chomsky_full.yaml")
    # range_evaluation.py L75: every length 1..max_test_length; the score averages the unseen
    # ones, 41..500 (Deletang et al. 2023, App. A.4); 512 sequences per length (training.py,
    # range_test_total_batch_size); three learning rates.
    assert cfg.eval.lengths == tuple(range(1, 501))
    assert [n for n in cfg.eval.lengths if n > cfg.train.length] == list(range(41, 501))
    assert cfg.eval.batch_size * cfg.eval.num_batches == 512
    assert cfg.train.learning_rate == (1e-4, 3e-4, 5e-4)
    assert (cfg.train.min_length, cfg.train.length) == (1, 40)
