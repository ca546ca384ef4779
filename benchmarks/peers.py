"""Train step against a peer: posenc-jax beside x-transformers (PyTorch) on the CPU.

The same byte-level decoder LM in both libraries, for each shape of a grid and each of
ALiBi, RoPE and NoPE; the two train steps interleaved in one process (ours, peer, peer,
ours, ...), medians of ``--repeats`` samples of the same number of steps on each side,
and the ratio ours / peer printed (below 1: ours is faster), with the median of each
repeat's own ratio (its two samples ran one right after the other, so a slow stretch of
the machine slows both alike) and that ratio's quartiles. A sample is at least
``--sample-ms`` of our steps (100 ms: 2 steps at B=32 T=128, 10 at the quick job's 10 ms
steps), or ``--steps-per-sample`` steps where given.

Ours: the jitted, vmapped train step of `posenc_jax.harness.train` (one seed), as
``posenc run`` trains and as benchmarks/performance.py times it: `build_model_fn`,
`init_state`, `make_optimizer`, `make_train_step`. Peer: ``x_transformers.TransformerWrapper``
with a ``Decoder``, ``torch.optim.AdamW`` and a plain eager step. Both sides:

- d_model D, N heads of D / N dims, L pre-norm layers, MLP ratio 4 with GELU (tanh
  approximation on both: jax.nn.gelu's default; the peer gets
  ``ff_custom_activation=nn.GELU(approximate="tanh")``), a final norm, untied input
  embedding and output head, no absolute position embedding (``use_abs_pos_emb=False``),
  dropout 0, float32.
- ALiBi: ``alibi_pos_bias=True`` (the same slopes); RoPE: ``rotary_pos_emb=True`` with
  ``rotary_emb_dim=D / N`` (every dim rotated, base 10000, rotate-half layout, as ours);
  NoPE: neither.
- AdamW (b1 0.9, b2 0.999, eps 1e-8, weight decay 0.01 on every parameter), global
  norm clipping at 1.0, linear warmup then cosine decay to 10% (a ``LambdaLR`` on the
  peer side), mean cross-entropy over every position.
- The same token batch (uniform random bytes, every row full length), kept on the
  device / in memory between steps.

What differs, because the libraries differ (small against the step; say so when comparing):

- LayerNorm: ours (``nnx.LayerNorm``) has a bias, the peer's has a scale only; our
  output head has a bias, the peer's (``LinearNoBias``) none: 2 * L * D + D + V more
  parameters on our side.
- Our step also returns token and sequence accuracy (an argmax over the logits) and
  a finiteness flag, as the harness logs them; the peer step returns the loss only.
- The peer caches its ALiBi bias between calls (x-transformers' ``AlibiPositionalBias``
  buffer); ours computes it inside the step. The peer runs its attention as einsums
  (x-transformers' default ``attn_flash=False``); ``--peer-flash`` gives it
  ``F.scaled_dot_product_attention``.
- Threads: XLA:CPU uses every core it may run on; the peer gets
  ``torch.set_num_threads`` of the same count (``--threads``).
- Processes: the peer runs in a Python process of its own, driven sample by sample
  over a pipe, so that neither library's threads and allocator share a process with
  the other's (``--same-process``: both in one).

Default grid: the three shapes of issue #21 (B=32 T=128 D=64 L=2 N=4; B=32 T=512
D=64 L=2 N=4; B=8 T=512 D=256 L=4 N=8) and the quick job's two (configs/quick.yaml:
the copy task, B=32 T=26 vocabulary 25, and the byte-level LM, B=16 T=48; one seed
here, two together in the job).

    pip install -e ".[bench]"                    # torch (CPU wheel) and x-transformers
    python benchmarks/peers.py                   # the default grid, ALiBi / RoPE / NoPE
    python benchmarks/peers.py --shapes 32:128:64:2:4 --schemes rope --repeats 31
    python benchmarks/peers.py --json runs/peers.json
    python benchmarks/peers.py --dry-run         # tiny shape, RoPE, 2 steps (the test suite)

Shapes are ``B:T:D:L:N`` or ``B:T:D:L:N:V`` (vocabulary, default 256).
Without torch or x-transformers the script says how to install them and exits 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUICK = ROOT / "configs" / "quick.yaml"
SCHEMES = ("alibi", "rope", "nope")
ISSUE_SHAPES = ("32:128:64:2:4", "32:512:64:2:4", "8:512:256:4:8")
DRY_SHAPES = ("2:8:16:1:2",)
DRY_SCHEMES = ("rope",)  # one compilation: the suite runs the dry run in seconds
INSTALL = 'pip install -e ".[bench]"'


@dataclasses.dataclass(frozen=True)
class Shape:
    batch: int
    length: int
    d_model: int
    layers: int
    heads: int
    vocab: int = 256
    label: str = ""

    @classmethod
    def parse(cls, text: str, label: str = "") -> Shape:
        parts = [int(p) for p in text.split(":")]
        if len(parts) not in (5, 6):
            raise argparse.ArgumentTypeError(f"shape must be B:T:D:L:N[:V]; got {text!r}")
        return cls(*parts, label=label)

    @property
    def spec(self) -> str:
        """``B:T:D:L:N:V``, as `parse` reads it."""
        return f"{self.batch}:{self.length}:{self.d_model}:{self.layers}:{self.heads}:{self.vocab}"

    def __str__(self) -> str:
        s = f"B={self.batch} T={self.length} D={self.d_model} L={self.layers} N={self.heads}"
        s += f" V={self.vocab}" if self.vocab != 256 else ""
        return f"{s} ({self.label})" if self.label else s


def missing_peer() -> list[str]:
    """The peer's packages that cannot be imported here."""
    return [m for m in ("torch", "x_transformers") if importlib.util.find_spec(m) is None]


