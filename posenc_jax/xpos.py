"""xPos: RoPE whose rotated pairs also decay exponentially with distance.

Queries are scaled by ``zeta_i^(n / scale_base)`` and keys by ``zeta_i^(-m / scale_base)``
before the RoPE rotation, so the q.k logit of pair i carries a decay
``zeta_i^((n - m) / scale_base)`` (q/k hook).

Each factor alone grows or shrinks exponentially with the distance of its position
from a centre c (which cancels in the logit), so the scales are exact only within a
window ``|p - c| <= xpos_window(...)``: 27,194 positions for the defaults in float32
and bfloat16, 3,398 in float16. Outside it `apply_xpos` raises by default
(``out_of_range="error"``); ``"clip"`` clips the log scale instead (finite, but the
fastest pairs stop decaying there).

Shape legend: B batch, T query length, N heads, H head dim, R rotary dim.

References: Sun et al. 2022, "A Length-Extrapolatable Transformer" (arXiv 2212.10554).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from posenc_jax import rope
from posenc_jax._checks import (
    as_int,
    check_at_run_time,
    check_choice,
    check_positions,
    positive_float,
)

__all__ = [
    "XPOS_OUT_OF_RANGE_POLICIES",
    "apply_xpos",
    "check_xpos_window",
    "xpos_window",
    "xpos_zeta",
]

XPOS_OUT_OF_RANGE_POLICIES: tuple[str, ...] = ("error", "clip")
"""What `apply_xpos` does with positions outside the exact window: raise, or clip the scale."""


def xpos_zeta(head_dim: int, *, gamma: float = 0.4) -> jax.Array:
    """Per-pair xPos decay bases ``zeta_i = (i / (H/2) + gamma) / (1 + gamma)``.

    ``i = 0 .. H/2 - 1``: the highest-frequency pair decays fastest (``zeta_0 =
    gamma / (1 + gamma)``, 0.286 for gamma = 0.4) and the lowest-frequency pair
    barely decays (``zeta`` close to 1). Equal to torchscale's
    ``(arange(0, H, 2) + gamma * H) / ((1 + gamma) * H)``. Computed in float64,
    returned as float32.

    Args:
      head_dim: H, even and >= 2.
      gamma: offset > 0 (0.4 in the paper).

    Returns:
      ``[H/2]`` float32 in (0, 1).

    Raises:
      ValueError: odd or too small ``head_dim``, ``gamma`` <= 0.

    Example:
        >>> [round(v, 4) for v in xpos_zeta(4).tolist()]
        [0.2857, 0.6429]

    References: Sun et al. 2022, "A Length-Extrapolatable Transformer" (arXiv
    2212.10554); torchscale ``xpos_relative_position.py``.
    """
    fn = "xpos"
    h = as_int(head_dim, "head_dim", fn)
    if h < 2 or h % 2:
        raise ValueError(f"xpos needs an even head_dim >= 2; got head_dim={head_dim}")
    g = positive_float(gamma, "gamma", fn)
    i = np.arange(h // 2, dtype=np.float64)
    return jnp.asarray((i / (h / 2) + g) / (1.0 + g), jnp.float32)


def _log_scale_limit(dtype: Any) -> float:
    """Largest |log scale| applied: 3/4 of log(max finite value) of the dtype.

    float32 / bfloat16: 66.5; float16: 8.3. This leaves room for |x| values up to
    exp(22) (float32) or exp(2.8) = 16 (float16) after scaling.
    """
    dtype = jnp.dtype(dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.dtype(jnp.float32)
    return 0.75 * math.log(float(jnp.finfo(dtype).max))


def xpos_window(*, gamma: float = 0.4, scale_base: float = 512.0, dtype: Any = jnp.float32) -> int:
    """The largest ``|position - center|`` at which `apply_xpos` scales are exact.

    The fastest pair decays at ``|log zeta_0| / scale_base`` per position, ``zeta_0 =
    gamma / (1 + gamma)``; its log scale reaches the clip limit of the dtype
    (``0.75 * log(max)``: 66.5 for float32 and bfloat16, 8.3 for float16) at this
    distance from the centre. Logits of positions inside ``center +- window`` are
    exact; a sequence of up to ``2 * window + 1`` positions fits with the centre
    in its middle.

    Args:
      gamma: the xPos offset, > 0 (0.4).
      scale_base: positions per decay unit, > 0 (512).
      dtype: the dtype of q and k (the scaled values are stored in it).

    Returns:
      The window half-width, in positions.

    Raises:
      ValueError: ``gamma`` or ``scale_base`` not a finite number > 0.

    Example:
        >>> xpos_window(), xpos_window(dtype=jnp.float16)
        (27194, 3398)
    """
    g = positive_float(gamma, "gamma", "xpos")
    sb = positive_float(scale_base, "scale_base", "xpos")
    zeta0 = float(np.float32(g / (1.0 + g)))  # the float32 value apply_xpos uses
    rate = abs(math.log(zeta0)) / sb
    # One position of margin for the float32 rounding of the product at the edge.
    return max(0, math.floor(_log_scale_limit(dtype) / rate) - 1)


def _window_message(lo: float, hi: float, center: float, window: int, dtype: Any) -> str:
    middle = int(lo + hi) // 2
    return (
        f"xpos: positions must lie within center +- {window} (center={center}; the window "
        f"where the {jnp.dtype(dtype).name} xPos scales are exact, see xpos_window); got "
        f"positions {lo} .. {hi}. Set center near the middle of the positions in use (e.g. "
        f"center={middle}), or call the scheme's assume_positions_below(max_position) once, "
        "which does so on the host, or pass out_of_range='clip' to accept that the fastest "
        "pairs stop decaying outside the window."
    )


def _check_in_window(lo: Any, hi: Any, center: float, window: int, dtype: Any) -> None:
    lo, hi = float(lo), float(hi)
    if lo < center - window or hi > center + window:
        lo, hi = (int(v) if v.is_integer() else v for v in (lo, hi))  # type: ignore[assignment]
        raise ValueError(_window_message(lo, hi, center, window, dtype))


def _raise_if_clipped(worst, fastest, lo, hi, *, limit, center, dtype) -> None:
    if float(worst) > limit:
        window = math.floor(limit / float(fastest)) - 1  # as xpos_window
        lo, hi = (int(v) if float(v).is_integer() else float(v) for v in (lo, hi))
        raise ValueError(_window_message(lo, hi, center, window, dtype))


def _check_not_clipped(log_scale, rate, positions, *, limit, center, dtype) -> None:
    """`apply_xpos`'s "error" policy: raises (now, or at run time when traced) when
    some log scale exceeds the clip limit."""
    if log_scale.size == 0:
        return
    worst = jnp.max(jnp.abs(log_scale))
    fastest = jnp.max(jnp.abs(rate))
    lo, hi = jnp.min(positions), jnp.max(positions)
    check = functools.partial(_raise_if_clipped, limit=limit, center=center, dtype=dtype)
    check_at_run_time(check, worst, fastest, lo, hi)


def check_xpos_window(
    *positions: jax.Array, center: int | float, window: int, dtype: Any = jnp.float32
) -> None:
    """Raises when a position lies outside ``center +- window`` (see `xpos_window`).

    With concrete positions the ValueError is raised now. Traced positions (under
    ``jax.jit``, ``vmap``, ``grad``) are checked at run time by a host callback
    (``jax.debug.callback``, `posenc_jax._checks.check_at_run_time`) on every
    call: the computation then fails with a ``jax.errors.JaxRuntimeError`` carrying
    the message, possibly when the result is first used (asynchronous dispatch).

    Args:
      *positions: one or more position arrays (e.g. query and key positions).
      center: the xPos centre.
      window: the half-width, from `xpos_window`.
      dtype: named in the message.

    Example:
        >>> check_xpos_window(jnp.arange(10), center=0, window=27194)
    """
    arrays = [jnp.asarray(p) for p in positions if jnp.size(p) > 0]
    if not arrays:
        return
    lo = functools.reduce(jnp.minimum, [jnp.min(p) for p in arrays])
    hi = functools.reduce(jnp.maximum, [jnp.max(p) for p in arrays])
    check = functools.partial(_check_in_window, center=center, window=window, dtype=dtype)
    check_at_run_time(check, lo, hi)


def apply_xpos(
    x: jax.Array,
    positions: jax.Array,
    *,
    inv_freq: jax.Array,
    zeta: jax.Array,
    scale_base: float = 512.0,
    downscale: bool = False,
    center: int | float = 0,
    layout: str = "interleaved",
    out_of_range: str = "error",
) -> jax.Array:
    """xPos: scales each rotary pair by ``zeta_i^(+-(p - center) / scale_base)``, then rotates.

    Queries use ``downscale=False`` (``x * zeta^((n - center) / scale_base)``), keys
    ``downscale=True`` (``x * zeta^(-(m - center) / scale_base)``); both elements of
    pair i get the same scale and are then rotated by RoPE at their position. The
    logit of a query at n and a key at m is then the RoPE logit with pair i weighted
    by ``zeta_i^((n - m) / scale_base)``: it depends on n - m only, ``center``
    cancels, and for ``n > m`` (causal attention) it decays with distance.

    **Range.** Each factor alone grows or shrinks exponentially with
    ``|p - center|``. torchscale centres positions on the middle of the current
    sequence in every call, and re-applies xPos to its whole key cache at each
    decoding step (it caches keys before xPos). Here keys are cached after the q/k
    hook, so a key keeps the scale it was given: the centre must be the same for
    every call whose keys meet in one logit, and it is a setting. The log scale is
    computed in float32 and clipped at ``+-0.75 * log(max of x's dtype)`` (66.5
    for float32 and bfloat16, 8.3 for float16), so outputs never overflow; logits
    are exact while ``|p - center| <= xpos_window(...)``: 27,194 positions for
    the defaults in float32 and bfloat16 (so sequences up to 54k positions with
    the centre in their middle), 3,398 in float16. Outside that window
    ``out_of_range="error"`` (default) raises (see `check_xpos_window`) and
    ``"clip"`` clips, which keeps outputs finite but stops the decay of the
    fastest pairs there. Set ``center`` near the middle of the positions in use
    to move the window (e.g. ``center=16000`` for a 32k-token evaluation, or for
    positions around 10^6).

    Args:
      x: ``[..., T, N, H]``, typically q ``[B, T, N, H]`` or k ``[B, S, K, H]``.
      positions: ``[T]`` or ``[B, T]`` positions (integer, or float).
      inv_freq: ``[R/2]`` RoPE frequencies (`posenc_jax.rope.rope_frequencies`).
      zeta: ``[R/2]`` decay bases (`xpos_zeta`).
      scale_base: positions per decay unit, > 0 (512 in the paper).
      downscale: False for queries, True for keys.
      center: position where both scales are 1.
      layout: "interleaved" (torchscale, pairs (2i, 2i + 1)) or "half" (pairs
        (i, i + R/2)).
      out_of_range: "error" (positions outside the exact window raise) or "clip".

    Returns:
      ``[..., T, N, H]`` in x's dtype (scaling and rotation run in float32). Dims
      beyond R pass through unchanged.

    Raises:
      ValueError: bad layout or out_of_range, ``scale_base`` <= 0, ``zeta`` and
        ``inv_freq`` shapes that differ, shapes that do not match x, or (policy
        "error", concrete positions) a position outside the exact window; traced
        positions fail at run time instead (see `check_xpos_window`).

    Example:
        >>> inv_freq, _ = rope.rope_frequencies(4)
        >>> zeta = xpos_zeta(4)
        >>> q = jnp.ones((1, 3, 1, 4))  # [B, T, N, H]
        >>> apply_xpos(q, jnp.arange(3), inv_freq=inv_freq, zeta=zeta).shape
        (1, 3, 1, 4)

    References: Sun et al. 2022, "A Length-Extrapolatable Transformer" (arXiv
    2212.10554); torchscale ``XPOS`` and its use in ``MultiheadAttention``.
    """
    fn = "xpos"
    check_choice(layout, "layout", rope.LAYOUTS, fn)
    check_choice(out_of_range, "out_of_range", XPOS_OUT_OF_RANGE_POLICIES, fn)
    scale_base = positive_float(scale_base, "scale_base", fn)
    x = jnp.asarray(x)
    zeta = jnp.asarray(zeta, jnp.float32)
    inv_freq_shape = np.shape(inv_freq)
    if zeta.ndim != 1 or (zeta.shape[0],) != tuple(inv_freq_shape):
        raise ValueError(
            f"xpos needs zeta and inv_freq of the same shape [R/2]; got zeta {zeta.shape}, "
            f"inv_freq {inv_freq_shape}"
        )
    if x.ndim < 3 or 2 * zeta.shape[0] > x.shape[-1]:
        raise ValueError(
            f"xpos needs x of shape [..., T, N, H] with H >= 2 * len(zeta) = "
            f"{2 * zeta.shape[0]}; got x shape {x.shape}"
        )
    positions = check_positions(positions, "positions", fn)
    if jnp.issubdtype(positions.dtype, jnp.integer) and float(center).is_integer():
        rel = (positions.astype(jnp.int32) - jnp.int32(int(center))).astype(jnp.float32)
    else:
        rel = positions.astype(jnp.float32) - jnp.float32(center)
    rate = jnp.log(zeta) / jnp.float32(scale_base)  # [R/2], < 0
    log_scale = rel[..., None] * rate  # [T, R/2] or [B, T, R/2]
    if downscale:
        log_scale = -log_scale
    limit = _log_scale_limit(x.dtype)
    if out_of_range == "error":
        _check_not_clipped(log_scale, rate, positions, limit=limit, center=center, dtype=x.dtype)
    scale = jnp.exp(jnp.clip(log_scale, -limit, limit))
    if layout == "half":
        scale = jnp.concatenate([scale, scale], axis=-1)  # [..., T, R]
    else:
        scale = jnp.repeat(scale, 2, axis=-1)  # [..., T, R]: (s0, s0, s1, s1, ...)
    rest = x.shape[-1] - scale.shape[-1]
    if rest:
        scale = jnp.concatenate([scale, jnp.ones((*scale.shape[:-1], rest), jnp.float32)], -1)
    scaled = x.astype(jnp.float32) * scale[..., None, :]  # [..., T, N, H]
    out = rope.apply_rope(scaled, positions, inv_freq=inv_freq, layout=layout)
    return out.astype(x.dtype)
