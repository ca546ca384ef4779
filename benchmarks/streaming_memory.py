"""Decode memory against stream length: a full KV cache vs the ring buffer (StreamingLLM).

For each stream length N, a one-token decoding step of the tiny model is compiled
with a full cache of N slots (`init_cache`) and with the ring buffer of sinks + window
- 1 slots (`init_rolling_cache`); the table gives the cache's bytes and the step's
compiled argument + temporary memory (``compiled.memory_analysis()``), side by side.
Then the ring buffer decodes ``--run`` tokens for real and its cache bytes are read
again, with the time per token of the first and the last hundred steps.

    python benchmarks/streaming_memory.py
    python benchmarks/streaming_memory.py --lengths 1024 4096 --window 128 --run 500
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
from flax import nnx

from posenc_jax.nn import TransformerLM

MIB = 2**20


def _model(window: int, sinks: int) -> TransformerLM:
    scheme = {"name": "windowed_rope", "method": "streaming_llm", "window": window,
              "sink_tokens": sinks}  # fmt: skip
    return TransformerLM(256, scheme=scheme, num_layers=2, d_model=128, num_heads=4,
                         sliding_window=window, sink_tokens=sinks, rngs=nnx.Rngs(0))  # fmt: skip


def _cache_bytes(model: TransformerLM) -> int:
    return sum(x.nbytes for x in jax.tree.leaves(nnx.state(model, nnx.Cache)))


def _step_memory(model: TransformerLM) -> int:
    """Argument + temporary bytes of one compiled decoding step (one token)."""
    graphdef, state = nnx.split(model)

    def step(state, token, pos):
        m = nnx.merge(graphdef, state)
        logits = m(token, positions=pos, decode=True)
        return logits, nnx.state(m)

    args = (state, jnp.zeros((1, 1), jnp.int32), jnp.zeros((1,), jnp.int32))
    mem = jax.jit(step).lower(*args).compile().memory_analysis()
    return int(mem.argument_size_in_bytes + mem.temp_size_in_bytes)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 16384, 65536])
    p.add_argument("--window", type=int, default=256)
    p.add_argument("--sinks", type=int, default=4)
    p.add_argument("--run", type=int, default=2000, help="tokens decoded with the ring buffer")
    args = p.parse_args()
    model = _model(args.window, args.sinks)
    model.init_rolling_cache(1)
    ring_cache, ring_step = _cache_bytes(model), _step_memory(model)
    print(f"tiny model: 2 layers, d=128, 4 heads; window {args.window}, {args.sinks} sinks")
    print("| stream N | full cache MiB | full step MiB | ring cache MiB | ring step MiB | ratio |")
    print("|---|---|---|---|---|---|")
    for n in args.lengths:
        model.init_cache(1, n)
        full_cache, full_step = _cache_bytes(model), _step_memory(model)
        print(f"| {n} | {full_cache / MIB:.2f} | {full_step / MIB:.2f} | {ring_cache / MIB:.2f} "
              f"| {ring_step / MIB:.2f} | {full_step / ring_step:.1f}x |")  # fmt: skip
    model.init_rolling_cache(1)
    step = nnx.jit(lambda m, x, pos: m(x, positions=pos, decode=True))
    tokens = jax.random.randint(jax.random.PRNGKey(0), (1, args.run), 0, 256)
    times = []
    for i in range(args.run):
        start = time.perf_counter()
        jax.block_until_ready(step(model, tokens[:, i : i + 1], jnp.array([i])))
        times.append(time.perf_counter() - start)
    first = statistics.median(times[1:101])
    last = statistics.median(times[-100:])
    print(f"ring buffer after {args.run} tokens: cache {_cache_bytes(model) / MIB:.2f} MiB "
          f"(at start {ring_cache / MIB:.2f}); ms/token steps 2-101 {1e3 * first:.2f}, "
          f"last 100 {1e3 * last:.2f} (ratio {last / first:.2f})")  # fmt: skip


if __name__ == "__main__":
    main()