def quick_shapes() -> list[Shape]:
    """The train shapes of configs/quick.yaml (one per task), with the model's settings."""
    from posenc_jax.harness.config import load_config
    from posenc_jax.harness.plan import plan

    cfg = load_config(QUICK)
    shapes, seen = [], set()
    for r in plan(cfg):
        if r.task_label in seen:
            continue
        seen.add(r.task_label)
        m = cfg.model
        width = r.task.sequence_length(r.train.length)
        shapes.append(
            Shape(
                r.train.batch_size,
                width,
                m.d_model,
                m.num_layers,
                m.num_heads,
                r.task.vocab_size,
                label=f"quick.yaml {r.task_label}",
            )
        )
    return shapes


# --------------------------------------------------------------------------------------------
# The two train steps
# --------------------------------------------------------------------------------------------

LEARNING_RATE = 3e-3
WARMUP_STEPS = 30
TOTAL_STEPS = 1000


def train_config(shape: Shape):
    from posenc_jax.harness.config import TrainConfig

    return TrainConfig(
        length=shape.length,
        min_length=shape.length,
        steps=TOTAL_STEPS,
        batch_size=shape.batch,
        learning_rate=LEARNING_RATE,
        warmup_steps=WARMUP_STEPS,
        weight_decay=0.01,
        grad_clip=1.0,
    )


