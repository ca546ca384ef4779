"""Rotary position embedding (RoPE), its context-extension methods and Hugging Face interop.

RoPE rotates pairs of q/k features by angles ``m * theta_i`` so that the q·k
logit depends on positions only through ``m - n``. This module provides:

* `rope_frequencies`: the inverse frequencies ``theta_i`` and the attention
  factor for the default schedule and the context-extension methods
  (position interpolation, NTK-aware, dynamic NTK, YaRN, Llama 3, LongRoPE),
  numerically equal to Hugging Face transformers' ``ROPE_INIT_FUNCTIONS``.
* `apply_rope`: the rotation, in the "half" (GPT-NeoX / HF Llama) or
  "interleaved" (RoFormer / GPT-J / Meta Llama) feature layout, with partial
  rotary dims.
* `convert_rope_layout`: permutes q/k projection weights between the two
  layouts so that attention scores are unchanged.
* `RopeScaling`, `RopeSettings` and `rope_from_hf_config`: validated settings,
  read offline from a Hugging Face ``config.json`` dict.

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

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "LAYOUTS",
    "ROPE_TYPES",
    "RopeScaling",
    "RopeSettings",
    "apply_rope",
    "convert_rope_layout",
    "rope_frequencies",
    "rope_from_hf_config",
    "rotary_dim",
]

LAYOUTS: tuple[str, ...] = ("half", "interleaved")
"""Feature layouts: "half" pairs dims (i, i + R/2); "interleaved" pairs (2i, 2i + 1)."""

ROPE_TYPES: tuple[str, ...] = ("default", "linear", "ntk", "dynamic", "yarn", "llama3", "longrope")
"""Frequency schedules understood by `rope_frequencies` (Hugging Face names, plus "ntk")."""

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


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------


def _canonical_type(name: Any) -> str:
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
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise ValueError(f"rope scaling: {key!r} must be a number; got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"rope scaling: {key!r} must be a finite number > 0; got {value}")
    if at_least is not None and value < at_least:
        raise ValueError(f"rope scaling: {key!r} must be >= {at_least}; got {value}")
    return value


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
        rope_type = _canonical_type(self.rope_type)
        object.__setattr__(self, "rope_type", rope_type)
        for key in _REQUIRED_KEYS[rope_type]:
            if getattr(self, key) is None:
                raise ValueError(
                    f"rope scaling: rope_type {rope_type!r} needs the key {key!r}; "
                    f"required keys: {list(_REQUIRED_KEYS[rope_type])}"
                )
        for key in ("factor", "low_freq_factor", "high_freq_factor", "mscale", "mscale_all_dim"):
            value = getattr(self, key)
            if value is not None:
                at_least = 1.0 if key == "factor" else None
                object.__setattr__(self, key, _positive_number(key, value, at_least=at_least))
        for key in ("beta_fast", "beta_slow", "attention_factor"):
            value = getattr(self, key)
            if value is not None:
                object.__setattr__(self, key, _positive_number(key, value))
        length = self.original_max_position_embeddings
        if length is not None:
            if isinstance(length, bool) or float(length) != int(length) or int(length) < 1:
                raise ValueError(
                    "rope scaling: 'original_max_position_embeddings' must be a positive "
                    f"integer; got {length!r}"
                )
            object.__setattr__(self, "original_max_position_embeddings", int(length))
        if self.truncate is not None and not isinstance(self.truncate, bool | np.bool_):
            raise ValueError(
                f"rope scaling: 'truncate' must be true or false; got {self.truncate!r}"
            )
        for key in ("short_factor", "long_factor"):
            value = getattr(self, key)
            if value is None:
                continue
            if isinstance(value, str | bytes) or not isinstance(value, Sequence | np.ndarray):
                raise ValueError(f"rope scaling: {key!r} must be a list of numbers; got {value!r}")
            object.__setattr__(
                self, key, tuple(_positive_number(f"{key}[{i}]", v) for i, v in enumerate(value))
            )
        if rope_type == "llama3" and self.high_freq_factor <= self.low_freq_factor:
            raise ValueError(
                "rope scaling: llama3 needs 'high_freq_factor' > 'low_freq_factor'; got "
                f"high_freq_factor={self.high_freq_factor}, low_freq_factor={self.low_freq_factor}"
            )
        if rope_type == "longrope" and self.factor is None and self.attention_factor is None:
            raise ValueError(
                "rope scaling: longrope needs the key 'factor' (max_position_embeddings / "
                "original_max_position_embeddings, as Hugging Face derives it) or "
                "'attention_factor'"
            )

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
            a, b = _canonical_type(config["rope_type"]), _canonical_type(config["type"])
            if a != b:
                raise ValueError(
                    f"rope scaling: 'rope_type'={config['rope_type']!r} and legacy "
                    f"'type'={config['type']!r} disagree"
                )
        rope_type = _canonical_type(config.get("rope_type", config.get("type", "default")))
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


def _as_scaling(
    scaling: RopeScaling | Mapping[str, Any] | None,
    *,
    base: float,
    rotary_fraction: float,
) -> RopeScaling | None:
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


# --------------------------------------------------------------------------------------------
# Frequencies
# --------------------------------------------------------------------------------------------


def rotary_dim(head_dim: int, rotary_fraction: float = 1.0) -> int:
    """The number of rotated dims R = int(head_dim * rotary_fraction), validated.

    Args:
      head_dim: H, the per-head feature size.
      rotary_fraction: fraction of H that rotates, in (0, 1].

    Returns:
      R, an even integer in [2, H].

    Example:
        >>> rotary_dim(256, 0.25)
        64

    References: Black et al. 2022, "GPT-NeoX-20B" (partial rotary, arXiv 2204.06745).
    """
    if isinstance(head_dim, bool) or not isinstance(head_dim, int | np.integer) or head_dim < 2:
        raise ValueError(f"rope needs an integer head_dim >= 2; got head_dim={head_dim!r}")
    fraction = float(rotary_fraction)
    if not 0.0 < fraction <= 1.0:
        raise ValueError(
            f"rope needs rotary_fraction in (0, 1]; got rotary_fraction={rotary_fraction!r}"
        )
    dim = int(int(head_dim) * fraction)
    if dim == 0 or dim % 2:
        raise ValueError(
            f"rope needs an even rotary dim >= 2; got head_dim={head_dim}, "
            f"rotary_fraction={rotary_fraction} (rotary dim {dim})"
        )
    return dim


def _check_base(base: float) -> float:
    if isinstance(base, bool) or not isinstance(base, int | float | np.number):
        raise ValueError(f"rope needs a number base > 0; got base={base!r}")
    base = float(base)
    if not math.isfinite(base) or base <= 0:
        raise ValueError(f"rope needs base > 0; got base={base}")
    return base


def _default_inv_freq64(dim: int, base: float) -> np.ndarray:
    """theta_i = base^(-2i/R), i = 0 .. R/2 - 1, in float64."""
    return 1.0 / base ** (np.arange(0, dim, 2, dtype=np.float64) / dim)


def _get_mscale(scale: float, mscale: float = 1.0) -> float:
    # YaRN / DeepSeek: sqrt(1/t) = 0.1 * mscale * ln(s) + 1 for s > 1.
    if scale <= 1:
        return 1.0
    return 0.1 * mscale * math.log(scale) + 1.0


def _yarn(dim: int, base: float, s: RopeScaling) -> tuple[np.ndarray, float]:
    factor = s.factor
    if s.attention_factor is not None:
        attention_factor = s.attention_factor
    elif s.mscale and s.mscale_all_dim:
        attention_factor = _get_mscale(factor, s.mscale) / _get_mscale(factor, s.mscale_all_dim)
    else:
        attention_factor = _get_mscale(factor)
    beta_fast = s.beta_fast or 32.0
    beta_slow = s.beta_slow or 1.0
    length = s.original_max_position_embeddings
    truncate = True if s.truncate is None else bool(s.truncate)

    def correction_dim(num_rotations: float) -> float:
        # The dim index whose wavelength fits num_rotations times into the original length.
        return (dim * math.log(length / (num_rotations * 2 * math.pi))) / (2 * math.log(base))

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001  # as Hugging Face: avoid a zero-width ramp
    ramp = np.clip((np.arange(dim // 2, dtype=np.float64) - low) / (high - low), 0.0, 1.0)
    extrapolation = _default_inv_freq64(dim, base)
    interpolation = extrapolation / factor
    # ramp 0 (high frequency, index < low): unchanged; ramp 1 (index > high): divided by s.
    inv_freq = interpolation * ramp + extrapolation * (1.0 - ramp)
    return inv_freq, float(attention_factor)


def _llama3(dim: int, base: float, s: RopeScaling) -> np.ndarray:
    inv_freq = _default_inv_freq64(dim, base)
    length = s.original_max_position_embeddings
    low_freq_wavelen = length / s.low_freq_factor
    high_freq_wavelen = length / s.high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = np.where(wavelen > low_freq_wavelen, inv_freq / s.factor, inv_freq)
    smooth = (length / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor)
    smoothed = (1 - smooth) * scaled / s.factor + smooth * scaled
    medium = (wavelen >= high_freq_wavelen) & (wavelen <= low_freq_wavelen)
    return np.where(medium, smoothed, scaled)


def rope_frequencies(
    head_dim: int,
    *,
    base: float = 10000.0,
    rotary_fraction: float = 1.0,
    scaling: RopeScaling | Mapping[str, Any] | None = None,
    seq_len: int | jax.Array | None = None,
) -> tuple[jax.Array, jax.Array | float]:
    """Inverse frequencies theta_i and the attention factor of a RoPE schedule.

    The default schedule is theta_i = base^(-2i/R), i = 0 .. R/2 - 1, with
    R = int(head_dim * rotary_fraction). ``scaling`` selects a context-extension
    method by Hugging Face ``rope_type`` (or legacy ``type``):

    * ``"default"`` / None: the schedule above, attention factor 1.
    * ``"linear"``: position interpolation, theta_i / factor.
    * ``"ntk"``: NTK-aware base change, base' = base * factor^(R/(R-2)). Hugging
      Face has no static equivalent; its "dynamic" type at seq_len =
      factor * L gives the same base.
    * ``"dynamic"``: dynamic NTK, base' = base * (factor * L' / L - (factor - 1))^(R/(R-2))
      with L' = max(seq_len, L), L = ``original_max_position_embeddings``;
      seq_len None gives L' = L (the default schedule). ``seq_len`` may be a
      traced value, so one compiled program serves all lengths.
    * ``"yarn"``: NTK-by-parts ramp between theta_i (dims above beta_fast
      rotations over L) and theta_i / factor (dims below beta_slow rotations);
      attention factor ``attention_factor``, else
      get_mscale(factor, mscale) / get_mscale(factor, mscale_all_dim) when both
      are set, else 0.1 * ln(factor) + 1.
    * ``"llama3"``: wavelengths below L / high_freq_factor unchanged, above
      L / low_freq_factor divided by factor, smooth interpolation in between.
    * ``"longrope"``: theta_i / long_factor[i] when seq_len > L, else
      theta_i / short_factor[i] (seq_len may be traced); attention factor
      ``attention_factor``, else sqrt(1 + ln(factor) / ln(L)) (1 if factor <= 1).

    Values equal Hugging Face transformers' ``ROPE_INIT_FUNCTIONS`` within
    float32 rounding (checked against stored golden values). Frequencies are
    computed in float64 and rounded once to float32, except the dynamic NTK
    schedule for a traced seq_len, which is computed in float32 (relative error
    below 1e-6).

    Args:
      head_dim: H, the per-head size of q and k.
      base: the RoPE base (Hugging Face ``rope_theta``), > 0.
      rotary_fraction: fraction of H that rotates, in (0, 1] (``partial_rotary_factor``).
      scaling: None, a `RopeScaling`, or a Hugging Face ``rope_scaling`` dict.
      seq_len: current sequence length (max position + 1), for "dynamic" and
        "longrope"; a Python int or a (possibly traced) integer scalar.

    Returns:
      ``(inv_freq, attention_factor)``: inv_freq ``[R/2]`` float32 and the factor
      that multiplies cos and sin (a Python float).

    Raises:
      ValueError: odd or zero rotary dim, head_dim < 2, rotary_fraction outside
        (0, 1], base <= 0, an unknown rope_type, missing or invalid scaling keys,
        or LongRoPE factor lists whose length is not R/2.

    Example:
        >>> inv_freq, factor = rope_frequencies(
        ...     128, base=500000.0,
        ...     scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
        ...              "high_freq_factor": 4.0, "original_max_position_embeddings": 8192})
        >>> inv_freq.shape, factor
        ((64,), 1.0)

    References: Su et al. 2021, RoFormer (arXiv 2104.09864); Chen et al. 2023,
    position interpolation (arXiv 2306.15595); bloc97 2023, NTK-aware scaling;
    Peng et al. 2023, YaRN (arXiv 2309.00071); Ding et al. 2024, LongRoPE
    (arXiv 2402.13753); Hugging Face transformers ``modeling_rope_utils.py``.
    """
    dim = rotary_dim(head_dim, rotary_fraction)
    base = _check_base(base)
    s = _as_scaling(scaling, base=base, rotary_fraction=rotary_fraction)
    rope_type = "default" if s is None else s.rope_type

    if rope_type in ("ntk", "dynamic") and dim <= 2:
        raise ValueError(
            f"rope scaling: {rope_type!r} needs a rotary dim > 2 (exponent R/(R-2)); got "
            f"head_dim={head_dim}, rotary_fraction={rotary_fraction}"
        )
    if rope_type == "longrope":
        for key in ("short_factor", "long_factor"):
            if len(getattr(s, key)) != dim // 2:
                raise ValueError(
                    f"rope scaling: longrope {key!r} must have R/2 = {dim // 2} entries for "
                    f"head_dim={head_dim}, rotary_fraction={rotary_fraction}; "
                    f"got {len(getattr(s, key))}"
                )

    default = _default_inv_freq64(dim, base)
    if rope_type == "default":
        return jnp.asarray(default, jnp.float32), 1.0
    if rope_type == "linear":
        return jnp.asarray(default / s.factor, jnp.float32), 1.0
    if rope_type == "ntk":
        new_base = base * s.factor ** (dim / (dim - 2))
        return jnp.asarray(_default_inv_freq64(dim, new_base), jnp.float32), 1.0
    if rope_type == "yarn":
        inv_freq, attention_factor = _yarn(dim, base, s)
        return jnp.asarray(inv_freq, jnp.float32), attention_factor
    if rope_type == "llama3":
        return jnp.asarray(_llama3(dim, base, s), jnp.float32), 1.0

    length = s.original_max_position_embeddings
    if rope_type == "dynamic":
        if seq_len is None:
            return jnp.asarray(default, jnp.float32), 1.0
        if not isinstance(seq_len, jax.Array):
            current = max(float(seq_len), float(length))
            scale = s.factor * current / length - (s.factor - 1.0)
            new_base = base * scale ** (dim / (dim - 2))
            return jnp.asarray(_default_inv_freq64(dim, new_base), jnp.float32), 1.0
        # Traced: base'^(-2i/R) = base^(-2i/R) * scale^(-2i/(R-2)), the small factor in float32.
        current = jnp.maximum(jnp.asarray(seq_len, jnp.float32), jnp.float32(length))
        scale = jnp.float32(s.factor) * current / jnp.float32(length) - jnp.float32(s.factor - 1)
        exponents = jnp.asarray(-np.arange(0, dim, 2, dtype=np.float64) / (dim - 2), jnp.float32)
        inv_freq = jnp.asarray(default, jnp.float32) * jnp.exp(exponents * jnp.log(scale))
        return inv_freq, 1.0

    # longrope
    if s.attention_factor is not None:
        attention_factor = s.attention_factor
    elif s.factor <= 1.0:
        attention_factor = 1.0
    else:
        attention_factor = math.sqrt(1 + math.log(s.factor) / math.log(length))
    short = jnp.asarray(default / np.asarray(s.short_factor, np.float64), jnp.float32)
    long = jnp.asarray(default / np.asarray(s.long_factor, np.float64), jnp.float32)
    if seq_len is None:
        return short, float(attention_factor)
    if not isinstance(seq_len, jax.Array):
        return (long if seq_len > length else short), float(attention_factor)
    return jnp.where(jnp.asarray(seq_len) > length, long, short), float(attention_factor)


# --------------------------------------------------------------------------------------------
# Rotation
# --------------------------------------------------------------------------------------------

_TWO_POW_32 = 4294967296.0
# 2^32 / (2 pi) split into float32 pieces: _K1 and _K2 carry 12 significant bits each,
# so products with a 12-bit half of a float32 are exact.
_K = _TWO_POW_32 / (2 * math.pi)


def _split_constant(value: float, bits: int = 12) -> tuple[float, float]:
    exponent = math.frexp(value)[1]
    unit = 2.0 ** (exponent - bits)
    hi = math.floor(value / unit) * unit
    return hi, value - hi


_K1, _REST = _split_constant(_K)
_K2, _REST = _split_constant(_REST)
_K3 = float(np.float32(_REST))


def _mod_2_32_to_uint32(t: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Exact float32 t -> (floor(t) mod 2^32 as uint32, t - floor(t) in [0, 1))."""
    whole = jnp.floor(t)
    frac = t - whole  # exact
    whole = whole - _TWO_POW_32 * jnp.floor(whole / _TWO_POW_32)  # exact, in [0, 2^32)
    hi = jnp.floor(whole / 65536.0)
    lo = whole - hi * 65536.0
    word = (hi.astype(jnp.uint32) << 16) | lo.astype(jnp.uint32)
    return word, frac


