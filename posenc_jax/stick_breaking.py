"""Stick-breaking attention: each query breaks a stick from the nearest key backwards.

With ``z_ij`` the (scaled, biased) logit of query i for key j and ``beta = sigmoid(z)``,
key j takes the share ``beta_ij`` of what the keys after it (nearer to the query) left::

    A_ij = beta_ij * prod_{j<k<i} (1 - beta_ik)
    log A_ij = log sigmoid(z_ij) + sum_{k>j} log sigmoid(-z_ik)      (over allowed keys)

No softmax and no positional encoding: the order of the keys alone makes nearer keys
win ties, which is where the positional information comes from. The weights of a
row sum to at most 1; the rest, ``prod_j (1 - beta_ij)``, is the remainder. Computed
in log space (every term <= 0), so long rows stay finite without a running maximum.
Masked logits at ``MASK_VALUE`` (-1e30) give ``log sigmoid(z) = -1e30`` (weight 0) and
``log sigmoid(-z) = 0`` (nothing taken from the stick): a masked key drops out.

Keys are taken in array order: the caller keeps them sorted by position (self
attention, KV caches and packed documents do).

Shape legend: B batch, N heads, T queries, S keys, H head dim.

References: Tan, Shen, Yang, Courville, Panda 2024, "Scaling Stick-Breaking Attention:
An Efficient Implementation and In-depth Study" (arXiv 2410.17980); reference code
shawntan/stickbreaking-attention, stickbreaking_attention/sb_ref.py (``log_z =
logsigmoid(logits)``, ``log_beta = logsigmoid(-logits)``, a triangular ``cum_weight``
summing the later keys, ``return att @ v, 1 - att.sum(dim=-1)``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = [
    "MASK_VALUE",
    "StickBreakingTiles",
    "stick_breaking_log_weights",
    "stick_breaking_weights",
]

MASK_VALUE = -1e30
"""The masked-logit value of `posenc_jax.attention` (a key at it drops out)."""


def _suffix_sum_exclusive(x: jax.Array) -> jax.Array:
    """sum_{k>j} x[..., k] along the last axis (a reverse cumulative sum without x_j)."""
    return jnp.flip(jnp.cumsum(jnp.flip(x, -1), axis=-1), -1) - x


def stick_breaking_log_weights(logits: jax.Array) -> tuple[jax.Array, jax.Array]:
    """log A [..., S] and log remainder [...] of stick-breaking attention over the last axis.

    Example:
        >>> import jax.numpy as jnp
        >>> log_a, log_rem = stick_breaking_log_weights(jnp.zeros((1, 3)))
        >>> jnp.round(jnp.exp(log_a), 3).tolist(), round(float(jnp.exp(log_rem[0])), 3)
        ([[0.125, 0.25, 0.5]], 0.125)

    Args:
      logits: [..., S] float32, masked keys at a large negative value (``MASK_VALUE``),
        keys in position order (the last is the nearest to the query).

    Returns:
      log weights [..., S] (``log A_ij``) and the log remainder [...]
      (``sum_j log(1 - beta_ij)``), both float32.
    """
    logits = logits.astype(jnp.float32)
    log_take = jax.nn.log_sigmoid(logits)  # log beta
    log_leave = jax.nn.log_sigmoid(-logits)  # log (1 - beta)
    log_a = log_take + _suffix_sum_exclusive(log_leave)
    return log_a, jnp.sum(log_leave, axis=-1)


def stick_breaking_weights(logits: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Stick-breaking weights A [..., S] and remainder [...] (``1 - sum_j A_ij``).

    Example:
        >>> import jax.numpy as jnp
        >>> w, rem = stick_breaking_weights(jnp.array([[0.0, -1e30, 0.0]]))
        >>> w.tolist(), rem.tolist()  # the masked key takes nothing and breaks nothing
        ([[0.25, 0.0, 0.5]], [0.25])

    Args:
      logits: [..., S] as in `stick_breaking_log_weights`.

    Returns:
      weights [..., S] and remainder [...], float32.
    """
    log_a, log_rem = stick_breaking_log_weights(logits)
    return jnp.exp(log_a), jnp.exp(log_rem)


class StickBreakingTiles(NamedTuple):
    """Carry of stick-breaking over key tiles taken from the nearest to the farthest.

    ``acc`` [B, T, N, H] float32: sum of A_ij v_j over the tiles seen; ``log_left``
    [B, N, T] float32: sum of log(1 - beta_ik) over their keys (the log of the stick
    still left for the farther tiles).
    """

    acc: jax.Array
    log_left: jax.Array

    @classmethod
    def empty(cls, b: int, t: int, n: int, h: int) -> StickBreakingTiles:
        return cls(jnp.zeros((b, t, n, h), jnp.float32), jnp.zeros((b, n, t), jnp.float32))

    def update(self, logits: jax.Array, v: jax.Array) -> StickBreakingTiles:
        """Folds in one tile of keys, all farther from the queries than the tiles before.

        logits: [B, N, T, tk] masked; v: [B, tk, N, H].
        """
        log_a, log_leave_tile = stick_breaking_log_weights(logits)
        weights = jnp.exp(log_a + self.log_left[..., None])  # [B, N, T, tk]
        pv = jnp.einsum(
            "bnts,bsnh->btnh", weights.astype(v.dtype), v, preferred_element_type=jnp.float32
        )
        return StickBreakingTiles(self.acc + pv, self.log_left + log_leave_tile)

    def remainder(self) -> jax.Array:
        """[B, N, T]: the stick left after every key (1 - sum_j A_ij)."""
        return jnp.exp(self.log_left)
