"""Newer relative schemes: xPos, KERPLE and FIRE, as pure functions and registry entries.

* **xPos** (Sun et al. 2022) is RoPE whose rotated pairs are also scaled by
  ``zeta_i^(n / scale_base)`` on queries and ``zeta_i^(-m / scale_base)`` on keys, so
  the q.k logit of pair i carries a decay ``zeta_i^((n - m) / scale_base)`` (q/k hook).
* **KERPLE** (Chi et al. 2022) adds a conditionally positive definite kernel of the
  distance to the logits: ``-r1 * log(1 + r2 |m - n|)`` ("log") or ``-r1 |m - n|^r2``
  ("power"), with learned per-head ``r1, r2 > 0`` (logit hook).
* **FIRE** (Li et al. 2023) adds ``f_theta(psi(i - j) / psi(max(L, i)))`` with
  ``psi(x) = log(|c x| + 1)`` and a small MLP ``f_theta`` with one output per head;
  ``c`` and the threshold ``L`` are learned (logit hook).

Each scheme is a frozen dataclass registered in `posenc_jax.schemes` under
"xpos", "kerple" and "fire". `rope_decay_bound` (RoFormer's long-term decay bound)
lives here too, for the figures.

Shape legend: B batch, T query length, S key length, N heads, H head dim, W FIRE
hidden width.

Example:
    >>> from posenc_jax.schemes import make_scheme
    >>> scheme = make_scheme({"name": "kerple", "kind": "power"}).configure(causal=True)
    >>> sorted(scheme.hooks)
    ['logit_bias']

References: Sun et al. 2022, "A Length-Extrapolatable Transformer" (arXiv 2212.10554);
Chi et al. 2022, "KERPLE: Kernelized Relative Positional Embedding for Length
Extrapolation" (arXiv 2205.09921); Li et al. 2023, "Functional Interpolation for
Relative Positions Improves Long Context Transformers" (arXiv 2310.04418).
"""

from __future__ import annotations

import dataclasses
import math
import operator
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from posenc_jax import rope
from posenc_jax.schemes import Params, Scheme, register_scheme

__all__ = [
    "KERPLE_KINDS",
    "FireScheme",
    "KerpleScheme",
    "XposScheme",
    "apply_xpos",
    "fire_bias",
    "fire_normalized_distance",
    "init_fire_params",
    "init_kerple_params",
    "kerple_bias",
    "rope_decay_bound",
    "xpos_zeta",
]

KERPLE_KINDS: tuple[str, ...] = ("log", "power")
"""KERPLE kernels: "log" is -r1 * log(1 + r2 d), "power" is -r1 * d^r2."""


# --------------------------------------------------------------------------------------------
# Shared checks
# --------------------------------------------------------------------------------------------