def _turns_fixed_point(inv_freq: jax.Array) -> tuple[jax.Array, jax.Array]:
    """theta / (2 pi) as 32-bit fixed-point turns: (uint32 word, float32 remainder in units).

    theta * 2^32 / (2 pi) = word + rem (mod 2^32) with |rem| <= 1/2 unit, computed in
    float32 from exact partial products (theta split into two 12-bit halves by masking).
    """
    theta = inv_freq.astype(jnp.float32)
    bits = jax.lax.bitcast_convert_type(theta, jnp.uint32)
    hi = jax.lax.bitcast_convert_type(bits & jnp.uint32(0xFFFFF000), jnp.float32)
    lo = theta - hi  # exact; at most 12 significant bits
    terms = (hi * _K1, hi * _K2, lo * _K1, lo * _K2)  # each exact in float32
    word = jnp.zeros(theta.shape, jnp.uint32)
    frac = theta * jnp.float32(_K3)  # small term (< 2^7 units), rounding ~1e-5 units
    for term in terms:
        w, f = _mod_2_32_to_uint32(term)
        word = word + w
        frac = frac + f
    whole, rem = _mod_2_32_to_uint32(frac + 0.5)
    return word + whole, rem - 0.5


def _turns_fixed_point_np(inv_freq: np.ndarray) -> tuple[jax.Array, jax.Array]:
    """As `_turns_fixed_point`, from float64 NumPy frequencies (no float32 rounding of theta)."""
    scaled = np.asarray(inv_freq, np.float64) * _K
    whole = np.floor(scaled + 0.5)
    rem = scaled - whole
    word = np.mod(whole, _TWO_POW_32).astype(np.uint64).astype(np.uint32)
    return jnp.asarray(word), jnp.asarray(rem, jnp.float32)


