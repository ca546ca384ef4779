"""Experiments on a pretrained model (``model.pretrained: DIR``): no training stage.

The directory's weights (`posenc_jax.nn.from_hf`) are evaluated as they are, as one
"seed", and under each context extension its scheme offers: the rows
``<dir name>`` and ``<dir name>+<method>`` of the results, with the same files,
tables and plots as trained runs. The model's context length (``config.json``'s
``max_position_embeddings``, ``n_positions`` or ``seq_length``) plays the part of
the training length: extensions scale from it to each evaluation length.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import Mesh

from posenc_jax.attention import AttentionConfig
from posenc_jax.harness.config import ConfigError, EvalConfig, ModelConfig
from posenc_jax.harness.sharding import put_state
from posenc_jax.nn import TransformerLM, from_hf, hf_model_settings
from posenc_jax.schemes import Scheme

__all__ = [
    "PRETRAINED_TASKS",
    "load_pretrained",
    "pretrained_context",
    "pretrained_model_fn",
    "pretrained_settings",
]

PRETRAINED_TASKS = ("lm", "passkey_text")  # tasks read with the model's own tokenizer


@functools.lru_cache(maxsize=8)
def _config(directory: str) -> dict[str, Any]:
    path = Path(directory) / "config.json"
    if not path.is_file():
        raise ConfigError(
            f"model.pretrained: {directory!r} has no config.json (a local Hugging Face model "
            "directory with config.json, *.safetensors and tokenizer.json; nothing is downloaded)"
        )
    return json.loads(path.read_text())


def pretrained_settings(directory: str) -> dict[str, Any]:
    """`TransformerLM` settings of the directory's ``config.json`` (a `ConfigError` naming
    ``model.pretrained`` when the family or an option is unsupported)."""
    try:
        return hf_model_settings(_config(directory))
    except ValueError as e:
        raise ConfigError(f"model.pretrained: {e}") from None


def pretrained_context(directory: str) -> int | None:
    """The context length the model was trained for, or None when config.json gives none."""
    config = _config(directory)
    for key in ("max_position_embeddings", "n_positions", "seq_length"):
        if config.get(key):
            return int(config[key])
    return None


def _dtype(mcfg: ModelConfig):
    return jnp.bfloat16 if mcfg.dtype == "bfloat16" else jnp.float32


def pretrained_model_fn(scheme: Scheme, mcfg: ModelConfig, ecfg: EvalConfig):
    """``key -> model`` of the pretrained architecture with ``scheme`` (a context
    extension's variant) in place of its own: the graph `evaluate` runs for that
    variant with the loaded parameters."""
    settings = {**pretrained_settings(mcfg.pretrained), "scheme": scheme}
    attention = AttentionConfig(
        blockwise_threshold=ecfg.blockwise_threshold, block_size=ecfg.block_size
    )
    dtype = _dtype(mcfg)

    def make(key: jax.Array) -> nnx.Module:
        return TransformerLM(
            **settings,
            attention=attention,
            dtype=dtype,
            param_dtype=dtype,
            rngs=nnx.Rngs(params=key, dropout=key),
        )

    return make


def load_pretrained(
    scheme: Scheme, mcfg: ModelConfig, ecfg: EvalConfig, *, mesh: Mesh | None
) -> tuple[nnx.GraphDef, Any, dict[str, Any]]:
    """(graphdef, state stacked over one seed, info) of the directory's weights, as
    `posenc_jax.harness.train.train` returns them for a trained run."""
    from posenc_jax.harness.train import RunState, graph_of

    graphdef = graph_of(pretrained_model_fn(scheme, mcfg, ecfg))
    params, rest = _load(mcfg.pretrained, mcfg.dtype)
    if mesh is not None:
        params, rest = put_state(params, mesh), put_state(rest, mesh)
    state = RunState(0, params, rest, None)
    return graphdef, state, {"diverged": {}, "seconds": 0.0, "resumed_from": None}


@functools.lru_cache(maxsize=1)  # the tasks of one config share one read of the checkpoint
def _load(directory: str, dtype: str) -> tuple[Any, Any]:
    """(params, rest) of the directory's model, each leaf with a seed axis of 1."""
    try:
        model = from_hf(directory, dtype=jnp.bfloat16 if dtype == "bfloat16" else jnp.float32)
    except ValueError as e:
        raise ConfigError(f"model.pretrained: {e}") from None
    _, params, rest = nnx.split(model, nnx.Param, ...)
    del model
    # A leading seed axis of 1 on every leaf, one leaf at a time: each original is
    # dropped as soon as its copy exists, so the model is never held twice.
    leaves, treedef = jax.tree.flatten((params, rest))
    del params, rest
    for i in range(len(leaves)):
        leaves[i] = leaves[i][None]
    return jax.tree.unflatten(treedef, leaves)