def make_batch(shape: Shape, seed: int = 0):
    """numpy tokens [B, T + 1] of uniform random symbols: inputs and next-token targets."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return rng.integers(0, shape.vocab, size=(shape.batch, shape.length + 1), dtype=np.int32)


class Ours:
    """posenc-jax: the harness's jitted train step (one seed), state threaded (donated)."""

    def __init__(
        self,
        scheme: str,
        shape: Shape,
        tokens,
        *,
        micro_batches: str | int = "auto",
        dense_backward: str = "manual",
    ):
        import functools
        from unittest import mock

        import jax
        import numpy as np

        from posenc_jax.attention import AttentionConfig
        from posenc_jax.harness import train as train_module
        from posenc_jax.harness.config import EvalConfig, ModelConfig
        from posenc_jax.harness.train import (
            build_model_fn,
            init_state,
            inline_step_for,
            make_optimizer,
            make_train_step,
            micro_batches_for,
        )
        from posenc_jax.schemes import make_scheme

        task = _ByteTask(shape.vocab)
        mcfg = ModelConfig(num_layers=shape.layers, d_model=shape.d_model, num_heads=shape.heads)
        tcfg = dataclasses.replace(train_config(shape), micro_batches=micro_batches)
        tx = make_optimizer(tcfg)
        bound = make_scheme(scheme)
        # The harness builds its models with AttentionConfig's default backward ("manual");
        # the ablation swaps the other one in for this model only.
        config = functools.partial(AttentionConfig, dense_backward=dense_backward)
        with mock.patch.object(train_module, "AttentionConfig", config):
            make_model = build_model_fn(task, bound, mcfg, EvalConfig())
        graphdef, state = init_state(make_model, [0], tx)
        platform = jax.devices()[0].platform
        self.micro_batches = micro_batches_for(
            tcfg, mcfg, bound, platform=platform, seeds=1, length=shape.length
        )
        self.inline = inline_step_for(tcfg, platform=platform, seeds=1, length=shape.length)
        self.step = make_train_step(
            graphdef, tx, micro_batches=self.micro_batches, inline=self.inline
        )
        self.params, self.rest, self.opt_state = state.params, state.rest, state.opt_state
        b, t = shape.batch, shape.length
        batch = {
            "tokens": tokens[:, :-1],
            "targets": tokens[:, 1:],
            "loss_mask": np.ones((b, t), bool),
            "padding_mask": np.ones((b, t), bool),
            "positions": np.broadcast_to(np.arange(t, dtype=np.int32), (b, t)),
        }
        self.batch = jax.device_put({k: np.ascontiguousarray(v)[None] for k, v in batch.items()})
        self._jax = jax

    def run(self, n: int) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            self.params, self.rest, self.opt_state, metrics = self.step(
                self.params, self.rest, self.opt_state, self.batch
            )
        self._jax.block_until_ready((self.params, self.opt_state, metrics))
        self.loss = float(metrics["loss"][0])
        return (time.perf_counter() - t0) / n


@dataclasses.dataclass(frozen=True)
class _ByteTask:
    """What `build_model_fn` reads of a task: its vocabulary and causality."""

    vocab_size: int
    causal: bool = True


def unit_schedule(step: int) -> float:
    """`make_optimizer`'s schedule of peak 1 (optax.warmup_cosine_decay_schedule)."""
    if step < WARMUP_STEPS:
        return step / WARMUP_STEPS
    frac = min((step - WARMUP_STEPS) / (TOTAL_STEPS - WARMUP_STEPS), 1.0)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac))


class Peer:
    """x-transformers: the same model and optimizer, an eager PyTorch train step."""

    def __init__(self, scheme: str, shape: Shape, tokens, *, flash: bool = False):
        import torch
        from torch import nn
        from x_transformers import Decoder, TransformerWrapper

        torch.manual_seed(0)
        dim_head = shape.d_model // shape.heads
        self.model = TransformerWrapper(
            num_tokens=shape.vocab,
            max_seq_len=shape.length,
            use_abs_pos_emb=False,
            tie_embedding=False,
            attn_layers=Decoder(
                dim=shape.d_model,
                depth=shape.layers,
                heads=shape.heads,
                attn_dim_head=dim_head,
                attn_flash=flash,
                ff_mult=4,
                ff_custom_activation=nn.GELU(approximate="tanh"),
                alibi_pos_bias=scheme == "alibi",
                rotary_pos_emb=scheme == "rope",
                rotary_emb_dim=dim_head,
                verbose=False,
            ),
        ).float()
        self.model.train()
        self.opt = torch.optim.AdamW(
            self.model.parameters(),
            lr=LEARNING_RATE,
            betas=(0.9, 0.999),
            eps=1e-8,
            weight_decay=0.01,
        )
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, unit_schedule)
        t = torch.from_numpy(tokens).long()
        self.inputs, self.targets = t[:, :-1].contiguous(), t[:, 1:].contiguous()
        self.vocab = shape.vocab
        self.num_parameters = sum(p.numel() for p in self.model.parameters())
        self._torch = torch

    def run(self, n: int) -> float:
        torch = self._torch
        f = torch.nn.functional
        t0 = time.perf_counter()
        for _ in range(n):
            logits = self.model(self.inputs)  # [B, T, V]
            loss = f.cross_entropy(logits.reshape(-1, self.vocab), self.targets.reshape(-1))
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.opt.step()
            self.sched.step()
        self.loss = float(loss.detach())
        return (time.perf_counter() - t0) / n


