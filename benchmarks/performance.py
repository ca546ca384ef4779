"""Performance report: train step per scheme, RoPE rotation, vmapped seeds, default job.

Each section measures the things it compares side by side in one run (warm-up and
compilation first, then interleaved repeats, medians) and prints absolute figures,
the ratio and PASS/FAIL against the project's targets:

1. ``train``: the jitted, vmapped train step of `posenc_jax.harness.train` (tiny LM:
   2 layers, d_model 64, 4 heads) for every scheme of configs/quick.yaml,
   relative to NoPE. Targets: learned, sinusoidal, rope, alibi <= 1.10x;
   t5 <= 1.25x; shaw <= 1.6x. ``--schemes`` also takes the schemes outside
   configs/quick.yaml (``EXTRA_SCHEMES``: fox, stick_breaking, cope, pope, xpos,
   kerple, fire, xl, deberta, tupe, abacus), built with their default settings and timed on
   the same shapes, reported without a target. Timed under both allocator settings (``--malloc``),
   each in a fresh process: glibc's defaults map and unmap every block over
   32 MiB on each call, so a step whose scratch buffer crosses that size pays
   page faults that a step just under it does not; ``posenc run`` keeps freed
   blocks (`posenc_jax.harness.runtime.keep_freed_memory`).
2. ``rope``: `posenc_jax.rope.apply_rope` on [B, T, N, H] against (a) an
   elementwise op reading and writing the same arrays (target <= 1.5x) and
   (b) a plain rotate-half implementation written here (target <= 1.0x), in
   float32 and bfloat16. Each allocator setting runs in a fresh process (see
   ``--malloc``), because by default glibc returns 32 MiB float32 outputs to the
   OS after every call and the page faults of the next call cost more than the
   rotation.
   Also timed: the same rotation with the cos/sin table left to XLA:CPU's fusion
   (recomputed inside the [B, T, N, H] loop), which apply_rope avoids on CPU.
   Each setting runs in ``--rope-processes`` fresh processes (3); the ratios are
   medians over them, with their range (a process's allocator state can shift a
   1 ms call by 2x).
3. ``seeds``: 8 seeds trained together in one `posenc_jax.harness.train.train` call
   against 8 single-seed calls (each compiles, as separate runs would), with the
   compile / steps split, with freed blocks kept as ``posenc run`` does.
   Target: together <= 0.5x.
4. ``job``: wall time of ``posenc run configs/quick.yaml`` in a subprocess,
   with the load average before it.

    python benchmarks/performance.py                           # every section
    python benchmarks/performance.py --sections train rope
    python benchmarks/performance.py --sections seeds --seed-steps 100
    python benchmarks/performance.py --sections job
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from posenc_jax import rope
from posenc_jax.harness.config import load_config
from posenc_jax.harness.plan import plan
from posenc_jax.harness.runtime import keep_freed_memory
from posenc_jax.harness.train import (
    build_model_fn,
    init_state,
    inline_step_for,
    make_optimizer,
    make_train_step,
    micro_batches_for,
    randomization_for,
    train,
    training_batches,
)
from posenc_jax.rope.numerics import cos_sin
from posenc_jax.rope.rotation import rotate
from posenc_jax.schemes import RopeScheme, make_scheme

ROOT = Path(__file__).resolve().parent.parent
QUICK = ROOT / "configs" / "quick.yaml"

TRAIN_TARGETS = {
    "nope": None,
    "learned": 1.10,
    "sinusoidal": 1.10,
    "rope": 1.10,
    "alibi": 1.10,
    "t5": 1.25,
    "shaw": 1.60,
}
# Timed beside NoPE on the same shapes when asked (--schemes), no target: registry
# defaults, except the settings that need a length (CoPE's positions, TUPE's table).
EXTRA_SCHEMES = {
    "fox": {"name": "fox"},
    "stick_breaking": {"name": "stick_breaking"},
    "cope": {"name": "cope", "npos": 64},
    "pope": {"name": "pope"},
    "xpos": {"name": "xpos"},
    "kerple": {"name": "kerple"},
    "fire": {"name": "fire"},
    "xl": {"name": "xl"},
    "deberta": {"name": "deberta"},
    "tupe": {"name": "tupe", "max_length": 1024},
    # The quick job's tasks have no digit tokens: ten ids stand for them (the cost of
    # the places and the lookup does not depend on which). "clip", as the plan makes it
    # when every id fits the table (no run-time check).
    "abacus": {
        "name": "abacus",
        "digit_ids": list(range(5, 15)),
        "max_length": 1024,
        "out_of_range": "clip",
    },
}
ROPE_VS_ELEMENTWISE = 1.5
ROPE_VS_REFERENCE = 1.0
SEEDS_TARGET = 0.5
# Extra rows of section 1 that explain a cost (no target): learned with its run-time range
# check (a host callback every step; the experiments check positions once, in the plan),
# and RoPE with the cos/sin table fused into the rotation loop (XLA:CPU's own choice).
DIAGNOSTICS = ("learned (run-time check)", "rope (fused table)")

# Allocator settings each timed in a fresh process: glibc's own, and freed blocks kept in
# the heap as `posenc run` sets them (no munmap after each call, no page faults on reuse).
MALLOC_MODES = ("default", "kept")


def _verdict(ratio: float, target: float | None) -> str:
    if target is None:
        return "(ref)"
    return "PASS" if ratio <= target else "FAIL"


def _median_ms(samples: list[float]) -> float:
    return 1e3 * statistics.median(samples)


# --------------------------------------------------------------------------------------------
# 1. Train step per scheme
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Stepper:
    """One scheme's compiled train step and its (donated, so threaded) state."""

    label: str
    step: object
    params: object
    rest: object
    opt_state: object
    batch: dict
    compile_s: float = 0.0

    def run(self, n: int) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            self.params, self.rest, self.opt_state, metrics = self.step(
                self.params, self.rest, self.opt_state, self.batch
            )
        jax.block_until_ready((self.params, self.opt_state, metrics))
        return (time.perf_counter() - t0) / n


