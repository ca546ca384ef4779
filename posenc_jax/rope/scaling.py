"""RoPE scaling settings: the rope types, their Hugging Face keys and `RopeScaling`.

A context-extension method ("rope type") is named as in Hugging Face
transformers' ``rope_scaling`` / ``rope_parameters`` dicts (``rope_type`` or the
legacy ``type``), with a few other accepted spellings. `RopeScaling` validates
such a dict once; `canonical_rope_type` and `as_scaling` are what the other
modules of the package use to read one.

Shape legend: H head dim, R rotary dim (``int(H * rotary_fraction)``); the
LongRoPE factor lists hold R/2 entries.

Example:
    >>> RopeScaling.from_dict({"type": "dynamic_ntk", "factor": 2,
    ...     "original_max_position_embeddings": 4096}).to_dict()["rope_type"]
    'dynamic'

References: Chen et al. 2023, position interpolation (arXiv 2306.15595); Peng et
al. 2023, YaRN (arXiv 2309.00071); Ding et al. 2024, LongRoPE (arXiv 2402.13753);
Hugging Face transformers ``modeling_rope_utils.py``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "ROPE_TYPES",
    "RopeScaling",
    "as_scaling",
    "canonical_rope_type",
]

ROPE_TYPES: tuple[str, ...] = ("default", "linear", "ntk", "dynamic", "yarn", "llama3", "longrope")
"""Frequency schedules understood by `rope_frequencies` (Hugging Face names, plus "ntk").

Each has its schedule function in `posenc_jax.rope.frequencies.ROPE_SCHEDULES`.
"""

# Other spellings accepted for ``rope_type``: Hugging Face's legacy names and short names.
_TYPE_ALIASES: dict[str, str] = {
    "none": "default",
    "pi": "linear",
    "position_interpolation": "linear",
    "ntk_aware": "ntk",
    "dynamic_ntk": "dynamic",
    "su": "longrope",  # Phi-3's first configs
}

# Keys each rope_type reads (besides rope_type / type).
_TYPE_KEYS: dict[str, frozenset[str]] = {
    "default": frozenset(),
    "linear": frozenset({"factor"}),
    "ntk": frozenset({"factor"}),
    "dynamic": frozenset({"factor", "original_max_position_embeddings"}),
    "yarn": frozenset(
        {
            "factor",
            "original_max_position_embeddings",
            "attention_factor",
            "beta_fast",
            "beta_slow",
            "mscale",
            "mscale_all_dim",
            "truncate",
        }
    ),
    "llama3": frozenset(
        {"factor", "original_max_position_embeddings", "low_freq_factor", "high_freq_factor"}
    ),
    "longrope": frozenset(
        {
            "factor",
            "original_max_position_embeddings",
            "attention_factor",
            "short_factor",
            "long_factor",
        }
    ),
}
_REQUIRED_KEYS: dict[str, tuple[str, ...]] = {
    "default": (),
    "linear": ("factor",),
    "ntk": ("factor",),
    "dynamic": ("factor", "original_max_position_embeddings"),
    "yarn": ("factor", "original_max_position_embeddings"),
    "llama3": (
        "factor",
        "low_freq_factor",
        "high_freq_factor",
        "original_max_position_embeddings",
    ),
    "longrope": ("short_factor", "long_factor", "original_max_position_embeddings"),
}
# Hugging Face keys that a scaling dict may carry but that are not scaling settings here:
# rope_theta / partial_rotary_factor are the `base` / `rotary_fraction` arguments.
_PASSIVE_KEYS = frozenset({"rope_type", "type", "rope_theta", "partial_rotary_factor"})
_ALL_KEYS = frozenset().union(*_TYPE_KEYS.values())


def canonical_rope_type(name: Any) -> str:
    """The `ROPE_TYPES` name of a rope type spelled any accepted way.

    Args:
      name: a rope type, a Hugging Face legacy name ("su") or a short name
        ("pi", "ntk_aware", "dynamic_ntk"), any case; None means "default".

    Returns:
      One of `ROPE_TYPES`.

    Raises:
      ValueError: an unknown name; the message lists the valid ones.

    Example:
        >>> canonical_rope_type("PI")
        'linear'
    """
    key = str(name).lower() if name is not None else "default"
    key = _TYPE_ALIASES.get(key, key)
    if key not in ROPE_TYPES:
        aliases = sorted(_TYPE_ALIASES)
        raise ValueError(
            f"rope scaling: unknown rope_type {name!r}; valid types are {list(ROPE_TYPES)} "
            f"(also accepted: {aliases})"
        )
    return key


def _positive_number(key: str, value: Any, *, at_least: float | None = None) -> float:
    """A finite number > 0 (and >= ``at_least``) as a float; the message names the key."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise ValueError(f"rope scaling: {key!r} must be a number; got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"rope scaling: {key!r} must be a finite number > 0; got {value}")
    if at_least is not None and value < at_least:
        raise ValueError(f"rope scaling: {key!r} must be >= {at_least}; got {value}")
    return value


