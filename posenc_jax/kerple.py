"""KERPLE: a conditionally positive definite kernel of the distance added to the logits.

``-r1 * log(1 + r2 |i - j|)`` ("log") or ``-r1 |i - j|^r2`` ("power"), with learned
per-head ``r1, r2 > 0`` (logit hook).

Shape legend: B batch, T query length, S key length, N heads.

References: Chi et al. 2022, "KERPLE: Kernelized Relative Positional Embedding for
Length Extrapolation" (arXiv 2205.09921).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from posenc_jax._checks import as_int, check_choice, per_head, positive_float, relative_distance
from posenc_jax.random_distances import relative_from_table

__all__ = ["KERPLE_KINDS", "init_kerple_params", "kerple_bias"]

Params = dict[str, jax.Array]

KERPLE_KINDS: tuple[str, ...] = ("log", "power")
"""KERPLE kernels: "log" is -r1 * log(1 + r2 d), "power" is -r1 * d^r2."""


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
    distances: jax.Array | None = None,
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
      distances: None, or a distance table ``[W]`` / ``[B, W]`` of randomized
        distances (`posenc_jax.random_distances`) read in place of ``k - q``.

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
    check_choice(kind, "kind", KERPLE_KINDS, "kerple")
    eps = positive_float(eps, "eps", fn)
    r1 = per_head(r1, "r1", fn)
    r2 = per_head(r2, "r2", fn)
    if r1.shape != r2.shape:
        raise ValueError(f"{fn} needs r1 and r2 of the same shape [N]; got {r1.shape}, {r2.shape}")
    if distances is None:
        rel = relative_distance(q_positions, k_positions, fn)
    else:
        rel = relative_from_table(q_positions, k_positions, distances, fn)
    d = jnp.abs(rel).astype(jnp.float32)[..., None, :, :]  # [..., 1, T, S]
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
    check_choice(kind, "kind", KERPLE_KINDS, "kerple")
    n = as_int(num_heads, "num_heads", "kerple")
    if n < 1:
        raise ValueError(f"kerple needs num_heads >= 1; got num_heads={num_heads}")
    k1, k2 = jax.random.split(key)
    u1 = jax.random.uniform(k1, (n,), jnp.float32)
    u2 = jax.random.uniform(k2, (n,), jnp.float32)
    if kind == "log":
        return {"r1": 2.0 * u1, "r2": u2}
    return {"r1": u1, "r2": 2.0 * u2}
