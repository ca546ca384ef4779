"""Schemes that add a bias of the relative distance to the logits (hook 3) and nothing else.

ALiBi (a fixed linear penalty), T5 (a learned scalar per distance bucket), KERPLE
(a learned kernel) and FIRE (a learned MLP of the normalised distance).

References: Press et al. 2022 (arXiv 2108.12409); Raffel et al. 2020 (arXiv 1910.10683);
Chi et al. 2022 (arXiv 2205.09921); Li et al. 2023 (arXiv 2310.04418).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp

from posenc_jax import alibi, fire, kerple, relative
from posenc_jax._checks import as_int, check_choice, positive_float
from posenc_jax.schemes.base import DISTANCES, Scheme
from posenc_jax.schemes.registry import register_scheme

__all__ = ["AlibiScheme", "FireScheme", "KerpleScheme", "T5Scheme"]


@register_scheme
@dataclasses.dataclass(frozen=True)
class AlibiScheme(Scheme):
    """Attention with linear biases: -m_h * distance added to the logits.

    Settings:
      bidirectional: None (follow the model: causal -> False, encoder -> True),
        False (causal: ``-m (q - k)``), True or "symmetric" (``-m |q - k|``), or
        "ruoss" (``-m |q - k| + 0.5 m`` for keys before the query). A symmetric
        bias cannot tell left from right: an encoder using it maps a reversed
        input to the reversed output. "ruoss" is the tie-break of the reference
        code of Ruoss et al. 2023 (see `posenc_jax.alibi.alibi_bias`), used by
        configs/chomsky*.yaml, which reproduce that study.

    References: Press, Smith, Lewis 2022, "Train Short, Test Long" (arXiv 2108.12409);
    Ruoss et al. 2023, "Randomized Positional Encodings Boost Length Generalization
    of Transformers" (arXiv 2305.16843).
    """

    name: ClassVar[str] = "alibi"
    hooks: ClassVar[frozenset[str]] = frozenset({"logit_bias"})
    accepts_distances: ClassVar[bool] = True
    distances_by_default: ClassVar[bool] = True
    bidirectional: bool | str | None = None

    def __post_init__(self) -> None:
        if self.bidirectional is not None:
            alibi.bidirectional_mode(self.bidirectional, "alibi")

    def configure(self, *, causal: bool) -> Scheme:
        if self.bidirectional is None:
            return dataclasses.replace(self, bidirectional=not causal)
        return self

    def logit_bias(self, params, q, q_positions, k_positions):
        slopes = alibi.alibi_slopes(q.shape[-2])
        mode = False if self.bidirectional is None else self.bidirectional
        return alibi.alibi_bias(
            q_positions, k_positions, slopes, bidirectional=mode, distances=params.get(DISTANCES)
        )


def check_t5_buckets(num_buckets: int, max_distance: int, scheme: str) -> None:
    """The T5 bucket settings of ``scheme`` (T5, TUPE-R): num_buckets >= 2, max_distance >= 1.

    `posenc_jax.relative.t5_relative_bucket` checks the rest when it knows the direction.
    """
    if as_int(num_buckets, "num_buckets", scheme) < 2:
        raise ValueError(f"{scheme}: num_buckets must be >= 2; got {num_buckets}")
    if as_int(max_distance, "max_distance", scheme) < 1:
        raise ValueError(f"{scheme}: max_distance must be >= 1; got {max_distance}")


@register_scheme
@dataclasses.dataclass(frozen=True)
class T5Scheme(Scheme):
    """T5 bucketed relative bias: a learned scalar per (bucket, head).

    Settings: num_buckets (32), max_distance (128), bidirectional (None: follow the model).

    References: Raffel et al. 2020, "Exploring the Limits of Transfer Learning"
    (arXiv 1910.10683).
    """

    name: ClassVar[str] = "t5"
    hooks: ClassVar[frozenset[str]] = frozenset({"logit_bias"})
    accepts_distances: ClassVar[bool] = True
    num_buckets: int = 32
    max_distance: int = 128
    bidirectional: bool | None = None

    def __post_init__(self) -> None:
        check_t5_buckets(self.num_buckets, self.max_distance, "t5")

    def configure(self, *, causal: bool) -> Scheme:
        if self.bidirectional is None:
            return dataclasses.replace(self, bidirectional=not causal)
        return self

    def init_attention_params(self, key, *, num_heads, head_dim):
        # T5 initialises the bias table like its other weights; small values keep
        # the initial attention close to uniform.
        return {"table": 0.02 * jax.random.normal(key, (int(self.num_buckets), num_heads))}

    def logit_bias(self, params, q, q_positions, k_positions):
        return relative.t5_bias(
            q_positions,
            k_positions,
            params["table"],
            bidirectional=bool(self.bidirectional),
            num_buckets=int(self.num_buckets),
            max_distance=int(self.max_distance),
            distances=params.get(DISTANCES),
        ).astype(jnp.float32)


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
    accepts_distances: ClassVar[bool] = True
    kind: str = "log"

    def __post_init__(self) -> None:
        check_choice(self.kind, "kind", kerple.KERPLE_KINDS, "kerple")

    def init_attention_params(self, key, *, num_heads, head_dim):
        return kerple.init_kerple_params(key, num_heads, kind=self.kind)

    def logit_bias(self, params, q, q_positions, k_positions):
        return kerple.kerple_bias(
            q_positions,
            k_positions,
            params["r1"],
            params["r2"],
            kind=self.kind,
            distances=params.get(DISTANCES),
        )


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
        w = as_int(self.hidden, "hidden", "fire")
        if w < 1:
            raise ValueError(f"fire: hidden must be >= 1; got hidden={self.hidden}")
        positive_float(self.init_c, "init_c", "fire")
        positive_float(self.init_threshold, "init_threshold", "fire")
        positive_float(self.eps, "eps", "fire")

    def init_attention_params(self, key, *, num_heads, head_dim):
        return fire.init_fire_params(key, num_heads, hidden=int(self.hidden), init_c=self.init_c)

    def logit_bias(self, params, q, q_positions, k_positions):
        return fire.fire_bias(
            q_positions,
            k_positions,
            params,
            init_threshold=self.init_threshold,
            eps=self.eps,
        )