def _positive_float(value: Any, name: str, fn: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{fn} needs a number {name}; got {value!r}") from None
    if not (out > 0 and math.isfinite(out)):
        raise ValueError(f"{fn} needs a finite {name} > 0; got {name}={value!r}")
    return out


def _as_int(value: Any, name: str, fn: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{fn} needs an int {name}; got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise ValueError(f"{fn} needs an int {name}; got {value!r}") from None


def _positions(positions: Any, name: str, fn: str) -> jax.Array:
    positions = jnp.asarray(positions)
    if positions.ndim not in (1, 2):
        raise ValueError(f"{fn} needs {name} of shape [T] or [B, T]; got shape {positions.shape}")
    return positions


def _query_minus_key(q_positions: Any, k_positions: Any, fn: str) -> jax.Array:
    """q_i - k_j as float32: [T] / [B, T] with [S] / [B, S] -> [..., T, S].

    Integer positions subtract in int32 first, so the difference is exact.
    """
    q = _positions(q_positions, "q_positions", fn)
    k = _positions(k_positions, "k_positions", fn)
    if jnp.issubdtype(q.dtype, jnp.integer) and jnp.issubdtype(k.dtype, jnp.integer):
        rel = q.astype(jnp.int32)[..., :, None] - k.astype(jnp.int32)[..., None, :]
    else:
        rel = q.astype(jnp.float32)[..., :, None] - k.astype(jnp.float32)[..., None, :]
    return rel.astype(jnp.float32)  # [..., T, S]


def _per_head(value: Any, name: str, fn: str) -> jax.Array:
    value = jnp.asarray(value)
    if value.ndim != 1:
        raise ValueError(f"{fn} needs {name} of shape [N] (one value per head); got {value.shape}")
    return value.astype(jnp.float32)


# --------------------------------------------------------------------------------------------
# RoFormer long-term decay (section 3.4.3)
# --------------------------------------------------------------------------------------------


def rope_decay_bound(distances: jax.Array, inv_freq: jax.Array) -> jax.Array:
    """RoFormer's averaged relative upper bound of RoPE logits at relative distance r.

    With Abel summation, ``|sum_i h_i e^{i r theta_i}| <= max_i |h_{i+1} - h_i| *
    sum_j |S_j|`` where ``S_j = sum_{k < j} e^{i r theta_k}``; this returns
    ``(1 / (R/2)) * sum_{j=1}^{R/2} |S_j|``, which decays as r grows (RoFormer
    section 3.4.3). At r = 0 it is ``(R/2 + 1) / 2``. The attention factor
    of a scaled schedule (YaRN) is not included: pass ``inv_freq`` only.

    Args:
      distances: relative distances ``r`` of any shape ``[...]`` (integer or float).
      inv_freq: ``[R/2]`` frequencies ``theta_k``, highest first, e.g. from
        `posenc_jax.rope.rope_frequencies`.

    Returns:
      ``[...]`` float32 bound.

    Raises:
      ValueError: ``inv_freq`` not 1-D or empty.

    Example:
        >>> inv_freq, _ = rope.rope_frequencies(128)
        >>> float(rope_decay_bound(jnp.array(0), inv_freq))
        32.5

    References: Su et al. 2021, "RoFormer: Enhanced Transformer with Rotary Position
    Embedding", section 3.4.3 (arXiv 2104.09864).
    """
    inv_freq = jnp.asarray(inv_freq, jnp.float32)
    if inv_freq.ndim != 1 or inv_freq.shape[0] == 0:
        raise ValueError(f"rope_decay_bound needs inv_freq of shape [R/2]; got {inv_freq.shape}")
    r = jnp.asarray(distances).astype(jnp.float32)
    phase = r[..., None] * inv_freq  # [..., R/2]
    re = jnp.cumsum(jnp.cos(phase), axis=-1)  # Re S_j, j = 1 .. R/2
    im = jnp.cumsum(jnp.sin(phase), axis=-1)
    return jnp.mean(jnp.sqrt(re * re + im * im), axis=-1)


# --------------------------------------------------------------------------------------------
# xPos
# --------------------------------------------------------------------------------------------


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
    h = _as_int(head_dim, "head_dim", fn)
    if h < 2 or h % 2:
        raise ValueError(f"xpos needs an even head_dim >= 2; got head_dim={head_dim}")
    g = _positive_float(gamma, "gamma", fn)
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
    sequence; here the centre must be the same for every call (keys are cached), so
    it is a setting. The log scale is computed in float32 and clipped at
    ``+-0.75 * log(max of x's dtype)`` (66.5 for float32 and bfloat16, 8.3 for
    float16), so outputs never overflow; logits stay exact while
    ``|p - center| * |log zeta_0| / scale_base`` is below that limit, i.e.
    ``|p - center| < 27,000`` positions for the defaults in float32 (3,400 in
    float16). Set ``center`` near the middle of the positions in use to move that
    window (e.g. for positions around 10^6).

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

    Returns:
      ``[..., T, N, H]`` in x's dtype (scaling and rotation run in float32). Dims
      beyond R pass through unchanged.

    Raises:
      ValueError: bad layout, ``scale_base`` <= 0, ``zeta`` and ``inv_freq``
        shapes that differ, or shapes that do not match x.

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
    if layout not in rope.LAYOUTS:
        raise ValueError(f"xpos: layout must be one of {list(rope.LAYOUTS)}; got {layout!r}")
    scale_base = _positive_float(scale_base, "scale_base", fn)
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
    positions = _positions(positions, "positions", fn)
    if jnp.issubdtype(positions.dtype, jnp.integer) and float(center).is_integer():
        rel = (positions.astype(jnp.int32) - jnp.int32(int(center))).astype(jnp.float32)
    else:
        rel = positions.astype(jnp.float32) - jnp.float32(center)
    rate = jnp.log(zeta) / jnp.float32(scale_base)  # [R/2], < 0
    log_scale = rel[..., None] * rate  # [T, R/2] or [B, T, R/2]
    if downscale:
        log_scale = -log_scale
    limit = _log_scale_limit(x.dtype)
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


# --------------------------------------------------------------------------------------------
# KERPLE
# --------------------------------------------------------------------------------------------


def _project(value: jax.Array, low: float, high: float | None) -> jax.Array:
    """clip(value, low, high) in the forward pass, identity gradient (projected updates)."""
    clipped = jnp.clip(value, low, high)
    return value + jax.lax.stop_gradient(clipped - value)


def kerple_bias(
    q_positions: jax.Array,
    k_positions: jax.Array,
    r1: jax.Array,
    r2: jax.Array,
    *,
    kind: str = "log",
    eps: float = 1e-2,
) -> jax.Array:
    """KERPLE logit bias from the distance ``d = |q_i - k_j|``.

    * ``kind="log"``: ``bias[n, i, j] = -r1[n] * log(1 + r2[n] * d)``;
    * ``kind="power"``: ``bias[n, i, j] = -r1[n] * d^r2[n]`` with ``0 < r2 <= 2``.

    Both are translation-invariant, symmetric in ``q - k`` and non-increasing in d.
    As in the authors' code, the parameters are kept in range by projection:
    values are clamped to ``r >= eps`` (and ``r2 <= 2`` for "power") in the forward
    pass, while gradients pass through unchanged (the authors clamp the stored
    parameters after each update; a functional model cannot, so the clamp sits in
    the forward pass). ``0^r2`` is 0 with a finite gradient.

    Args:
      q_positions: query positions ``[T]`` or ``[B, T]``.
      k_positions: key positions ``[S]`` or ``[B, S]``.
      r1: ``[N]`` per-head scale.
      r2: ``[N]`` per-head rate ("log") or exponent ("power").
      kind: "log" or "power".
      eps: lower clamp of r1 and r2, > 0 (1e-2 in the authors' code).

    Returns:
      float32 ``[N, T, S]`` when both position arrays are 1-D, else ``[B, N, T, S]``.

    Raises:
      ValueError: unknown ``kind``, ``eps`` <= 0, r1/r2 not ``[N]`` or of different
        lengths, positions not 1-D/2-D.

    Example:
        >>> pos = jnp.arange(3)
        >>> bias = kerple_bias(pos, pos, jnp.array([1.0]), jnp.array([1.0]))  # [N, T, S]
        >>> [round(v, 4) for v in bias[0, 2].tolist()]
        [-1.0986, -0.6931, -0.0]

    References: Chi et al. 2022, "KERPLE: Kernelized Relative Positional Embedding for
    Length Extrapolation" (arXiv 2205.09921); authors' code
    (github.com/chijames/KERPLE).
    """
    fn = "kerple_bias"
    if kind not in KERPLE_KINDS:
        raise ValueError(f"kerple: kind must be one of {list(KERPLE_KINDS)}; got {kind!r}")
    eps = _positive_float(eps, "eps", fn)
    r1 = _per_head(r1, "r1", fn)
    r2 = _per_head(r2, "r2", fn)
    if r1.shape != r2.shape:
        raise ValueError(f"{fn} needs r1 and r2 of the same shape [N]; got {r1.shape}, {r2.shape}")
    d = jnp.abs(_query_minus_key(q_positions, k_positions, fn))[..., None, :, :]  # [..., 1, T, S]
    a = _project(r1, eps, None)[:, None, None]  # [N, 1, 1]
    if kind == "log":
        b = _project(r2, eps, None)[:, None, None]
        return -a * jnp.log1p(b * d)  # [..., N, T, S]
    p = _project(r2, eps, 2.0)[:, None, None]
    positive = d > 0
    safe = jnp.where(positive, d, 1.0)  # d^p has gradient d^p log d in p: keep log(0) out
    return -a * jnp.where(positive, safe**p, 0.0)


def init_kerple_params(key: jax.Array, num_heads: int, *, kind: str = "log") -> Params:
    """Initial KERPLE parameters as in the authors' code.

    "log": ``r1 ~ U(0, 2)``, ``r2 ~ U(0, 1)``; "power": ``r1 ~ U(0, 1)``,
    ``r2 ~ U(0, 2)`` (values below eps are clamped by `kerple_bias`).

    Args:
      key: PRNG key.
      num_heads: N >= 1.
      kind: "log" or "power".

    Returns:
      ``{"r1": [N], "r2": [N]}`` float32.

    Raises:
      ValueError: unknown ``kind`` or ``num_heads`` < 1.

    Example:
        >>> p = init_kerple_params(jax.random.PRNGKey(0), 4)
        >>> p["r1"].shape, p["r2"].shape
        ((4,), (4,))

    References: Chi et al. 2022 (arXiv 2205.09921), authors' ``get_parameter``.
    """
    if kind not in KERPLE_KINDS:
        raise ValueError(f"kerple: kind must be one of {list(KERPLE_KINDS)}; got {kind!r}")
    n = _as_int(num_heads, "num_heads", "kerple")
    if n < 1:
        raise ValueError(f"kerple needs num_heads >= 1; got num_heads={num_heads}")
    k1, k2 = jax.random.split(key)
    u1 = jax.random.uniform(k1, (n,), jnp.float32)
    u2 = jax.random.uniform(k2, (n,), jnp.float32)
    if kind == "log":
        return {"r1": 2.0 * u1, "r2": u2}
    return {"r1": u1, "r2": 2.0 * u2}


# --------------------------------------------------------------------------------------------
# FIRE
# --------------------------------------------------------------------------------------------

_FIRE_KEYS = ("c", "threshold_scale", "w1", "b1", "w2", "b2")


def fire_normalized_distance(
    q_positions: jax.Array,
    k_positions: jax.Array,
    *,
    c: jax.Array | float,
    threshold: jax.Array | float,
    eps: float = 1e-6,
) -> jax.Array:
    """FIRE's progressive interpolation ``psi(i - j) / (psi(max(i, L)) + eps)``.

    ``psi(x) = log(|c x| + 1)`` amplifies differences between nearby positions;
    dividing by ``psi`` of the query position maps every causal pair (``0 <= i - j
    <= i``) into [0, 1] whatever the sequence length, so the MLP never sees an
    input outside its training range. The threshold ``L`` (``|threshold|`` is
    used) keeps short prefixes from being stretched: for ``i <= L`` the input is
    ``psi(i - j) / psi(L)``, a function of ``i - j`` only. With a small ``c`` the
    input approaches ``(i - j) / max(i, L)``, which is invariant to scaling both
    positions; larger ``c`` compresses it logarithmically. Keys after the query get
    ``psi(|i - j|)`` as in the reference code (they are masked in causal attention).

    Args:
      q_positions: query positions i, ``[T]`` or ``[B, T]`` (>= 0).
      k_positions: key positions j, ``[S]`` or ``[B, S]``.
      c: scalar log-transform slope (learned, 0.1 at init).
      threshold: scalar L (learned, 512 at init).
      eps: added to the denominator, > 0.

    Returns:
      float32 ``[T, S]`` or ``[B, T, S]``.

    Raises:
      ValueError: positions not 1-D/2-D, ``eps`` <= 0.

    Example:
        >>> pos = jnp.arange(4)
        >>> u = fire_normalized_distance(pos, pos, c=1.0, threshold=1.0)
        >>> [round(v, 3) for v in u[3].tolist()]
        [1.0, 0.792, 0.5, 0.0]

    References: Li et al. 2023, "Functional Interpolation for Relative Positions
    Improves Long Context Transformers" (arXiv 2310.04418).
    """
    fn = "fire_normalized_distance"
    eps = _positive_float(eps, "eps", fn)
    rel = _query_minus_key(q_positions, k_positions, fn)  # [..., T, S]
    q = _positions(q_positions, "q_positions", fn).astype(jnp.float32)  # [..., T]
    c = jnp.asarray(c, jnp.float32)
    threshold = jnp.abs(jnp.asarray(threshold, jnp.float32))
    psi_rel = jnp.log1p(jnp.abs(c * rel))
    normalizer = jnp.log1p(jnp.abs(c * jnp.maximum(q, threshold))) + jnp.float32(eps)
    return psi_rel / normalizer[..., :, None]


def _check_fire_params(params: Params, fn: str) -> tuple[jax.Array, ...]:
    missing = [k for k in _FIRE_KEYS if k not in params]
    if missing:
        raise ValueError(f"{fn} needs params with keys {list(_FIRE_KEYS)}; missing {missing}")
    w1, b1, w2, b2 = (jnp.asarray(params[k], jnp.float32) for k in ("w1", "b1", "w2", "b2"))
    width = w1.shape[0] if w1.ndim == 1 else -1
    if w1.ndim != 1 or b1.shape != (width,) or w2.ndim != 2 or w2.shape[0] != width:
        raise ValueError(
            f"{fn} needs w1 [W], b1 [W], w2 [W, N], b2 [N]; got w1 {w1.shape}, b1 {b1.shape}, "
            f"w2 {w2.shape}, b2 {b2.shape}"
        )
    if b2.shape != (w2.shape[1],):
        raise ValueError(f"{fn} needs b2 of shape [N] = [{w2.shape[1]}]; got {b2.shape}")
    return w1, b1, w2, b2


def fire_bias(
    q_positions: jax.Array,
    k_positions: jax.Array,
    params: Params,
    *,
    init_threshold: float = 512.0,
    eps: float = 1e-6,
) -> jax.Array:
    """FIRE logit bias ``b[n, i, j] = f(psi(i - j) / (psi(max(i, L)) + eps))[n]``.

    ``f(u) = W2^T relu(w1 u + b1) + b2`` is an MLP with one hidden layer of width W
    and one output per head; ``L = |threshold_scale * init_threshold|`` (the
    reference code learns a multiplier of a fixed initial threshold). The MLP input
    is `fire_normalized_distance`. The [..., T, S, W] hidden activations are
    materialised: use blockwise attention for long sequences.

    Args:
      q_positions: query positions ``[T]`` or ``[B, T]``.
      k_positions: key positions ``[S]`` or ``[B, S]``.
      params: ``{"c": [], "threshold_scale": [], "w1": [W], "b1": [W], "w2": [W, N],
        "b2": [N]}`` (see `init_fire_params`).
      init_threshold: the fixed initial threshold that ``threshold_scale`` multiplies.
      eps: added to the normaliser, > 0.

    Returns:
      float32 ``[N, T, S]`` when both position arrays are 1-D, else ``[B, N, T, S]``.

    Raises:
      ValueError: missing or mis-shaped params, bad positions or ``eps``.

    Example:
        >>> params = init_fire_params(jax.random.PRNGKey(0), 2)
        >>> fire_bias(jnp.arange(5), jnp.arange(5), params).shape
        (2, 5, 5)

    References: Li et al. 2023, "Functional Interpolation for Relative Positions
    Improves Long Context Transformers" (arXiv 2310.04418), and its reference code.
    """
    fn = "fire_bias"
    w1, b1, w2, b2 = _check_fire_params(params, fn)
    init_threshold = _positive_float(init_threshold, "init_threshold", fn)
    threshold = jnp.asarray(params["threshold_scale"], jnp.float32) * jnp.float32(init_threshold)
    u = fire_normalized_distance(
        q_positions, k_positions, c=params["c"], threshold=threshold, eps=eps
    )  # [..., T, S]
    hidden = jax.nn.relu(u[..., None] * w1 + b1)  # [..., T, S, W]
    out = jnp.einsum("...tsw,wn->...nts", hidden, w2)  # [..., N, T, S]
    return out + b2[:, None, None]


def init_fire_params(
    key: jax.Array, num_heads: int, *, hidden: int = 32, init_c: float = 0.1
) -> Params:
    """Initial FIRE parameters as in the paper's reference code.

    ``c = init_c``, ``threshold_scale = 1`` (so L = init_threshold), and the MLP
    layers drawn like PyTorch's ``nn.Linear`` default: weights and biases
    ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` with fan_in 1 for the first layer and W
    for the second.

    Args:
      key: PRNG key.
      num_heads: N >= 1 (MLP outputs).
      hidden: W >= 1 (32 in the paper).
      init_c: initial c > 0 (0.1 in the paper).

    Returns:
      ``{"c": [], "threshold_scale": [], "w1": [W], "b1": [W], "w2": [W, N], "b2": [N]}``
      float32.

    Raises:
      ValueError: ``num_heads`` or ``hidden`` < 1, ``init_c`` <= 0.

    Example:
        >>> p = init_fire_params(jax.random.PRNGKey(0), 4)
        >>> p["w2"].shape, round(float(p["c"]), 6)
        ((32, 4), 0.1)

    References: Li et al. 2023 (arXiv 2310.04418), reference code.
    """
    fn = "fire"
    n = _as_int(num_heads, "num_heads", fn)
    w = _as_int(hidden, "hidden", fn)
    if n < 1:
        raise ValueError(f"fire needs num_heads >= 1; got num_heads={num_heads}")
    if w < 1:
        raise ValueError(f"fire needs hidden >= 1; got hidden={hidden}")
    init_c = _positive_float(init_c, "init_c", fn)
    k1, k2, k3, k4 = jax.random.split(key, 4)
    bound2 = 1.0 / math.sqrt(w)
    return {
        "c": jnp.asarray(init_c, jnp.float32),
        "threshold_scale": jnp.asarray(1.0, jnp.float32),
        "w1": jax.random.uniform(k1, (w,), jnp.float32, -1.0, 1.0),
        "b1": jax.random.uniform(k2, (w,), jnp.float32, -1.0, 1.0),
        "w2": jax.random.uniform(k3, (w, n), jnp.float32, -bound2, bound2),
        "b2": jax.random.uniform(k4, (n,), jnp.float32, -bound2, bound2),
    }


# --------------------------------------------------------------------------------------------
# Schemes
# --------------------------------------------------------------------------------------------


@register_scheme
@dataclasses.dataclass(frozen=True)
class XposScheme(Scheme):
    """xPos: RoPE with a per-pair exponential decay of the logits with distance.

    Settings:
      base: RoPE base theta (10000).
      scale_base: positions per decay unit (512).
      gamma: decay offset, zeta_i = (i / (H/2) + gamma) / (1 + gamma) (0.4).
      layout: "interleaved" (torchscale) or "half".
      center: the position where query and key scales are 1; logits do not depend
        on it, only the float32 range does (see `apply_xpos`).

    Causal models only: for keys after the query the factor grows with distance,
    so ``configure(causal=False)`` raises.

    References: Sun et al. 2022, "A Length-Extrapolatable Transformer" (arXiv 2212.10554).
    """

    name: ClassVar[str] = "xpos"
    hooks: ClassVar[frozenset[str]] = frozenset({"rotate"})
    base: float = 10000.0
    scale_base: float = 512.0
    gamma: float = 0.4
    layout: str = "interleaved"
    center: int = 0

    def __post_init__(self) -> None:
        if self.layout not in rope.LAYOUTS:
            raise ValueError(
                f"xpos: layout must be one of {list(rope.LAYOUTS)}; got {self.layout!r}"
            )
        _positive_float(self.base, "base", "xpos")
        _positive_float(self.scale_base, "scale_base", "xpos")
        _positive_float(self.gamma, "gamma", "xpos")
        _as_int(self.center, "center", "xpos")

    def configure(self, *, causal: bool) -> Scheme:
        if not causal:
            raise ValueError(
                "xpos is defined for causal attention (its factor zeta^((n - m) / scale_base) "
                "grows for keys after the query); got causal=False; use 'rope' for "
                "bidirectional models"
            )
        return self

    def validate(self, *, num_heads: int, head_dim: int, d_model: int) -> None:
        xpos_zeta(head_dim, gamma=self.gamma)

    def rotate(self, params, q, k, q_positions, k_positions):
        head_dim = q.shape[-1]
        inv_freq, _ = rope.rope_frequencies(head_dim, base=self.base)
        zeta = xpos_zeta(head_dim, gamma=self.gamma)
        common = dict(
            inv_freq=inv_freq,
            zeta=zeta,
            scale_base=self.scale_base,
            center=int(self.center),
            layout=self.layout,
        )
        q = apply_xpos(q, q_positions, downscale=False, **common)
        k = apply_xpos(k, k_positions, downscale=True, **common)
        return q, k


@register_scheme
@dataclasses.dataclass(frozen=True)
class KerpleScheme(Scheme):
    """KERPLE: learned kernel of the distance added to the logits (log or power).

    Settings:
      kind: "log" (-r1 log(1 + r2 |i - j|), the paper's best) or "power"
        (-r1 |i - j|^r2, 0 < r2 <= 2).

    Parameters per layer: r1, r2 of shape [N], kept >= 0.01 by projection as in the
    authors' code (see `kerple_bias`). Symmetric in i - j, so it also serves
    bidirectional models.

    References: Chi et al. 2022, "KERPLE: Kernelized Relative Positional Embedding
    for Length Extrapolation" (arXiv 2205.09921).
    """

    name: ClassVar[str] = "kerple"
    hooks: ClassVar[frozenset[str]] = frozenset({"logit_bias"})
    kind: str = "log"

    def __post_init__(self) -> None:
        if self.kind not in KERPLE_KINDS:
            raise ValueError(f"kerple: kind must be one of {list(KERPLE_KINDS)}; got {self.kind!r}")

    def init_attention_params(self, key, *, num_heads, head_dim):
        return init_kerple_params(key, num_heads, kind=self.kind)

    def logit_bias(self, params, q, q_positions, k_positions):
        return kerple_bias(q_positions, k_positions, params["r1"], params["r2"], kind=self.kind)


@register_scheme
@dataclasses.dataclass(frozen=True)
class FireScheme(Scheme):
    """FIRE: an MLP of the log-normalised relative position added to the logits.

    Settings:
      hidden: MLP width W (32).
      init_c: initial log-transform slope c (0.1).
      init_threshold: initial threshold L (512); learned as a multiplier of it.
      eps: added to the normaliser (1e-6).

    Parameters per layer: c, threshold_scale, and the MLP (w1 [W], b1 [W], w2 [W, N],
    b2 [N]). Defined for causal attention in the paper; for bidirectional models the
    bias is the same function of |i - j| (as the reference code computes it).

    References: Li et al. 2023, "Functional Interpolation for Relative Positions
    Improves Long Context Transformers" (arXiv 2310.04418).
    """

    name: ClassVar[str] = "fire"
    hooks: ClassVar[frozenset[str]] = frozenset({"logit_bias"})
    hidden: int = 32
    init_c: float = 0.1
    init_threshold: float = 512.0
    eps: float = 1e-6

    def __post_init__(self) -> None:
        w = _as_int(self.hidden, "hidden", "fire")
        if w < 1:
            raise ValueError(f"fire: hidden must be >= 1; got hidden={self.hidden}")
        _positive_float(self.init_c, "init_c", "fire")
        _positive_float(self.init_threshold, "init_threshold", "fire")
        _positive_float(self.eps, "eps", "fire")

    def init_attention_params(self, key, *, num_heads, head_dim):
        return init_fire_params(key, num_heads, hidden=int(self.hidden), init_c=self.init_c)

    def logit_bias(self, params, q, q_positions, k_positions):
        return fire_bias(
            q_positions,
            k_positions,
            params,
            init_threshold=self.init_threshold,
            eps=self.eps,
        )
