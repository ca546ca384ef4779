"""One run of the grid, stage by stage: train, evaluate, context extensions, fine-tune.

`train_and_evaluate` is what `posenc_jax.harness.runner.run` calls for each (scheme, task)
cell. In order:

1. train every seed together (`posenc_jax.harness.train.train`), resuming from a checkpoint
   (or, with ``model.pretrained``, load the checkpoint's weights as one seed:
   `posenc_jax.harness.pretrained`);
2. evaluate the trained models at every evaluation length (rows ``<scheme>``);
3. save their attention maps (first live seed) for the figures;
4. evaluate zero-shot with each context extension the scheme offers among
   ``eval.context_extensions`` (rows ``<scheme>+<method>``; the scheme builds the
   variant for each length, the parameters are shared);
5. with ``train.finetune_steps``, continue training at ``train.finetune_length``,
   as is and with each context extension (rows ``<scheme>+ft``,
   ``<scheme>+<method>+ft``), and evaluate again.

Seeds that diverged get one ``diverged`` record and are skipped by later stages.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from jax.sharding import Mesh

from posenc_jax.harness.checkpoint import RunCheckpointer
from posenc_jax.harness.config import ExperimentConfig, TrainConfig
from posenc_jax.harness.evaluation import eval_randomization, evaluate
from posenc_jax.harness.figures.attention_maps import (
    attention_map_lengths,
    run_attention_maps,
    save_attention_maps,
)
from posenc_jax.harness.plan import Run, context_extensions
from posenc_jax.harness.pretrained import load_pretrained
from posenc_jax.harness.train import (
    RunState,
    build_model_fn,
    graph_of,
    randomization_for,
    train,
)
from posenc_jax.schemes import Scheme

__all__ = ["finetune_config", "records_for", "train_and_evaluate"]


@dataclasses.dataclass(frozen=True)
class _Stage:
    """What every stage of one run shares."""

    run: Run
    cfg: ExperimentConfig
    seeds: list[int]
    mesh: Mesh | None
    progress: bool
    desc: str

    def evaluate(
        self,
        state: RunState,
        graphdef: Any,
        diverged: dict[int, int],
        *,
        tcfg: TrainConfig,
        suffix: str = "",
        graph_for_length=None,
    ) -> dict:
        """Per-length metrics of models trained with ``tcfg``; {} when every seed diverged."""
        if len(diverged) >= len(self.seeds):
            return {}
        return evaluate(
            self.run.task,
            graphdef,
            state,
            self.run.eval_lengths,
            self.cfg.eval,
            graph_for_length=graph_for_length,
            mesh=self.mesh,
            progress=self.progress,
            desc=f"{self.desc} eval{' ' + suffix if suffix else ''}",
            randomization=eval_randomization(
                tcfg, self.cfg.eval, self.run.scheme, num_layers=self.cfg.model.num_layers
            ),
        )

    def records(self, metrics: dict, diverged: dict[int, int], suffix: str = "") -> list[dict]:
        label = f"{self.run.scheme_label}+{suffix}" if suffix else self.run.scheme_label
        return records_for(self.run, self.seeds, metrics, scheme_label=label, diverged=diverged)


def train_and_evaluate(
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
    """Every stage of one run (see the module docstring); returns (records, training info)."""
    stage = _Stage(r, cfg, seeds, mesh, progress, desc)
    scheme = r.scheme.configure(causal=r.task.causal)
    if cfg.model.pretrained:  # no training: the checkpoint's weights as one seed
        graphdef, state, info = load_pretrained(scheme, cfg.model, cfg.eval, mesh=mesh)
    else:
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
    records = stage.records(stage.evaluate(state, graphdef, diverged, tcfg=r.train), diverged)
    if len(diverged) >= len(seeds):
        return records, info
    if attention_path is not None:
        _save_attention_maps(stage, graphdef, state, diverged, attention_path)
    records += _extension_records(stage, scheme, graphdef, state, diverged)
    if r.train.finetune_steps:
        records += _finetune_records(stage, scheme, state, diverged)
    return records, info


def _save_attention_maps(
    stage: _Stage, graphdef: Any, state: RunState, diverged: dict[int, int], path: Path
) -> None:
    r = stage.run
    lengths = attention_map_lengths(
        r.task, r.train.length, r.eval_lengths, max_tokens=stage.cfg.eval.attention_maps
    )
    if not lengths:
        return
    first_ok = next(i for i, s in enumerate(stage.seeds) if s not in diverged)
    maps = run_attention_maps(r.task, graphdef, state, lengths, seed_index=first_ok)
    save_attention_maps(
        path, maps, scheme=r.scheme_label, task=r.task_label, train_length=r.train.length
    )


def _extension_records(
    stage: _Stage, scheme: Scheme, graphdef: Any, state: RunState, diverged: dict[int, int]
) -> list[dict]:
    """Zero-shot rows ``<scheme>+<method>``: the trained parameters under each variant."""
    r, cfg = stage.run, stage.cfg
    train_len = r.task.sequence_length(r.train.length)
    out = []
    for method in context_extensions(scheme, cfg):

        def graph_for(length, method=method):
            variant = scheme.extend_context(
                method, train_length=train_len, eval_length=r.task.sequence_length(length)
            )
            return graph_of(build_model_fn(r.task, variant, cfg.model, cfg.eval))

        metrics = stage.evaluate(
            state, graphdef, diverged, tcfg=r.train, suffix=method, graph_for_length=graph_for
        )
        out += stage.records(metrics, diverged, method)
    return out


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


def _finetune_records(
    stage: _Stage, scheme: Scheme, state: RunState, diverged: dict[int, int]
) -> list[dict]:
    """Continues training at the longer length and evaluates again.

    Every scheme gets ``<label>+ft`` (the same scheme fine-tuned); a scheme with
    context extensions also gets ``<label>+<method>+ft`` for each of them, built
    for fine-tune length / training length (in sequence positions), as in position
    interpolation and YaRN fine-tuning.
    """
    r, cfg = stage.run, stage.cfg
    ft = finetune_config(r.train)
    train_len = r.task.sequence_length(r.train.length)
    ft_len = r.task.sequence_length(ft.length)
    variants = [("ft", scheme)] + [
        (f"{m}+ft", scheme.extend_context(m, train_length=train_len, eval_length=ft_len))
        for m in context_extensions(scheme, cfg)
    ]
    out = []
    for suffix, variant in variants:
        graphdef, ft_state, info = train(
            r.task,
            variant,
            stage.seeds,
            cfg.model,
            ft,
            cfg.eval,
            mesh=stage.mesh,
            progress=stage.progress,
            desc=f"{stage.desc} fine-tune {suffix}",
            init_from=state,
        )
        bad = {**info["diverged"], **diverged}
        metrics = stage.evaluate(ft_state, graphdef, bad, tcfg=ft, suffix=suffix)
        for rec in stage.records(metrics, bad, suffix):
            out.append({**rec, "finetune_length": ft.length, "finetune_steps": ft.steps})
    return out


def records_for(
    run: Run, seeds, metrics: dict, *, scheme_label: str, diverged: dict[int, int]
) -> list[dict]:
    """One record per (seed, eval length); diverged seeds get one 'diverged' record."""
    out = []
    headline = run.task.headline
    train_from, eval_from = run.lengths_from
    base = {
        "scheme": scheme_label,
        "task": run.task_label,
        "train_length": run.train.length,
        "train_min_length": run.train.min_length,
        "learning_rate": float(run.train.learning_rate),
        "train_lengths_from": train_from,
        "eval_lengths_from": eval_from,
    }
    if run.train.randomized_positions:  # which of Ruoss et al.'s two ways, resolved
        rand = randomization_for(run.train, run.scheme, num_layers=1)
        base["randomization"] = "distances" if rand.distance_layers else "positions"
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
                "metric": headline,
            }
            if headline == "perplexity":
                r["perplexity"] = float(m["perplexity"][i])
            else:
                # Every answer token (and a decoder's end token) right under argmax; for a
                # decoder this is greedy generation's exact match (each step sees the right
                # prefix, teacher-forced or generated alike).
                r["exact_match"] = r["sequence_accuracy"]
                r["chance_accuracy"] = float(m["chance_accuracy"])
                r["chance_exact_match"] = float(m["chance_exact_match"])
            out.append(r)
    return out