def _angles(positions: jax.Array, inv_freq: jax.Array | np.ndarray) -> jax.Array:
    """m * theta reduced modulo 2 pi: positions [...] , inv_freq [R/2] -> [..., R/2] float32.

    Integer positions use exact modular arithmetic on 32-bit fixed-point turns, so the
    phase error against float64 m * theta stays ~1e-6 rad at |m| = 2^20 (a plain float32
    product is off by up to 0.06 rad there). Float positions add their fractional part
    as a plain float32 product.
    """
    if isinstance(inv_freq, np.ndarray) and inv_freq.dtype == np.float64:
        word, rem = _turns_fixed_point_np(inv_freq)
    else:
        word, rem = _turns_fixed_point(jnp.asarray(inv_freq))
    if jnp.issubdtype(positions.dtype, jnp.integer):
        whole = positions.astype(jnp.int32)
        part = None
    else:
        pos = positions.astype(jnp.float32)
        whole_f = jnp.floor(pos)
        part = pos - whole_f
        whole = whole_f.astype(jnp.int32)
    m = whole[..., None]
    phase = jax.lax.bitcast_convert_type(m, jnp.uint32) * word  # (m * word) mod 2^32
    # Read as signed, the phase is in [-2^31, 2^31): the same angle modulo 2 pi, half the
    # float32 rounding of [0, 2^32), and |angle| <= 1.5 pi with the remainder term.
    phase = jax.lax.bitcast_convert_type(phase, jnp.int32)
    turns = phase.astype(jnp.float32) + m.astype(jnp.float32) * rem  # in units of 2^-32 turn
    angle = turns * jnp.float32(2 * math.pi / _TWO_POW_32)
    if part is not None:
        angle = angle + part[..., None] * jnp.asarray(inv_freq, jnp.float32)
    return angle


