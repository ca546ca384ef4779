"""The experiment harness end to end: CLI, files, bad configs, resume, divergence, determinism."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from posenc_jax.harness.cli import main
from posenc_jax.harness.config import ConfigError, config_from_dict, load_config
from posenc_jax.harness.results import read_records
from posenc_jax.harness.runner import run

ROOT = Path(__file__).resolve().parents[1]

TINY = {
    "name": "tiny",
    "schemes": ["alibi", {"name": "learned", "max_length": 64}],
    "tasks": [{"name": "copy", "num_symbols": 5}],
    "seeds": [0, 1],
    "model": {"num_layers": 1, "d_model": 16, "num_heads": 2},
    "train": {"length": 4, "steps": 6, "batch_size": 4, "warmup_steps": 2, "log_every": 2},
    "eval": {"lengths": [4, 8], "batch_size": 4},
}


def _write(tmp_path: Path, cfg: dict, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The TINY config run once through the CLI: (config path, output folder, stdout)."""
    import contextlib
    import io

    tmp = tmp_path_factory.mktemp("tiny")
    cfg = _write(tmp, TINY)
    out = tmp / "out"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["run", str(cfg), "--out", str(out), "--no-progress"]) == 0
    return cfg, out, buf.getvalue()


def test_cli_end_to_end_writes_results(tiny_run):
    _, out, printed = tiny_run
    assert "### copy" in printed and "alibi" in printed
    for name in (
        "config.yaml",
        "environment.json",
        "results.jsonl",
        "summary.csv",
        "results.md",
        "length_copy.png",
    ):
        assert (out / name).is_file(), name
    for png in ("length_copy.png", "attention_copy.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from posenc_jax.harness.figures.attention_maps import load_attention_maps

    saved = [load_attention_maps(p) for p in sorted((out / "attention").glob("*.npz"))]
    assert {m["scheme"] for m in saved} == {"alibi", "learned"}
    for m in saved:  # copy at task lengths 4 and 8: causal rows of weights that sum to 1
        assert list(m["maps"]) == [4, 8] and m["train_length"] == 4
        for w in m["maps"].values():
            assert w.shape[0] == 2 and w.shape[1] == w.shape[2]
            np.testing.assert_allclose(w.sum(-1), 1.0, atol=2e-3)
            assert np.all(np.triu(w, k=1) == 0)
    records = read_records(out / "results.jsonl")
    # 2 schemes x 1 task x 2 seeds x 2 lengths
    assert len(records) == 8
    keys = {"scheme", "task", "seed", "train_length", "eval_length", "accuracy", "loss"}
    for r in records:
        assert keys <= set(r)
        assert r["train_length"] == 4 and r["eval_length"] in (4, 8)
        assert 0.0 <= r["accuracy"] <= 1.0 and r["loss"] > 0
    assert {(r["scheme"], r["seed"]) for r in records} == {
        (s, seed) for s in ("alibi", "learned") for seed in (0, 1)
    }
    summary = (out / "summary.csv").read_text().splitlines()
    assert summary[0].startswith("task,scheme,train_length,eval_length,seeds")
    assert len(summary) == 1 + 4
    table = (out / "results.md").read_text()
    assert "| scheme | 4 | 8 | in-dist. | beyond |" in table
    env = json.loads((out / "environment.json").read_text())
    assert env["jax"] and env["devices"] and env["cpu_count"] >= 1
    assert yaml.safe_load((out / "config.yaml").read_text())["seeds"] == [0, 1]
    assert not (out / "checkpoints").exists()


def test_language_model_records_perplexity_and_overrides(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("def f(x):\n    return x + 1\n" * 400)
    cfg = dict(
        TINY,
        schemes=["rope"],
        tasks=[{"name": "lm", "corpus": str(corpus), "eval_lengths": [8, 16]}],
    )
    cfg_path = _write(tmp_path, cfg)
    records = run(
        cfg_path,
        out_dir=tmp_path / "out",
        progress=False,
        verbose=False,
        overrides=("train.length=8", "eval.context_extensions=[linear, ntk, dynamic, yarn]"),
    )
    schemes = {r["scheme"] for r in records}
    assert schemes == {"rope", "rope+linear", "rope+ntk", "rope+dynamic", "rope+yarn"}
    for r in records:
        assert r["perplexity"] == pytest.approx(2.718281828 ** r["loss"], rel=1e-6)
    # At the training length the scaled variants use factor 1: same numbers as plain RoPE.
    at_train = {r["scheme"]: r["loss"] for r in records if r["eval_length"] == 8 and r["seed"] == 0}
    for method in ("linear", "ntk", "dynamic", "yarn"):
        assert at_train[f"rope+{method}"] == pytest.approx(at_train["rope"], rel=1e-5), method
    beyond = {r["scheme"]: r["loss"] for r in records if r["eval_length"] == 16 and r["seed"] == 0}
    # Beyond training each method changes the numbers; dynamic NTK at twice the original
    # length is NTK-aware scaling with factor 2 by definition.
    assert beyond["rope+dynamic"] == pytest.approx(beyond["rope+ntk"], rel=1e-6)
    others = [beyond[k] for k in ("rope", "rope+linear", "rope+ntk", "rope+yarn")]
    assert len({round(v, 6) for v in others}) == 4


def test_packed_language_model_training_keeps_documents_apart(tmp_path):
    """`packed: true`: the harness feeds segment ids, so each document's logits equal the
    document run alone; the option trains end to end and refuses randomized positions."""
    from flax import nnx

    from posenc_jax.harness.tasks import get_task
    from posenc_jax.harness.train import forward, pad_batch
    from posenc_jax.nn import TransformerLM

    corpus = tmp_path / "docs"
    corpus.mkdir()
    for k in range(16):
        (corpus / f"d{k:02d}.py").write_text(f"def f{k}(x):\n    return x * {k}\n" * (k % 3 + 2))
    task = get_task("lm", corpus=corpus, valid_fraction=0.3, packed=True)
    batch = task.sample_batch(np.random.default_rng(0), 4, 40)
    model = TransformerLM(256, scheme="rope", num_layers=1, d_model=16, num_heads=2,
                          rngs=nnx.Rngs(0))  # fmt: skip
    logits = np.asarray(forward(model, pad_batch(batch, 48)))
    b = int(np.argmax(batch.segment_ids.max(axis=1)))  # the row with the most documents
    row, ids = batch.tokens[b], batch.segment_ids[b]
    assert ids.max() >= 1
    for doc in np.unique(ids):
        alone = np.asarray(model(row[None, ids == doc]))[0]
        np.testing.assert_allclose(logits[b, :40][ids == doc], alone, atol=2e-5)

    cfg = dict(TINY, schemes=["alibi"], seeds=[0])
    cfg["tasks"] = [{"name": "lm", "corpus": str(corpus), "valid_fraction": 0.3,
                     "packed": True, "eval_lengths": [8, 16]}]  # fmt: skip
    records = run(
        _write(tmp_path, cfg), out_dir=tmp_path / "out", progress=False, verbose=False,
        overrides=("train.length=8",),
    )  # fmt: skip
    assert {r["eval_length"] for r in records} == {8, 16}
    assert all(np.isfinite(r["loss"]) for r in records)
    with pytest.raises(ConfigError, match=r"packed.*train\.randomized_positions"):
        run(_write(tmp_path, cfg, "rand.yaml"), out_dir=tmp_path / "o2", progress=False,
            overrides=("train.length=8", "train.randomized_positions=64"))  # fmt: skip


def test_exact_match_is_the_exact_match_of_greedy_generation():
    """A decoder task's headline: teacher-forced argmax right on every answer slot is exactly
    greedy decoding reproducing the answer. The answers here are the model's own greedy
    continuations (a plain loop of full forwards), half of them with one token changed."""
    import dataclasses

    from flax import nnx

    from posenc_jax.harness.tasks import BOS, get_task
    from posenc_jax.harness.tasks.base import decoder_batch
    from posenc_jax.harness.train import forward, masked_metrics, pad_batch
    from posenc_jax.nn import TransformerLM

    task = get_task("copy", num_symbols=5)
    model = TransformerLM(task.vocab_size, scheme="rope", num_layers=1, d_model=16,
                          num_heads=2, rngs=nnx.Rngs(3))  # fmt: skip
    rng = np.random.default_rng(0)
    prompts = task.sample_prompts(rng, 8, 4)
    steps = task.output_length(4) + 1  # the answer and the end slot
    width = prompts.shape[1] + 1 + steps
    seq = np.zeros((8, width), np.int32)  # causal: the zeros ahead never reach a position
    seq[:, 0], seq[:, 1 : prompts.shape[1] + 1] = BOS, prompts
    logits_of = nnx.jit(lambda m, x: m(x))  # one shape, one compile
    for t in range(prompts.shape[1], prompts.shape[1] + steps):
        seq[:, t + 1] = np.asarray(logits_of(model, seq))[:, t].argmax(-1)
    greedy = seq[:, prompts.shape[1] + 1 :]  # [B, A + 1]
    wrong = np.arange(8) % 2 == 1
    answers = greedy.copy()
    slot = rng.integers(0, answers.shape[1], size=8)
    answers[wrong, slot[wrong]] = (answers[wrong, slot[wrong]] + 1) % task.vocab_size
    batch = decoder_batch(prompts, answers[:, :-1])
    targets = batch.targets.copy()
    targets[:, -1] = answers[:, -1]  # the end slot holds the model's own last greedy token
    batch = dataclasses.replace(batch, targets=targets)
    padded = pad_batch(batch, batch.tokens.shape[1] + 3)
    logits = forward(model, padded)
    one = {k: v[:, None] for k, v in padded.items()}  # each row a batch of its own
    per_row = jax.vmap(masked_metrics)(logits[:, None], one["targets"], one["loss_mask"])
    assert np.asarray(per_row["seq_correct"]).tolist() == [0.0 if w else 1.0 for w in wrong]


def test_chance_levels_are_the_best_input_blind_guesses():
    from posenc_jax.harness.evaluation import ChanceLevel

    chance = ChanceLevel()
    targets = np.array([[0, 5, 6, 4], [0, 5, 7, 4], [0, 8, 6, 4], [0, 5, 6, 4], [0, 9, 9, 9]])
    mask = np.array([[0, 1, 1, 1]] * 4 + [[0, 0, 0, 0]], bool)  # the last row: nothing scored
    chance.add(targets[:2], mask[:2])  # two batches count as one set
    chance.add(targets[2:], mask[2:])
    # Columns: 5 three times of 4, 6 three of 4, 4 four of 4; answers: (5, 6, 4) twice of 4.
    assert chance.levels() == {"chance_accuracy": 10 / 12, "chance_exact_match": 2 / 4}
    assert ChanceLevel().levels() == {}


def test_decoder_tables_show_exact_match_and_chance(tiny_run):
    _, out, printed = tiny_run
    assert "### copy — exact match % of the whole answer (= greedy generation)" in printed
    assert "| *chance* |" in printed
    records = read_records(out / "results.jsonl")
    assert all(r["metric"] == "exact_match" for r in records)
    assert all(r["exact_match"] == r["sequence_accuracy"] for r in records)
    assert all(0.0 < r["chance_accuracy"] < 1.0 for r in records)


def test_evaluation_lengths_take_inclusive_ranges():
    from posenc_jax.harness.config import expand_lengths
    from posenc_jax.harness.plan import plan

    got = expand_lengths([12, {"from": 41, "to": 44}, {"from": 50, "to": 60, "step": 5}, 12], "k")
    assert got == (12, 41, 42, 43, 44, 50, 55, 60)
    assert expand_lengths({"from": 41, "to": 500}, "k") == tuple(range(41, 501))
    for bad, message in [
        ([0], r"k\[0\] must be an integer >= 1"),
        ([{"from": 5, "to": 3}], r"k\[0\]: a range needs 1 <= from <= to"),
        ([{"from": 1, "upto": 3}], r"k\[0\] must be a length or a range \{from: A"),
        ([], "k must list at least one length"),
    ]:
        with pytest.raises(ConfigError, match=message):
            expand_lengths(bad, "k")
    cfg = config_from_dict(
        {**TINY, "eval": {"lengths": [4, {"from": 6, "to": 8}]},
         "tasks": [{"name": "copy", "num_symbols": 5},
                   {"name": "copy", "label": "wide",
                    "eval_lengths": {"from": 9, "to": 20, "step": 4}}]}
    )  # fmt: skip
    assert cfg.eval.lengths == (4, 6, 7, 8)
    runs = plan(cfg)
    assert {r.task_label: r.eval_lengths for r in runs} == {
        "copy": (4, 6, 7, 8),
        "wide": (9, 13, 17),
    }
    with pytest.raises(ConfigError, match=r"eval.lengths\[1\]"):
        config_from_dict({"eval": {"lengths": [4, "x"]}})


def test_tables_with_many_lengths_show_a_few_columns_and_average_all():
    from posenc_jax.harness.results import markdown_table

    records = [
        {"scheme": "s", "task": "t", "train_length": 40, "seed": 0, "eval_length": n,
         "accuracy": 1.0 if n <= 40 else 0.5, "metric": "accuracy", "status": "ok"}
        for n in range(1, 101)
    ]  # fmt: skip
    table = markdown_table(records)
    assert "100 evaluation lengths (1..100); 8 shown" in table
    header = next(line for line in table.splitlines() if line.startswith("| scheme"))
    assert header == "| scheme | 1 | 15 | 29 | 43 | 58 | 72 | 86 | 100 | in-dist. | beyond |"
    row = next(line for line in table.splitlines() if line.startswith("| s |"))
    assert row.endswith("| 100.0 ± 0.0 | 50.0 ± 0.0 |")


def test_the_training_loss_covers_every_slot_when_the_task_says_so():
    """stack_manipulation with loss=all_slots: the train step's loss is the mean cross-entropy
    over every output slot (the reference's), not over the answer only."""
    import optax
    from flax import nnx

    from posenc_jax.harness.config import EvalConfig, ModelConfig
    from posenc_jax.harness.tasks import get_task
    from posenc_jax.harness.train import (
        build_model_fn,
        forward,
        init_state,
        make_train_step,
        pad_batch,
    )  # fmt: skip
    from posenc_jax.schemes import make_scheme

    task = get_task("stack_manipulation", loss="all_slots")
    make = build_model_fn(task, make_scheme("alibi"), ModelConfig(1, 16, 2), EvalConfig())
    tx = optax.sgd(0.0)
    graphdef, state = init_state(make, [0], tx)
    batch = pad_batch(task.sample_batch(np.random.default_rng(1), 8, 6), 16)
    params = jax.tree.map(lambda x: x[0], state.params)
    rest = jax.tree.map(lambda x: x[0], state.rest)
    logits = np.asarray(forward(nnx.merge(graphdef, params, rest), batch), np.float64)
    stacked = {k: v[None] for k, v in batch.items()}  # the step donates the state's buffers
    *_, metrics = make_train_step(graphdef, tx)(state.params, state.rest, state.opt_state, stacked)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    ce = -np.take_along_axis(logp, batch["targets"][..., None], -1)[..., 0]
    for mask, name in [(batch["train_mask"], "all slots"), (batch["loss_mask"], "answer")]:
        expected = ce[mask].mean()
        if name == "all slots":
            assert float(metrics["loss"][0]) == pytest.approx(expected, rel=1e-4)
        else:
            assert float(metrics["loss"][0]) != pytest.approx(expected, rel=1e-3)


def test_a_learning_rate_sweep_shares_one_train_step_equal_to_optax_adamw():
    """Runs that differ only in the learning rate share one compiled step (the rate sits in
    the optimizer state), and train exactly as optax.adamw with the warmup-cosine schedule
    at that rate would."""
    import optax

    from posenc_jax.harness.config import EvalConfig, ModelConfig, TrainConfig
    from posenc_jax.harness.tasks import get_task
    from posenc_jax.harness.train import (
        build_model_fn,
        init_state,
        make_optimizer,
        make_train_step,
        pad_batch,
    )  # fmt: skip
    from posenc_jax.schemes import make_scheme

    task = get_task("copy", num_symbols=5)
    make = build_model_fn(task, make_scheme("alibi"), ModelConfig(1, 16, 2), EvalConfig())
    batch = pad_batch(task.sample_batch(np.random.default_rng(1), 4, 4), 10)
    stacked = {k: v[None] for k, v in batch.items()}
    cfgs = [TrainConfig(learning_rate=lr, steps=4, warmup_steps=2) for lr in (1e-2, 3e-2)]
    graphdef, start = init_state(make, [0], make_optimizer(cfgs[0]))
    ours = [make_optimizer(c) for c in cfgs]
    assert make_train_step(graphdef, ours[0]) is make_train_step(graphdef, ours[1])
    lr = cfgs[1].learning_rate
    reference = optax.chain(
        optax.clip_by_global_norm(cfgs[1].grad_clip),
        optax.adamw(
            optax.warmup_cosine_decay_schedule(0.0, lr, 2, 4, end_value=0.1 * lr),
            weight_decay=cfgs[1].weight_decay,
        ),
    )

    def trained(tx):
        p, r = (jax.tree.map(jnp.copy, t) for t in (start.params, start.rest))  # donated
        o = jax.vmap(tx.init)(p)
        step = make_train_step(graphdef, tx)
        for _ in range(3):
            p, r, o, _ = step(p, r, o, stacked)
        return jax.tree.leaves(p)

    low, high, want = trained(ours[0]), trained(ours[1]), trained(reference)
    for got, ref in zip(high, want, strict=True):
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    assert not np.allclose(low[0], high[0])  # the shared step trains at each run's rate


def test_micro_batches_give_the_unsplit_update_and_metrics(monkeypatch):
    """Two and four parts of a step's rows: the same loss, metrics and updated parameters
    as one part (a learned T5 table, variable-length rows with a train mask, two seeds),
    to float rounding; one compiled step per count. Likewise the inline step."""
    from threading import get_ident

    from posenc_jax.harness import train as train_module
    from posenc_jax.harness.config import EvalConfig, ModelConfig, TrainConfig
    from posenc_jax.harness.tasks import get_task
    from posenc_jax.harness.train import (
        build_model_fn,
        init_state,
        make_optimizer,
        make_train_step,
        training_batches,
    )  # fmt: skip
    from posenc_jax.schemes import make_scheme

    task = get_task("stack_manipulation", loss="all_slots")
    scheme = make_scheme({"name": "t5", "num_buckets": 8})
    make = build_model_fn(task, scheme, ModelConfig(1, 16, 2), EvalConfig())
    tcfg = TrainConfig(length=6, min_length=2, steps=3, batch_size=8, warmup_steps=1)
    tx = make_optimizer(tcfg)
    graphdef, start = init_state(make, [0, 1], tx)
    batches = list(training_batches(task, [0, 1], tcfg))
    assert make_train_step(graphdef, tx, micro_batches=2) is not make_train_step(graphdef, tx)

    def trained(micro, inline=False):
        p, r, o = (jax.tree.map(jnp.copy, t) for t in (start.params, start.rest, start.opt_state))
        step = make_train_step(graphdef, tx, micro_batches=micro, inline=inline)
        for batch in batches:
            p, r, o, metrics = step(p, r, o, batch)
        return jax.tree.leaves(p), metrics

    whole, whole_metrics = trained(1)
    # The inline step (an empty host callback added) computes the same update, and runs
    # on the calling thread: its callback is called there.
    threads = []
    monkeypatch.setattr(train_module, "_on_the_calling_thread", lambda: threads.append(get_ident()))
    train_module._shared_train_step.cache_clear()  # trace the steps with the recorder
    for micro, inline in ((2, False), (4, False), (2, True)):
        parts, metrics = trained(micro, inline)
        for key in ("loss", "correct", "tokens", "seq_correct", "sequences"):
            np.testing.assert_allclose(metrics[key], whole_metrics[key], rtol=1e-5)
        for got, want in zip(parts, whole, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    assert threads and set(threads) == {get_ident()}
    assert not np.allclose(whole[0], jax.tree.leaves(start.params)[0])  # it did train


def test_micro_batches_auto_and_its_errors():
    from posenc_jax.harness.config import ModelConfig, TrainConfig
    from posenc_jax.harness.train import make_train_step, micro_batches_for
    from posenc_jax.schemes import make_scheme

    alibi, abacus = make_scheme("alibi"), make_scheme("abacus")
    m, t = ModelConfig(), TrainConfig(batch_size=32)  # 4 heads

    def auto(tcfg=t, mcfg=m, scheme=alibi, *, platform="cpu", seeds=1, length=128, **kw):
        return micro_batches_for(
            tcfg, mcfg, scheme, platform=platform, seeds=seeds, length=length, **kw
        )

    # Scores of a row: seeds x 4 heads x length^2 x 4 bytes; a part holds at most 16 MiB.
    assert auto() == 2  # 32 x 4 x 128^2 x 4 B = 8 MiB: two parts, side by side
    assert auto(length=512) == 8  # 128 MiB: 8 parts of 16 MiB
    assert auto(length=1024) == 8  # 512 MiB: none fits, the most parts allowed
    assert auto(seeds=2, length=256) == 4  # 64 MiB
    assert auto(TrainConfig(batch_size=8), ModelConfig(num_heads=8), length=512) == 4  # 64 MiB
    six = TrainConfig(batch_size=6)  # even divisors 2 and 6
    assert auto(six, seeds=2, length=512) == 6  # 48 MiB: 2 parts of 24 MiB, 6 of 8 MiB
    assert auto(TrainConfig(batch_size=7), length=1024) == 1  # no even divisor
    assert auto(length=127) == 1  # 32 x 127 = 4064 tokens, under 4096
    assert auto(seeds=2, length=64) == 2  # 2 x 32 x 64 = 4096 tokens
    assert auto(platform="gpu") == 1 and auto(platform="tpu") == 1
    assert auto(data_shards=2) == 1
    assert auto(mcfg=ModelConfig(dropout=0.1)) == 1
    assert auto(scheme=abacus) == 1
    big = dict(seeds=1, length=128)
    four = TrainConfig(batch_size=32, micro_batches=4)
    assert micro_batches_for(four, m, alibi, platform="gpu", seeds=1, length=1) == 4  # explicit
    with pytest.raises(ValueError, match=r"micro_batches \(4\) > 1 needs a model that draws no"):
        micro_batches_for(four, m, abacus, platform="cpu", **big)
    sixteen = TrainConfig(batch_size=8, micro_batches=16)
    with pytest.raises(ValueError, match=r"must divide the rows per device \(8\)"):
        micro_batches_for(sixteen, m, alibi, platform="cpu", **big)
    with pytest.raises(ValueError, match="micro_batches must be an int >= 1; got 0"):
        make_train_step(None, None, micro_batches=0)


def test_inline_step_for_large_steps_on_one_cpu_device():
    from posenc_jax.harness.config import TrainConfig
    from posenc_jax.harness.train import inline_step_for

    def inline(batch_size=32, *, platform="cpu", seeds=1, length=128, devices=1):
        return inline_step_for(
            TrainConfig(batch_size=batch_size),
            platform=platform,
            seeds=seeds,
            length=length,
            devices=devices,
        )

    assert inline()  # 32 x 128 = 4096 tokens
    assert not inline(length=127)  # 4064 tokens
    assert inline(16, seeds=2)  # 2 x 16 x 128
    assert not inline(32, length=26)  # the quick job's copy step: 832 tokens a seed
    assert not inline(platform="gpu") and not inline(platform="tpu")
    assert not inline(devices=2)  # a sharded step keeps JAX's dispatch


def test_evaluation_runs_a_large_batch_on_the_calling_thread(monkeypatch):
    """An evaluation batch of >= 4096 tokens (all seeds) carries the inline callback, called
    on the calling thread; a smaller one does not."""
    from threading import get_ident

    from posenc_jax.harness import evaluation
    from posenc_jax.harness import train as train_module
    from posenc_jax.harness.config import EvalConfig, ModelConfig, TrainConfig
    from posenc_jax.harness.evaluation import eval_batches, evaluate
    from posenc_jax.harness.tasks import get_task
    from posenc_jax.harness.train import build_model_fn, init_state, make_optimizer
    from posenc_jax.schemes import make_scheme

    threads = []
    monkeypatch.setattr(train_module, "_on_the_calling_thread", lambda: threads.append(get_ident()))
    evaluation._metrics_fn.cache_clear()  # trace the metrics with the recorder
    task = get_task("reverse_string")
    ecfg = EvalConfig(batch_size=64, num_batches=1)
    make = build_model_fn(task, make_scheme("nope"), ModelConfig(1, 16, 2), ecfg)
    graphdef, state = init_state(make, [0], make_optimizer(TrainConfig(steps=1)))
    small, large = 10, 20  # one seed x 64 rows x a width of 32, then of 64 (padded) tokens
    widths = [next(iter(eval_batches(task, n, ecfg)))["tokens"].shape for n in (small, large)]
    assert widths == [(64, 32), (64, 64)]
    evaluate(task, graphdef, state, [small], ecfg, progress=False)
    assert threads == []
    evaluate(task, graphdef, state, [large], ecfg, progress=False)
    assert threads and set(threads) == {get_ident()}


@pytest.mark.parametrize(
    ("train", "model", "match"),
    [
        ({"micro_batches": 0}, {}, 'train.micro_batches must be "auto" or an int >= 1; got 0'),
        ({"micro_batches": "two"}, {}, "train.micro_batches must be"),
        ({"micro_batches": 3}, {}, r"train.micro_batches \(3\) must divide train.batch_size"),
        ({"micro_batches": 2}, {"dropout": 0.1}, "needs a model without dropout"),
    ],
)
def test_micro_batches_config_errors_name_the_key(train, model, match):
    with pytest.raises(ConfigError, match=match):
        config_from_dict({"train": {"batch_size": 32, **train}, "model": model})


def test_plan_refuses_micro_batches_for_a_scheme_that_reads_the_tokens():
    from posenc_jax.harness.plan import plan

    cfg = config_from_dict(
        {
            "schemes": ["abacus"],
            "tasks": ["addition"],
            "train": {"batch_size": 8, "micro_batches": 2, "steps": 1},
        }
    )
    with pytest.raises(ConfigError, match=r"schemes\[0\] \(abacus\), task addition: train"):
        plan(cfg)


def test_model_softmax_scale_is_read_checked_and_reaches_every_attention_layer():
    from flax import nnx

    from posenc_jax.harness.config import EvalConfig, ModelConfig, config_to_dict
    from posenc_jax.harness.tasks import get_task
    from posenc_jax.harness.train import build_model_fn
    from posenc_jax.schemes import make_scheme
    from posenc_jax.softmax_scale import SoftmaxScale

    cfg = config_from_dict({"model": {"softmax_scale": {"kind": "qwen", "train_length": 8}}})
    assert cfg.model.softmax_scale == SoftmaxScale(kind="qwen", train_length=8)
    assert config_from_dict(config_to_dict(cfg)) == cfg  # the results' copy reads back
    with pytest.raises(ConfigError, match=r"model\.softmax_scale: .*\['logn', 'qwen'"):
        config_from_dict({"model": {"softmax_scale": "logm"}})
    task = get_task("copy", num_symbols=5)
    logits = {}
    for scale in (None, "logn"):
        mcfg = ModelConfig(num_layers=2, d_model=16, num_heads=2, softmax_scale=scale)
        model = build_model_fn(task, make_scheme("alibi"), mcfg, EvalConfig())(jax.random.key(0))
        kinds = {b.attn.softmax_scale and b.attn.softmax_scale.kind for b in model.blocks}
        assert kinds == {scale}
        logits[scale] = model(jnp.arange(12)[None] % 5 + 5)
        assert isinstance(model, nnx.Module)
    assert not np.allclose(logits[None], logits["logn"])  # it changes the function


def test_former_key_rope_scalings_is_read_with_a_notice(capsys):
    cfg = config_from_dict({"eval": {"rope_scalings": ["linear", "yarn"]}})
    assert cfg.eval.context_extensions == ("linear", "yarn")
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["notice: eval.rope_scalings is now eval.context_extensions; read as such"]


def test_finetune_stage_continues_from_the_trained_model(tmp_path):
    """With a vanishing fine-tune learning rate, every fine-tuned row equals its zero-shot
    counterpart: the stage starts from the trained parameters and scales RoPE by
    finetune length / training length. A real learning rate changes the numbers."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("def f(x):\n    return x + 1\n" * 400)
    cfg = dict(
        TINY,
        schemes=["rope"],
        seeds=[0],
        tasks=[{"name": "lm", "corpus": str(corpus), "eval_lengths": [8, 32]}],
        train=dict(TINY["train"], length=8, finetune_steps=3, finetune_length=32),
        eval=dict(TINY["eval"], rope_scalings=["linear"]),
    )
    overrides = ("train.finetune_learning_rate=1e-20",)
    records = run(
        _write(tmp_path, cfg),
        out_dir=tmp_path / "a",
        progress=False,
        verbose=False,
        overrides=overrides,
    )
    loss = {(r["scheme"], r["seed"], r["eval_length"]): r["loss"] for r in records}
    assert {k[0] for k in loss} == {"rope", "rope+linear", "rope+ft", "rope+linear+ft"}
    for r in records:
        if r["scheme"].endswith("+ft"):
            assert (r["finetune_length"], r["finetune_steps"], r["train_length"]) == (32, 3, 8)
    seed = 0
    for n in (8, 32):
        assert loss["rope+ft", seed, n] == pytest.approx(loss["rope", seed, n], rel=1e-5)
    # Zero-shot linear at 32 uses factor 32/8, the fine-tuned linear variant too.
    assert loss["rope+linear+ft", seed, 32] == pytest.approx(
        loss["rope+linear", seed, 32], rel=1e-5
    )
    # The same model (its programs already compiled) without the extension rows.
    tuned = run(
        _write(tmp_path, dict(cfg, eval=dict(TINY["eval"])), "b.yaml"),
        out_dir=tmp_path / "b",
        progress=False,
        verbose=False,
        overrides=("train.finetune_learning_rate=3e-3",),
    )
    tuned = {(r["scheme"], r["seed"], r["eval_length"]): r["loss"] for r in tuned}
    assert tuned["rope", 0, 32] == pytest.approx(loss["rope", seed, 32], rel=1e-5)
    assert tuned["rope+ft", 0, 32] != pytest.approx(tuned["rope", 0, 32], rel=1e-3)


BAD_CONFIGS = [
    ({"schemes": ["rotary"]}, "schemes[0]: unknown scheme 'rotary'; valid schemes"),
    ({"tasks": ["revers"]}, "tasks[0]"),
    ({"model": {"d_model": 16, "num_heads": 32}}, "model.num_heads"),
    ({"model": {"d_modl": 16}}, "unknown key model.d_modl; valid keys"),
    ({"train": {"steps": 0}}, "train.steps must be > 0"),
    ({"train": {"length": -3}}, "train.length must be > 0"),
    ({"train": {"steps": "many"}}, "train.steps must be int"),
    ({"eval": {"lengths": [4, 0]}}, "eval.lengths[1] must be an integer >= 1 or a range; got 0"),
    ({"eval": {"context_extensions": ["magic"]}}, "eval.context_extensions[0] must be one of"),
    (
        {"eval": {"rope_scalings": ["yarn"], "context_extensions": ["yarn"]}},
        "eval.rope_scalings is the former name of eval.context_extensions",
    ),
    ({"schemes": [{"name": "learned", "max_length": 8}]}, "encodes at most 8 positions"),
    ({"schemes": [{"name": "rope", "rotary_fraction": 0.375}]}, "rotary"),
    ({"schemes": [{"name": "alibi", "slope": 1}]}, "unknown setting 'slope'"),
    ({"model": {"norm": "batch"}}, "model.norm must be one of ['layernorm', 'rmsnorm']"),
    ({"seeds": []}, "seeds must list"),
    ({"colour": "red"}, "unknown key colour"),
    ({"tasks": [{"name": "copy", "train": {"steps": -1}}]}, "tasks[0].train.steps"),
    ({"train": {"finetune_steps": 5}}, "train.finetune_length must be set"),
    ({"train": {"finetune_steps": 5, "finetune_length": 0}}, "train.finetune_length must be > 0"),
    (
        {
            "schemes": [{"name": "learned", "max_length": 20}],
            "train": {"finetune_steps": 2, "finetune_length": 30},
        },
        "encodes at most 20 positions",
    ),
]


@pytest.mark.parametrize(("change", "message"), BAD_CONFIGS, ids=[m for _, m in BAD_CONFIGS])
def test_bad_config_fails_before_anything_is_written(tmp_path, capsys, change, message):
    cfg = {**TINY, **change}
    path = _write(tmp_path, cfg)
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"posenc: error: {path}: "), err  # names the file
    assert len(err.strip().splitlines()) == 1, err  # one line, no traceback
    assert message in err, err
    assert not out.exists()


def test_malformed_yaml_and_missing_file(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("schemes: [nope\ntasks: {")
    assert main(["run", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "malformed YAML" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "missing.yaml")]) == 2
    assert "no such config file" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="--set expects KEY=VALUE"):
        load_config(_write(tmp_path, TINY), ["train.steps"])


@pytest.mark.parametrize("text", ["", "# settings to come\n", "{}\n"])
def test_a_config_file_without_settings_is_refused_in_one_line(tmp_path, capsys, text):
    empty = tmp_path / "empty.yaml"
    empty.write_text(text)
    out = tmp_path / "o"
    assert main(["run", str(empty), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err == f"posenc: error: {empty}: the file holds no settings (see configs/quick.yaml)\n"
    assert not out.exists()


def test_a_closed_pipe_ends_the_command_quietly():
    """`posenc list | head -1`: the reader closes first; no traceback, the SIGPIPE code."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "posenc_jax.harness.cli", "list"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # before the command has written anything
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert err == "", err


def test_debug_flag_shows_traceback(tmp_path, capsys):
    path = _write(tmp_path, {**TINY, "schemes": ["rotary"]})
    assert main(["--debug", "run", str(path), "--out", str(tmp_path / "o")]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_rerun_skips_finished_runs_and_refuses_other_configs(tiny_run, tmp_path, capsys):
    import shutil

    path, done, _ = tiny_run
    out = tmp_path / "out"
    shutil.copytree(done, out)
    first = read_records(out / "results.jsonl")
    before = (out / "results.jsonl").read_bytes()
    again = run(path, out_dir=out, progress=False)
    assert capsys.readouterr().err.count("done before, skipped") == 2
    assert again == first
    assert (out / "results.jsonl").read_bytes() == before
    other_cfg = {**TINY, "schemes": ["nope"], "seeds": [3]}
    other = _write(tmp_path, other_cfg, "other.yaml")
    with pytest.raises(ConfigError, match="different config"):
        run(other, out_dir=out, progress=False, verbose=False)
    assert (out / "results.jsonl").read_bytes() == before
    records = run(other, out_dir=out, overwrite=True, progress=False, verbose=False)
    assert {(r["scheme"], r["seed"]) for r in records} == {("nope", 3)}
    (tmp_path / "stranger").mkdir()
    (tmp_path / "stranger" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        run(other, out_dir=tmp_path / "stranger", progress=False, verbose=False)


def test_same_config_gives_identical_results_files(tiny_run, tmp_path):
    path, done, _ = tiny_run
    run(path, out_dir=tmp_path / "b", progress=False, verbose=False)
    for name in ("results.jsonl", "summary.csv", "results.md"):
        assert (done / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_diverging_run_is_recorded_and_the_sweep_goes_on(tmp_path):
    nan_task = {
        "name": "copy",
        "num_symbols": 5,
        "label": "copy_nan",
        "train": {"learning_rate": 1.0e38, "grad_clip": 0.0, "warmup_steps": 0},
    }
    # The diverging run comes first: the sweep must go on to the next one.
    cfg = {**TINY, "schemes": ["alibi"], "tasks": [nan_task, {"name": "copy", "num_symbols": 5}]}
    records = run(_write(tmp_path, cfg), out_dir=tmp_path / "out", progress=False, verbose=False)
    bad = [r for r in records if r["task"] == "copy_nan"]
    good = [r for r in records if r["task"] == "copy"]
    assert bad and all(r["status"] == "diverged" for r in bad)
    assert all(isinstance(r["diverged_step"], int) and r["diverged_step"] > 0 for r in bad)
    assert len(good) == 4 and all(r["status"] == "ok" for r in good)
    assert "Diverged runs" in (tmp_path / "out" / "results.md").read_text()


def test_sigkill_mid_training_then_resume_equals_uninterrupted(tmp_path):
    cfg = {
        **TINY,
        "schemes": ["t5"],
        "train": {**TINY["train"], "steps": 200, "checkpoint_every": 20, "log_every": 20},
    }
    path = _write(tmp_path, cfg)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [
        sys.executable,
        "-m",
        "posenc_jax.harness.cli",
        "run",
        str(path),
        "--no-progress",
        "--compile-cache",  # the later runs reuse the first one's programs
        str(tmp_path / "cache"),
        "--out",
    ]
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [*cmd, str(killed)], env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    ckpt = killed / "checkpoints"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        steps = [p for p in ckpt.glob("*/*") if p.name.isdigit()] if ckpt.exists() else []
        if steps:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "results.jsonl").exists()
    res = subprocess.run(
        [*cmd, str(killed)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    assert "resumed at step" in res.stderr
    subprocess.run(
        [*cmd, str(tmp_path / "clean")],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert (killed / "results.jsonl").read_bytes() == (
        tmp_path / "clean" / "results.jsonl"
    ).read_bytes()


def test_list_and_plot_commands(tiny_run, tmp_path, capsys):
    import shutil

    assert main(["list", "schemes"]) == 0
    listed = capsys.readouterr().out
    for name in ("nope", "learned", "sinusoidal", "shaw", "t5", "rope", "alibi"):
        assert name in listed
    assert main(["list", "tasks"]) == 0
    assert "reverse_string" in capsys.readouterr().out
    out = tmp_path / "out"
    shutil.copytree(tiny_run[1], out)
    (out / "length_copy.png").unlink()
    assert main(["plot", str(out)]) == 0
    assert (out / "length_copy.png").is_file()
    assert main(["plot", str(tmp_path / "nothing")]) == 2


def test_default_quick_config_is_valid():
    from posenc_jax.harness.plan import plan

    cfg = load_config(ROOT / "configs" / "quick.yaml")
    runs = plan(cfg)
    assert {r.scheme.name for r in runs} == {
        "nope",
        "learned",
        "sinusoidal",
        "shaw",
        "t5",
        "rope",
        "alibi",
    }


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "configs").glob("*.yaml")))
def test_every_shipped_config_plans(name):
    """Each config in configs/ (the reproductions included) resolves into runs."""
    from posenc_jax.harness.plan import plan

    runs = plan(load_config(ROOT / "configs" / f"{name}.yaml"))
    assert runs and all(r.eval_lengths for r in runs)


@pytest.mark.parametrize("task_name", ["reverse_string", "copy"])
def test_bucketed_evaluation_equals_unbucketed(task_name):
    import dataclasses

    import numpy as np

    from posenc_jax.harness.config import EvalConfig, ModelConfig, TrainConfig
    from posenc_jax.harness.evaluation import bucket_width, evaluate
    from posenc_jax.harness.tasks import get_task
    from posenc_jax.harness.train import train
    from posenc_jax.schemes import make_scheme

    task = get_task(task_name)
    scheme = make_scheme({"name": "t5", "num_buckets": 8}).configure(causal=task.causal)
    ecfg = EvalConfig(lengths=(3, 5, 6), batch_size=4, bucket=False)
    graph, state, _ = train(
        task,
        scheme,
        [0, 1],
        ModelConfig(num_layers=1, d_model=16, num_heads=2),
        TrainConfig(length=4, steps=3, batch_size=4),
        ecfg,
        progress=False,
    )
    plain = evaluate(task, graph, state, ecfg.lengths, ecfg, progress=False)
    bucketed = evaluate(
        task, graph, state, ecfg.lengths, dataclasses.replace(ecfg, bucket=True), progress=False
    )
    widths = {bucket_width(task.sequence_length(n)) for n in ecfg.lengths}
    assert len(widths) < len(ecfg.lengths)  # lengths really share a padded program
    for n in ecfg.lengths:
        for metric in ("loss", "accuracy", "sequence_accuracy"):
            np.testing.assert_allclose(bucketed[n][metric], plain[n][metric], rtol=1e-5, atol=1e-6)


def test_persistent_compilation_cache_makes_a_rerun_compile_nothing(tmp_path):
    cfg = _write(tmp_path, {**TINY, "schemes": ["alibi"]})
    script = (
        "import sys, jax\n"
        "from jax import monitoring\n"
        "counts = {}\n"
        "monitoring.register_event_listener(\n"
        "    lambda e, **k: counts.__setitem__(e, counts.get(e, 0) + 1))\n"
        "from posenc_jax.harness.runner import run\n"
        "run(sys.argv[1], out_dir=sys.argv[2], progress=False, verbose=False, overwrite=True,\n"
        "    compile_cache=sys.argv[3])\n"
        "print(counts.get('/jax/compilation_cache/cache_misses', 0),\n"
        "      counts.get('/jax/compilation_cache/cache_hits', 0))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    outs = []
    for i in range(2):
        res = subprocess.run(
            [
                sys.executable,
                "-c",
                script,
                str(cfg),
                str(tmp_path / f"o{i}"),
                str(tmp_path / "cache"),
            ],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        )
        outs.append([int(x) for x in res.stdout.split()])
    (miss1, hit1), (miss2, hit2) = outs
    assert miss1 > 0 and hit1 == 0
    assert miss2 == 0 and hit2 >= miss1


@settings(max_examples=30, deadline=None)
@given(length=st.integers(1, 50), extra=st.integers(0, 200), seed=st.integers(0, 2**31))
def test_randomized_positions_are_sorted_distinct_subsets(length, extra, seed):
    import numpy as np

    from posenc_jax.harness.train import randomized_positions

    pos = randomized_positions(np.random.default_rng(seed), 3, length, length + extra)
    assert pos.shape == (3, length) and pos.dtype == np.int32
    assert np.all(np.diff(pos, axis=1) > 0)  # sorted and distinct
    assert pos.min() >= 0 and pos.max() < length + extra


def test_randomized_positions_in_training_and_errors(tmp_path):
    import numpy as np

    from posenc_jax.harness.config import TrainConfig
    from posenc_jax.harness.tasks import get_task
    from posenc_jax.harness.train import randomized_positions, training_batches

    task = get_task("reverse_string")
    tcfg = TrainConfig(length=6, steps=2, batch_size=4, randomized_positions=64)
    batch = next(training_batches(task, [0], tcfg))
    real = batch["padding_mask"][0]
    pos = batch["positions"][0]
    # Real tokens get sorted random positions in [0, 64).
    for row, mask in zip(pos, real, strict=True):
        assert np.all(np.diff(row[mask]) > 0) and row[mask].max() < 64
    assert not np.array_equal(pos[0][real[0]], np.arange(real[0].sum()))
    with pytest.raises(ValueError, match="randomized_positions"):
        randomized_positions(np.random.default_rng(0), 1, 10, 5)
    # ALiBi is randomized as the reference does it (distance tables), by default.
    cfg = {**TINY, "schemes": ["alibi"], "train": {**TINY["train"], "randomized_positions": 32}}
    records = run(_write(tmp_path, cfg), out_dir=tmp_path / "out", progress=False, verbose=False)
    assert {r["status"] for r in records} == {"ok"}
    assert {r["randomization"] for r in records} == {"distances"}
    bad = {**TINY, "train": {**TINY["train"], "randomized_positions": 5}}
    with pytest.raises(ConfigError, match="randomized_positions"):
        run(_write(tmp_path, bad, "bad.yaml"), out_dir=tmp_path / "o2", progress=False)


def test_distance_tables_in_training_batches():
    """Toeplitz randomization: ordinary positions, and per step one table per layer,
    the same in every row of a seed's batch, laid out as toeplitz_table lays out the
    same draws; padding offsets continue past the largest distance; resumable."""
    from posenc_jax.harness.config import TrainConfig
    from posenc_jax.harness.tasks import get_task
    from posenc_jax.harness.train import Randomization, distance_tables, training_batches
    from posenc_jax.random_distances import toeplitz_table

    task = get_task("reverse_string")
    tcfg = TrainConfig(length=6, steps=3, batch_size=4, randomized_positions=64)
    rand = Randomization(64, distance_layers=3)
    batches = list(training_batches(task, [0, 1], tcfg, randomization=rand))
    width = task.sequence_length(6)
    for batch in batches:
        tables = batch["distances"]  # [S, B, layers, W]
        assert tables.shape == (2, 4, 3, 2 * width - 1)
        assert np.all(tables == tables[:, :1])  # one table for the batch
        assert len({tuple(t) for t in tables[0, 0]}) == 3  # one per layer
        real = batch["padding_mask"][0, 0]
        np.testing.assert_array_equal(batch["positions"][0, 0][real], np.arange(real.sum()))
        assert np.all(np.diff(tables, axis=-1) > 0)
    assert not np.array_equal(batches[0]["distances"], batches[1]["distances"])
    again = list(training_batches(task, [0, 1], tcfg, start_step=2, randomization=rand))
    np.testing.assert_array_equal(again[0]["distances"], batches[2]["distances"])
    # The layout is the library's: replay the draws of one call.
    for both in (False, True):
        got = distance_tables(
            np.random.default_rng(7),
            layers=2,
            length=4,
            width=6,
            max_distance=30,
            both_sides=both,
        )
        rng = np.random.default_rng(7)
        for layer in got:
            right = np.sort(rng.choice(29, size=3, replace=False) + 1)
            left = np.sort(rng.choice(29, size=3, replace=False) + 1) if both else None
            want = toeplitz_table(right, left, width=6)
            np.testing.assert_array_equal(layer, np.asarray(want))
            assert np.all(np.abs(layer[6 - 4 : 5 + 4]) < 30)  # the real offsets


def test_randomization_mode_follows_the_reference_and_the_config(tmp_path):
    """auto: distances where the reference randomizes distances (ALiBi, Transformer-XL),
    positions elsewhere; "distances" for a scheme that cannot read them is a ConfigError
    naming the key; an unknown mode lists the choices."""
    from posenc_jax.harness.config import TrainConfig
    from posenc_jax.harness.train import Randomization, randomization_for
    from posenc_jax.schemes import make_scheme

    auto = TrainConfig(randomized_positions=100)
    assert randomization_for(auto, make_scheme("alibi"), num_layers=2) == Randomization(100, 2)
    assert randomization_for(auto, make_scheme("xl"), num_layers=2) == Randomization(100, 2)
    assert randomization_for(auto, make_scheme("t5"), num_layers=2) == Randomization(100)
    assert randomization_for(auto, make_scheme("rope"), num_layers=2) == Randomization(100)
    forced = TrainConfig(randomized_positions=100, randomization="distances")
    assert randomization_for(forced, make_scheme("kerple"), num_layers=1) == Randomization(100, 1)
    positions = TrainConfig(randomized_positions=100, randomization="positions")
    assert randomization_for(positions, make_scheme("alibi"), num_layers=2) == Randomization(100)
    assert randomization_for(TrainConfig(), make_scheme("alibi"), num_layers=2) is None
    train = {**TINY["train"], "randomized_positions": 32, "randomization": "distances"}
    bad = {**TINY, "schemes": ["rope"], "train": train}
    with pytest.raises(ConfigError, match=r"train.randomization: distances .* rope"):
        run(_write(tmp_path, bad), out_dir=tmp_path / "out", progress=False)
    unknown = {**TINY, "train": {**train, "randomization": "toeplitz"}}
    with pytest.raises(ConfigError, match=r"train.randomization must be one of \['auto'"):
        run(_write(tmp_path, unknown, "u.yaml"), out_dir=tmp_path / "o2", progress=False)
    assert not (tmp_path / "out").exists() and not (tmp_path / "o2").exists()


def test_randomized_evaluation_batches():
    """Same tokens as plain evaluation, sorted random positions in [0, N) on the real
    tokens, 0 on padding, identical on every call (every scheme and seed sees them)."""
    from posenc_jax.harness.config import EvalConfig
    from posenc_jax.harness.evaluation import eval_batches
    from posenc_jax.harness.tasks import get_task
    from posenc_jax.harness.train import Randomization

    task = get_task("reverse_string")
    ecfg = EvalConfig(batch_size=5, num_batches=2)
    plain = list(eval_batches(task, 7, ecfg))
    rand = list(eval_batches(task, 7, ecfg, randomization=Randomization(100)))
    again = list(eval_batches(task, 7, ecfg, randomization=Randomization(100)))
    assert len(rand) == 2
    for p, r, a in zip(plain, rand, again, strict=True):
        for key in ("tokens", "targets", "loss_mask", "padding_mask"):
            np.testing.assert_array_equal(p[key], r[key])
        np.testing.assert_array_equal(r["positions"], a["positions"])
        mask = r["padding_mask"]
        for row, m in zip(r["positions"], mask, strict=True):
            assert np.all(np.diff(row[m]) > 0) and row[m].max() < 100
            assert np.all(row[~m] == 0)
        assert not np.array_equal(r["positions"], p["positions"])
    assert not np.array_equal(rand[0]["positions"], rand[1]["positions"])


def test_randomized_evaluation_changes_only_position_dependent_models():
    """NoPE's metrics do not depend on the evaluation positions; sinusoidal ones do."""
    from posenc_jax.harness.config import EvalConfig, ModelConfig, TrainConfig
    from posenc_jax.harness.evaluation import evaluate
    from posenc_jax.harness.tasks import get_task
    from posenc_jax.harness.train import Randomization, train
    from posenc_jax.schemes import make_scheme

    task = get_task("reverse_string")
    ecfg = EvalConfig(lengths=(3, 6), batch_size=4)
    tcfg = TrainConfig(length=4, steps=3, batch_size=4, randomized_positions=64)
    out = {}
    for name in ("nope", "sinusoidal"):
        scheme = make_scheme(name).configure(causal=task.causal)
        model_cfg = ModelConfig(num_layers=1, d_model=16, num_heads=2)
        graph, state, _ = train(task, scheme, [0], model_cfg, tcfg, ecfg, progress=False)
        out[name] = [
            evaluate(task, graph, state, ecfg.lengths, ecfg, progress=False, randomization=r)
            for r in (None, Randomization(64))
        ]
    for length in ecfg.lengths:
        plain, rand = out["nope"][0][length]["loss"], out["nope"][1][length]["loss"]
        np.testing.assert_allclose(plain, rand, rtol=1e-6)
        plain, rand = out["sinusoidal"][0][length]["loss"], out["sinusoidal"][1][length]["loss"]
        assert np.all(np.abs(plain - rand) > 1e-6)


def test_randomized_evaluation_config(tmp_path):
    """An evaluation sequence longer than the random range is refused before training,
    naming both keys; eval.randomized_positions: false evaluates on 0..L-1."""
    from posenc_jax.harness.evaluation import eval_randomization
    from posenc_jax.harness.plan import plan
    from posenc_jax.harness.train import Randomization

    def randomization(cfg):
        return [eval_randomization(r.train, cfg.eval, r.scheme, num_layers=1) for r in plan(cfg)]

    train_cfg = {**TINY["train"], "randomized_positions": 12}
    bad = {**TINY, "schemes": ["rope"], "train": train_cfg}  # copy at 8 has 18 tokens
    with pytest.raises(ConfigError, match=r"eval\.randomized_positions.*train\.randomized"):
        run(_write(tmp_path, bad), out_dir=tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
    off = {**bad, "eval": {**TINY["eval"], "randomized_positions": False}}
    cfg_on = {**bad, "eval": {**TINY["eval"], "lengths": [4]}}
    cfg = load_config(_write(tmp_path, cfg_on, "on.yaml"))
    assert randomization(cfg) == [Randomization(12)]
    cfg = load_config(_write(tmp_path, off, "off.yaml"))
    assert randomization(cfg) == [None]
