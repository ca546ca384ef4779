"""One prepared check of an accelerator (GPU or TPU): correctness, precision and speed.

One command, at most about 5 minutes on one GPU or a TPU host; prints each figure and
writes them all as JSON:

1. ``platform``: backend, device kind and count, jax/jaxlib versions.
2. ``tests``: the suite's device-independent tests (pytest marker ``accelerator``,
   tests/conftest.py) run on the device: passed / failed counts and the failures.
3. ``precision``: the cuDNN path against the dense float32 path in bfloat16 and
   float16, largest absolute error of the output per scheme (the schemes the fused
   kernel can serve; bias-adding schemes with ``low_precision_bias=True``, the case
   the "auto" rule keeps off cuDNN by default), beside the dense path in the same dtype.
4. ``train``: the jitted AdamW train step of a byte-level TransformerLM per scheme,
   relative to NoPE (same shapes, interleaved repeats, medians).
5. ``rope``: `apply_rope` throughput in GB/s (bytes read + written) beside an
   elementwise op that moves the same bytes, and the device's published memory
   bandwidth where the device kind is known.
6. ``long``: blockwise attention against cuDNN at 8k and 32k tokens: time and the
   compiled program's temporary memory.
7. ``job``: wall time of ``posenc run configs/quick.yaml``.

``--dry-run`` runs every section on the CPU with tiny shapes (the test suite does, so
the script keeps working where no accelerator is lent): fused attention through XLA
instead of cuDNN, pytest only collects, the job is two steps of one scheme.

    python benchmarks/accelerator.py                      # on the accelerator
    python benchmarks/accelerator.py --out runs/accelerator.json --sections precision long
    python benchmarks/accelerator.py --dry-run            # anywhere, in seconds
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from posenc_jax.attention import (
    blockwise_attention,
    dense_attention,
    explain_implementation,
    fused_attention,
)
from posenc_jax.nn import TransformerLM
from posenc_jax.rope import apply_rope, rope_frequencies
from posenc_jax.schemes import make_scheme

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("platform", "tests", "precision", "train", "rope", "long", "job")
PRECISION_SCHEMES = ("nope", "rope", "alibi", "t5", "kerple", "fire", "shaw")
TRAIN_SCHEMES = ("nope", "learned", "sinusoidal", "rope", "alibi", "t5", "shaw")
DRY_SCHEMES = ("nope", "alibi", "shaw")  # --dry-run: one of each kind of path, to stay quick
# Published peak memory bandwidth, GB/s, by jax device_kind (vendor data sheets).
PEAK_BANDWIDTH = {
    "NVIDIA H200": 4800,
    "NVIDIA H100 80GB HBM3": 3350,
    "NVIDIA H100 PCIe": 2000,
    "NVIDIA A100-SXM4-80GB": 2039,
    "NVIDIA A100-SXM4-40GB": 1555,
    "NVIDIA A100-PCIE-40GB": 1555,
    "NVIDIA L4": 300,
    "Tesla T4": 320,
    "Tesla V100-SXM2-16GB": 900,
    "TPU v2": 700,
    "TPU v3": 900,
    "TPU v4": 1200,
    "TPU v5 lite": 819,
    "TPU v5e": 819,
}


def _interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each callable, timed in turns so drift hits all alike."""
    for fn in fns.values():  # twice: a train step's second call can compile again
        jax.block_until_ready(fn())  # (the optimizer state's first update fixes its types)
        jax.block_until_ready(fn())
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            jax.block_until_ready(fn())
            samples[name].append(time.perf_counter() - t0)
    return {name: statistics.median(s) for name, s in samples.items()}


def section_platform(args) -> dict:
    dev = jax.devices()[0]
    return {
        "backend": jax.default_backend(),
        "device_kind": dev.device_kind,
        "device_count": jax.device_count(),
        "jax": jax.__version__,
        "jaxlib": jax.lib.__version__ if hasattr(jax.lib, "__version__") else None,
        "python": platform.python_version(),
        "dry_run": args.dry_run,
    }