def _cos_sin(
    positions, inv_freq, attention_factor, *, polynomial: bool = False
) -> tuple[jax.Array, jax.Array]:
    """cos and sin of m * theta times the attention factor: [..., T, 1, R/2] float32.

    ``polynomial``: from `_cos_sin_polynomial` instead of ``jnp.cos``/``jnp.sin``.
    """
    angle = _angles(positions, inv_freq)[..., None, :]
    cos, sin = _cos_sin_polynomial(angle) if polynomial else (jnp.cos(angle), jnp.sin(angle))
    factor = jnp.asarray(attention_factor, jnp.float32)
    return cos * factor, sin * factor


# pi / 2 in three float32 pieces; the first has 8 significant bits, so q * _PIO2_1 is
# exact for the quadrant counts q of reduced angles (Cody and Waite; Cephes' sinf).
_PIO2_1 = 1.5703125
_PIO2_2 = 4.837512969970703125e-4
_PIO2_3 = 7.54978995489188216e-8


def _cos_sin_polynomial(angle: jax.Array) -> tuple[jax.Array, jax.Array]:
    """cos and sin of float32 angles with |angle| < 2^10, in elementwise ops only.

    The angle is reduced to r in [-pi/4, pi/4] by its nearest multiple q of pi/2, and
    cos r, sin r are Cephes' single-precision minimax polynomials (Moshier 1989,
    "Methods and Programs for Mathematical Functions", sinf.c / cosf.c); the quadrant
    q mod 4 swaps and negates them. Max error about 1e-7 (tests/test_rope.py checks
    it against float64). XLA:CPU's own sin and cos take ~5 ns an element, which made
    the cos/sin table cost as much as one elementwise pass over a bfloat16 x; this
    vectorizes.
    """
    q = jnp.round(angle * jnp.float32(2 / math.pi))
    r = ((angle - q * jnp.float32(_PIO2_1)) - q * jnp.float32(_PIO2_2)) - q * jnp.float32(_PIO2_3)
    z = r * r
    sin_r = r + r * z * (
        jnp.float32(-1.6666654611e-1)
        + z * (jnp.float32(8.3321608736e-3) + z * jnp.float32(-1.9515295891e-4))
    )
    cos_r = (
        1.0
        - 0.5 * z
        + z
        * z
        * (
            jnp.float32(4.166664568298827e-2)
            + z * (jnp.float32(-1.388731625493765e-3) + z * jnp.float32(2.443315711809948e-5))
        )
    )
    quadrant = q.astype(jnp.int32) & 3  # two's complement: -1 -> 3
    swap = (quadrant & 1) == 1
    sin_abs, cos_abs = jnp.where(swap, cos_r, sin_r), jnp.where(swap, sin_r, cos_r)
    sin = jnp.where((quadrant & 2) == 2, -sin_abs, sin_abs)
    cos = jnp.where(((quadrant + 1) & 2) == 2, -cos_abs, cos_abs)
    return cos, sin


