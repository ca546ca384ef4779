"""Shaw et al.'s relative position representations: a key term in the logits (hook 3)
and a value term in the outputs (hook 4).

References: Shaw, Uszkoreit, Vaswani 2018, "Self-Attention with Relative Position
Representations" (arXiv 1803.02155).
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp

from posenc_jax import relative
from posenc_jax._checks import as_int
from posenc_jax.schemes.base import Scheme
from posenc_jax.schemes.registry import register_scheme

__all__ = ["ShawScheme"]


@register_scheme
@dataclasses.dataclass(frozen=True)
class ShawScheme(Scheme):
    """Relative position representations: clipped key and value embeddings.

    Settings: max_distance K (16 in the paper); tables of 2K+1 rows of size H,
    shared across heads.

    References: Shaw, Uszkoreit, Vaswani 2018, "Self-Attention with Relative
    Position Representations" (arXiv 1803.02155).
    """

    name: ClassVar[str] = "shaw"
    hooks: ClassVar[frozenset[str]] = frozenset({"logit_bias", "value_term"})
    needs_q_for_bias: ClassVar[bool] = True
    max_distance: int = 16

    def __post_init__(self) -> None:
        if as_int(self.max_distance, "max_distance", "shaw") < 0:
            raise ValueError(f"shaw: max_distance must be >= 0; got {self.max_distance}")

    def init_attention_params(self, key, *, num_heads, head_dim):
        kk, kv = jax.random.split(key)
        rows = 2 * int(self.max_distance) + 1
        std = 1.0 / math.sqrt(head_dim)
        return {
            "table_k": std * jax.random.normal(kk, (rows, head_dim)),
            "table_v": std * jax.random.normal(kv, (rows, head_dim)),
        }

    def logit_bias(self, params, q, q_positions, k_positions):
        out = relative.shaw_key_logits(
            q,
            params["table_k"].astype(q.dtype),
            q_positions,
            k_positions,
            max_distance=int(self.max_distance),
        )
        return out.astype(jnp.float32)

    def value_term(self, params, weights, q_positions, k_positions):
        return relative.shaw_value_term(
            weights,
            params["table_v"].astype(weights.dtype),
            q_positions,
            k_positions,
            max_distance=int(self.max_distance),
        )
