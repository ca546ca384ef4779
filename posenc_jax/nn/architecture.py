"""Block layout options beyond the sizes: what separates GPT-2, Llama, GPT-NeoX, Gemma.

`Architecture` holds the choices that published decoder families make differently
(norm epsilon, MLP activation and gating, residual wiring, biases, q/k norm, tied
embeddings, embedding scale and norm); the default is this project's own tiny
model. `MLP` is the feed-forward part they share. Pretrained checkpoints set these
options to reproduce their family (`posenc_jax.nn.from_hf`).

Shape legend: B batch, T length, D model dim, F MLP hidden dim.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from posenc_jax._checks import check_choice

__all__ = ["ACTIVATIONS", "MLP", "RESIDUALS", "Architecture", "make_architecture"]

ACTIVATIONS = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),  # erf (GPT-NeoX)
    "gelu_tanh": lambda x: jax.nn.gelu(x, approximate=True),  # GPT-2, GPT-J, BLOOM, Gemma
    "silu": jax.nn.silu,  # Llama, Mistral, Qwen, Phi-3 (gated)
    "relu": jax.nn.relu,
}
RESIDUALS = ("sequential", "parallel", "parallel_shared_norm")


@dataclasses.dataclass(frozen=True)
class Architecture:
    """How a block is wired, beyond its sizes.

    Attributes:
      norm_eps: epsilon of every norm (1e-6).
      activation: the MLP nonlinearity, one of `ACTIVATIONS`: "gelu" (erf),
        "gelu_tanh" (the tanh approximation; the default), "silu", "relu".
      gated_mlp: ``out(act(gate(x)) * in(x))`` (SwiGLU, GeGLU) instead of
        ``out(act(in(x)))``.
      mlp_dim: F, the MLP's hidden width; None: ``mlp_ratio * d_model``.
      head_dim: each head's width; None: ``d_model // num_heads``.
      residual: "sequential" (``x + attn(norm1 x)``, then ``+ mlp(norm2 x)``),
        "parallel" (``x + attn(norm1 x) + mlp(norm2 x)``: GPT-NeoX) or
        "parallel_shared_norm" (one norm feeds both: GPT-J).
      post_norms: a norm on the attention and on the MLP output before each
        residual add (Gemma 2 and 3).
      qk_norm: an RMSNorm over each head's query and key, before the scheme's
        q/k hook (Qwen3, Gemma 3).
      attention_bias: biases on the q, k and v projections (GPT-2, Qwen2).
      attention_out_bias: a bias on the attention output projection.
      mlp_bias: biases on the MLP projections (True).
      head_bias: a bias on the output head (True).
      tie_embeddings: the output head is the token embedding, transposed.
      embed_scale: token embeddings are multiplied by it (Gemma: sqrt(D)).
      embed_norm: a norm right after the embeddings (BLOOM).
      attn_logit_softcap: c: attention logits become ``c * tanh(logit / c)`` (Gemma 2;
        every attention path takes it, cuDNN excepted).
      final_logit_softcap: c: the output logits become ``c * tanh(logit / c)`` (Gemma 2).

    Example:
        >>> make_architecture({"activation": "silu", "gated_mlp": True}).residual
        'sequential'
        >>> make_architecture({"residual": "fused"})
        Traceback (most recent call last):
        ...
        ValueError: architecture: residual must be one of ['sequential', 'parallel', \
'parallel_shared_norm']; got 'fused'

    References: Black et al. 2022, GPT-NeoX-20B (arXiv 2204.06745), parallel
    residual; Shazeer 2020, "GLU Variants Improve Transformer" (arXiv 2002.05202);
    Press & Wolf 2017, tied embeddings (arXiv 1608.05859); Gemma Team 2024, Gemma 2
    (arXiv 2408.00118), soft-capping.
    """

    norm_eps: float = 1e-6
    activation: str = "gelu_tanh"
    gated_mlp: bool = False
    mlp_dim: int | None = None
    head_dim: int | None = None
    residual: str = "sequential"
    post_norms: bool = False
    qk_norm: bool = False
    attention_bias: bool = False
    attention_out_bias: bool = False
    mlp_bias: bool = True
    head_bias: bool = True
    tie_embeddings: bool = False
    embed_scale: float | None = None
    embed_norm: bool = False
    attn_logit_softcap: float | None = None
    final_logit_softcap: float | None = None

    def __post_init__(self) -> None:
        check_choice(self.activation, "activation", tuple(ACTIVATIONS), "architecture")
        check_choice(self.residual, "residual", RESIDUALS, "architecture")
        if not isinstance(self.norm_eps, int | float) or not self.norm_eps > 0:
            raise ValueError(f"architecture: norm_eps must be a number > 0; got {self.norm_eps!r}")
        for key in ("mlp_dim", "head_dim"):
            value = getattr(self, key)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ValueError(f"architecture: {key} must be None or an int >= 1; got {value!r}")
        for f in dataclasses.fields(self):
            if f.type == "bool" and not isinstance(getattr(self, f.name), bool):
                raise ValueError(
                    f"architecture: {f.name} must be true or false; got {getattr(self, f.name)!r}"
                )
        for key in ("attn_logit_softcap", "final_logit_softcap"):
            value = getattr(self, key)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float) or not value > 0
            ):
                raise ValueError(f"architecture: {key} must be None or a number > 0; got {value!r}")
        if self.embed_scale is not None and (
            isinstance(self.embed_scale, bool)
            or not isinstance(self.embed_scale, int | float)
            or not self.embed_scale > 0
        ):
            raise ValueError(
                f"architecture: embed_scale must be None or a number > 0; got {self.embed_scale!r}"
            )


def make_architecture(spec: Architecture | Mapping[str, Any] | None) -> Architecture:
    """An `Architecture` from itself, a mapping of its fields (a config's
    ``model.architecture``) or None (the default); unknown keys are an error naming
    the valid ones."""
    if spec is None:
        return Architecture()
    if isinstance(spec, Architecture):
        return spec
    if not isinstance(spec, Mapping):
        raise ValueError(f"architecture must be a mapping or null; got {spec!r}")
    names = [f.name for f in dataclasses.fields(Architecture)]
    unknown = sorted(set(spec) - set(names))
    if unknown:
        raise ValueError(f"architecture: unknown key(s) {unknown}; valid keys: {names}")
    return Architecture(**spec)


class MLP(nnx.Module):
    """The feed-forward part of a block: x [B, T, D] -> [B, T, D].

    ``mlp_out(act(mlp_in(x)))``, or ``mlp_out(act(mlp_gate(x)) * mlp_in(x))`` when
    gated. References: Vaswani et al. 2017 (arXiv 1706.03762); Shazeer 2020
    (arXiv 2002.05202).
    """

    def __init__(self, d_model: int, hidden: int, *, arch: Architecture, **kw: Any) -> None:
        linear = dict(use_bias=arch.mlp_bias, **kw)
        self.activation = arch.activation
        self.mlp_gate = nnx.data(nnx.Linear(d_model, hidden, **linear) if arch.gated_mlp else None)
        self.mlp_in = nnx.Linear(d_model, hidden, **linear)
        self.mlp_out = nnx.Linear(hidden, d_model, **linear)

    def __call__(self, x: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        if self.mlp_gate is None:
            return self.mlp_out(act(self.mlp_in(x)))
        return self.mlp_out(act(self.mlp_gate(x)) * self.mlp_in(x))


def embed_scale(x: jax.Array, scale: float | None) -> jax.Array:
    """x times ``scale`` rounded to x's dtype (as Gemma does), or x when None."""
    return x if scale is None else x * jnp.asarray(scale, x.dtype)