def _cos_sin_table(positions, inv_freq, attention_factor) -> tuple[jax.Array, jax.Array]:
    """`_cos_sin`, computed once into a buffer on CPU.

    XLA:CPU counts sin and cos as cheap and fuses them, with the whole angle
    computation, into the [B, T, N, R] rotation loop, so every table entry is
    recomputed 2·B·N times (forward and backward): ~3x to 12x the time of an
    elementwise op on x. ``optimization_barrier`` is expanded before fusion on CPU,
    and a ``cond`` becomes a select under ``vmap``; a dot is never fused into an
    elementwise loop, so a product with the identity (exact in float32 at HIGHEST
    precision: one term x·1, the others x·0) makes XLA write the table to a buffer
    first. Other platforms compute the table as is: on GPU and TPU the fused
    recomputation is what they do best.
    """

    def materialized(p):
        cos, sin = _cos_sin(p, inv_freq, attention_factor, polynomial=True)
        eye = jnp.eye(cos.shape[-1], dtype=jnp.float32)
        hi = jax.lax.Precision.HIGHEST
        return jnp.matmul(cos, eye, precision=hi), jnp.matmul(sin, eye, precision=hi)

    return jax.lax.platform_dependent(
        positions,
        cpu=materialized,
        default=lambda p: _cos_sin(p, inv_freq, attention_factor),
    )


def _rotate(x: jax.Array, cos: jax.Array, sin: jax.Array, *, layout: str) -> jax.Array:
    """apply_rope's rotation with the table given: x ``[..., T, N, H]``, cos and sin
    ``[(B,) T, 1, R/2]``; returns x's shape and dtype.

    The halves are written with pad and select rather than concatenate: XLA:CPU
    vectorizes a select of padded operands ~1.5x to 2x faster than a concatenate
    (`benchmarks/performance.py`); on GPU and TPU both fuse into one loop.
    """
    half = cos.shape[-1]
    dim, head_dim = 2 * half, x.shape[-1]
    xf = x.astype(jnp.float32)
    if layout == "half":
        a, b = xf[..., :half], xf[..., half:dim]
        first = _pad_last(a * cos - b * sin, 0, half)
        second = _pad_last(b * cos + a * sin, half, 0)
        out = jnp.where(jnp.arange(dim) < half, first, second)  # [..., R]
    else:
        pairs = xf[..., :dim].reshape(*xf.shape[:-1], half, 2)  # [..., R/2, 2]
        a, b = pairs[..., 0], pairs[..., 1]
        first, second = a * cos - b * sin, b * cos + a * sin
        if x.dtype.itemsize >= 4:
            pad = _pad_last(first[..., None], 0, 1), _pad_last(second[..., None], 1, 0)
            out = jnp.where(jnp.arange(2) == 0, *pad)
        else:  # XLA:CPU vectorizes a [..., 2] select poorly for 16-bit outputs
            out = jnp.stack([first, second], axis=-1)
        out = out.reshape(*out.shape[:-2], dim)  # [..., R]
    if dim < head_dim:  # partial rotary: the other dims pass through
        feature = jnp.arange(head_dim)
        out = jnp.where(feature < dim, _pad_last(out, 0, head_dim - dim), xf)
    return out.astype(x.dtype)


