"""PoPE, polar coordinate positional embeddings: content sets the magnitude, position the phase.

Each of the H components c of a query or key becomes a complex number whose magnitude is
``softplus`` of the component (content, "what") and whose phase is ``position * theta_c``
(position, "where"), ``theta_c = base^(-c / H)`` for c = 0..H-1 (H frequencies, not RoPE's
H/2 pairs). The score is the real part of ``sum_c q_c conj(k_c)``::

    q . k  ->  sum_c softplus(q_c) softplus(k_c) cos((i - j) theta_c - delta_c)

with a learned phase bias ``delta_c`` in [-2 pi, 0] (zeros at init). As real vectors,
``[mu cos(phase), mu sin(phase)]``: q and k have 2H components, v keeps H. Unlike RoPE,
the positional phase never mixes with the content: a component's contribution to the
score depends on position only through its cosine.

The bias enters the queries' phases here (``- delta``) where the reference adds it to the
keys' (``+ delta``): the same scores, and one bias per query head under grouped-query
attention.

Shape legend: B batch, T length, N heads, H head dim.

References: Gopalakrishnan et al. 2025, "Decoupling the 'What' and 'Where' With Polar
Coordinate Positional Embeddings" (arXiv 2509.10534); reference implementations
lucidrains/x-transformers, x_transformers/x_transformers.py (``PolarEmbedding``:
``inv_freq = 1 / base ** (arange(dim) / dim)``, ``learned_bias`` zeros clamped to
``[-2 pi, 0]``, ``apply_polar_pos_emb``: ``softplus`` then ``cat(t * cos, t * sin)``, the bias
added to the keys' frequencies; logits scaled by ``dim_head ** -0.5``) and
lucidrains/PoPE-pytorch (PoPE_pytorch/pope.py, the same maths).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from posenc_jax.rope.numerics import angles

__all__ = ["apply_pope", "pope_frequencies"]


def pope_frequencies(head_dim: int, *, base: float = 10000.0) -> np.ndarray:
    """``theta_c = base^(-c / H)`` for c = 0..H-1, float64.

    Example:
        >>> pope_frequencies(4, base=16.0).tolist()
        [1.0, 0.5, 0.25, 0.125]

    Args:
      head_dim: H, the number of components (one frequency each).
      base: the frequency base (10000 as RoPE's).

    Returns:
      [H] float64 NumPy array (used without float32 rounding of theta).
    """
    if isinstance(head_dim, bool) or not isinstance(head_dim, int) or head_dim < 1:
        raise ValueError(f"pope_frequencies needs head_dim >= 1; got {head_dim!r}")
    if not (isinstance(base, int | float) and math.isfinite(base) and base > 1):
        raise ValueError(f"pope_frequencies needs a finite base > 1; got base={base!r}")
    return float(base) ** (-np.arange(head_dim, dtype=np.float64) / head_dim)


def apply_pope(
    x: jax.Array,
    positions: jax.Array,
    inv_freq: np.ndarray | jax.Array,
    *,
    phase_bias: jax.Array | None = None,
) -> jax.Array:
    """Polar embedding of queries or keys: ``[softplus(x) cos(phase), softplus(x) sin(phase)]``.

    Example:
        >>> import jax.numpy as jnp
        >>> out = apply_pope(jnp.zeros((1, 3, 2, 4)), jnp.arange(3), pope_frequencies(4))
        >>> out.shape, round(float(out[0, 0, 0, 0]), 4)  # softplus(0) cos(0)
        ((1, 3, 2, 8), 0.6931)

    Args:
      x: [B, T, N, H] queries or keys.
      positions: [T] or [B, T] integer (or float) positions.
      inv_freq: [H] frequencies (`pope_frequencies`).
      phase_bias: [N, H] subtracted from the phases (the queries' ``delta``, clipped to
        [-2 pi, 0]); None for keys.

    Returns:
      [B, T, N, 2H] in x's dtype (magnitudes and angles computed in float32).
    """
    if x.shape[-1] != np.shape(inv_freq)[-1]:
        raise ValueError(
            f"apply_pope: x has {x.shape[-1]} components but inv_freq has "
            f"{np.shape(inv_freq)[-1]} frequencies"
        )
    phase = angles(positions, inv_freq)  # [T, H] or [B, T, H], float32, mod 2 pi
    phase = phase[..., None, :]  # [.., T, 1, H]
    if phase_bias is not None:
        phase = phase - jnp.clip(phase_bias.astype(jnp.float32), -2.0 * math.pi, 0.0)
    magnitude = jax.nn.softplus(x.astype(jnp.float32))
    out = jnp.concatenate([magnitude * jnp.cos(phase), magnitude * jnp.sin(phase)], axis=-1)
    return out.astype(x.dtype)
