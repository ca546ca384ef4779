"""Schemes that act on the input (hook 1), and NoPE, which acts nowhere.

References: Kazemnejad et al. 2023 (NoPE, arXiv 2305.19466); Devlin et al. 2019
(BERT) and Radford et al. 2019 (GPT-2) for learned tables; Vaswani et al. 2017
(arXiv 1706.03762) for sinusoids.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax

from posenc_jax import absolute
from posenc_jax._checks import as_int, check_choice
from posenc_jax.schemes.base import Params, Scheme
from posenc_jax.schemes.registry import register_scheme

__all__ = ["LearnedScheme", "NoPEScheme", "SinusoidalScheme"]


@register_scheme
@dataclasses.dataclass(frozen=True)
class NoPEScheme(Scheme):
    """No positional encoding: causal masking alone carries order.

    References: Kazemnejad et al. 2023, "The Impact of Positional Encoding on
    Length Generalization in Transformers" (arXiv 2305.19466).
    """

    name: ClassVar[str] = "nope"


@register_scheme
@dataclasses.dataclass(frozen=True)
class LearnedScheme(Scheme):
    """Learned absolute position embeddings added to the input (BERT, GPT-2).

    Settings:
      max_length: rows of the table; positions must be < max_length.
      out_of_range: "error" (default) or "clip".
      init_stddev: standard deviation of the initial table. The default 1.0 is the
        scale of the token embeddings of `posenc_jax.nn` models, so positions and
        tokens start on an equal footing (GPT-2 and BERT likewise draw both tables
        at one scale, 0.02, with their own token embeddings).

    References: Devlin et al. 2019 (BERT); Radford et al. 2019 (GPT-2).
    """

    name: ClassVar[str] = "learned"
    hooks: ClassVar[frozenset[str]] = frozenset({"embed"})
    max_length: int = 512
    out_of_range: str = "error"
    init_stddev: float = 1.0

    def __post_init__(self) -> None:
        if as_int(self.max_length, "max_length", "learned") < 1:
            raise ValueError(f"learned: max_length must be >= 1; got {self.max_length}")
        if not float(self.init_stddev) >= 0:
            raise ValueError(f"learned: init_stddev must be >= 0; got {self.init_stddev}")
        check_choice(self.out_of_range, "out_of_range", absolute.OUT_OF_RANGE_POLICIES, "learned")

    def position_limit(self) -> int | None:
        return None if self.out_of_range == "clip" else int(self.max_length)

    def assume_positions_below(self, max_position: int) -> Scheme:
        # In range by the check: "clip" then never clips, and skips the host callback
        # that "error" needs under jit (a device-host round trip every step).
        super().assume_positions_below(max_position)
        return dataclasses.replace(self, out_of_range="clip")

    def init_embed_params(self, key: jax.Array, *, d_model: int) -> Params:
        table = absolute.init_learned_table(
            key, int(self.max_length), d_model, stddev=float(self.init_stddev)
        )
        return {"table": table}

    def embed(self, params: Params, x: jax.Array, positions: jax.Array) -> jax.Array:
        pe = absolute.learned_lookup(params["table"], positions, out_of_range=self.out_of_range)
        return x + pe.astype(x.dtype)


@register_scheme
@dataclasses.dataclass(frozen=True)
class SinusoidalScheme(Scheme):
    """Fixed sinusoidal embeddings added to the input.

    References: Vaswani et al. 2017, "Attention Is All You Need" (arXiv 1706.03762).
    """

    name: ClassVar[str] = "sinusoidal"
    hooks: ClassVar[frozenset[str]] = frozenset({"embed"})
    base: float = 10000.0

    def validate(self, *, num_heads: int, head_dim: int, d_model: int) -> None:
        if d_model % 2:
            raise ValueError(f"sinusoidal needs an even d_model; got d_model={d_model}")

    def embed(self, params: Params, x: jax.Array, positions: jax.Array) -> jax.Array:
        pe = absolute.sinusoidal(positions, x.shape[-1], base=self.base)
        return x + pe.astype(x.dtype)
