"""FIRE: an MLP of the log-normalised relative position added to the logits.

``f_theta(psi(i - j) / psi(max(L, i)))`` with ``psi(x) = log(|c x| + 1)`` and a small
MLP ``f_theta`` with one output per head; ``c`` and the threshold ``L`` are learned
(logit hook). The paper's ``i - j`` is query minus key, the negative of the library's
relative distance (`posenc_jax._checks.relative_distance`).

Shape legend: B batch, T query length, S key length, N heads, W hidden width.

References: Li et al. 2023, "Functional Interpolation for Relative Positions Improves
Long Context Transformers" (arXiv 2310.04418).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from posenc_jax._checks import as_int, check_positions, positive_float, relative_distance

__all__ = ["fire_bias", "fire_normalized_distance", "init_fire_params"]

Params = dict[str, jax.Array]

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
    eps = positive_float(eps, "eps", fn)
    rel = -relative_distance(q_positions, k_positions, fn).astype(jnp.float32)  # i - j: [..., T, S]
    q = check_positions(q_positions, "q_positions", fn).astype(jnp.float32)  # [..., T]
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
    init_threshold = positive_float(init_threshold, "init_threshold", fn)
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
    n = as_int(num_heads, "num_heads", fn)
    w = as_int(hidden, "hidden", fn)
    if n < 1:
        raise ValueError(f"fire needs num_heads >= 1; got num_heads={num_heads}")
    if w < 1:
        raise ValueError(f"fire needs hidden >= 1; got hidden={hidden}")
    init_c = positive_float(init_c, "init_c", fn)
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