def _step_options(task, scheme, seeds, tcfg, cfg) -> dict:
    """``make_train_step``'s micro-batches and inline flag as train() resolves them here."""
    platform = jax.devices()[0].platform
    length = task.sequence_length(tcfg.length)
    return dict(
        micro_batches=micro_batches_for(
            tcfg, cfg.model, scheme, platform=platform, seeds=len(seeds), length=length
        ),
        inline=inline_step_for(tcfg, platform=platform, seeds=len(seeds), length=length),
    )


def _make_stepper(label, scheme, task, seeds, tcfg, cfg, randomization=None) -> _Stepper:
    scheme = scheme.configure(causal=task.causal)
    tx = make_optimizer(tcfg)
    make_model = build_model_fn(task, scheme, cfg.model, cfg.eval)
    graphdef, state = init_state(make_model, seeds, tx)
    step = make_train_step(graphdef, tx, **_step_options(task, scheme, seeds, tcfg, cfg))
    rand = None
    if randomization is not None:  # (range N, "positions" or "distances")
        rtcfg = dataclasses.replace(
            tcfg, randomized_positions=randomization[0], randomization=randomization[1]
        )
        rand = randomization_for(rtcfg, scheme, num_layers=cfg.model.num_layers)
    batch = jax.device_put(next(training_batches(task, seeds, tcfg, randomization=rand)))
    s = _Stepper(label, step, state.params, state.rest, state.opt_state, batch)
    t0 = time.perf_counter()
    s.run(1)  # compiles
    s.compile_s = time.perf_counter() - t0
    s.run(2)  # warm-up
    return s


def train_cases(cfg, runs, *, lm_length: int, lm_batch: int) -> list[dict]:
    """(name, task, train config, seeds) for each timed shape."""
    tasks = {}
    for r in runs:
        tasks.setdefault(r.task_label, (r.task, r.train))
    quick_seeds = list(cfg.seeds)
    cases = []
    if "lm" in tasks:
        task, tcfg = tasks["lm"]
        big = dataclasses.replace(tcfg, length=lm_length, min_length=lm_length, batch_size=lm_batch)
        cases.append(dict(name=f"lm B={lm_batch} L={lm_length}", task=task, tcfg=big, seeds=[0]))
    for label, (task, tcfg) in tasks.items():
        full = dataclasses.replace(tcfg, min_length=tcfg.length)
        width = task.sequence_length(tcfg.length)
        name = f"{label} (quick.yaml: B={tcfg.batch_size} L={width})"
        cases.append(dict(name=name, task=task, tcfg=full, seeds=[quick_seeds[0]]))
        cases.append(dict(name=name, task=task, tcfg=full, seeds=quick_seeds))
    return cases


