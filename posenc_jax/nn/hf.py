"""Hugging Face causal LMs (a local ``config.json`` + ``*.safetensors`` directory) as
`posenc_jax.nn.TransformerLM` models with the same logits.

`hf_model_settings` reads a parsed ``config.json`` into `TransformerLM` keyword
arguments: sizes, the positional scheme (RoPE with its scaling, ALiBi or learned
positions), per-layer windows and RoPE bases, and the family's `Architecture`.
`from_hf` builds the model without initialising it (``nnx.eval_shape``) and fills
every parameter from the safetensors shards, one tensor at a time (bfloat16
weights stay bfloat16 unless ``dtype`` says otherwise), optionally placed on a
device mesh. Nothing is downloaded: the directory is one the user has on disk.

Families (``model_type``): llama, mistral, qwen2, qwen3, phi3, gemma2, gemma3_text,
gpt_neox, gptj, gpt2 and bloom (`HF_MODEL_TYPES`).

Shape legend: V vocabulary, D model dim, N query heads, K key/value heads, H head
dim, F MLP hidden dim.

References: Hugging Face transformers ``models/<family>/modeling_<family>.py`` (the
forward passes reproduced here); Touvron et al. 2023, Llama (arXiv 2302.13971);
Black et al. 2022, GPT-NeoX-20B (arXiv 2204.06745); BigScience 2022, BLOOM (arXiv
2211.05100); Gemma Team 2024/2025, Gemma 2 and 3 (arXiv 2408.00118, 2503.19786).
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from posenc_jax.nn.architecture import Architecture
from posenc_jax.nn.models import TransformerLM
from posenc_jax.nn.patterns import hf_rope_of_type, layer_pattern_from_hf_config
from posenc_jax.rope.hf import rope_from_hf_config

__all__ = ["HF_MODEL_TYPES", "from_hf", "hf_model_settings"]

_ACTIVATIONS = {
    "silu": "silu",
    "swish": "silu",
    "gelu": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_fast": "gelu_tanh",
    "relu": "relu",
}
_LLAMA_LIKE = ("llama", "mistral", "qwen2", "qwen3", "phi3", "gemma2", "gemma3_text")
_GEMMA = ("gemma2", "gemma3_text")
HF_MODEL_TYPES = (*_LLAMA_LIKE, "gpt_neox", "gptj", "gpt2", "bloom")
# Buffers some checkpoints carry that are not parameters (recomputed from the config).
_IGNORED_SUFFIXES = (
    ".rotary_emb.inv_freq",
    ".attn.bias",
    ".attention.bias",  # GPT-NeoX / Pythia causal-mask buffers
    ".masked_bias",
)

# transformers' config-class defaults for keys that ``save_pretrained`` may leave out.
_DEFAULTS: dict[str, dict[str, Any]] = {
    "llama": dict(rms_norm_eps=1e-6, hidden_act="silu", tie_word_embeddings=False),
    "mistral": dict(rms_norm_eps=1e-6, hidden_act="silu", tie_word_embeddings=False),
    "qwen2": dict(rms_norm_eps=1e-6, hidden_act="silu", tie_word_embeddings=False),
    "qwen3": dict(rms_norm_eps=1e-6, hidden_act="silu", tie_word_embeddings=False),
    "phi3": dict(rms_norm_eps=1e-5, hidden_act="silu", tie_word_embeddings=False),
    "gemma2": dict(
        rms_norm_eps=1e-6,
        hidden_activation="gelu_pytorch_tanh",
        tie_word_embeddings=True,
        attn_logit_softcapping=50.0,
        final_logit_softcapping=30.0,
    ),
    "gemma3_text": dict(
        rms_norm_eps=1e-6, hidden_activation="gelu_pytorch_tanh", tie_word_embeddings=True
    ),
    "gpt_neox": dict(
        layer_norm_eps=1e-5,
        hidden_act="gelu",
        tie_word_embeddings=False,
        use_parallel_residual=True,
        attention_bias=True,
    ),
    "gptj": dict(layer_norm_epsilon=1e-5, activation_function="gelu_new"),
    "gpt2": dict(layer_norm_epsilon=1e-5, activation_function="gelu_new"),
    "bloom": dict(layer_norm_epsilon=1e-5),
}
# Options of a config.json that change the forward pass and are not reproduced.
_UNSUPPORTED = {
    "attn_logit_softcapping": "logit soft-capping in attention",
    "final_logit_softcapping": "soft-capping of the output logits",
    "apply_residual_connection_post_layernorm": "BLOOM's residual taken after the norm",
    "scale_attn_by_inverse_layer_idx": "GPT-2 attention scaled by 1/layer",
    "reorder_and_upcast_attn": "GPT-2's reordered attention",
}


def _error(msg: str) -> ValueError:
    return ValueError(f"from_hf: {msg}")


def _get(config: Mapping[str, Any], key: str, *aliases: str) -> Any:
    """config[key] (or an alias), else the family's default; a missing required key is
    an error naming it."""
    for k in (key, *aliases):
        if config.get(k) is not None:
            return config[k]
    defaults = _DEFAULTS.get(str(config.get("model_type")), {})
    for k in (key, *aliases):
        if k in defaults:
            return defaults[k]
    raise _error(f"config.json has no {key!r}")


def _activation(config: Mapping[str, Any]) -> str:
    name = _get(config, "hidden_activation", "hidden_act", "activation_function")
    if name not in _ACTIVATIONS:
        raise _error(f"activation {name!r} is not supported; supported: {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]


def _check_supported(config: Mapping[str, Any]) -> str:
    model_type = config.get("model_type")
    if model_type not in HF_MODEL_TYPES:
        raise _error(
            f"model_type {model_type!r} is not supported; supported: {list(HF_MODEL_TYPES)}"
        )
    if config.get("scale_attn_weights") is False:
        raise _error(
            "config.json sets scale_attn_weights=false (GPT-2 without 1/sqrt(H)), "
            "which is not supported"
        )
    for key, what in _UNSUPPORTED.items():
        if "softcapping" in key and model_type in _GEMMA:
            continue  # Gemma 2 caps both; Gemma 3 its output (its attention ignores the key)
        if config.get(key):
            raise _error(f"config.json sets {key}={config[key]!r} ({what}), which is not supported")
    return model_type


def hf_model_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """`TransformerLM` keyword arguments (no rngs, no dtypes) for a parsed ``config.json``.

    Example:
        >>> s = hf_model_settings({"model_type": "llama", "vocab_size": 32, "hidden_size": 16,
        ...     "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        ...     "intermediate_size": 24, "rope_theta": 500000.0})
        >>> s["scheme"]["base"], s["num_kv_heads"], s["architecture"].gated_mlp
        (500000.0, 2, True)

    Raises:
      ValueError: an unsupported ``model_type`` or option, naming it and the choices.
    """
    if config.get("text_config"):
        raise _error(
            f"model_type {config.get('model_type')!r} is a multimodal checkpoint (text_config); "
            f"only text models are supported: {list(HF_MODEL_TYPES)}"
        )
    model_type = _check_supported(config)
    if model_type in _LLAMA_LIKE:
        return _llama_like_settings(config, model_type)
    return _OTHER_FAMILIES[model_type][0](config)


def _sizes(config: Mapping[str, Any], d: tuple, n: str, layers: str) -> dict[str, int]:
    return dict(
        vocab_size=int(_get(config, "vocab_size")),
        d_model=int(_get(config, *d)),
        num_heads=int(_get(config, n)),
        num_layers=int(_get(config, layers)),
    )


def _llama_like_settings(config: Mapping[str, Any], model_type: str) -> dict[str, Any]:
    sizes = _sizes(config, ("hidden_size",), "num_attention_heads", "num_hidden_layers")
    d, n = sizes["d_model"], sizes["num_heads"]
    head_dim = int(config.get("head_dim") or d // n)
    gemma = model_type in _GEMMA
    bias = bool(config.get("attention_bias", False))
    defaults = _DEFAULTS[model_type]
    caps = {
        key: config.get(key, defaults.get(key))
        for key in ("attn_logit_softcapping", "final_logit_softcapping")
    }
    arch = Architecture(
        norm_eps=float(_get(config, "rms_norm_eps")),
        activation=_activation(config),
        gated_mlp=True,
        mlp_dim=int(_get(config, "intermediate_size")),
        head_dim=head_dim,
        post_norms=gemma,
        qk_norm=model_type in ("qwen3", "gemma3_text"),
        attention_bias=bias or model_type == "qwen2",
        attention_out_bias=bias,
        mlp_bias=bool(config.get("mlp_bias", False)),
        head_bias=False,
        tie_embeddings=bool(_get(config, "tie_word_embeddings")),
        embed_scale=math.sqrt(d) if gemma else None,
        attn_logit_softcap=caps["attn_logit_softcapping"] if model_type == "gemma2" else None,
        final_logit_softcap=caps["final_logit_softcapping"] if gemma else None,
    )
    settings = dict(
        sizes,
        num_kv_heads=int(config.get("num_key_value_heads") or n),
        norm="rmsnorm",
        scheme=hf_rope_of_type(config, "full_attention"),
        architecture=arch,
    )
    pattern = layer_pattern_from_hf_config(config)
    if pattern is not None:  # a layer keeps its own RoPE only where it differs (Gemma 3's
        # local layers), so a context extension of the model's scheme reaches the others
        pattern = tuple(
            {k: v for k, v in entry.items() if k != "scheme" or v != settings["scheme"]}
            for entry in pattern
        )
    if pattern is not None and any(entry != pattern[0] for entry in pattern):
        settings["layer_pattern"] = pattern
    elif pattern is not None:
        settings.update(pattern[0])
    elif model_type in ("mistral", "phi3") and config.get("sliding_window"):
        settings["sliding_window"] = int(config["sliding_window"])
    return settings


def _gpt_neox_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    sizes = _sizes(config, ("hidden_size",), "num_attention_heads", "num_hidden_layers")
    bias = bool(_get(config, "attention_bias"))
    arch = Architecture(
        norm_eps=float(_get(config, "layer_norm_eps")),
        activation=_activation(config),
        mlp_dim=int(_get(config, "intermediate_size")),
        residual="parallel" if _get(config, "use_parallel_residual") else "sequential",
        attention_bias=bias,
        attention_out_bias=bias,
        head_bias=False,
        tie_embeddings=bool(_get(config, "tie_word_embeddings")),
    )
    scheme = rope_from_hf_config(config).to_scheme_config()
    return dict(sizes, norm="layernorm", scheme=scheme, architecture=arch)


def _gptj_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    sizes = _sizes(config, ("n_embd",), "n_head", "n_layer")
    arch = Architecture(
        norm_eps=float(_get(config, "layer_norm_epsilon")),
        activation=_activation(config),
        mlp_dim=int(config.get("n_inner") or 4 * sizes["d_model"]),
        residual="parallel_shared_norm",
        head_bias=True,
    )
    scheme = rope_from_hf_config(config).to_scheme_config()
    return dict(sizes, norm="layernorm", scheme=scheme, architecture=arch)


def _gpt2_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    sizes = _sizes(config, ("n_embd",), "n_head", "n_layer")
    arch = Architecture(
        norm_eps=float(_get(config, "layer_norm_epsilon")),
        activation=_activation(config),
        mlp_dim=int(config.get("n_inner") or 4 * sizes["d_model"]),
        attention_bias=True,
        attention_out_bias=True,
        head_bias=False,
        tie_embeddings=True,
    )
    scheme = {"name": "learned", "max_length": int(_get(config, "n_positions"))}
    return dict(sizes, norm="layernorm", scheme=scheme, architecture=arch)


def _bloom_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    sizes = _sizes(config, ("hidden_size", "n_embed"), "n_head", "n_layer")
    arch = Architecture(
        norm_eps=float(_get(config, "layer_norm_epsilon")),
        activation="gelu_tanh",  # bloom_gelu_forward
        attention_bias=True,
        attention_out_bias=True,
        head_bias=False,
        tie_embeddings=True,
        embed_norm=True,
    )
    return dict(sizes, norm="layernorm", scheme={"name": "alibi"}, architecture=arch)


# ----------------------------------------------------------------------------------
# Weights: our parameter path -> how to read it from the checkpoint.

Path = tuple[Any, ...]
Source = tuple[str, Callable[[np.ndarray], np.ndarray]]


def _linear(name: str) -> Source:
    """torch Linear weight [out, in] -> flax kernel [in, out]."""
    return name, np.transpose


def _same(name: str) -> Source:
    return name, lambda a: a


def _rows(name: str, start: int, stop: int) -> Source:
    """Rows [start, stop) of a fused torch weight [out, in] as a kernel [in, stop - start]
    (or of a fused bias)."""
    return name, lambda a: np.transpose(a[start:stop]) if a.ndim == 2 else a[start:stop]


def _cols(name: str, start: int, stop: int) -> Source:
    """Columns of a GPT-2 Conv1D weight [in, out] (already a kernel) or of its bias."""
    return name, lambda a: a[..., start:stop]


def _head_interleaved(name: str, part: int, num_heads: int) -> Source:
    """q, k or v (part 0, 1, 2) of a fused weight laid out [N, 3, H] on its out axis
    (GPT-NeoX's and BLOOM's ``query_key_value``)."""

    def take(a: np.ndarray) -> np.ndarray:
        lead = a.reshape(num_heads, 3, -1, *a.shape[1:])[:, part]  # [N, H(, D)]
        lead = lead.reshape(-1, *a.shape[1:])  # [N*H(, D)]
        return np.transpose(lead) if a.ndim == 2 else lead

    return name, take


def _plus_one(name: str, times: float = 1.0) -> Source:
    """Gemma's RMSNorm scale is (1 + weight); ``times`` folds a constant into it."""
    return name, lambda a: (1.0 + a.astype(np.float32)) * times  # cast by _place


def _norm(prefix: str, ours: Path, *, bias: bool, gemma: bool = False) -> dict[Path, Source]:
    out = {(*ours, "scale"): _plus_one(prefix + ".weight") if gemma else _same(prefix + ".weight")}
    if bias:
        out[(*ours, "bias")] = _same(prefix + ".bias")
    return out


def _dense(prefix: str, ours: Path, *, bias: bool) -> dict[Path, Source]:
    out = {(*ours, "kernel"): _linear(prefix + ".weight")}
    if bias:
        out[(*ours, "bias")] = _same(prefix + ".bias")
    return out


def _embed_and_head(
    embed: str, head: str, final_norm: str, s: dict, *, norm_bias: bool, gemma: bool = False
) -> dict[Path, Source]:
    arch = s["architecture"]
    out = {("embed", "embedding"): _same(embed)}
    out.update(_norm(final_norm, ("final_norm",), bias=norm_bias, gemma=gemma))
    if not arch.tie_embeddings:
        out.update(_dense(head, ("head",), bias=arch.head_bias))
    return out


def _llama_like_weights(config: Mapping[str, Any], s: dict) -> dict[Path, Source]:
    arch: Architecture = s["architecture"]
    gemma = config["model_type"] in _GEMMA
    n, k, h = s["num_heads"], s.get("num_kv_heads") or s["num_heads"], arch.head_dim
    out = _embed_and_head(
        "model.embed_tokens.weight", "lm_head", "model.norm", s, norm_bias=False, gemma=gemma
    )
    # Gemma scales logits by query_pre_attn_scalar ** -0.5 instead of H ** -0.5: folded
    # into the query norm's scale (RoPE is linear, so it commutes).
    q_times = math.sqrt(h / float(config.get("query_pre_attn_scalar") or h)) if gemma else 1.0
    for i in range(s["num_layers"]):
        p, b = f"model.layers.{i}.", ("blocks", i)
        attn = (*b, "attn")
        if gemma and not arch.qk_norm:  # Gemma 2: the softmax scale folded into q_proj
            q_name = p + "self_attn.q_proj."
            out[(*attn, "q_proj", "kernel")] = (
                q_name + "weight",
                lambda a, c=q_times: np.transpose(a).astype(np.float32) * c,
            )
            if arch.attention_bias:
                out[(*attn, "q_proj", "bias")] = (
                    q_name + "bias",
                    lambda a, c=q_times: a.astype(np.float32) * c,
                )
        if config["model_type"] == "phi3":
            fused = p + "self_attn.qkv_proj.weight"
            out[(*attn, "q_proj", "kernel")] = _rows(fused, 0, n * h)
            out[(*attn, "k_proj", "kernel")] = _rows(fused, n * h, (n + k) * h)
            out[(*attn, "v_proj", "kernel")] = _rows(fused, (n + k) * h, (n + 2 * k) * h)
            f = arch.mlp_dim
            out[(*b, "mlp", "mlp_gate", "kernel")] = _rows(p + "mlp.gate_up_proj.weight", 0, f)
            out[(*b, "mlp", "mlp_in", "kernel")] = _rows(p + "mlp.gate_up_proj.weight", f, 2 * f)
        else:
            for proj in ("q_proj", "k_proj", "v_proj"):
                if (*attn, proj, "kernel") in out:  # Gemma 2's q_proj, scaled above
                    continue
                out.update(_dense(p + "self_attn." + proj, (*attn, proj), bias=arch.attention_bias))
            out.update(_dense(p + "mlp.gate_proj", (*b, "mlp", "mlp_gate"), bias=arch.mlp_bias))
            out.update(_dense(p + "mlp.up_proj", (*b, "mlp", "mlp_in"), bias=arch.mlp_bias))
        out.update(_dense(p + "self_attn.o_proj", (*attn, "o_proj"), bias=arch.attention_out_bias))
        out.update(_dense(p + "mlp.down_proj", (*b, "mlp", "mlp_out"), bias=arch.mlp_bias))
        if arch.qk_norm:
            q_name, k_name = p + "self_attn.q_norm.weight", p + "self_attn.k_norm.weight"
            out[(*attn, "q_norm", "scale")] = _plus_one(q_name, q_times) if gemma else _same(q_name)
            out[(*attn, "k_norm", "scale")] = _plus_one(k_name) if gemma else _same(k_name)
        out.update(_norm(p + "input_layernorm", (*b, "norm1"), bias=False, gemma=gemma))
        if gemma:
            for theirs, ours in (
                ("post_attention_layernorm", "post_attn_norm"),
                ("pre_feedforward_layernorm", "norm2"),
                ("post_feedforward_layernorm", "post_mlp_norm"),
            ):
                out.update(_norm(p + theirs, (*b, ours), bias=False, gemma=True))
        else:
            out.update(_norm(p + "post_attention_layernorm", (*b, "norm2"), bias=False))
    return out


def _gpt_neox_weights(config: Mapping[str, Any], s: dict) -> dict[Path, Source]:
    arch: Architecture = s["architecture"]
    out = _embed_and_head(
        "gpt_neox.embed_in.weight",
        "embed_out",
        "gpt_neox.final_layer_norm",
        s,
        norm_bias=True,
    )
    for i in range(s["num_layers"]):
        out.update(_fused_qkv_layer(f"gpt_neox.layers.{i}.", "attention", i, s, arch))
    return out


def _fused_qkv_layer(p: str, attn: str, i: int, s: dict, arch: Architecture) -> dict:
    """One GPT-NeoX or BLOOM layer (they differ only in the attention module's name):
    per-head fused qkv, dense output, two LayerNorms, a 4x MLP, biases everywhere."""
    b = ("blocks", i)
    out = _fused_heads(p + attn + ".query_key_value", (*b, "attn"), s, arch)
    out.update(_dense(p + attn + ".dense", (*b, "attn", "o_proj"), bias=True))
    out.update(_norm(p + "input_layernorm", (*b, "norm1"), bias=True))
    out.update(_norm(p + "post_attention_layernorm", (*b, "norm2"), bias=True))
    out.update(_dense(p + "mlp.dense_h_to_4h", (*b, "mlp", "mlp_in"), bias=True))
    out.update(_dense(p + "mlp.dense_4h_to_h", (*b, "mlp", "mlp_out"), bias=True))
    return out


def _fused_heads(prefix: str, attn: Path, s: dict, arch: Architecture) -> dict[Path, Source]:
    out = {}
    for part, proj in enumerate(("q_proj", "k_proj", "v_proj")):
        out[(*attn, proj, "kernel")] = _head_interleaved(prefix + ".weight", part, s["num_heads"])
        if arch.attention_bias:
            out[(*attn, proj, "bias")] = _head_interleaved(prefix + ".bias", part, s["num_heads"])
    return out


def _gptj_weights(config: Mapping[str, Any], s: dict) -> dict[Path, Source]:
    out = _embed_and_head(
        "transformer.wte.weight", "lm_head", "transformer.ln_f", s, norm_bias=True
    )
    for i in range(s["num_layers"]):
        p, b = f"transformer.h.{i}.", ("blocks", i)
        for proj in ("q_proj", "k_proj", "v_proj"):
            out.update(_dense(p + "attn." + proj, (*b, "attn", proj), bias=False))
        out.update(_dense(p + "attn.out_proj", (*b, "attn", "o_proj"), bias=False))
        out.update(_norm(p + "ln_1", (*b, "norm1"), bias=True))
        out.update(_dense(p + "mlp.fc_in", (*b, "mlp", "mlp_in"), bias=True))
        out.update(_dense(p + "mlp.fc_out", (*b, "mlp", "mlp_out"), bias=True))
    return out


def _gpt2_weights(config: Mapping[str, Any], s: dict) -> dict[Path, Source]:
    d = s["d_model"]
    out = _embed_and_head("transformer.wte.weight", "", "transformer.ln_f", s, norm_bias=True)
    out[("pos_params",)] = ("transformer.wpe.weight", lambda a: {"table": a})
    for i in range(s["num_layers"]):
        p, b = f"transformer.h.{i}.", ("blocks", i)
        for part, proj in enumerate(("q_proj", "k_proj", "v_proj")):
            for leaf, name in (("kernel", "weight"), ("bias", "bias")):
                src = _cols(p + "attn.c_attn." + name, part * d, (part + 1) * d)
                out[(*b, "attn", proj, leaf)] = src
        for ours, theirs in (
            (("attn", "o_proj"), "attn.c_proj"),
            (("mlp", "mlp_in"), "mlp.c_fc"),
            (("mlp", "mlp_out"), "mlp.c_proj"),
        ):  # Conv1D weights are [in, out] already
            out[(*b, *ours, "kernel")] = _same(p + theirs + ".weight")
            out[(*b, *ours, "bias")] = _same(p + theirs + ".bias")
        out.update(_norm(p + "ln_1", (*b, "norm1"), bias=True))
        out.update(_norm(p + "ln_2", (*b, "norm2"), bias=True))
    return out


def _bloom_weights(config: Mapping[str, Any], s: dict) -> dict[Path, Source]:
    arch: Architecture = s["architecture"]
    out = _embed_and_head(
        "transformer.word_embeddings.weight", "", "transformer.ln_f", s, norm_bias=True
    )
    out.update(_norm("transformer.word_embeddings_layernorm", ("embed_norm",), bias=True))
    for i in range(s["num_layers"]):
        out.update(_fused_qkv_layer(f"transformer.h.{i}.", "self_attention", i, s, arch))
    return out


def _weight_sources(config: Mapping[str, Any], settings: dict) -> dict[Path, Source]:
    model_type = config["model_type"]
    if model_type in _LLAMA_LIKE:
        return _llama_like_weights(config, settings)
    return _OTHER_FAMILIES[model_type][1](config, settings)


# model_type -> (config.json -> settings, weight sources) for the families that are not
# Llama-like
_OTHER_FAMILIES = {
    "gpt_neox": (_gpt_neox_settings, _gpt_neox_weights),
    "gptj": (_gptj_settings, _gptj_weights),
    "gpt2": (_gpt2_settings, _gpt2_weights),
    "bloom": (_bloom_settings, _bloom_weights),
}


# ----------------------------------------------------------------------------------
# Reading the directory.


@dataclasses.dataclass
class _Checkpoint:
    """The tensors of a directory's safetensors files, read one at a time."""

    directory: pathlib.Path
    files: dict[str, pathlib.Path]  # tensor name -> shard

    @classmethod
    def open(cls, directory: pathlib.Path) -> _Checkpoint:
        from safetensors import safe_open

        index = directory / "model.safetensors.index.json"
        if index.is_file():
            weight_map = json.loads(index.read_text())["weight_map"]
            files = {name: directory / shard for name, shard in weight_map.items()}
            missing = sorted({str(p.name) for p in files.values() if not p.is_file()})
            if missing:
                raise _error(f"{index.name} lists shard(s) {missing} that are not in {directory}")
            return cls(directory, files)
        shards = sorted(directory.glob("*.safetensors"))
        if not shards:
            found = sorted(p.name for p in directory.iterdir())
            raise _error(
                f"{directory} has no *.safetensors weights (found {found}); "
                "pytorch_model.bin is not read: save the model with safe_serialization=True"
            )
        files: dict[str, pathlib.Path] = {}
        for shard in shards:
            with safe_open(shard, framework="numpy") as f:
                names = list(f.keys())
            twice = sorted(set(names) & set(files))
            if twice:
                raise _error(
                    f"tensor(s) {twice[:3]} are in both {files[twice[0]].name} and {shard.name}: "
                    "which is meant? (an index file, model.safetensors.index.json, would say)"
                )
            files.update({name: shard for name in names})
        return cls(directory, files)

    def _lookup(self, name: str) -> str:
        if name in self.files:
            return name
        for prefix in ("transformer.", "model.", "gpt_neox."):  # base-model checkpoints
            if name.startswith(prefix) and name[len(prefix) :] in self.files:
                return name[len(prefix) :]
        raise _error(
            f"weight {name!r} is not in the checkpoint's {len(self.files)} tensors "
            f"({sorted({p.name for p in self.files.values()})}); do the shards match config.json?"
        )

    def dtype(self, name: str) -> np.dtype:
        """A tensor's stored dtype, read from the file header only."""
        from safetensors import safe_open

        key = self._lookup(name)
        with safe_open(self.files[key], framework="numpy") as f:
            code = f.get_slice(key).get_dtype()
        return jnp.dtype({"BF16": "bfloat16", "F16": "float16", "F32": "float32"}.get(code, code))

    def read(self, name: str) -> tuple[str, np.ndarray]:
        from safetensors import safe_open

        key = self._lookup(name)
        with safe_open(self.files[key], framework="numpy") as f:
            return key, f.get_tensor(key)


def _read_config(directory: pathlib.Path) -> dict[str, Any]:
    if not directory.is_dir():
        raise _error(
            f"no directory {str(directory)!r}: pass a local Hugging Face model directory "
            "(config.json and *.safetensors); nothing is downloaded"
        )
    path = directory / "config.json"
    if not path.is_file():
        raise _error(f"{directory} has no config.json")
    return json.loads(path.read_text())


def _placement(shape: tuple[int, ...], mesh: jax.sharding.Mesh | None):
    """Where one parameter goes: its largest axis that divides over the whole mesh is
    sharded (over every mesh axis), others replicated; the default device without a mesh."""
    if mesh is None:
        return None
    spec: list[Any] = [None] * len(shape)
    for axis in sorted(range(len(shape)), key=lambda a: -shape[a]):
        if shape[axis] % mesh.size == 0:
            spec[axis] = tuple(mesh.axis_names)
            break
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(*spec))


def _concrete(leaf: Any) -> Any:
    """A concrete value for a non-parameter variable of the abstract model (RNG key or
    count of the dropout streams)."""
    if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        return jax.random.key(0)
    return jnp.zeros(leaf.shape, leaf.dtype)


def from_hf(
    directory: str | pathlib.Path,
    *,
    dtype: Any = None,
    mesh: jax.sharding.Mesh | None = None,
) -> TransformerLM:
    """A `TransformerLM` with a Hugging Face checkpoint's weights and the same logits.

    Example:
        >>> import pathlib
        >>> model = from_hf(pathlib.Path("tests/data/hf/llama"))  # doctest: +SKIP
        >>> model(tokens).shape  # [B, T] -> [B, T, V]  # doctest: +SKIP

    Args:
      directory: a local model directory: ``config.json`` and ``model.safetensors``
        (or shards with ``model.safetensors.index.json``).
      dtype: parameters and computation in this dtype (e.g. ``jnp.float32``); None:
        the checkpoint's own (its token embedding's) dtype.
        Each tensor is converted on its own, so a bfloat16 model never exists as a
        float32 copy.
      mesh: place each parameter on this `jax.sharding.Mesh`: its largest axis that
        divides over every device is sharded, the rest replicated (for a model
        bigger than one device); None: the default device. Give a mesh with
        automatic axes (``jax.sharding.Mesh(devices, names)``): XLA then partitions
        the forward pass itself.

    Returns:
      The model, its scheme and architecture read from ``config.json``; positional
      settings as ``model.scheme`` (RoPE scaling included) and per-layer windows.

    Raises:
      ValueError: the directory, ``config.json`` or weights are missing, the
        ``model_type`` or an option is unsupported (the message names it and the
        supported ones), or a tensor is missing or has another shape than
        ``config.json`` implies.
    """
    directory = pathlib.Path(directory)
    config = _read_config(directory)
    settings = hf_model_settings(config)
    checkpoint = _Checkpoint.open(directory)
    sources = _weight_sources(config, settings)
    stored = _stored_dtype(checkpoint, sources)
    param_dtype = jnp.dtype(dtype) if dtype is not None else stored
    abstract = nnx.eval_shape(
        lambda: TransformerLM(
            **settings, dtype=param_dtype, param_dtype=param_dtype, rngs=nnx.Rngs(0)
        )
    )
    graphdef, params, rest = nnx.split(abstract, nnx.Param, ...)
    flat = nnx.to_flat_state(params)
    used = set()
    for path, variable in flat:
        want = variable.get_value()
        if path not in sources:
            if isinstance(want, dict) and not want:
                continue  # a scheme without parameters (RoPE, ALiBi)
            raise _error(f"no checkpoint tensor is mapped to parameter {path}")
        name, transform = sources[path]
        key, array = checkpoint.read(name)
        used.add(key)
        value = transform(array)
        variable.set_value(_place(value, want, path, name, param_dtype, mesh))
    ignored = _IGNORED_SUFFIXES
    if settings["architecture"].tie_embeddings:  # some tied checkpoints store the copy too
        ignored = (*ignored, "lm_head.weight")
    unused = sorted(n for n in set(checkpoint.files) - used if not n.endswith(ignored))
    if unused:
        raise _error(
            f"the checkpoint has tensors this {config['model_type']} model does not use: "
            f"{unused[:5]}{' ...' if len(unused) > 5 else ''}; do the shards match config.json?"
        )
    params = nnx.from_flat_state(flat)
    rest = jax.tree.map(_concrete, rest)
    return nnx.merge(graphdef, params, rest)


def _stored_dtype(checkpoint: _Checkpoint, sources: dict[Path, Source]) -> Any:
    """The stored dtype of the embedding (a model's weights share one dtype)."""
    return checkpoint.dtype(sources[("embed", "embedding")][0])


def _place(value, want, path, name, param_dtype, mesh) -> Any:
    """One parameter (or a dict of them) converted, checked against the abstract model and
    put on its device(s)."""
    if isinstance(value, dict):
        return {k: _place(v, want[k], path, name, param_dtype, mesh) for k, v in value.items()}
    if tuple(value.shape) != tuple(want.shape):
        raise _error(
            f"weight {name!r} gives shape {tuple(value.shape)} for parameter {path}, but "
            f"config.json implies {tuple(want.shape)}; do the shards match config.json?"
        )
    value = np.asarray(value, dtype=param_dtype)
    return jax.device_put(value, _placement(value.shape, mesh))