def _pad_last(v: jax.Array, before: int, after: int) -> jax.Array:
    """Zero-pads the last axis of v by ``before`` and ``after`` entries."""
    return jnp.pad(v, [(0, 0)] * (v.ndim - 1) + [(before, after)])


def _check_layout(layout: str, argument: str = "layout") -> str:
    if layout not in LAYOUTS:
        raise ValueError(f"rope: {argument} must be one of {list(LAYOUTS)}; got {layout!r}")
    return layout


def apply_rope(
    x: jax.Array,
    positions: jax.Array,
    *,
    inv_freq: jax.Array,
    attention_factor: float | jax.Array = 1.0,
    layout: str = "half",
) -> jax.Array:
    """Rotates the first R features of each head by position-dependent angles.

    Pair i (frequency theta_i = inv_freq[i]) of a token at position m turns by
    m * theta_i: (a, b) -> (a cos - b sin, b cos + a sin). Layout "half"
    (GPT-NeoX, Hugging Face Llama) pairs dims (i, i + R/2); "interleaved"
    (RoFormer, GPT-J, Meta's Llama) pairs (2i, 2i + 1). Dims R..H-1 pass through
    unchanged (partial rotary). cos and sin are multiplied by
    ``attention_factor`` as Hugging Face does, so q·k logits scale by its square.

    Angles m·theta are reduced modulo 2 pi by exact integer arithmetic on
    32-bit fixed-point turns, so at position 2^20 the phase error against a
    float64 evaluation of m·theta is ~1e-6 rad (a plain float32 product is off
    by up to 0.06 rad there). theta is the given frequency: float32 frequencies
    differ from base^(-2i/R) by float32 rounding, which moves the angle at 2^20
    by up to ~0.03 rad (as in any float32 implementation); pass float64 NumPy
    frequencies to remove that too. Float positions (interpolation) are
    accepted. The rotation runs in float32; the output has x's dtype. On CPU
    the cos/sin table is computed once per call, from single-precision
    polynomials (within one float32 ulp); elsewhere from ``jnp.cos``/``jnp.sin``.

    Args:
      x: ``[..., T, N, H]``, typically q or k ``[B, T, N, H]``.
      positions: ``[T]`` or ``[B, T]`` positions (integer, or float).
      inv_freq: ``[R/2]`` float32 frequencies from `rope_frequencies`; a float64
        NumPy array is also accepted and then used without float32 rounding.
      attention_factor: multiplies cos and sin (float or scalar array).
      layout: "half" or "interleaved".

    Returns:
      ``[..., T, N, H]`` with x's dtype.

    Raises:
      ValueError: bad layout, R > H, or positions that do not match x.

    Example:
        >>> import jax.numpy as jnp
        >>> inv_freq, _ = rope_frequencies(4)
        >>> x = jnp.array([[[[1.0, 0.0, 0.0, 0.0]]]])  # [B=1, T=1, N=1, H=4]
        >>> apply_rope(x, jnp.array([1]), inv_freq=inv_freq, layout="interleaved").round(3)
        Array([[[[0.54 , 0.841, 0.   , 0.   ]]]], dtype=float32)

    References: Su et al. 2021, RoFormer (arXiv 2104.09864), eq. (34).
    """
    _check_layout(layout)
    x = jnp.asarray(x)
    positions = jnp.asarray(positions)
    if not (isinstance(inv_freq, np.ndarray) and inv_freq.dtype == np.float64):
        inv_freq = jnp.asarray(inv_freq)  # float64 NumPy stays exact for the angle reduction
    if x.ndim < 3:
        raise ValueError(f"rope: x must be [..., T, N, H]; got shape {x.shape}")
    if inv_freq.ndim != 1:
        raise ValueError(f"rope: inv_freq must be [R/2]; got shape {inv_freq.shape}")
    half = inv_freq.shape[0]
    dim = 2 * half
    head_dim = x.shape[-1]
    if dim > head_dim or half == 0:
        raise ValueError(
            f"rope: inv_freq has {half} frequencies, so rotary dim {dim}, which needs "
            f"1 <= R/2 and R <= head dim {head_dim}"
        )
    if positions.ndim not in (1, 2) or positions.shape[-1] != x.shape[-3]:
        raise ValueError(
            f"rope: positions must be [T] or [B, T] with T = x.shape[-3] = {x.shape[-3]}; "
            f"got positions shape {positions.shape} for x shape {x.shape}"
        )
    if positions.ndim == 2:
        if x.ndim < 4:
            raise ValueError(
                f"rope: [B, T] positions need x with a batch axis [B, T, N, H]; got {x.shape}"
            )
        batch, x_batch = positions.shape[0], x.shape[-4]
        if batch not in (1, x_batch) and x_batch != 1:
            raise ValueError(
                f"rope: positions batch {batch} does not match x batch {x_batch} "
                f"(positions {positions.shape}, x {x.shape})"
            )

    cos, sin = _cos_sin_table(positions, inv_freq, attention_factor)  # [(B,) T, 1, R/2]
    return _rotate(x, cos, sin, layout=layout)


def _layout_permutation(head_dim: int, dim: int, src: str, dst: str) -> np.ndarray:
    """Index array p with new[..., j] = old[..., p[j]] within one head."""
    perm = np.arange(head_dim)
    if src == dst:
        return perm
    interleaved_to_half = np.concatenate([np.arange(0, dim, 2), np.arange(1, dim, 2)])
    if src == "interleaved":  # half[j] = interleaved[p[j]]
        perm[:dim] = interleaved_to_half
    else:  # interleaved[p^-1 ...]: invert
        perm[:dim] = np.argsort(interleaved_to_half)
    return perm


