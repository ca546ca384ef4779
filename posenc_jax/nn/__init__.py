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

__all__ = [
    "MultiHeadAttention",
    "TransformerBlock",
    "TransformerEncoder",
    "TransformerLM",
    "generate",
    "positions_from_padding",
    "positions_from_segments",
]
