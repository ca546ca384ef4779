"""Per-layer settings: a pattern of layer overrides repeated over a model's depth.

Recent models do not use one positional setting in every layer. Gemma 2 and 3
alternate sliding-window layers (RoPE with a small base) with global layers (another
base); Llama 4's iRoPE puts a NoPE layer with a query temperature after every three
RoPE layers with chunked local attention. A pattern is a list of overrides, one per
layer, repeated until the depth is filled (layer i takes entry ``i % len(pattern)``);
an empty entry ``{}`` keeps the model's settings. Keys an entry may set:
`LAYER_KEYS`. A layer that sets no ``scheme`` uses the model's scheme, so a RoPE
context extension of the model (`posenc_jax.schemes.Scheme.extend_context`) acts on
exactly those layers, as Gemma 3 scales only its global layers.

Example:
    >>> pattern = llama4_pattern(attention_chunk=16)
    >>> [sorted(entry) for entry in pattern]
    [['attention_chunk'], ['attention_chunk'], ['attention_chunk'], ['scheme', 'softmax_scale']]
    >>> [entry.get("sliding_window") for entry in gemma3_pattern(sliding_window=8)]
    [8, 8, 8, 8, 8, None]

References: Gemma Team 2025, "Gemma 3 Technical Report" (arXiv 2503.19786; 5 local
layers of window 1024 and RoPE base 10k per global layer of base 1M); Meta 2025, "The
Llama 4 herd" (iRoPE: Hugging Face transformers ``configuration_llama4.py``,
``no_rope_layers``, ``attention_chunk_size``, ``attn_temperature_tuning``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from posenc_jax.rope.hf import rope_from_hf_config
from posenc_jax.schemes import make_scheme
from posenc_jax.softmax_scale import make_softmax_scale

__all__ = [
    "HF_LAYER_TYPES",
    "LAYER_KEYS",
    "LAYER_PRESETS",
    "gemma3_pattern",
    "hf_rope_of_type",
    "layer_pattern",
    "layer_pattern_from_hf_config",
    "llama4_pattern",
]

LAYER_KEYS = (
    "scheme",
    "sliding_window",
    "attention_chunk",
    "sink_tokens",
    "softmax_scale",
    "attention_sinks",
)


def gemma3_pattern(
    *, sliding_window: int, local_base: float = 10_000.0, local_per_global: int = 5
) -> list[dict[str, Any]]:
    """Gemma 3: ``local_per_global`` sliding-window RoPE layers (base ``local_base``),
    then one global layer with the model's own scheme (Gemma 3: RoPE base 1M).

    Args:
      sliding_window: the local layers' window (Gemma 3: 1024; Gemma 2: 4096 with
        ``local_per_global=1``).
      local_base: the local layers' RoPE base.
      local_per_global: local layers before each global one.
    """
    if int(local_per_global) < 1:
        raise ValueError(f"gemma3_pattern: local_per_global must be >= 1; got {local_per_global!r}")
    local = {"sliding_window": sliding_window, "scheme": {"name": "rope", "base": local_base}}
    return [dict(local) for _ in range(int(local_per_global))] + [{}]


def llama4_pattern(
    *,
    attention_chunk: int,
    nope_every: int = 4,
    floor_scale: float = 8192.0,
    attn_scale: float = 0.1,
) -> list[dict[str, Any]]:
    """Llama 4's iRoPE: ``nope_every - 1`` layers of the model's scheme (Llama 4: RoPE)
    with chunked attention, then a NoPE layer attending to everything with Llama 4's
    query temperature (`posenc_jax.softmax_scale.llama4_multiplier`).

    Args:
      attention_chunk: the chunk of the RoPE layers (Llama 4: 8192).
      nope_every: every how many layers a NoPE one comes (Llama 4: 4).
      floor_scale, attn_scale: the temperature's settings (Llama 4: 8192, 0.1).
    """
    if int(nope_every) < 2:
        raise ValueError(f"llama4_pattern: nope_every must be >= 2; got {nope_every!r}")
    rope = {"attention_chunk": attention_chunk}
    nope = {
        "scheme": {"name": "nope"},
        "softmax_scale": {"kind": "llama4", "floor_scale": floor_scale, "attn_scale": attn_scale},
    }
    return [dict(rope) for _ in range(int(nope_every) - 1)] + [nope]


LAYER_PRESETS = {"gemma3": gemma3_pattern, "llama4": llama4_pattern}


def layer_pattern(spec: Any) -> tuple[dict[str, Any], ...] | None:
    """A validated pattern from a list of overrides or a preset mapping.

    Example:
        >>> len(layer_pattern({"preset": "gemma3", "sliding_window": 32}))
        6
        >>> layer_pattern([{}, {"scheme": "nope"}])
        ({}, {'scheme': 'nope'})

    Args:
      spec: None (every layer alike), a list of override mappings (keys from
        `LAYER_KEYS`), or ``{"preset": name, **settings}`` with a name from
        `LAYER_PRESETS` and that preset's keyword settings.

    Returns:
      A tuple of override dicts, or None.

    Raises:
      ValueError: naming the preset, entry or key at fault and the valid choices (an
        entry's scheme and softmax scale are built once to check them).
    """
    if spec is None:
        return None
    if isinstance(spec, Mapping):
        settings = dict(spec)
        name = settings.pop("preset", None)
        if name not in LAYER_PRESETS:
            raise ValueError(
                f"layer_pattern: preset must be one of {list(LAYER_PRESETS)}; got {name!r}"
            )
        try:
            spec = LAYER_PRESETS[name](**settings)
        except TypeError as e:
            raise ValueError(f"layer_pattern: preset {name!r}: {e}") from None
    if isinstance(spec, str) or not isinstance(spec, Sequence) or not spec:
        raise ValueError(
            "layer_pattern must be a non-empty list of per-layer overrides or "
            f"{{preset: one of {list(LAYER_PRESETS)}, ...}}; got {spec!r}"
        )
    out = []
    for i, entry in enumerate(spec):
        if not isinstance(entry, Mapping):
            raise ValueError(f"layer_pattern[{i}] must be a mapping; got {entry!r}")
        unknown = sorted(set(entry) - set(LAYER_KEYS))
        if unknown:
            raise ValueError(
                f"layer_pattern[{i}]: unknown keys {unknown}; valid: {list(LAYER_KEYS)}"
            )
        try:  # the entry stays as given (plain YAML); its settings are checked now
            if "scheme" in entry:
                make_scheme(entry["scheme"])
            if "softmax_scale" in entry:
                make_softmax_scale(entry["softmax_scale"])
        except (TypeError, ValueError) as e:
            raise ValueError(f"layer_pattern[{i}]: {e}") from None
        out.append(dict(entry))
    return tuple(out)


HF_LAYER_TYPES = ("full_attention", "sliding_attention", "chunked_attention")


def _hf_layer_types(config: Mapping[str, Any], num_layers: int) -> list[str] | None:
    """``layer_types`` as transformers derives it when a config.json leaves it out."""
    if config.get("layer_types") is not None:
        return list(config["layer_types"])
    model_type = str(config.get("model_type", ""))
    if model_type.startswith("gemma3") or model_type.startswith("gemma2"):
        every = int(
            config.get("sliding_window_pattern") or (6 if model_type.startswith("gemma3") else 2)
        )
        return [
            "sliding_attention" if (i + 1) % every else "full_attention" for i in range(num_layers)
        ]
    if model_type.startswith("llama4"):
        rope = _hf_rope_layers(config, num_layers)
        return ["chunked_attention" if r else "full_attention" for r in rope]
    if model_type in ("qwen2", "qwen3") and config.get("use_sliding_window"):
        first = int(config.get("max_window_layers", num_layers))  # layers from it slide
        return ["sliding_attention" if i >= first else "full_attention" for i in range(num_layers)]
    return None


def _hf_rope_layers(config: Mapping[str, Any], num_layers: int) -> list[int]:
    """Llama 4's ``no_rope_layers`` (1 = RoPE, 0 = NoPE), default every 4th layer NoPE."""
    layers = config.get("no_rope_layers")
    if layers:
        return [int(x) for x in layers]
    interval = int(config.get("no_rope_layer_interval", 4))
    return [int((i + 1) % interval != 0) for i in range(num_layers)]


def hf_rope_of_type(config: Mapping[str, Any], layer_type: str) -> dict[str, Any]:
    """The RoPE scheme config of one layer type: per-type ``rope_parameters`` (transformers
    5), Gemma's ``rope_local_base_freq`` for sliding layers (no scaling), else the
    model's RoPE."""
    params = config.get("rope_parameters")
    if isinstance(params, Mapping) and layer_type in params:
        sub = {**config, "rope_parameters": params[layer_type], "rope_scaling": None}
        return rope_from_hf_config(sub).to_scheme_config()
    if layer_type == "sliding_attention" and config.get("rope_local_base_freq") is not None:
        sub = {**config, "rope_theta": config["rope_local_base_freq"]}
        sub.update(rope_scaling=None, rope_parameters=None)
        return rope_from_hf_config(sub).to_scheme_config()
    return rope_from_hf_config(config).to_scheme_config()


def layer_pattern_from_hf_config(config: Mapping[str, Any]) -> tuple[dict[str, Any], ...] | None:
    """Per-layer overrides (one entry per layer) read from a Hugging Face ``config.json``.

    Reads ``layer_types`` (or derives it as transformers does: Gemma 2/3 from
    ``sliding_window_pattern``, Llama 4 from ``no_rope_layers``), ``sliding_window``,
    ``attention_chunk_size``, per-type ``rope_parameters`` or Gemma's
    ``rope_local_base_freq``, and Llama 4's NoPE layers with their temperature
    (``attn_temperature_tuning``, ``floor_scale``, ``attn_scale``). A multimodal config's
    ``text_config`` is read. None when every layer is alike.

    Example:
        >>> pattern = layer_pattern_from_hf_config({
        ...     "model_type": "gemma3_text", "num_hidden_layers": 6, "head_dim": 8,
        ...     "rope_theta": 1e6, "rope_local_base_freq": 1e4, "sliding_window": 512})
        >>> [(p.get("sliding_window"), p["scheme"]["base"]) for p in pattern[4:]]
        [(512, 10000.0), (None, 1000000.0)]

    Raises:
      ValueError: a layer type other than `HF_LAYER_TYPES`, or a type's setting missing.
    """
    config = config.get("text_config") or config
    num_layers = int(config.get("num_hidden_layers", 0))
    types = _hf_layer_types(config, num_layers)
    if types is None:
        return None
    rope_layers = [1] * len(types)
    if str(config.get("model_type", "")).startswith("llama4"):
        rope_layers = _hf_rope_layers(config, len(types))
    out = []
    for i, (layer_type, rope) in enumerate(zip(types, rope_layers, strict=False)):
        if layer_type not in HF_LAYER_TYPES:
            raise ValueError(
                f"layer_types[{i}]: {layer_type!r} is not one of {list(HF_LAYER_TYPES)}"
            )
        entry: dict[str, Any] = {}
        if layer_type == "sliding_attention":
            entry["sliding_window"] = int(config["sliding_window"])
        if layer_type == "chunked_attention":
            entry["attention_chunk"] = int(config["attention_chunk_size"])
        if rope:
            entry["scheme"] = hf_rope_of_type(config, layer_type)
        else:
            entry["scheme"] = {"name": "nope"}
            if config.get("attn_temperature_tuning", True):
                entry["softmax_scale"] = {
                    "kind": "llama4",
                    "floor_scale": float(config.get("floor_scale", 8192)),
                    "attn_scale": float(config.get("attn_scale", 0.1)),
                }
        out.append(entry)
    return tuple(out)