def _train_schemes(args, runs) -> list[tuple[str, object]]:
    schemes = []
    for r in runs:
        if r.scheme_label not in [s[0] for s in schemes] and r.scheme_label in args.schemes:
            schemes.append((r.scheme_label, r.scheme))
    for name in args.schemes:
        if name in EXTRA_SCHEMES:
            schemes.append((name, make_scheme(EXTRA_SCHEMES[name])))
    if args.diagnostics:
        learned = next((s for label, s in schemes if label == "learned"), None)
        if learned is not None:
            checked = make_scheme(dict(learned.to_config(), out_of_range="error"))
            schemes.append(("learned (run-time check)", checked))
        if "rope" in args.schemes:
            schemes.append(("rope (fused table)", RopeFusedTable()))
    return schemes


def train_child(args) -> list[dict]:
    """Times every scheme on every case in this process; progress lines go to stderr."""
    cfg = load_config(QUICK)
    runs = plan(cfg)
    schemes = _train_schemes(args, runs)
    cases = train_cases(cfg, runs, lm_length=args.lm_length, lm_batch=args.lm_batch)
    if args.cases:
        cases = [c for i, c in enumerate(cases) if i in args.cases]
    variants = [(label, scheme, None) for label, scheme in schemes]
    if args.randomized:  # each scheme also with random positions, and random distances
        for label, scheme in schemes:
            if label == "nope":
                continue
            variants.append((f"{label} +rand positions", scheme, (args.randomized, "positions")))
            if scheme.accepts_distances:
                variants.append(
                    (f"{label} +rand distances", scheme, (args.randomized, "distances"))
                )
    rows = []
    for case in cases:
        steppers = [
            _make_stepper(label, scheme, case["task"], case["seeds"], case["tcfg"], cfg, rand)
            for label, scheme, rand in variants
        ]
        samples = {s.label: [] for s in steppers}
        for rep in range(args.repeats):
            shift = rep % len(steppers)  # rotate the order so no scheme always runs first
            for s in steppers[shift:] + steppers[:shift]:
                samples[s.label].append(s.run(args.steps_per_sample))
        base = statistics.median(samples["nope"]) if "nope" in samples else float("nan")
        for s in steppers:
            t = statistics.median(samples[s.label])
            rows.append(
                dict(
                    case=case["name"],
                    seeds=len(case["seeds"]),
                    scheme=s.label,
                    step_ms=1e3 * t,
                    ratio=t / base,
                    compile_s=s.compile_s,
                )
            )
            print(
                f"  [{args.child_malloc}] {case['name']}, {len(case['seeds'])} seed(s), "
                f"{s.label}: {1e3 * t:.2f} ms, {t / base:.2f}x",
                file=sys.stderr,
                flush=True,
            )
        del steppers
    return rows


def _run_child(kind: str, mode: str, args) -> list[dict] | None:
    """Runs `kind`'s measurements in a fresh process under allocator `mode`."""
    cmd = [sys.executable, str(Path(__file__).resolve()), *sys.argv[1:]]
    cmd += ["--child", kind, "--child-malloc", mode]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
    if proc.returncode:
        print(f"{kind} child ({mode}) failed with exit code {proc.returncode}")
        return None
    rows = json.loads(proc.stdout.strip().splitlines()[-1])
    for r in rows:
        r["malloc"] = mode
    return rows


def _malloc_modes(args) -> list[str]:
    return list(MALLOC_MODES) if args.malloc == "both" else [args.malloc]