def section_tests(args) -> dict:
    cmd = [sys.executable, "-m", "pytest", "-m", "accelerator", "-p", "no:cacheprovider"]
    cmd += ["-n", "0", "-q", "--no-header", "-rf"]
    if args.dry_run:
        cmd.append("--collect-only")
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    lines = res.stdout.strip().splitlines()
    if args.dry_run:  # "-qq" collection output: one "path: count" line per file
        counts = [int(line.rsplit(":", 1)[1]) for line in lines if line.startswith("tests/")]
        return {"collected": sum(counts), "files": len(counts), "exit_code": res.returncode}
    return {
        "summary": lines[-1] if lines else "",
        "failures": [line for line in lines if line.startswith("FAILED")][:50],
        "exit_code": res.returncode,
    }


def _qkv(t: int, heads: int, head_dim: int, dtype, seed: int = 0):
    keys = jax.random.split(jax.random.key(seed), 3)
    return [jax.random.normal(k, (1, t, heads, head_dim)).astype(dtype) for k in keys]


def section_precision(args) -> dict:
    t, heads, head_dim = (64, 2, 16) if args.dry_run else (2048, 8, 64)
    implementation = "xla" if args.dry_run else "cudnn"
    pos = jnp.arange(t)
    out = {}
    for name in DRY_SCHEMES if args.dry_run else PRECISION_SCHEMES:
        scheme = make_scheme(name).configure(causal=True)
        params = scheme.init_attention_params(jax.random.key(1), num_heads=heads, head_dim=head_dim)
        kw = dict(q_positions=pos, k_positions=pos, scheme=scheme, params=params, causal=True)
        q, k, v = _qkv(t, heads, head_dim, jnp.float32)
        ref = dense_attention(q, k, v, **kw)
        row = {}
        for dtype in (jnp.bfloat16, jnp.float16):
            low = [x.astype(dtype) for x in (q, k, v)]
            choice = explain_implementation(
                scheme=scheme, platform="gpu", dtype=jnp.dtype(dtype), head_dim=head_dim,
                q_len=t, k_len=t, has_mask=False, aligned=True, low_precision_bias=True,
            )  # fmt: skip
            dense = float(jnp.max(jnp.abs(dense_attention(*low, **kw).astype(jnp.float32) - ref)))
            entry = {"dense": dense}
            if choice.implementation == "cudnn":
                fused = fused_attention(*low, **kw, implementation=implementation)
                entry["fused"] = float(jnp.max(jnp.abs(fused.astype(jnp.float32) - ref)))
            else:
                entry["fused"] = f"not eligible: {choice.reason}"
            row[jnp.dtype(dtype).name] = entry
        out[name] = row
        print(f"  precision {name:8s} {row}")
    return {"length": t, "heads": heads, "head_dim": head_dim, "fused": implementation, **out}


def _train_step(name: str, *, vocab: int, length: int, d_model: int, heads: int, layers: int):
    # Positions are known to fit, as the harness's plan checks once: no run-time check.
    scheme = make_scheme(name).assume_positions_below(length)
    model = TransformerLM(
        vocab, scheme=scheme, num_layers=layers, d_model=d_model, num_heads=heads,
        rngs=nnx.Rngs(0),
    )  # fmt: skip
    optimizer = nnx.Optimizer(model, optax.adamw(1e-3), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer, tokens):
        def loss_fn(model):
            logits = model(tokens[:, :-1])
            return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    return lambda tokens: step(model, optimizer, tokens)


def section_train(args) -> dict:
    b, t, d, heads, layers = (2, 16, 32, 2, 1) if args.dry_run else (16, 1024, 512, 8, 4)
    tokens = jax.random.randint(jax.random.key(0), (b, t + 1), 0, 256)
    steps = {
        name: _train_step(name, vocab=256, length=t, d_model=d, heads=heads, layers=layers)
        for name in (("nope", "alibi") if args.dry_run else TRAIN_SCHEMES)
    }
    calls = {n: functools.partial(step, tokens) for n, step in steps.items()}
    times = _interleaved(calls, args.repeats)
    base = times["nope"]
    out = {n: {"ms": 1e3 * s, "vs_nope": s / base} for n, s in times.items()}
    for n, r in out.items():
        print(f"  train {n:10s} {r['ms']:8.2f} ms  {r['vs_nope']:.2f}x NoPE")
    return {"batch": b, "length": t, "d_model": d, "heads": heads, "layers": layers, **out}