class PeerProcess:
    """The peer in a Python process of its own, one sample at a time over a pipe.

    As each library runs for its users: neither's threads, heap and allocator settings
    are shared with the other's. The samples still alternate between the two sides in
    the same order as in one process (``--same-process``).
    """

    def __init__(self, scheme: str, shape: Shape, args):
        import subprocess

        cmd = [sys.executable, str(Path(__file__).resolve()), "--peer-child", scheme]
        cmd += ["--shapes", shape.spec, "--threads", str(args.threads), "--malloc", args.malloc]
        cmd += ["--peer-flash"] if args.peer_flash else []
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.num_parameters = self._reply()["parameters"]
        self.loss = float("nan")

    def _reply(self) -> dict:
        for line in self.proc.stdout:
            if line.startswith("{"):
                return json.loads(line)
        raise RuntimeError(f"the peer's process ended (exit code {self.proc.wait()})")

    def run(self, n: int) -> float:
        self.proc.stdin.write(f"{n}\n")
        self.proc.stdin.flush()
        reply = self._reply()
        self.loss = reply["loss"]
        return reply["seconds"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def peer_child(args) -> None:
    """--peer-child: the peer of one shape and scheme, timing ``n`` steps per input line."""
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)  # torch.jit.script's notice
    import torch

    if args.malloc == "kept":
        from posenc_jax.harness.runtime import keep_freed_memory

        keep_freed_memory()
    torch.set_num_threads(args.threads)
    shape = args.shapes[0]
    peer = Peer(args.peer_child, shape, make_batch(shape), flash=args.peer_flash)
    print(json.dumps({"parameters": peer.num_parameters}), flush=True)
    for line in sys.stdin:
        seconds = peer.run(int(line))
        print(json.dumps({"seconds": seconds, "loss": peer.loss}), flush=True)


def parameter_counts(ours: Ours, peer: Peer | PeerProcess) -> tuple[int, int]:
    import jax

    n_ours = sum(x.size for x in jax.tree.leaves(ours.params))
    return n_ours, peer.num_parameters


# --------------------------------------------------------------------------------------------


ABLATION = (("autodiff", 1), ("manual", 1), ("autodiff", 2), ("manual", 2))
"""--ablation: (dense backward, micro-batches) of our step, each timed beside the peer, and
the step as ``posenc run`` resolves it (``manual`` and ``--micro-batches``) where that
differs from these four."""


def steps_per_sample(step_seconds: float, sample_ms: float) -> int:
    """Steps that make a sample of at least ``sample_ms`` (2 at least), one step timed.

    >>> steps_per_sample(0.011, 100), steps_per_sample(0.046, 100), steps_per_sample(0.9, 100)
    (10, 3, 2)
    """
    return max(2, math.ceil(sample_ms / (1e3 * step_seconds)))


def paired_ratios(ours: list[float], peer: list[float]) -> list[float]:
    """Ours / peer for each repeat: two samples taken one right after the other.

    A slow stretch of the machine (other tenants, the host) slows both sides of a pair
    alike, so the pair's ratio cancels it where the ratio of the two medians need not.

    >>> paired_ratios([1.0, 3.0], [2.0, 4.0])
    [0.5, 0.75]
    """
    if len(ours) != len(peer):
        raise ValueError(f"paired_ratios: {len(ours)} samples of ours, {len(peer)} of the peer")
    return [a / b for a, b in zip(ours, peer, strict=True)]


def quartiles(values: list[float]) -> list[float]:
    """The first and third quartiles (inclusive method; both the value where n < 2).

    >>> quartiles([1.0, 2.0, 3.0, 4.0, 5.0])
    [2.0, 4.0]
    """
    if len(values) < 2:
        return [values[0], values[0]]
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return [q1, q3]


