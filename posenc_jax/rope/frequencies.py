"""RoPE frequency schedules: the inverse frequencies theta_i and the attention factor.

`rope_frequencies` gives ``theta_i = base^(-2i/R)`` for the default schedule and
the context-extension methods of `posenc_jax.rope.scaling.ROPE_TYPES` (position
interpolation, NTK-aware, dynamic NTK, YaRN, Llama 3, LongRoPE), numerically
equal to Hugging Face transformers' ``ROPE_INIT_FUNCTIONS``; `rotary_dim` is the
rotated size R of a head.

Each rope type has one schedule function in `ROPE_SCHEDULES`, as transformers
has one init function a type: ``schedule(dim, base, scaling, seq_len)`` returns
``(inv_freq [R/2] float32, attention_factor)``, or ``[B, R/2]`` frequencies for a
``[B]`` array of lengths (one a row: dynamic NTK and LongRoPE). `rope_frequencies`
validates its arguments and calls the schedule of the scaling's type.

Shape legend: H head dim, R rotary dim (``int(H * rotary_fraction)``); a
schedule has R/2 frequencies.

Example:
    >>> inv_freq, factor = rope_frequencies(8, scaling={"type": "linear", "factor": 2})
    >>> inv_freq, factor
    (Array([0.5   , 0.05  , 0.005 , 0.0005], dtype=float32), 1.0)

References: Su et al. 2021, "RoFormer: Enhanced Transformer with Rotary Position
Embedding" (arXiv 2104.09864); Hugging Face transformers ``modeling_rope_utils.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

import jax
import jax.numpy as jnp
import numpy as np

from posenc_jax._checks import as_int, positive_float
from posenc_jax.rope.scaling import RopeScaling, as_scaling

__all__ = [
    "ROPE_SCHEDULES",
    "Schedule",
    "p_rope_keep_count",
    "rope_frequencies",
    "rotary_dim",
]

_SeqLen: TypeAlias = int | jax.Array | None
Schedule: TypeAlias = Callable[[int, float, RopeScaling, _SeqLen], tuple[jax.Array, float]]
"""``schedule(dim, base, scaling, seq_len) -> (inv_freq [R/2] float32, attention_factor)``;
``[B, R/2]`` when ``seq_len`` is a ``[B]`` array and the schedule reads it."""

_NO_SCALING = RopeScaling()  # rope_type "default"


def rotary_dim(head_dim: int, rotary_fraction: float = 1.0) -> int:
    """The number of rotated dims R = int(head_dim * rotary_fraction), validated.

    Args:
      head_dim: H, the per-head feature size.
      rotary_fraction: fraction of H that rotates, in (0, 1].

    Returns:
      R, an even integer in [2, H].

    Raises:
      ValueError: head_dim not an integer >= 2, rotary_fraction outside (0, 1],
        or an odd or zero R.

    Example:
        >>> rotary_dim(256, 0.25)
        64

    References: Black et al. 2022, "GPT-NeoX-20B" (partial rotary, arXiv 2204.06745).
    """
    if as_int(head_dim, "head_dim", "rope") < 2:
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


def p_rope_keep_count(dim: int, keep_fraction: float) -> int:
    """How many frequencies p-RoPE keeps: ``int(keep_fraction * R // 2)``, the highest ones.

    p-RoPE (Barbero et al. 2025) keeps the fraction p of RoPE's frequencies with
    the shortest wavelengths and removes the lowest: their pairs are not rotated
    (frequency 0, angle 0 at every position), so they carry features whose q.k
    contribution does not depend on position. The authors' ``apply_p_rope``
    (their appendix) computes ``rope_angles = int(rope_percentage * head_dim // 2)``
    frequencies ``max_wavelength^(-2i / head_dim)``, i < rope_angles, and pads the
    rest with infinite wavelengths; this is that count, with R the rotary dim
    (the head dim H unless ``rotary_fraction`` < 1). Unlike GPT-NeoX partial rotary
    (``rotary_fraction``), the kept frequencies keep their full-RoPE values
    ``base^(-2i/R)``: the schedule is truncated, not recomputed over fewer dims.

    Hugging Face transformers' ``rope_type="proportional"`` (Gemma 4's global
    layers, ``partial_rotary_factor=0.25``; ``_compute_proportional_rope_parameters``
    in ``modeling_rope_utils.py``) is the same construction: frequencies
    ``base^(-2i/H)`` for ``i < int(partial_rotary_factor * H // 2)`` followed by
    zeros, in the "half" layout, divided by ``factor``: p-RoPE with
    ``keep_fraction=partial_rotary_factor`` and a "linear" scaling. Gemma 3 uses
    full RoPE (``rope_type`` "default" or "linear", no partial rotary factor), so
    it is not p-RoPE.

    Args:
      dim: R, the (even) rotary dim.
      keep_fraction: p in [0, 1].

    Returns:
      The number of kept frequencies, in [0, R/2].

    Raises:
      ValueError: keep_fraction not a number in [0, 1].

    Example:
        >>> p_rope_keep_count(64, 0.25)
        8

    References: Barbero et al. 2025, "Round and Round We Go! What makes Rotary
    Positional Encodings useful?" (ICLR 2025, arXiv 2410.06205), p-RoPE and the
    ``apply_p_rope`` listing of its appendix.
    """
    if isinstance(keep_fraction, bool):
        raise ValueError(f"rope needs a number keep_fraction in [0, 1]; got {keep_fraction!r}")
    try:
        p = float(keep_fraction)
    except (TypeError, ValueError):
        raise ValueError(
            f"rope needs a number keep_fraction in [0, 1]; got {keep_fraction!r}"
        ) from None
    if not 0.0 <= p <= 1.0:
        raise ValueError(
            "rope needs keep_fraction in [0, 1] (p-RoPE: the fraction of frequencies kept); "
            f"got keep_fraction={keep_fraction!r}"
        )
    return int(p * dim // 2)


# --------------------------------------------------------------------------------------------
# One schedule a rope type
# --------------------------------------------------------------------------------------------


def _default_inv_freq64(dim: int, base: float) -> np.ndarray:
    """theta_i = base^(-2i/R), i = 0 .. R/2 - 1, in float64."""
    return 1.0 / base ** (np.arange(0, dim, 2, dtype=np.float64) / dim)


def _default(dim: int, base: float, s: RopeScaling, seq_len: _SeqLen) -> tuple[jax.Array, float]:
    """RoFormer: theta_i = base^(-2i/R), attention factor 1."""
    return jnp.asarray(_default_inv_freq64(dim, base), jnp.float32), 1.0


def _linear(dim: int, base: float, s: RopeScaling, seq_len: _SeqLen) -> tuple[jax.Array, float]:
    """Position interpolation (Chen et al. 2023): theta_i / factor."""
    return jnp.asarray(_default_inv_freq64(dim, base) / s.factor, jnp.float32), 1.0


def _ntk(dim: int, base: float, s: RopeScaling, seq_len: _SeqLen) -> tuple[jax.Array, float]:
    """NTK-aware (bloc97 2023): the default schedule with base * factor^(R/(R-2))."""
    new_base = base * s.factor ** (dim / (dim - 2))
    return jnp.asarray(_default_inv_freq64(dim, new_base), jnp.float32), 1.0


def _is_host_int(seq_len: Any) -> bool:
    """A Python or NumPy integer scalar (computed on the host in float64)."""
    return isinstance(seq_len, int | np.integer) and not isinstance(seq_len, bool)


def _dynamic(dim: int, base: float, s: RopeScaling, seq_len: _SeqLen) -> tuple[jax.Array, float]:
    """Dynamic NTK: the NTK-aware base for factor * L' / L - (factor - 1), L' = max(seq_len, L)."""
    length = s.original_max_position_embeddings
    if seq_len is None:
        return jnp.asarray(_default_inv_freq64(dim, base), jnp.float32), 1.0
    if _is_host_int(seq_len):
        current = max(float(seq_len), float(length))
        scale = s.factor * current / length - (s.factor - 1.0)
        new_base = base * scale ** (dim / (dim - 2))
        return jnp.asarray(_default_inv_freq64(dim, new_base), jnp.float32), 1.0
    # An array ([] or one length a row, [B]), maybe traced:
    # base'^(-2i/R) = base^(-2i/R) * scale^(-2i/(R-2)), the small factor in float32.
    current = jnp.maximum(jnp.asarray(seq_len, jnp.float32), jnp.float32(length))  # [] or [B]
    scale = jnp.float32(s.factor) * current / jnp.float32(length) - jnp.float32(s.factor - 1)
    exponents = jnp.asarray(-np.arange(0, dim, 2, dtype=np.float64) / (dim - 2), jnp.float32)
    default = jnp.asarray(_default_inv_freq64(dim, base), jnp.float32)
    log_scale = jnp.log(scale)[..., None]  # [1] or [B, 1]
    inv_freq = default * jnp.exp(exponents * log_scale)  # [R/2] or [B, R/2]
    return (inv_freq if jnp.ndim(seq_len) else inv_freq.reshape(-1)), 1.0


def _get_mscale(scale: float, mscale: float = 1.0) -> float:
    # YaRN / DeepSeek: sqrt(1/t) = 0.1 * mscale * ln(s) + 1 for s > 1.
    if scale <= 1:
        return 1.0
    return 0.1 * mscale * math.log(scale) + 1.0


def _yarn_attention_factor(s: RopeScaling) -> float:
    """YaRN's sqrt(1/t): explicit, else the DeepSeek mscale ratio, else 0.1 ln(s) + 1."""
    if s.attention_factor is not None:
        return float(s.attention_factor)
    if s.mscale and s.mscale_all_dim:
        return float(_get_mscale(s.factor, s.mscale) / _get_mscale(s.factor, s.mscale_all_dim))
    return float(_get_mscale(s.factor))


def _yarn_ramp(dim: int, base: float, s: RopeScaling) -> np.ndarray:
    """[R/2] float64 weight of the interpolated theta_i: 0 below dim index low, 1 above high."""
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
    return np.clip((np.arange(dim // 2, dtype=np.float64) - low) / (high - low), 0.0, 1.0)


def _yarn(dim: int, base: float, s: RopeScaling, seq_len: _SeqLen) -> tuple[jax.Array, float]:
    """YaRN (Peng et al. 2023): NTK-by-parts ramp between theta_i and theta_i / factor."""
    ramp = _yarn_ramp(dim, base, s)
    extrapolation = _default_inv_freq64(dim, base)
    interpolation = extrapolation / s.factor
    # ramp 0 (high frequency, index < low): unchanged; ramp 1 (index > high): divided by s.
    inv_freq = interpolation * ramp + extrapolation * (1.0 - ramp)
    return jnp.asarray(inv_freq, jnp.float32), _yarn_attention_factor(s)


def _llama3(dim: int, base: float, s: RopeScaling, seq_len: _SeqLen) -> tuple[jax.Array, float]:
    """Llama 3.1: long wavelengths divided by factor, short ones kept, smooth in between."""
    inv_freq = _default_inv_freq64(dim, base)
    length = s.original_max_position_embeddings
    low_freq_wavelen = length / s.low_freq_factor
    high_freq_wavelen = length / s.high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = np.where(wavelen > low_freq_wavelen, inv_freq / s.factor, inv_freq)
    smooth = (length / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor)
    smoothed = (1 - smooth) * scaled / s.factor + smooth * scaled
    medium = (wavelen >= high_freq_wavelen) & (wavelen <= low_freq_wavelen)
    return jnp.asarray(np.where(medium, smoothed, scaled), jnp.float32), 1.0


def _longrope(dim: int, base: float, s: RopeScaling, seq_len: _SeqLen) -> tuple[jax.Array, float]:
    """LongRoPE (Ding et al. 2024): theta_i / long_factor[i] past L, else / short_factor[i]."""
    length = s.original_max_position_embeddings
    if s.attention_factor is not None:
        attention_factor = s.attention_factor
    elif s.factor <= 1.0:
        attention_factor = 1.0
    else:
        attention_factor = math.sqrt(1 + math.log(s.factor) / math.log(length))
    default = _default_inv_freq64(dim, base)
    short = jnp.asarray(default / np.asarray(s.short_factor, np.float64), jnp.float32)
    long = jnp.asarray(default / np.asarray(s.long_factor, np.float64), jnp.float32)
    if seq_len is None:
        return short, float(attention_factor)
    if _is_host_int(seq_len):
        return (long if seq_len > length else short), float(attention_factor)
    longer = jnp.asarray(seq_len)[..., None] > length  # [1] or [B, 1]
    inv_freq = jnp.where(longer, long, short)  # [R/2] or [B, R/2]
    return (inv_freq if jnp.ndim(seq_len) else inv_freq.reshape(-1)), float(attention_factor)


ROPE_SCHEDULES: dict[str, Schedule] = {
    "default": _default,
    "linear": _linear,
    "ntk": _ntk,
    "dynamic": _dynamic,
    "yarn": _yarn,
    "llama3": _llama3,
    "longrope": _longrope,
}
"""The schedule of each rope type of `ROPE_TYPES` (transformers' ``ROPE_INIT_FUNCTIONS``)."""


# --------------------------------------------------------------------------------------------
# rope_frequencies
# --------------------------------------------------------------------------------------------


def _check_schedule_fits(s: RopeScaling, dim: int, head_dim: int, rotary_fraction: float) -> None:
    """Rotary-dim requirements of a schedule: R > 2 for NTK, R/2 LongRoPE factors."""
    rope_type = s.rope_type
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


def rope_frequencies(
    head_dim: int,
    *,
    base: float = 10000.0,
    rotary_fraction: float = 1.0,
    scaling: RopeScaling | Mapping[str, Any] | None = None,
    seq_len: int | jax.Array | None = None,
    keep_fraction: float = 1.0,
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
      traced value, so one compiled program serves all lengths, and a ``[B]``
      array (one length a row) gives ``[B, R/2]`` frequencies.
    * ``"yarn"``: NTK-by-parts ramp between theta_i (dims above beta_fast
      rotations over L) and theta_i / factor (dims below beta_slow rotations);
      attention factor ``attention_factor``, else
      get_mscale(factor, mscale) / get_mscale(factor, mscale_all_dim) when both
      are set, else 0.1 * ln(factor) + 1.
    * ``"llama3"``: wavelengths below L / high_freq_factor unchanged, above
      L / low_freq_factor divided by factor, smooth interpolation in between.
    * ``"longrope"``: theta_i / long_factor[i] when seq_len > L, else
      theta_i / short_factor[i] (seq_len may be traced, or ``[B]`` for one
      table a row); attention factor
      ``attention_factor``, else sqrt(1 + ln(factor) / ln(L)) (1 if factor <= 1).

    ``keep_fraction`` = p < 1 gives **p-RoPE** (Barbero et al. 2025): the
    ``int(p * R // 2)`` highest frequencies of the schedule are kept and the
    others (the lowest) are set to 0, so their pairs turn by angle 0, the
    identity, and carry position-free ("semantic") features; see
    `p_rope_keep_count`. It applies after the scaling, which is computed as
    without p; an attention factor (YaRN, LongRoPE) still multiplies cos and
    sin of every pair, the unrotated ones included (cos 0 = 1), as in Hugging Face.

    The schedule of each type is the function ``ROPE_SCHEDULES[rope_type]``.
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
        "longrope"; a Python int, a (possibly traced) integer scalar, or a
        ``[B]`` integer array of one length a row. The other types ignore it.
      keep_fraction: p of p-RoPE, the fraction of the R/2 frequencies kept (the
        highest), in [0, 1]; 1 (default) keeps all, 0 rotates nothing (NoPE).

    Returns:
      ``(inv_freq, attention_factor)``: inv_freq ``[R/2]`` float32 (``[B, R/2]``
      for a ``[B]`` seq_len with "dynamic" or "longrope") and the factor that
      multiplies cos and sin (a Python float).

    Raises:
      ValueError: odd or zero rotary dim, head_dim < 2, rotary_fraction outside
        (0, 1], base <= 0, an unknown rope_type, missing or invalid scaling keys,
        or LongRoPE factor lists whose length is not R/2, keep_fraction outside [0, 1].

    Example:
        >>> rope_frequencies(8, keep_fraction=0.5)[0]  # p-RoPE: the lowest half set to 0
        Array([1. , 0.1, 0. , 0. ], dtype=float32)
        >>> inv_freq, factor = rope_frequencies(
        ...     128, base=500000.0,
        ...     scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
        ...              "high_freq_factor": 4.0, "original_max_position_embeddings": 8192})
        >>> inv_freq.shape, factor
        ((64,), 1.0)

    References: Su et al. 2021, RoFormer (arXiv 2104.09864); Chen et al. 2023,
    position interpolation (arXiv 2306.15595); bloc97 2023, NTK-aware scaling;
    Peng et al. 2023, YaRN (arXiv 2309.00071); Ding et al. 2024, LongRoPE
    (arXiv 2402.13753); Barbero et al. 2025, p-RoPE (arXiv 2410.06205); Hugging Face
    transformers ``modeling_rope_utils.py``.
    """
    dim = rotary_dim(head_dim, rotary_fraction)
    base = positive_float(base, "base", "rope")
    keep = p_rope_keep_count(dim, keep_fraction)
    s = as_scaling(scaling, base=base, rotary_fraction=rotary_fraction) or _NO_SCALING
    _check_schedule_fits(s, dim, head_dim, rotary_fraction)
    inv_freq, factor = ROPE_SCHEDULES[s.rope_type](dim, base, s, seq_len)
    if keep < dim // 2:
        kept = jnp.asarray(np.arange(dim // 2) < keep, jnp.float32)  # [R/2]: 1 kept, 0 removed
        inv_freq = inv_freq * kept  # [(B,) R/2]
    return inv_freq, factor
