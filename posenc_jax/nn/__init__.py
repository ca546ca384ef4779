"""Flax NNX modules composed from the pure functions of `posenc_jax`."""

from posenc_jax.nn.architecture import ACTIVATIONS, MLP, RESIDUALS, Architecture, make_architecture
from posenc_jax.nn.attention import MultiHeadAttention
from posenc_jax.nn.hf import HF_MODEL_TYPES, from_hf, hf_model_settings
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
    "ACTIVATIONS",
    "HF_MODEL_TYPES",
    "LAYER_KEYS",
    "LAYER_PRESETS",
    "MLP",
    "RESIDUALS",
    "Architecture",
    "MultiHeadAttention",
    "TransformerBlock",
    "TransformerEncoder",
    "TransformerLM",
    "from_hf",
    "gemma3_pattern",
    "generate",
    "hf_model_settings",
    "layer_pattern",
    "layer_pattern_from_hf_config",
    "llama4_pattern",
    "make_architecture",
    "positions_from_padding",
    "positions_from_segments",
]
