"""RoFormer's long-term decay bound of RoPE logits, for figures and tests.

RoFormer (section 3.4.3) shows with Abel summation that the RoPE logit of two
tokens r positions apart is bounded by a sum that decays as r grows;
`rope_decay_bound` evaluates that bound for any frequency schedule.

Shape legend: R rotary dim; frequencies are ``[R/2]``, distances any shape ``[...]``.

Example:
    >>> import jax.numpy as jnp
    >>> from posenc_jax.rope.frequencies import rope_frequencies
    >>> inv_freq, _ = rope_frequencies(128)
    >>> bound = rope_decay_bound(jnp.array([0, 10, 1000]), inv_freq)
    >>> bool(bound[0] > bound[1] > bound[2])
    True

References: Su et al. 2021, "RoFormer: Enhanced Transformer with Rotary Position
Embedding", section 3.4.3 (arXiv 2104.09864).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = [
    "rope_decay_bound",
]


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
        >>> import jax.numpy as jnp
        >>> from posenc_jax.rope.frequencies import rope_frequencies
        >>> inv_freq, _ = rope_frequencies(128)
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