def convert_rope_layout(
    w: jax.Array,
    *,
    head_dim: int,
    rotary_dim: int | None = None,
    src: str,
    dst: str,
) -> jax.Array:
    """Permutes q/k projection output features between the "interleaved" and "half" layouts.

    Within each head the rotary features are reordered so that a model rotating
    with layout ``dst`` computes exactly the attention scores of the original
    weights rotated with layout ``src``: interleaved -> half maps feature 2i to
    i and 2i + 1 to i + R/2 (Hugging Face's Llama conversion ``permute``); half
    -> interleaved is the inverse. Apply it to both the q and the k projection
    (and their biases); features past the rotary dim are left in place.

    Args:
      w: ``[D, N*H]``, ``[D, N, H]`` or a bias ``[N*H]``: output features last.
      head_dim: H.
      rotary_dim: R (default H), even and <= H.
      src: layout the weights were trained with, "half" or "interleaved".
      dst: layout to convert to.

    Returns:
      w with its last axis (per head) permuted; same shape and dtype.

    Raises:
      ValueError: unknown layout names, odd or too large rotary_dim, or a last
        axis that is not a multiple of head_dim.

    Example:
        >>> import jax.numpy as jnp
        >>> convert_rope_layout(jnp.arange(4), head_dim=4, src="interleaved", dst="half")
        Array([0, 2, 1, 3], dtype=int32)

    References: Su et al. 2021, RoFormer (arXiv 2104.09864); Hugging Face
    transformers ``convert_llama_weights_to_hf.py``.
    """
    _check_layout(src, "src")
    _check_layout(dst, "dst")
    if isinstance(head_dim, bool) or not isinstance(head_dim, int | np.integer) or head_dim < 2:
        raise ValueError(f"rope: head_dim must be an integer >= 2; got head_dim={head_dim!r}")
    dim = head_dim if rotary_dim is None else rotary_dim
    if isinstance(dim, bool) or not isinstance(dim, int | np.integer) or dim < 2 or dim % 2:
        raise ValueError(f"rope: rotary_dim must be an even integer >= 2; got rotary_dim={dim!r}")
    if dim > head_dim:
        raise ValueError(f"rope: rotary_dim={dim} exceeds head_dim={head_dim}")
    w = jnp.asarray(w)
    features = w.shape[-1] if w.ndim else 0
    if features == 0 or features % head_dim:
        raise ValueError(
            f"rope: the last axis of w ({features}) must be a multiple of head_dim={head_dim}; "
            f"got w shape {w.shape}"
        )
    perm = _layout_permutation(int(head_dim), int(dim), src, dst)
    heads = features // head_dim
    index = (np.arange(heads)[:, None] * head_dim + perm[None, :]).reshape(-1)
    return jnp.take(w, jnp.asarray(index), axis=-1, mode="clip")


# --------------------------------------------------------------------------------------------
# Hugging Face config interop
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RopeSettings:
    """Everything that fixes a model's RoPE: sizes, base, scaling and layout.

    Attributes:
      head_dim: H.
      base: rope_theta.
      rotary_fraction: fraction of H that rotates.
      scaling: a `RopeScaling` or None (a dict is parsed on construction).
      max_position_embeddings: the model's advertised context length, or None.
      layout: "half" or "interleaved".

    Example:
        >>> s = RopeSettings(head_dim=64, base=10000.0)
        >>> s.frequencies()[0].shape
        (32,)

    References: Su et al. 2021, RoFormer (arXiv 2104.09864).
    """

    head_dim: int
    base: float = 10000.0
    rotary_fraction: float = 1.0
    scaling: RopeScaling | None = None
    max_position_embeddings: int | None = None
    layout: str = "half"

    def __post_init__(self) -> None:
        _check_layout(self.layout)
        if self.scaling is not None:
            scaling = _as_scaling(
                self.scaling, base=self.base, rotary_fraction=self.rotary_fraction
            )
            object.__setattr__(self, "scaling", scaling)
        # Validates head_dim, rotary_fraction, base and the scaling's list lengths.
        rope_frequencies(
            self.head_dim,
            base=self.base,
            rotary_fraction=self.rotary_fraction,
            scaling=self.scaling,
        )

    @property
    def rotary_dim(self) -> int:
        """R = int(head_dim * rotary_fraction)."""
        return rotary_dim(self.head_dim, self.rotary_fraction)

    def frequencies(self, seq_len: int | jax.Array | None = None) -> tuple[jax.Array, float]:
        """``(inv_freq [R/2] float32, attention_factor)`` at this sequence length."""
        return rope_frequencies(
            self.head_dim,
            base=self.base,
            rotary_fraction=self.rotary_fraction,
            scaling=self.scaling,
            seq_len=seq_len,
        )

    def to_scheme_config(self) -> dict[str, Any]:
        """The settings as a ``{"name": "rope", ...}`` dict for the scheme registry."""
        return {
            "name": "rope",
            "base": float(self.base),
            "rotary_fraction": float(self.rotary_fraction),
            "layout": self.layout,
            "scaling": None if self.scaling is None else self.scaling.to_dict(),
        }


def _require(config: Mapping[str, Any], key: str, why: str) -> Any:
    value = config.get(key)
    if value is None:
        raise ValueError(f"rope_from_hf_config: the config needs {key!r} ({why})")
    return value