def measure(shape: Shape, scheme: str, args) -> dict:
    tokens = make_batch(shape)
    variants = (*ABLATION, ("manual", args.micro_batches)) if args.ablation else ()
    t0 = time.perf_counter()
    main = Ours(scheme, shape, tokens, micro_batches=args.micro_batches)
    main.run(1)  # compiles
    compile_s = time.perf_counter() - t0
    main_name = f"manual/{main.micro_batches}"
    ours = {}
    for backward, micro in variants:
        if backward == "manual" and micro in (args.micro_batches, main.micro_batches):
            ours[main_name] = main  # the step as resolved: timed once
            continue
        o = Ours(scheme, shape, tokens, micro_batches=micro, dense_backward=backward)
        o.run(1)
        ours[f"{backward}/{o.micro_batches}"] = o
    ours.setdefault(main_name, main)
    if args.same_process:
        peer = Peer(scheme, shape, tokens, flash=args.peer_flash)
    else:
        peer = PeerProcess(scheme, shape, args)
    sides = [*ours.items(), ("peer", peer)]
    if args.warmup:
        for _, s in sides:
            s.run(args.warmup)
    steps = args.steps_per_sample or steps_per_sample(main.run(2), args.sample_ms)
    samples = {name: [] for name, _ in sides}
    for rep in range(args.repeats):
        for name, s in sides if rep % 2 == 0 else sides[::-1]:
            samples[name].append(s.run(steps))
    ms = {name: 1e3 * statistics.median(v) for name, v in samples.items()}
    against_peer = {}  # each of our steps: its ratios to the peer, of medians and paired
    for name in ours:
        paired = paired_ratios(samples[name], samples["peer"])
        against_peer[name] = dict(
            ratio=ms[name] / ms["peer"],
            paired_ratio=statistics.median(paired),
            paired_quartiles=quartiles(paired),
        )
    n_ours, n_peer = parameter_counts(main, peer)
    if isinstance(peer, PeerProcess):
        peer.close()
    return dict(
        shape=str(shape),
        spec=dataclasses.asdict(shape),
        scheme=scheme,
        ours_ms=ms[main_name],
        peer_ms=ms["peer"],
        **against_peer[main_name],
        ours_spread_ms=[1e3 * min(samples[main_name]), 1e3 * max(samples[main_name])],
        peer_spread_ms=[1e3 * min(samples["peer"]), 1e3 * max(samples["peer"])],
        steps_per_sample=steps,
        ours_compile_s=compile_s,
        ours_micro_batches=main.micro_batches,
        ours_params=n_ours,
        peer_params=n_peer,
        ours_loss=main.loss,
        peer_loss=peer.loss,
        variants={name: dict(ms=ms[name], **against_peer[name]) for name in ours},
    )