def section_rope(args) -> dict:
    shape = (2, 64, 2, 16) if args.dry_run else (8, 4096, 32, 128)
    inv_freq, _ = rope_frequencies(shape[-1])
    pos = jnp.arange(shape[1])
    out = {}
    for dtype in (jnp.float32, jnp.bfloat16):
        x = jax.random.normal(jax.random.key(0), shape).astype(dtype)
        moved = 2 * x.size * x.dtype.itemsize  # read and write once
        rope = jax.jit(functools.partial(apply_rope, positions=pos, inv_freq=inv_freq))
        scale = jax.jit(lambda x: x * jnp.asarray(1.0001, x.dtype))
        calls = {"rope": functools.partial(rope, x), "elementwise": functools.partial(scale, x)}
        t = _interleaved(calls, args.repeats)
        row = {name: moved / s / 1e9 for name, s in t.items()}
        out[jnp.dtype(dtype).name] = {f"{k}_GBps": v for k, v in row.items()}
        print(f"  rope {jnp.dtype(dtype).name}: {row['rope']:.1f} GB/s, "
              f"elementwise {row['elementwise']:.1f} GB/s")  # fmt: skip
    kind = jax.devices()[0].device_kind
    return {"shape": shape, "device_peak_GBps": PEAK_BANDWIDTH.get(kind), **out}


def _temp_bytes(fn, *args) -> int | None:
    analysis = jax.jit(fn).lower(*args).compile().memory_analysis()
    return None if analysis is None else int(analysis.temp_size_in_bytes)


def section_long(args) -> dict:
    lengths = (128,) if args.dry_run else (8192, 32768)
    heads, head_dim = (2, 16) if args.dry_run else (8, 128)
    implementation = "xla" if args.dry_run else "cudnn"
    out = {}
    for t in lengths:
        q, k, v = _qkv(t, heads, head_dim, jnp.bfloat16)
        pos = jnp.arange(t)
        row = {}
        for name in ("nope", "alibi"):
            scheme = make_scheme(name).configure(causal=True)
            kw = dict(q_positions=pos, k_positions=pos, scheme=scheme, causal=True)
            fns = {
                "blockwise": lambda q, k, v, kw=kw: blockwise_attention(q, k, v, **kw),
                "fused": lambda q, k, v, kw=kw: fused_attention(
                    q, k, v, **kw, implementation=implementation
                ),
            }
            calls = {n: functools.partial(jax.jit(f), q, k, v) for n, f in fns.items()}
            times = _interleaved(calls, args.repeats)
            row[name] = {
                n: {"ms": 1e3 * times[n], "temp_MB": (_temp_bytes(f, q, k, v) or 0) / 2**20}
                for n, f in fns.items()
            }
            print(f"  long T={t} {name}: {row[name]}")
        out[str(t)] = row
    return {"heads": heads, "head_dim": head_dim, "fused": implementation, **out}


def section_job(args) -> dict:
    cmd = [sys.executable, "-m", "posenc_jax.harness.cli", "run", "configs/quick.yaml"]
    if args.dry_run:
        cmd += ["--set", "train.steps=2", "--set", "schemes=[alibi]", "--set", "seeds=[0]"]
        cmd += ["--set", "tasks=[{name: copy, num_symbols: 5}]", "--set", "eval.lengths=[12]"]
        cmd += ["--set", "model={num_layers: 1, d_model: 16, num_heads: 2}"]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        res = subprocess.run(
            [*cmd, "--out", tmp, "--no-progress"], cwd=ROOT, capture_output=True, text=True
        )
        seconds = time.perf_counter() - t0
    if res.returncode != 0:
        return {"exit_code": res.returncode, "stderr": res.stderr[-2000:]}
    print(f"  job: {seconds:.1f} s")
    return {"seconds": seconds, "exit_code": 0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny shapes on the CPU")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats (7; dry: 2)")
    parser.add_argument("--out", type=Path, default=Path("runs/accelerator.json"))
    args = parser.parse_args(argv)
    if args.dry_run:
        jax.config.update("jax_platforms", "cpu")
    args.repeats = args.repeats or (2 if args.dry_run else 7)
    report: dict = {}
    for name in args.sections:
        print(f"[{name}]", flush=True)
        t0 = time.perf_counter()
        report[name] = globals()[f"section_{name}"](args)
        report[name]["section_seconds"] = round(time.perf_counter() - t0, 2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"written: {args.out}")
    failed = [n for n in ("tests", "job") if report.get(n, {}).get("exit_code", 0) != 0]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
