"""Flax NNX modules composed from the pure functions of `posenc_jax`."""

from posenc_jax.nn.attention import MultiHeadAttention
from posenc_jax.nn.models import (
    TransformerBlock,
    TransformerEncoder,
    TransformerLM,
    generate,
    positions_from_padding,
    positions_from_segments,
)
from posenc_jax.nn.patterns import (
    LAYER_KEYS,
    LAYER_PRESETS,
    gemma3_pattern,
    layer_pattern,
    layer_pattern_from_hf_config,
    llama4_pattern,
)

__all__ = [
    "LAYER_KEYS",
    "LAYER_PRESETS",
    "MultiHeadAttention",
    "TransformerBlock",
    "TransformerEncoder",
    "TransformerLM",
    "gemma3_pattern",
    "generate",
    "layer_pattern",
    "layer_pattern_from_hf_config",
    "llama4_pattern",
    "positions_from_padding",
    "positions_from_segments",
]