def rope_from_hf_config(config: Mapping[str, Any], *, layout: str | None = None) -> RopeSettings:
    """Reads RoPE settings from a Hugging Face ``config.json`` dict, offline.

    Follows transformers' ``standardize_rope_params`` and ``ROPE_INIT_FUNCTIONS``:

    * scaling from ``rope_scaling`` (preferred when set, as transformers does)
      or ``rope_parameters``; ``rope_type`` or legacy ``type``;
    * base from ``rope_parameters["rope_theta"]``, else ``rope_theta``, else
      ``rotary_emb_base`` (GPT-NeoX), else 10000;
    * rotary fraction from ``partial_rotary_factor`` (in the scaling dict or top
      level), else ``rotary_pct`` (GPT-NeoX), else ``rotary_dim`` / head_dim
      (GPT-J), else 1;
    * head_dim from ``qk_rope_head_dim`` (DeepSeek-V2/V3), else ``head_dim``,
      else ``hidden_size // num_attention_heads`` (``n_embd // n_head`` for GPT-J);
    * ``original_max_position_embeddings`` for llama3 / yarn / longrope: the top
      level value wins (Phi-3), else the scaling dict's, else
      ``max_position_embeddings``;
    * dynamic NTK uses ``max_position_embeddings`` as its original length;
    * yarn / longrope without ``factor``: max_position_embeddings / original;
    * layout "interleaved" for GPT-J and DeepSeek-V2/V3 (``rope_interleave``),
      else "half"; the ``layout`` argument overrides.

    Args:
      config: the parsed ``config.json``.
      layout: force "half" or "interleaved".

    Returns:
      A `RopeSettings`.

    Raises:
      ValueError: a required key is missing (named in the message) or a setting
        is invalid.

    Example:
        >>> s = rope_from_hf_config({"hidden_size": 4096, "num_attention_heads": 32,
        ...     "max_position_embeddings": 131072, "rope_theta": 500000.0,
        ...     "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
        ...         "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}})
        >>> s.head_dim, s.scaling.rope_type
        (128, 'llama3')

    References: Hugging Face transformers ``modeling_rope_utils.py``.
    """
    if not isinstance(config, Mapping):
        raise ValueError(f"rope_from_hf_config: config must be a dict; got {type(config).__name__}")
    params = dict(config.get("rope_scaling") or config.get("rope_parameters") or {})
    model_type = str(config.get("model_type", ""))

    base = params.get("rope_theta")
    if base is None:
        base = config.get("rope_theta", config.get("rotary_emb_base", 10000.0))

    # DeepSeek-V2/V3 (MLA) rotate a separate qk_rope_head_dim part, which transformers
    # stores as head_dim.
    head_dim = config.get("qk_rope_head_dim", config.get("head_dim"))
    if head_dim is None:
        hidden = config.get("hidden_size", config.get("n_embd"))
        heads = config.get("num_attention_heads", config.get("n_head"))
        if hidden is None:
            _require(config, "hidden_size", "or 'head_dim', to size the heads")
        if heads is None:
            _require(config, "num_attention_heads", "or 'head_dim', to size the heads")
        head_dim = int(hidden) // int(heads)
    head_dim = int(head_dim)

    fraction = params.get("partial_rotary_factor", config.get("partial_rotary_factor"))
    if fraction is None and config.get("rotary_pct") is not None:
        fraction = config["rotary_pct"]
    if fraction is None and config.get("rotary_dim") is not None:
        fraction = int(config["rotary_dim"]) / head_dim
    fraction = 1.0 if fraction is None else float(fraction)

    max_len = config.get("max_position_embeddings", config.get("n_positions"))
    scaling = None
    if params:
        rope_type = params.get("rope_type", params.get("type", "default"))
        if model_type == "phi3" and str(rope_type) in ("su", "yarn"):
            rope_type = "longrope"  # transformers' Phi3Config renames both
        rope_type = _canonical_type(rope_type)
        params.pop("type", None)
        params["rope_type"] = rope_type
        params.pop("rope_theta", None)
        params.pop("partial_rotary_factor", None)
        if rope_type in ("llama3", "yarn", "longrope"):
            if config.get("original_max_position_embeddings") is not None:
                params["original_max_position_embeddings"] = config[
                    "original_max_position_embeddings"
                ]
            elif params.get("original_max_position_embeddings") is None:
                params["original_max_position_embeddings"] = _require(
                    config,
                    "max_position_embeddings",
                    f"{rope_type} needs an original length; none in the scaling dict",
                )
            # As transformers: factor defaults to max_position_embeddings / original length.
            needs_factor = rope_type == "yarn" or (
                rope_type == "longrope" and params.get("attention_factor") is None
            )
            if params.get("factor") is None and needs_factor:
                max_positions = _require(config, "max_position_embeddings", f"{rope_type} factor")
                original = float(params["original_max_position_embeddings"])
                params["factor"] = float(max_positions) / original
        if rope_type == "dynamic":
            params["original_max_position_embeddings"] = _require(
                config, "max_position_embeddings", "dynamic NTK scales against it"
            )
        if rope_type != "default":
            scaling = RopeScaling.from_dict(params)
        else:
            RopeScaling.from_dict(params)  # still reject unknown keys

    if layout is None:
        interleaved = model_type in ("gptj", "deepseek_v2") or (
            model_type == "deepseek_v3" and config.get("rope_interleave", True)
        )
        if config.get("rope_interleave") is not None and model_type != "deepseek_v3":
            interleaved = bool(config["rope_interleave"])
        layout = "interleaved" if interleaved else "half"
    return RopeSettings(
        head_dim=head_dim,
        base=float(base),
        rotary_fraction=fraction,
        scaling=scaling,
        max_position_embeddings=None if max_len is None else int(max_len),
        layout=layout,
    )
