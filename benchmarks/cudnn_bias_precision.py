"""ALiBi bias precision on the cuDNN path: the bias in bfloat16 against float32 (for a GPU).

For causal ALiBi (8 heads, slopes 2^-1 ... 2^-8) with bfloat16 q/k/v, prints per
length the largest error of the slope-2^-8 head's bias once rounded to bfloat16,
and the largest relative error of that head's attention weights, read out
through v: v is one-hot on H sampled keys, so output column c is the weight of
key c. The reference is float32 attention on the same (bfloat16-rounded) inputs.
q and k are small, so the bias dominates the logits, as it does far from the
diagonal. Five ways to run the call:

- ``dense``: `dense_attention` (float32 bias and logits; what "auto" now picks);
- ``cudnn-bf16-bias``: the cuDNN kernel with the bias cast to bfloat16, as
  `fused_attention` passes it (``AttentionConfig(low_precision_bias=True)``);
- ``cudnn-f32-bias``: the cuDNN kernel handed a float32 bias, to see whether
  jax and cuDNN accept it (the jax docs do not say);
- ``xla-f32-bias``: ``jax.nn.dot_product_attention`` with XLA and a float32 bias;
- ``xla-bf16-bias``: the same with the bias cast to bfloat16: the bias rounding
  of the cuDNN row, measurable on any machine.

Without a GPU the cuDNN rows say why they did not run.

    PYTHONPATH=. python benchmarks/cudnn_bias_precision.py --lengths 1024 4096
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

from posenc_jax.attention import dense_attention, fused_attention
from posenc_jax.schemes import make_scheme


def _inputs(t: int, heads: int, head_dim: int, seed: int):
    """q, k [1, T, N, H] (scaled by 0.1) and v one-hot on H keys, all bfloat16."""
    kq, kk = jax.random.split(jax.random.key(seed))
    q, k = (0.1 * jax.random.normal(key, (1, t, heads, head_dim)) for key in (kq, kk))
    keys = jnp.linspace(0, t - 1, head_dim).astype(jnp.int32)  # [H] sampled keys
    v = jnp.zeros((1, t, heads, head_dim)).at[0, keys, :, jnp.arange(head_dim)].set(1.0)
    return [x.astype(jnp.bfloat16) for x in (q, k, v)]


def _error(out, ref) -> float:
    """Largest relative error of the last head's sampled weights (allowed keys only)."""
    out, ref = out[..., -1, :].astype(jnp.float32), ref[..., -1, :]
    return float(jnp.max(jnp.where(ref > 0, jnp.abs(out - ref) / jnp.maximum(ref, 1e-30), 0.0)))


def _try(fn, ref) -> str:
    try:
        return f"{_error(jax.block_until_ready(fn()), ref):.2e}"
    except Exception as err:  # report a refusal (no GPU, dtype not accepted) as the result
        return f"did not run: {type(err).__name__}: {str(err).splitlines()[0][:90]}"


def measure(t: int, *, heads: int = 8, head_dim: int = 64, seed: int = 0) -> dict[str, str]:
    """Errors of one causal ALiBi call of length ``t`` (see the module docstring)."""
    scheme = make_scheme("alibi").configure(causal=True)
    qb, kb, vb = _inputs(t, heads, head_dim, seed)
    q, k, v = (x.astype(jnp.float32) for x in (qb, kb, vb))
    pos = jnp.arange(t)
    kw = dict(q_positions=pos, k_positions=pos, scheme=scheme, causal=True)
    ref = dense_attention(q, k, v, **kw)  # float32 throughout: [1, T, N, H] weights of H keys
    bias = jnp.broadcast_to(scheme.logit_bias({}, q, pos[None], pos[None]), (1, heads, t, t))
    last = bias[0, -1]  # slope 2^-8: |bias| up to t / 256
    rounding = jnp.max(jnp.abs(last.astype(jnp.bfloat16).astype(jnp.float32) - last))
    dpa = jax.nn.dot_product_attention
    return {
        "bias rounding, slope 2^-8": f"{float(rounding):.2e} (absolute)",
        "dense": _try(lambda: dense_attention(qb, kb, vb, **kw), ref),
        "cudnn-bf16-bias": _try(lambda: fused_attention(qb, kb, vb, **kw), ref),
        "cudnn-f32-bias": _try(
            lambda: dpa(qb, kb, vb, bias=bias, is_causal=True, implementation="cudnn"), ref
        ),
        "xla-f32-bias": _try(
            lambda: dpa(qb, kb, vb, bias=bias, is_causal=True, implementation="xla"), ref
        ),
        "xla-bf16-bias": _try(
            lambda: dpa(qb, kb, vb, bias=bias.astype(jnp.bfloat16), is_causal=True), ref
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096])
    args = parser.parse_args()
    print(f"platform: {jax.devices()[0].platform}; relative weight errors of the slope-2^-8 head")
    for t in args.lengths:
        for name, value in measure(t).items():
            print(f"T={t:6d}  {name:26s} {value}")


if __name__ == "__main__":
    main()