def section_train(args) -> list[dict]:
    cfg = load_config(QUICK)
    m = cfg.model
    modes = _malloc_modes(args)
    print(
        f"\n## 1. Train step time per scheme vs NoPE (tiny LM: {m.num_layers} layers, "
        f"d_model {m.d_model}, {m.num_heads} heads; jit(vmap(step)) of posenc_jax.harness.train)"
    )
    print(
        f"median of {args.repeats} interleaved samples of {args.steps_per_sample} steps; "
        "times are per optimizer step of all seeds together; each allocator setting "
        f"({', '.join(modes)}) in a fresh process"
    )
    rows = []
    for mode in modes:
        rows += _run_child("train", mode, args) or []
    by_key = {}
    for r in rows:
        by_key.setdefault((r["case"], r["seeds"], r["scheme"]), {})[r["malloc"]] = r
    cols = "".join(f" {f'ms {mode}':>11s} {'vs nope':>8s} {'':5s}" for mode in modes)
    print(f"{'case':34s} {'seeds':>5s} {'scheme':24s}{cols} {'target':>7s} {'compile s':>9s}")
    for (case, seeds, scheme), per_mode in by_key.items():
        target = TRAIN_TARGETS.get(scheme)
        line = f"{case:34s} {seeds:5d} {scheme:24s}"
        for mode in modes:
            r = per_mode.get(mode)
            if r is None:
                line += f" {'-':>11s} {'-':>8s} {'':5s}"
                continue
            r["target"] = target
            r["verdict"] = "info" if scheme in DIAGNOSTICS else _verdict(r["ratio"], target)
            line += f" {r['step_ms']:11.2f} {r['ratio']:7.2f}x {r['verdict']:5s}"
        tgt = f"{target:.2f}x" if target else "-"
        compile_s = max(r["compile_s"] for r in per_mode.values())
        print(f"{line} {tgt:>7s} {compile_s:9.1f}")
    print(
        "kept: glibc keeps freed blocks (posenc_jax.harness.runtime.keep_freed_memory), as `posenc "
        "run` trains; default: glibc's own thresholds, which map and unmap every block over "
        "32 MiB, so a step whose scratch buffer crosses that size pays page faults each call"
    )
    return rows


# --------------------------------------------------------------------------------------------
# 2. RoPE rotation
# --------------------------------------------------------------------------------------------


