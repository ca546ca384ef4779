"""Dense vs blockwise attention: compiled temporary memory, peak process memory, time.

Prints, for each scheme and length, the compiled temporary memory of both paths
(``compiled.memory_analysis()``, so no run is needed for lengths whose dense
logits would not fit), their ratio, and the forward time of both paths measured
side by side (interleaved repeats, median) where dense fits in memory. A last
section runs the tiny model forward on a long sequence in a fresh subprocess and
reports its peak resident memory.

    python benchmarks/attention_memory.py                      # full table
    python benchmarks/attention_memory.py --lengths 1024 2048 --schemes alibi
    python benchmarks/attention_memory.py --model-length 32768 --only-model
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import jax
import jax.numpy as jnp

from posenc_jax.attention import AttentionConfig, blockwise_attention, dense_attention
from posenc_jax.schemes import make_scheme

SCHEMES = {
    "nope": "nope",
    "rope": "rope",  # rotation happens before attention: same kernel as nope
    "alibi": "alibi",
    "t5": {"name": "t5"},
    "shaw": {"name": "shaw", "max_distance": 16},
}


def _inputs(t: int, n: int, h: int, spec):
    scheme = make_scheme(spec).configure(causal=True)
    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    q = jax.random.normal(keys[0], (1, t, n, h))
    k = jax.random.normal(keys[1], (1, t, n, h))
    v = jax.random.normal(keys[2], (1, t, n, h))
    params = scheme.init_attention_params(keys[3], num_heads=n, head_dim=h)
    return scheme, q, k, v, params


def _compile(fn, scheme, q, k, v, params, pos):
    jitted = jax.jit(
        lambda q, k, v, params, pos: fn(
            q, k, v, q_positions=pos, k_positions=pos, scheme=scheme, params=params, causal=True
        )
    )
    return jitted.lower(q, k, v, params, pos).compile()


def _time_pair(fa, fb, args, repeats: int) -> tuple[float, float]:
    jax.block_until_ready(fa(*args))
    jax.block_until_ready(fb(*args))
    ta, tb = [], []
    for _ in range(repeats):  # interleaved, so both see the same machine state
        t0 = time.perf_counter()
        jax.block_until_ready(fa(*args))
        ta.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        jax.block_until_ready(fb(*args))
        tb.append(time.perf_counter() - t0)
    return statistics.median(ta), statistics.median(tb)


def attention_table(lengths, schemes, *, heads, head_dim, block, time_up_to, repeats):
    print(f"attention, B=1, N={heads}, H={head_dim}, float32, causal, block={block}")
    print(
        f"{'scheme':8s} {'T':>6s} {'dense MB':>10s} {'block MB':>9s} {'mem ratio':>9s} "
        f"{'dense ms':>9s} {'block ms':>9s} {'time ratio':>10s}"
    )
    rows = []
    for name in schemes:
        for t in lengths:
            scheme, q, k, v, params = _inputs(t, heads, head_dim, SCHEMES[name])
            pos = jnp.arange(t)
            dense = _compile(dense_attention, scheme, q, k, v, params, pos)

            def blockwise(q, k, v, *, scheme, **kw):
                return blockwise_attention(
                    q, k, v, scheme=scheme, q_block=block, k_block=block, **kw
                )

            blk = _compile(blockwise, scheme, q, k, v, params, pos)
            md = dense.memory_analysis().temp_size_in_bytes / 2**20
            mb = blk.memory_analysis().temp_size_in_bytes / 2**20
            td = tb = float("nan")
            if t <= time_up_to:
                td, tb = _time_pair(dense, blk, (q, k, v, params, pos), repeats)
            row = dict(
                scheme=name,
                T=t,
                dense_mb=md,
                block_mb=mb,
                mem_ratio=md / max(mb, 1e-9),
                dense_ms=1e3 * td,
                block_ms=1e3 * tb,
                time_ratio=tb / td,
            )
            rows.append(row)
            print(
                f"{name:8s} {t:6d} {md:10.1f} {mb:9.1f} {row['mem_ratio']:8.1f}x "
                f"{row['dense_ms']:9.1f} {row['block_ms']:9.1f} {row['time_ratio']:9.2f}x",
                flush=True,
            )
    return rows


def _peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM; ru_maxrss survives exec on Linux)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def model_forward(length: int, scheme: str) -> None:
    """Child process: the tiny model's forward at ``length`` tokens (blockwise path)."""
    from flax import nnx

    from posenc_jax.nn import TransformerLM

    model = TransformerLM(
        256,
        scheme=scheme,
        num_layers=2,
        d_model=64,
        num_heads=4,
        attention=AttentionConfig(blockwise_threshold=2048, block_size=512),
        rngs=nnx.Rngs(0),
    )
    tokens = jnp.zeros((1, length), jnp.int32)
    fwd = nnx.jit(lambda m, x: m(x))
    t0 = time.perf_counter()
    out = jax.block_until_ready(fwd(model, tokens))
    seconds = time.perf_counter() - t0
    peak_mb = _peak_rss_mb()
    print(
        json.dumps(
            {
                "length": length,
                "scheme": scheme,
                "seconds_incl_compile": seconds,
                "peak_rss_mb": peak_mb,
                "finite": bool(jnp.isfinite(out).all()),
            }
        )
    )


def model_table(length: int, schemes) -> None:
    print(f"\ntiny model (2 layers, d=64, 4 heads) forward at {length} tokens, fresh process each")
    for name in schemes:
        spec = name if name != "learned" else "nope"
        proc = subprocess.run(
            [sys.executable, __file__, "--child-model", str(length), spec],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode:
            print(f"{name:8s} failed: {proc.stderr.strip().splitlines()[-1:]}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(
            f"{name:8s} peak RSS {r['peak_rss_mb']:7.0f} MB  "
            f"time {r['seconds_incl_compile']:6.1f} s (incl. compile)  finite={r['finite']}",
            flush=True,
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lengths", type=int, nargs="+", default=[1024, 2048, 4096, 8192, 16384, 32768])
    p.add_argument("--schemes", nargs="+", default=list(SCHEMES), choices=list(SCHEMES))
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--block", type=int, default=512)
    p.add_argument(
        "--time-up-to",
        type=int,
        default=4096,
        help="time both paths only up to this length (dense needs T*T*N*4 bytes)",
    )
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--model-length", type=int, default=32768)
    p.add_argument("--only-model", action="store_true")
    p.add_argument("--child-model", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child_model:
        model_forward(int(args.child_model[0]), args.child_model[1])
        return
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}")
    if not args.only_model:
        attention_table(
            args.lengths,
            args.schemes,
            heads=args.heads,
            head_dim=args.head_dim,
            block=args.block,
            time_up_to=args.time_up_to,
            repeats=args.repeats,
        )
    model_table(args.model_length, args.schemes)


if __name__ == "__main__":
    main()