def _micro_batches(text: str) -> str | int:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--micro-batches: auto or an int; got {text!r}") from None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--shapes",
        nargs="+",
        type=Shape.parse,
        help="B:T:D:L:N[:V] each (default: the issue's three and configs/quick.yaml's)",
    )
    p.add_argument("--no-quick", action="store_true", help="leave out the quick.yaml shapes")
    p.add_argument(
        "--schemes",
        nargs="+",
        choices=SCHEMES,
        help=f"default: {' '.join(SCHEMES)} ({DRY_SCHEMES[0]} in a dry run)",
    )
    p.add_argument("--repeats", type=int, default=15, help="interleaved samples per side")
    p.add_argument(
        "--sample-ms",
        type=float,
        default=100.0,
        help="a sample is the fewest steps (2 at least) that take this long on our side",
    )
    p.add_argument(
        "--steps-per-sample",
        type=int,
        help="steps per sample on both sides (overrides --sample-ms)",
    )
    p.add_argument("--warmup", type=int, default=3, help="steps per side before timing")
    p.add_argument(
        "--threads",
        type=int,
        default=len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        help="torch.set_num_threads (default: the cores this process may use)",
    )
    p.add_argument(
        "--peer-flash",
        action="store_true",
        help="peer attention through F.scaled_dot_product_attention",
    )
    p.add_argument(
        "--malloc",
        choices=["default", "kept"],
        default="default",
        help="kept: glibc keeps freed blocks, as `posenc run` sets it (both sides)",
    )
    p.add_argument(
        "--micro-batches",
        type=_micro_batches,
        default="auto",
        help="our train.micro_batches: auto (as `posenc run` resolves it) or a count",
    )
    p.add_argument(
        "--ablation",
        action="store_true",
        help="time our step four ways beside the peer (dense backward autodiff or manual, "
        "micro-batches 1 or 2) and as --micro-batches resolves it",
    )
    p.add_argument(
        "--same-process",
        action="store_true",
        help="run the peer in this process (default: a process of its own, driven in turn)",
    )
    p.add_argument("--peer-child", choices=SCHEMES, help=argparse.SUPPRESS)
    p.add_argument("--json", help="also write every figure to this JSON file")
    p.add_argument("--dry-run", action="store_true", help="tiny shapes, 2 steps (for the tests)")
    args = p.parse_args()
    if args.peer_child:
        peer_child(args)
        return

    missing = missing_peer()
    if missing:
        print(
            f"peers: skipped, the peer is not installed ({', '.join(missing)} missing); "
            f"install the bench extra: {INSTALL}"
        )
        return
    if args.dry_run:
        args.shapes = [Shape.parse(s, "dry run") for s in DRY_SHAPES]
        args.repeats, args.steps_per_sample, args.warmup = 2, 1, 0
        args.schemes = args.schemes or list(DRY_SCHEMES)
    elif not args.shapes:
        args.shapes = [Shape.parse(s, "issue #21") for s in ISSUE_SHAPES]
        if not args.no_quick:
            args.shapes += quick_shapes()
    args.schemes = args.schemes or list(SCHEMES)

    import jax
    import torch
    import x_transformers  # noqa: F401  (checked above; its version is reported)

    if args.malloc == "kept":
        from posenc_jax.harness.runtime import keep_freed_memory

        if not keep_freed_memory():
            raise SystemExit("--malloc kept needs glibc (posenc_jax.harness.runtime)")
    torch.set_num_threads(args.threads)
    from importlib.metadata import version

    header = dict(
        date=time.strftime("%Y-%m-%d %H:%M"),
        jax=jax.__version__,
        torch=torch.__version__,
        x_transformers=version("x-transformers"),
        platform=jax.devices()[0].platform,
        cpus=os.cpu_count(),
        torch_threads=torch.get_num_threads(),
        malloc=args.malloc,
        peer_flash=args.peer_flash,
        peer_process="same" if args.same_process else "own",
        load_average=list(os.getloadavg()),
    )
    sample_size = (
        f"{args.steps_per_sample} steps"
        if args.steps_per_sample
        else f"the steps of >= {args.sample_ms:g} ms of ours (2 at least)"
    )
    print(
        f"{header['date']}: jax {header['jax']} on {header['platform']}, torch {header['torch']}"
        f" ({header['torch_threads']} threads), x-transformers {header['x_transformers']}; "
        f"{header['cpus']} CPUs, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print(
        f"AdamW train step, float32; median of {args.repeats} interleaved samples per side, "
        f"each {sample_size}; ratio = ours / peer (< 1: ours faster)"
    )
    print("paired = median over repeats of ours / peer in the same repeat [first-third quartile]")
    print(
        f"{'shape':52s} {'scheme':6s} {'ours ms':>8s} {'peer ms':>8s} {'ratio':>6s} "
        f"{'paired':>6s} {'quartiles':>11s}"
    )
    rows = []
    for shape in args.shapes:
        for scheme in args.schemes:
            r = measure(shape, scheme, args)
            rows.append(r)
            for name, v in r["variants"].items() if args.ablation else [("", r)]:
                label = f"{scheme} {name}".strip()
                ours_ms = v["ms"] if args.ablation else r["ours_ms"]
                q1, q3 = v["paired_quartiles"]
                print(
                    f"{r['shape']:52s} {label:6s} {ours_ms:8.2f} {r['peer_ms']:8.2f} "
                    f"{v['ratio']:5.2f}x {v['paired_ratio']:5.2f}x [{q1:.2f}-{q3:.2f}]",
                    flush=True,
                )
    if args.json:
        Path(args.json).write_text(json.dumps(dict(header, rows=rows), indent=2) + "\n")


if __name__ == "__main__":
    main()
