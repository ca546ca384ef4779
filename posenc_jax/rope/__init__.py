"""Rotary position embedding (RoPE), its context-extension methods and Hugging Face interop.

RoPE rotates pairs of q/k features by angles ``m * theta_i`` so that the q·k
logit depends on positions only through ``m - n``. The package is split by
concern; every public name is re-exported here:

* `posenc_jax.rope.scaling`: `RopeScaling` and `ROPE_TYPES`, validated
  context-extension settings in Hugging Face ``rope_scaling`` terms.
* `posenc_jax.rope.frequencies`: `rope_frequencies`, the inverse frequencies
  ``theta_i`` and the attention factor for the default schedule and the
  context-extension methods (position interpolation, NTK-aware, dynamic NTK,
  YaRN, Llama 3, LongRoPE), numerically equal to Hugging Face transformers'
  ``ROPE_INIT_FUNCTIONS``; `rotary_dim`; p-RoPE (``keep_fraction``, the
  lowest frequencies removed) and `p_rope_keep_count`.
* `posenc_jax.rope.numerics`: the angles ``m * theta`` modulo 2 pi in fixed
  point, and the cos/sin table (computed once on CPU).
* `posenc_jax.rope.rotation`: `apply_rope`, the rotation, in the "half"
  (GPT-NeoX / HF Llama) or "interleaved" (RoFormer / GPT-J / Meta Llama) feature
  layout, with partial rotary dims; `convert_rope_layout`, which permutes q/k
  projection weights between the two layouts so that attention scores are
  unchanged; `LAYOUTS`.
* `posenc_jax.rope.hf`: `RopeSettings` and `rope_from_hf_config`, a model's
  settings read offline from a Hugging Face ``config.json`` dict.
* `posenc_jax.rope.decay`: `rope_decay_bound`, RoFormer's long-term decay bound.

Shape legend: B batch, T query length, N heads, H head dim, D model dim,
R rotary dim (``int(H * rotary_fraction)``).

Scaling dicts use Hugging Face key names (``rope_type`` or the legacy ``type``,
``factor``, ``original_max_position_embeddings``, ...), so a ``rope_scaling``
block copied from a model config works as is.

Example:
    >>> import jax.numpy as jnp
    >>> inv_freq, factor = rope_frequencies(8)
    >>> q = jnp.ones((1, 4, 2, 8))  # [B, T, N, H]
    >>> apply_rope(q, jnp.arange(4), inv_freq=inv_freq, attention_factor=factor).shape
    (1, 4, 2, 8)

References: Su et al. 2021, "RoFormer: Enhanced Transformer with Rotary Position
Embedding" (arXiv 2104.09864).
"""

from posenc_jax.rope.decay import (
    rope_decay_bound,
)
from posenc_jax.rope.frequencies import (
    p_rope_keep_count,
    rope_frequencies,
    rotary_dim,
)
from posenc_jax.rope.hf import (
    RopeSettings,
    rope_from_hf_config,
)
from posenc_jax.rope.rotation import (
    LAYOUTS,
    apply_rope,
    convert_rope_layout,
)
from posenc_jax.rope.scaling import (
    ROPE_TYPES,
    RopeScaling,
)

__all__ = [
    "LAYOUTS",
    "ROPE_TYPES",
    "RopeScaling",
    "RopeSettings",
    "apply_rope",
    "convert_rope_layout",
    "p_rope_keep_count",
    "rope_decay_bound",
    "rope_frequencies",
    "rope_from_hf_config",
    "rotary_dim",
]
