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
    >>> [s.get("sliding_window") for s in layer_settings(gemma3_pattern(sliding_window=8), 7)]
    [8, 8, 8, 8, 8, None, 8]

References: Gemma Team 2025, "Gemma 3 Technical Report" (arXiv 2503.19786; 5 local
layers of window 1024 and RoPE base 10k per global layer of base 1M); Meta 2025, "The
Llama 4 herd" (iRoPE: Hugging Face transformers ``configuration_llama4.py``,
``no_rope_layers``, ``attention_chunk_size``, ``attn_temperature_tuning``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "LAYER_KEYS",
    "LAYER_PRESETS",
    "gemma3_pattern",
    "layer_pattern",
    "layer_settings",
    "llama4_pattern",
]

LAYER_KEYS = ("scheme", "sliding_window", "attention_chunk", "softmax_scale", "attention_sinks")


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
      ValueError: naming the preset, entry or key at fault and the valid choices.
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
        out.append(dict(entry))
    return tuple(out)


def layer_settings(pattern: Any, num_layers: int) -> list[dict[str, Any]]:
    """The override dict of each of ``num_layers`` layers (``{}`` without a pattern)."""
    pattern = layer_pattern(pattern)
    if pattern is None:
        return [{} for _ in range(num_layers)]
    return [dict(pattern[i % len(pattern)]) for i in range(num_layers)]