def _positive_length(value: Any) -> int:
    """``original_max_position_embeddings`` as an int >= 1 (an integral float is accepted)."""
    if isinstance(value, bool) or float(value) != int(value) or int(value) < 1:
        raise ValueError(
            "rope scaling: 'original_max_position_embeddings' must be a positive "
            f"integer; got {value!r}"
        )
    return int(value)


def _positive_numbers(key: str, value: Any) -> tuple[float, ...]:
    """A list of numbers > 0 (LongRoPE's factors) as a tuple of floats."""
    if isinstance(value, str | bytes) or not isinstance(value, Sequence | np.ndarray):
        raise ValueError(f"rope scaling: {key!r} must be a list of numbers; got {value!r}")
    return tuple(_positive_number(f"{key}[{i}]", v) for i, v in enumerate(value))


@dataclasses.dataclass(frozen=True)
class RopeScaling:
    """A validated RoPE context-extension setting, in Hugging Face ``rope_scaling`` terms.

    Build it with `RopeScaling.from_dict` from a Hugging Face ``rope_scaling`` /
    ``rope_parameters`` dict (``rope_type`` or legacy ``type``); `to_dict` gives
    the dict back. Fields a method does not use stay None.

    Attributes:
      rope_type: one of `ROPE_TYPES`.
      factor: context extension factor s >= 1 (linear, ntk, dynamic, yarn, llama3;
        optional for longrope, where it only sets the default attention factor).
      original_max_position_embeddings: pretraining length L (dynamic, yarn,
        llama3, longrope). For dynamic NTK, Hugging Face uses the config's
        ``max_position_embeddings`` as L; `rope_from_hf_config` fills it in so.
      low_freq_factor, high_freq_factor: Llama 3 band edges (wavelengths L/low, L/high).
      beta_fast, beta_slow: YaRN ramp bounds in rotations (default 32 and 1).
      mscale, mscale_all_dim: YaRN attention-factor terms (DeepSeek-V2/V3).
      attention_factor: explicit attention factor (yarn, longrope).
      truncate: YaRN floor/ceil of the correction range (default True).
      short_factor, long_factor: LongRoPE per-frequency rescale factors, R/2 each.

    Example:
        >>> s = RopeScaling.from_dict({"type": "linear", "factor": 4})
        >>> s.rope_type, s.factor
        ('linear', 4.0)

    References: Chen et al. 2023 (arXiv 2306.15595); Peng et al. 2023, YaRN
    (arXiv 2309.00071); Ding et al. 2024, LongRoPE (arXiv 2402.13753); Meta
    Llama 3.1 (2024); Hugging Face transformers ``modeling_rope_utils.py``.
    """

    rope_type: str = "default"
    factor: float | None = None
    original_max_position_embeddings: int | None = None
    low_freq_factor: float | None = None
    high_freq_factor: float | None = None
    beta_fast: float | None = None
    beta_slow: float | None = None
    mscale: float | None = None
    mscale_all_dim: float | None = None
    attention_factor: float | None = None
    truncate: bool | None = None
    short_factor: tuple[float, ...] | None = None
    long_factor: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "rope_type", canonical_rope_type(self.rope_type))
        _check_required_keys(self)
        for key, value in _validated_values(self).items():
            object.__setattr__(self, key, value)
        _check_type_rules(self)

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> RopeScaling:
        """Parses a Hugging Face ``rope_scaling`` dict; unknown keys raise ValueError.

        Keys that Hugging Face defines for another rope_type are ignored (as
        Hugging Face does); ``rope_theta`` and ``partial_rotary_factor`` are not
        scaling settings and are ignored here (`rope_frequencies` checks that
        they agree with its ``base`` / ``rotary_fraction`` arguments).
        """
        if isinstance(config, RopeScaling):
            return config
        if not isinstance(config, Mapping):
            raise ValueError(f"rope scaling must be a mapping or RopeScaling; got {config!r}")
        if "rope_type" in config and "type" in config:
            a, b = canonical_rope_type(config["rope_type"]), canonical_rope_type(config["type"])
            if a != b:
                raise ValueError(
                    f"rope scaling: 'rope_type'={config['rope_type']!r} and legacy "
                    f"'type'={config['type']!r} disagree"
                )
        rope_type = canonical_rope_type(config.get("rope_type", config.get("type", "default")))
        unknown = sorted(set(config) - _ALL_KEYS - _PASSIVE_KEYS)
        if unknown:
            valid = sorted(_TYPE_KEYS[rope_type] | {"rope_type"})
            raise ValueError(
                f"rope scaling: unknown key(s) {unknown} for rope_type {rope_type!r}; "
                f"valid keys: {valid}"
            )
        kwargs = {k: config[k] for k in _TYPE_KEYS[rope_type] if k in config}
        return cls(rope_type=rope_type, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        """The setting as a Hugging Face style dict (``rope_type`` plus the set keys)."""
        out: dict[str, Any] = {"rope_type": self.rope_type}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name == "rope_type" or value is None:
                continue
            out[field.name] = list(value) if isinstance(value, tuple) else value
        return out


# Fields that hold a number > 0 when set; "factor" must also be >= 1.
_POSITIVE_KEYS = (
    "factor",
    "low_freq_factor",
    "high_freq_factor",
    "mscale",
    "mscale_all_dim",
    "beta_fast",
    "beta_slow",
    "attention_factor",
)


def _check_required_keys(s: RopeScaling) -> None:
    """The keys that the rope type needs are set."""
    for key in _REQUIRED_KEYS[s.rope_type]:
        if getattr(s, key) is None:
            raise ValueError(
                f"rope scaling: rope_type {s.rope_type!r} needs the key {key!r}; "
                f"required keys: {list(_REQUIRED_KEYS[s.rope_type])}"
            )


def _validated_values(s: RopeScaling) -> dict[str, Any]:
    """The set fields as validated floats, int and float tuples, by field name."""
    values: dict[str, Any] = {}
    for key in _POSITIVE_KEYS:
        value = getattr(s, key)
        if value is not None:
            at_least = 1.0 if key == "factor" else None
            values[key] = _positive_number(key, value, at_least=at_least)
    if s.original_max_position_embeddings is not None:
        values["original_max_position_embeddings"] = _positive_length(
            s.original_max_position_embeddings
        )
    if s.truncate is not None and not isinstance(s.truncate, bool | np.bool_):
        raise ValueError(f"rope scaling: 'truncate' must be true or false; got {s.truncate!r}")
    for key in ("short_factor", "long_factor"):
        value = getattr(s, key)
        if value is not None:
            values[key] = _positive_numbers(key, value)
    return values


def _check_type_rules(s: RopeScaling) -> None:
    """Rules between fields: Llama 3's band order, LongRoPE's attention factor source."""
    if s.rope_type == "llama3" and s.high_freq_factor <= s.low_freq_factor:
        raise ValueError(
            "rope scaling: llama3 needs 'high_freq_factor' > 'low_freq_factor'; got "
            f"high_freq_factor={s.high_freq_factor}, low_freq_factor={s.low_freq_factor}"
        )
    if s.rope_type == "longrope" and s.factor is None and s.attention_factor is None:
        raise ValueError(
            "rope scaling: longrope needs the key 'factor' (max_position_embeddings / "
            "original_max_position_embeddings, as Hugging Face derives it) or "
            "'attention_factor'"
        )


def as_scaling(
    scaling: RopeScaling | Mapping[str, Any] | None,
    *,
    base: float,
    rotary_fraction: float,
) -> RopeScaling | None:
    """A scaling argument as a `RopeScaling`, or None for the default schedule.

    Args:
      scaling: None, a `RopeScaling` or a Hugging Face ``rope_scaling`` dict.
      base: the RoPE base the caller uses; a dict's ``rope_theta`` must equal it.
      rotary_fraction: the caller's rotary fraction; a dict's
        ``partial_rotary_factor`` must equal it.

    Returns:
      The validated `RopeScaling`, or None when there is none or its type is "default".

    Raises:
      ValueError: an invalid setting, or a dict that disagrees with ``base`` or
        ``rotary_fraction`` (the message says which argument to pass).

    Example:
        >>> as_scaling({"rope_type": "default"}, base=10000.0, rotary_fraction=1.0) is None
        True
    """
    if scaling is None:
        return None
    if isinstance(scaling, Mapping):
        # rope_theta / partial_rotary_factor inside the dict must agree with the arguments.
        for key, arg, value in (
            ("rope_theta", "base", base),
            ("partial_rotary_factor", "rotary_fraction", rotary_fraction),
        ):
            if scaling.get(key) is not None and float(scaling[key]) != float(value):
                raise ValueError(
                    f"rope scaling: scaling[{key!r}]={scaling[key]} disagrees with "
                    f"{arg}={value}; pass {arg}={scaling[key]}"
                )
        scaling = RopeScaling.from_dict(scaling)
    if not isinstance(scaling, RopeScaling):
        raise ValueError(f"rope scaling must be a mapping, RopeScaling or None; got {scaling!r}")
    return None if scaling.rope_type == "default" else scaling