def rotate_half_reference(x: jax.Array, positions: jax.Array, *, base: float = 10000.0):
    """A plain RoPE ("half" layout, all dims): x * cos + rotate_half(x) * sin, in float32.

    cos/sin come from the positions and the frequencies inside the jitted function,
    as in the common reference implementations (GPT-NeoX, Hugging Face Llama).
    x: [B, T, N, H], positions: [T].
    """
    h = x.shape[-1]
    inv_freq = 1.0 / base ** (jnp.arange(0, h, 2, dtype=jnp.float32) / h)  # [H/2]
    angle = positions.astype(jnp.float32)[:, None] * inv_freq  # [T, H/2]
    emb = jnp.concatenate([angle, angle], axis=-1)[:, None, :]  # [T, 1, H]
    xf = x.astype(jnp.float32)
    rotated = jnp.concatenate([-xf[..., h // 2 :], xf[..., : h // 2]], axis=-1)
    return (xf * jnp.cos(emb) + rotated * jnp.sin(emb)).astype(x.dtype)


def _rope_table(positions, inv_freq, attention_factor):
    """cos, sin of m * theta with apply_rope's own angle reduction: [..., T, 1, R/2] float32."""
    return cos_sin(positions, inv_freq, attention_factor)


def apply_rope_fused_table(x, positions, *, inv_freq, attention_factor=1.0):
    """apply_rope ("half" layout) with the plain formula: jnp.cos and jnp.sin of
    apply_rope's own angles, which XLA:CPU fuses into (and recomputes inside) the
    [B, T, N, R] loop.

    The rotation is apply_rope's; on CPU apply_rope computes its table once, from a
    polynomial, so the two differ by the float32 rounding of the table (~1e-7).
    """
    cos, sin = _rope_table(positions, inv_freq, attention_factor)
    return rotate(x, cos, sin, layout="half")


@dataclasses.dataclass(frozen=True)
class RopeFusedTable(RopeScheme):
    """The rope scheme rotating with `apply_rope_fused_table` (layout "half")."""

    def rotate(self, params, q, k, q_positions, k_positions):
        inv_freq, factor = rope.rope_frequencies(
            q.shape[-1],
            base=self.base,
            rotary_fraction=self.rotary_fraction,
            scaling=self._scaling(),
            seq_len=jnp.max(k_positions) + 1,
        )
        q = apply_rope_fused_table(q, q_positions, inv_freq=inv_freq, attention_factor=factor)
        k = apply_rope_fused_table(k, k_positions, inv_freq=inv_freq, attention_factor=factor)
        return q, k


def _cos_in_big_loop(compiled, shape) -> bool:
    """True when a fused computation that produces x's shape evaluates cosine."""
    dims = ",".join(str(d) for d in shape)
    for block in compiled.as_text().split("\n\n"):
        head = block.strip().splitlines()[0] if block.strip() else ""
        produces_x = "fused_computation" in head and f"[{dims}]" in head.split("->")[-1]
        if produces_x and "cosine(" in block:
            return True
    return False


def rope_child(args) -> list[dict]:
    """Times the rotations in this process."""
    b, t, n, h = args.rope_shape
    positions = jnp.arange(t, dtype=jnp.int32)
    inv_freq, factor = rope.rope_frequencies(h)
    results = []
    for dtype_name in args.rope_dtypes:
        dtype = jnp.dtype(dtype_name)
        x = jax.random.normal(jax.random.key(0), (b, t, n, h), jnp.float32).astype(dtype)
        x2 = jax.random.normal(jax.random.key(3), (b, t, n, h), jnp.float32).astype(dtype)
        c = 1.0 + 0.01 * jax.random.normal(jax.random.key(1), (t, 1, h), jnp.float32)
        d = 0.01 * jax.random.normal(jax.random.key(2), (t, 1, h), jnp.float32)
        cos_t, sin_t = _rope_table(positions, inv_freq, factor)
        fns = {
            "apply_rope": (
                jax.jit(lambda x, p: rope.apply_rope(x, p, inv_freq=inv_freq)),
                (x, positions),
            ),
            "elementwise x*c+d": (
                jax.jit(lambda x, c, d: (x.astype(jnp.float32) * c + d).astype(x.dtype)),
                (x, c, d),
            ),
            "elementwise x*2": (jax.jit(lambda x: x * jnp.asarray(2, x.dtype)), (x,)),
            "apply_rope, q and k": (
                jax.jit(
                    lambda q, k, p: (
                        rope.apply_rope(q, p, inv_freq=inv_freq),
                        rope.apply_rope(k, p, inv_freq=inv_freq),
                    )
                ),
                (x, x2, positions),
            ),
            "elementwise, q and k": (
                jax.jit(
                    lambda q, k, c, d: (
                        (q.astype(jnp.float32) * c + d).astype(q.dtype),
                        (k.astype(jnp.float32) * c + d).astype(k.dtype),
                    )
                ),
                (x, x2, c, d),
            ),
            "apply_rope, interleaved": (
                jax.jit(
                    lambda x, p: rope.apply_rope(x, p, inv_freq=inv_freq, layout="interleaved")
                ),
                (x, positions),
            ),
            "rotate-half reference": (jax.jit(rotate_half_reference), (x, positions)),
            "apply_rope, fused table": (
                jax.jit(lambda x, p: apply_rope_fused_table(x, p, inv_freq=inv_freq)),
                (x, positions),
            ),
            "rotation, table given": (
                jax.jit(lambda x, cs, sn: rotate(x, cs, sn, layout="half")),
                (x, cos_t, sin_t),
            ),
            "concatenate, table given": (
                jax.jit(
                    lambda x, cs, sn: jnp.concatenate(
                        [
                            x[..., : h // 2].astype(jnp.float32) * cs
                            - x[..., h // 2 :].astype(jnp.float32) * sn,
                            x[..., h // 2 :].astype(jnp.float32) * cs
                            + x[..., : h // 2].astype(jnp.float32) * sn,
                        ],
                        axis=-1,
                    ).astype(x.dtype)
                ),
                (x, cos_t, sin_t),
            ),
        }
        compiled = {k: f.lower(*a).compile() for k, (f, a) in fns.items()}
        outs = {k: jax.block_until_ready(compiled[k](*a)) for k, (_, a) in fns.items()}
        fused_diff = float(
            jnp.max(
                jnp.abs(
                    outs["apply_rope, fused table"].astype(jnp.float32)
                    - outs["apply_rope"].astype(jnp.float32)
                )
            )
        )
        ref_diff = float(
            jnp.max(
                jnp.abs(
                    outs["rotate-half reference"].astype(jnp.float32)
                    - outs["apply_rope"].astype(jnp.float32)
                )
            )
        )
        del outs
        for k, (_, a) in fns.items():  # warm-up
            jax.block_until_ready(compiled[k](*a))
        samples = {k: [] for k in fns}
        names = list(fns)
        for rep in range(args.rope_repeats):
            shift = rep % len(names)
            for k in names[shift:] + names[:shift]:
                a = fns[k][1]
                t0 = time.perf_counter()
                jax.block_until_ready(compiled[k](*a))
                samples[k].append(time.perf_counter() - t0)
        results.append(
            dict(
                dtype=dtype_name,
                ms={k: _median_ms(v) for k, v in samples.items()},
                cos_in_loop={
                    k: _cos_in_big_loop(compiled[k], (b, t, n, h))
                    for k in ("apply_rope", "rotate-half reference", "apply_rope, fused table")
                },
                fused_max_abs_diff=fused_diff,
                reference_max_abs_diff=ref_diff,
            )
        )
    return results


def _spread(values: list[float]) -> str:
    """median [min - max] of per-process ratios."""
    if len(values) == 1:
        return f"{values[0]:.2f}x"
    return f"{statistics.median(values):.2f}x [{min(values):.2f}-{max(values):.2f}]"


def section_rope(args) -> list[dict]:
    b, t, n, h = args.rope_shape
    print(f"\n## 2. apply_rope, x [B={b}, T={t}, N={n}, H={h}], positions [T] int32")
    print(
        f"median of {args.rope_repeats} interleaved calls of each jitted function, fresh "
        f"output, in each of {args.rope_processes} fresh processes per allocator setting; "
        "ratios: median over the processes [min - max]"
    )
    runs = []  # one list of per-dtype rows per process
    for _ in range(args.rope_processes):
        for mode in _malloc_modes(args):
            rows = _run_child("rope", mode, args)
            if rows:
                runs.append(rows)
    groups = {}
    for rows in runs:
        for r in rows:
            groups.setdefault((r["malloc"], r["dtype"]), []).append(r)
    summary = []
    for (mode, dtype), rs in groups.items():
        names = list(rs[0]["ms"])
        ms = {k: statistics.median(r["ms"][k] for r in rs) for k in names}

        def ratios(num, den, rs=rs):
            return [r["ms"][num] / r["ms"][den] for r in rs]

        print(f"\nmalloc={mode} dtype={dtype} ({len(rs)} processes)")
        head = f"{'function':26s} {'ms':>8s} {'vs x*c+d':>22s} {'vs reference':>22s}"
        print(f"{head}  cos/sin in loop")
        for k in names:
            loop = rs[0]["cos_in_loop"].get(k)
            print(
                f"{k:26s} {ms[k]:8.2f} {_spread(ratios(k, 'elementwise x*c+d')):>22s} "
                f"{_spread(ratios(k, 'rotate-half reference')):>22s}  "
                f"{'' if loop is None else loop}"
            )
        r1 = ratios("apply_rope", "elementwise x*c+d")
        r2 = ratios("apply_rope", "rotate-half reference")
        qk = ratios("apply_rope, q and k", "elementwise, q and k")
        fused = ratios("apply_rope, fused table", "elementwise x*c+d")
        row = dict(
            malloc=mode,
            dtype=dtype,
            processes=len(rs),
            ms=ms,
            ratio_vs_elementwise=statistics.median(r1),
            ratio_vs_elementwise_all=r1,
            ratio_vs_reference=statistics.median(r2),
            ratio_vs_reference_all=r2,
            qk_vs_elementwise=statistics.median(qk),
            fused_vs_elementwise=statistics.median(fused),
            fused_max_abs_diff=max(r["fused_max_abs_diff"] for r in rs),
            reference_max_abs_diff=max(r["reference_max_abs_diff"] for r in rs),
        )
        summary.append(row)
        print(
            f"apply_rope / elementwise = {_spread(r1)} (target <= {ROPE_VS_ELEMENTWISE}x: "
            f"{_verdict(row['ratio_vs_elementwise'], ROPE_VS_ELEMENTWISE)}); apply_rope / "
            f"reference = {_spread(r2)} (target <= {ROPE_VS_REFERENCE}x: "
            f"{_verdict(row['ratio_vs_reference'], ROPE_VS_REFERENCE)})"
        )
        print(
            f"q and k in one function (one cos/sin table, as in attention): {_spread(qk)} "
            "elementwise on both"
        )
        print(
            f"plain formula, table fused by XLA: {_spread(fused)} elementwise (max |diff| to "
            f"apply_rope {row['fused_max_abs_diff']:.3g}: XLA's sin and cos); rotate-half "
            f"reference vs apply_rope max |diff| = {row['reference_max_abs_diff']:.3g}"
        )
    return summary


# --------------------------------------------------------------------------------------------
# 3. Seeds together (vmap) vs one run per seed
# --------------------------------------------------------------------------------------------


def _timed_train(task, scheme, seeds, cfg, tcfg) -> float:
    t0 = time.perf_counter()
    train(task, scheme, seeds, cfg.model, tcfg, cfg.eval, progress=False)
    return time.perf_counter() - t0


def _split(task, scheme, seeds, cfg, tcfg) -> dict:
    """train()'s work in parts: model init, step compile, the steps (with their data)."""
    tx = make_optimizer(tcfg)
    make_model = build_model_fn(task, scheme, cfg.model, cfg.eval)
    t0 = time.perf_counter()
    graphdef, state = init_state(make_model, seeds, tx)
    jax.block_until_ready(state.params)
    t1 = time.perf_counter()
    batches = training_batches(task, seeds, tcfg)
    first = next(batches)
    compiled = (
        make_train_step(graphdef, tx, **_step_options(task, scheme, seeds, tcfg, cfg))
        .lower(state.params, state.rest, state.opt_state, first)
        .compile()
    )
    t2 = time.perf_counter()
    params, rest, opt_state = state.params, state.rest, state.opt_state
    for batch in [first, *batches]:
        params, rest, opt_state, metrics = compiled(params, rest, opt_state, batch)
    jax.block_until_ready((params, metrics))
    t3 = time.perf_counter()
    return dict(init_s=t1 - t0, compile_s=t2 - t1, steps_s=t3 - t2)


def section_seeds(args) -> dict:
    cfg = load_config(QUICK)
    runs = plan(cfg)
    run = next(r for r in runs if r.task_label == "copy" and r.scheme_label == args.seeds_scheme)
    task, scheme = run.task, run.scheme.configure(causal=run.task.causal)
    tcfg = dataclasses.replace(run.train, steps=args.seed_steps)
    seeds = list(range(args.num_seeds))
    kept = keep_freed_memory()  # as `posenc run` trains; the later sections use fresh processes
    print(
        f"\n## 3. {len(seeds)} seeds together (one train() call, vmapped) vs {len(seeds)} "
        f"single-seed train() calls: copy task of quick.yaml (B={tcfg.batch_size}, "
        f"length {tcfg.length}), scheme {args.seeds_scheme}, {tcfg.steps} steps; "
        f"allocator: {'kept' if kept else 'default'}"
    )
    together, singles, split_one, split_all = [], [], [], []
    jobs = {
        "together": lambda: together.append(_timed_train(task, scheme, seeds, cfg, tcfg)),
        "singles": lambda: singles.append(
            sum(_timed_train(task, scheme, [s], cfg, tcfg) for s in seeds)
        ),
        "split one": lambda: split_one.append(_split(task, scheme, seeds[:1], cfg, tcfg)),
        "split all": lambda: split_all.append(_split(task, scheme, seeds, cfg, tcfg)),
    }
    names = list(jobs)
    for rep in range(args.seed_repeats):
        for name in names if rep % 2 == 0 else names[::-1]:
            jobs[name]()
        print(f"  repeat {rep + 1}: together {together[-1]:.1f} s, singles {singles[-1]:.1f} s")
    t_tog, t_sing = statistics.median(together), statistics.median(singles)
    ratio = t_tog / t_sing
    split_one = {k: statistics.median(d[k] for d in split_one) for k in split_one[0]}
    split_all = {k: statistics.median(d[k] for d in split_all) for k in split_all[0]}
    k = len(seeds)
    print(
        f"{'':28s} {'total s':>8s} {'init s':>7s} {'compile s':>9s} {'steps s':>8s} {'ms/step':>8s}"
    )
    print(
        f"{f'{k} x train(1 seed)':28s} {t_sing:8.1f} {k * split_one['init_s']:7.1f} "
        f"{k * split_one['compile_s']:9.1f} {k * split_one['steps_s']:8.1f} "
        f"{1e3 * split_one['steps_s'] / tcfg.steps:8.2f}"
    )
    print(
        f"{f'train({k} seeds)':28s} {t_tog:8.1f} {split_all['init_s']:7.1f} "
        f"{split_all['compile_s']:9.1f} {split_all['steps_s']:8.1f} "
        f"{1e3 * split_all['steps_s'] / tcfg.steps:8.2f}"
    )
    print(
        f"together / singles = {ratio:.2f}x (target <= {SEEDS_TARGET}x: "
        f"{_verdict(ratio, SEEDS_TARGET)}). Totals: train() calls; the split: separate runs "
        "of the same work timed in parts (steps include making the batches); medians of "
        f"{args.seed_repeats} interleaved repeats"
    )
    return dict(
        together_s=t_tog,
        singles_s=t_sing,
        ratio=ratio,
        split_one=split_one,
        split_all=split_all,
        steps=tcfg.steps,
        seeds=k,
    )


# --------------------------------------------------------------------------------------------
# 4. The default job
# --------------------------------------------------------------------------------------------


def section_job(args) -> dict:
    print("\n## 4. Default job: posenc run configs/quick.yaml")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        cmd = ["posenc", "run", str(QUICK), "--out", str(Path(tmp) / "quick")]
        cmd += ["--no-progress", "--overwrite"]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT)
        seconds = time.perf_counter() - t0
    load_after = os.getloadavg()
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
    print(f"command: {' '.join(cmd)}")
    print(f"exit code {proc.returncode}; last line: {tail[0]}")
    print(
        f"wall time {seconds:.1f} s ({seconds / 60:.2f} min) on {os.cpu_count()} CPUs; "
        f"load average before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
        f"after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}"
    )
    if proc.returncode:
        print(proc.stderr[-3000:])
    return dict(seconds=seconds, load_before=load_before, returncode=proc.returncode)


# --------------------------------------------------------------------------------------------


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--sections",
        nargs="+",
        default=["train", "rope", "seeds", "job"],
        choices=["train", "rope", "seeds", "job"],
    )
    p.add_argument(
        "--schemes",
        nargs="+",
        default=list(TRAIN_TARGETS),
        choices=[*TRAIN_TARGETS, *EXTRA_SCHEMES],
        help="train: schemes to time beside nope (default: those of configs/quick.yaml)",
    )
    p.add_argument("--lm-length", type=int, default=128, help="bytes per lm training sequence")
    p.add_argument("--lm-batch", type=int, default=32)
    p.add_argument("--cases", type=int, nargs="+", help="indices of the train cases to run")
    p.add_argument(
        "--no-diagnostics",
        dest="diagnostics",
        action="store_false",
        help=f"train: leave out the extra rows {list(DIAGNOSTICS)}",
    )
    p.add_argument(
        "--randomized",
        type=int,
        metavar="N",
        help="train: also time each scheme trained on random positions from [0, N) and, where "
        "it accepts them, on random distances (Ruoss et al.; train.randomization)",
    )
    p.add_argument("--repeats", type=int, default=7, help="train: interleaved samples")
    p.add_argument("--steps-per-sample", type=int, default=5)
    p.add_argument("--rope-shape", type=int, nargs=4, default=[8, 2048, 8, 64], metavar="BTNH")
    p.add_argument("--rope-dtypes", nargs="+", default=["float32", "bfloat16"])
    p.add_argument("--rope-repeats", type=int, default=31)
    p.add_argument(
        "--rope-processes", type=int, default=3, help="rope: fresh processes per setting"
    )
    p.add_argument(
        "--malloc",
        choices=[*MALLOC_MODES, "both"],
        default="both",
        help="train, rope: allocator settings to time, each in a fresh process",
    )
    p.add_argument("--num-seeds", type=int, default=8)
    p.add_argument("--seed-steps", type=int, default=100)
    p.add_argument("--seed-repeats", type=int, default=2)
    p.add_argument("--seeds-scheme", default="rope", choices=list(TRAIN_TARGETS))
    p.add_argument("--json", help="also write every figure to this JSON file")
    p.add_argument("--child", choices=["train", "rope"], help=argparse.SUPPRESS)
    p.add_argument("--child-malloc", choices=MALLOC_MODES, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        if args.child_malloc == "kept" and not keep_freed_memory():
            raise SystemExit(
                "--malloc kept needs glibc (posenc_jax.harness.runtime.keep_freed_memory)"
            )
        rows = {"train": train_child, "rope": rope_child}[args.child](args)
        print(json.dumps(rows, default=_json_default))
        return
    print(
        f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPUs, "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    out = {}
    sections = {
        "train": section_train,
        "rope": section_rope,
        "seeds": section_seeds,
        "job": section_job,
    }
    for name in ["train", "rope", "seeds", "job"]:
        if name in args.sections:
            out[name] = sections[name](args)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, default=_json_default) + "\n")


def _json_default(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, float) and math.isnan(x):
        return None
    return str(x)


if __name__ == "__main__":
    main()
