"""Absolute positions: schemes that act on the input (hook 1), TUPE, which unties them
from the content in the logits (hooks 2 and 3), and NoPE, which acts nowhere.

References: Kazemnejad et al. 2023 (NoPE, arXiv 2305.19466); Devlin et al. 2019
(BERT) and Radford et al. 2019 (GPT-2) for learned tables; Vaswani et al. 2017
(arXiv 1706.03762) for sinusoids; Ke et al. 2021 (TUPE, arXiv 2006.15595).
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp

from posenc_jax import abacus, absolute, tupe
from posenc_jax._checks import as_int, check_choice
from posenc_jax.schemes.base import Params, Scheme
from posenc_jax.schemes.bias import check_t5_buckets
from posenc_jax.schemes.registry import register_scheme

__all__ = ["AbacusScheme", "LearnedScheme", "NoPEScheme", "SinusoidalScheme", "TupeScheme"]


@register_scheme
@dataclasses.dataclass(frozen=True)
class NoPEScheme(Scheme):
    """No positional encoding: causal masking alone carries order.

    References: Kazemnejad et al. 2023, "The Impact of Positional Encoding on
    Length Generalization in Transformers" (arXiv 2305.19466).
    """

    name: ClassVar[str] = "nope"


class _LearnedTable:
    """The settings checks and position limit shared by schemes with a learned position table
    (learned, TUPE): ``max_length`` rows, an ``out_of_range`` policy ("error" or "clip")."""

    name: ClassVar[str]
    max_length: int
    out_of_range: str

    def _check_table_settings(self) -> None:
        if as_int(self.max_length, "max_length", self.name) < 1:
            raise ValueError(f"{self.name}: max_length must be >= 1; got {self.max_length}")
        check_choice(self.out_of_range, "out_of_range", absolute.OUT_OF_RANGE_POLICIES, self.name)

    def position_limit(self) -> int | None:
        return None if self.out_of_range == "clip" else int(self.max_length)

    def assume_positions_below(self, max_position: int) -> Scheme:
        # In range by the check: "clip" then never clips, and skips the host callback
        # that "error" needs under jit (a device-host round trip every step).
        super().assume_positions_below(max_position)
        return dataclasses.replace(self, out_of_range="clip")


@register_scheme
@dataclasses.dataclass(frozen=True)
class LearnedScheme(_LearnedTable, Scheme):
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
        self._check_table_settings()
        if not float(self.init_stddev) >= 0:
            raise ValueError(f"learned: init_stddev must be >= 0; got {self.init_stddev}")

    def init_embed_params(self, key: jax.Array, *, d_model: int) -> Params:
        table = absolute.init_learned_table(
            key, int(self.max_length), d_model, stddev=float(self.init_stddev)
        )
        return {"table": table}

    def embed(self, params: Params, x: jax.Array, positions: jax.Array) -> jax.Array:
        pe = absolute.learned_lookup(params["table"], positions, out_of_range=self.out_of_range)
        return x + pe.astype(x.dtype)


_DIGIT_NAMES = tuple("0123456789")


@register_scheme
@dataclasses.dataclass(frozen=True)
class AbacusScheme(Scheme):
    """Abacus embeddings: a learned row per digit place, added to the digit tokens.

    A digit's id is its 1-based place within its run of consecutive digits
    (`posenc_jax.abacus.digit_places`), every other token's id 0; while training, one
    random offset ``k ~ U{0..max_offset}`` per call is added to the digits' ids. The
    attention sees no positions (NoPE). Packed documents start new runs; KV-cache
    decoding carries the current run's length between calls.

    Settings:
      digit_ids: the token ids of the digits (None: the names "0".."9" of the
        vocabulary the experiment harness binds, `Scheme.bind_vocabulary`).
      max_length: rows of the table (ids 0 .. max_length - 1; the reference's 512).
      max_offset: the largest training offset (the reference's ``max_abacus_len`` 100).
      out_of_range: "error" (default) or "clip", for ids past the table.
      init_stddev: standard deviation of the initial table (as the learned scheme).

    References: McLeish et al. 2024, "Transformers Can Do Arithmetic with the Right
    Embeddings" (NeurIPS 2024, arXiv 2405.17399).
    """

    name: ClassVar[str] = "abacus"
    hooks: ClassVar[frozenset[str]] = frozenset({"embed"})
    reads_tokens: ClassVar[bool] = True
    digit_ids: tuple[int, ...] | None = None
    max_length: int = 512
    max_offset: int = 100
    out_of_range: str = "error"
    init_stddev: float = 1.0

    def __post_init__(self) -> None:
        if as_int(self.max_length, "max_length", self.name) < 2:
            raise ValueError(f"abacus: max_length must be >= 2; got {self.max_length}")
        if as_int(self.max_offset, "max_offset", self.name) < 0:
            raise ValueError(f"abacus: max_offset must be >= 0; got {self.max_offset}")
        check_choice(self.out_of_range, "out_of_range", absolute.OUT_OF_RANGE_POLICIES, self.name)
        if not float(self.init_stddev) >= 0:
            raise ValueError(f"abacus: init_stddev must be >= 0; got {self.init_stddev}")
        if self.digit_ids is not None:
            ids = self.digit_ids
            if (
                isinstance(ids, str | int)
                or not ids
                or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids)
            ):
                raise ValueError(
                    f"abacus: digit_ids must be a non-empty list of token ids >= 0 (or None: "
                    f'the vocabulary\'s "0".."9"); got {ids!r}'
                )
            object.__setattr__(self, "digit_ids", tuple(int(i) for i in ids))

    def bind_vocabulary(self, names) -> Scheme:
        if self.digit_ids is not None:
            return self
        ids = tuple(i for i, name in enumerate(names) if name in _DIGIT_NAMES)
        if not ids:
            raise ValueError(
                "abacus: the vocabulary has no digit tokens ('0'..'9'); set digit_ids to the "
                "token ids of the digits"
            )
        return dataclasses.replace(self, digit_ids=ids)

    def assume_positions_below(self, max_position: int) -> Scheme:
        # A digit's id is at most the sequence length plus the offset: when that fits the
        # table, no id can miss it and the run-time check goes ("clip" never clips).
        if int(max_position) + int(self.max_offset) < int(self.max_length):
            return dataclasses.replace(self, out_of_range="clip")
        return self

    def init_embed_params(self, key: jax.Array, *, d_model: int) -> Params:
        table = absolute.init_learned_table(
            key, int(self.max_length), d_model, stddev=float(self.init_stddev)
        )
        return {"table": table}

    def embed(self, params: Params, x: jax.Array, positions: jax.Array) -> jax.Array:
        raise ValueError("abacus reads the tokens, not the positions: call embed_tokens")

    def embed_tokens(self, params, x, tokens, *, carry, segment_ids=None, key=None):
        if self.digit_ids is None:
            raise ValueError(
                "abacus: digit_ids is not set: give the token ids of the digits, or let the "
                "experiment harness bind them from the task's vocabulary"
            )
        is_digit = abacus.digit_mask(tokens, self.digit_ids)  # [B, T]
        places = abacus.digit_places(is_digit, carry=carry, segment_ids=segment_ids)
        offset = 0 if key is None else abacus.sample_abacus_offset(key, int(self.max_offset))
        ids = jnp.where(places > 0, places + offset, 0)  # [B, T]
        pe = absolute.learned_lookup(params["table"], ids, out_of_range=self.out_of_range)
        return x + pe.astype(x.dtype), places[:, -1]


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


@register_scheme
@dataclasses.dataclass(frozen=True)
class TupeScheme(_LearnedTable, Scheme):
    """TUPE: absolute positions untied from the content, as a separate logits term.

    No position embedding on the input; the logit hook adds
    ``(p_i U^Q) . (p_j U^K) / sqrt(2H)`` (`posenc_jax.tupe.tupe_bias`) and the q/k
    hook scales q by ``1/sqrt(2)``, so the content term is ``q.k / sqrt(2H)`` as in
    the paper. The bias reads neither q nor k, so a fused kernel can take it.

    Settings:
      max_length: rows of the position table; positions must be < max_length.
      dim: D_p, size of the position embeddings (None: N * H).
      untie_cls: give the [CLS] token (position 0) learned scalars instead of its
        positional row and column. Off by default: only a model whose inputs start
        with a [CLS] token wants it (the harness's tasks have none, and with randomized
        or packed positions position 0 is not a [CLS] token).
      relative: TUPE-R, add T5's bucketed relative bias.
      num_buckets, max_distance: its buckets (32 and 128 in the paper).
      bidirectional: of the buckets (None: follow the model).
      out_of_range: "error" (default) or "clip", as for the learned scheme.

    Parameters per layer: table [max_length, D_p], u_q, u_k [D_p, N, H]; cls_theta
    [2, N] with untie_cls; relative_table [num_buckets, N] with relative. The paper
    computes the positional term once and shares it across layers; each layer has its
    own here.

    References: Ke, He, Liu 2021, "Rethinking Positional Encoding in Language
    Pre-training" (ICLR 2021, arXiv 2006.15595).
    """

    name: ClassVar[str] = "tupe"
    hooks: ClassVar[frozenset[str]] = frozenset({"rotate", "logit_bias"})
    max_length: int = 512
    dim: int | None = None
    untie_cls: bool = False
    relative: bool = False
    num_buckets: int = 32
    max_distance: int = 128
    bidirectional: bool | None = None
    out_of_range: str = "error"

    def __post_init__(self) -> None:
        self._check_table_settings()
        if self.dim is not None and as_int(self.dim, "dim", "tupe") < 1:
            raise ValueError(f"tupe: dim must be >= 1 (or None: N * H); got {self.dim}")
        if not isinstance(self.untie_cls, bool):
            raise ValueError(f"tupe: untie_cls must be True or False; got {self.untie_cls!r}")
        if self.bidirectional is not None and not isinstance(self.bidirectional, bool):
            raise ValueError(
                f"tupe: bidirectional must be True, False or None; got {self.bidirectional!r}"
            )
        if not isinstance(self.relative, bool):
            raise ValueError(f"tupe: relative must be True or False; got {self.relative!r}")
        check_t5_buckets(self.num_buckets, self.max_distance, "tupe")

    def configure(self, *, causal: bool) -> Scheme:
        if self.bidirectional is None:
            return dataclasses.replace(self, bidirectional=not causal)
        return self

    def with_positions_checked(self, q_positions, k_positions) -> Scheme:
        # One check of every position (a host callback under jit, taken only when one
        # is out of range); the tiles of a blockwise attention then look up with "clip".
        if self.out_of_range == "clip":
            return self
        length = int(self.max_length)
        absolute.check_learned_positions(q_positions, k_positions, length=length, fn="tupe")
        return dataclasses.replace(self, out_of_range="clip")

    def init_attention_params(self, key, *, num_heads, head_dim):
        kt, kq, kk, kc, kr = jax.random.split(key, 5)
        dim = num_heads * head_dim if self.dim is None else int(self.dim)
        table = absolute.init_learned_table(kt, int(self.max_length), dim)
        shape = (dim, num_heads, head_dim)
        params = {
            "table": table,
            "u_q": jax.random.normal(kq, shape) / math.sqrt(dim),
            "u_k": jax.random.normal(kk, shape) / math.sqrt(dim),
        }
        if self.untie_cls:
            params["cls_theta"] = 0.02 * jax.random.normal(kc, (2, num_heads))
        if self.relative:
            params["relative_table"] = 0.02 * jax.random.normal(
                kr, (int(self.num_buckets), num_heads)
            )
        return params

    def rotate(self, params, q, k, q_positions, k_positions):
        return q * jnp.asarray(1.0 / math.sqrt(2.0), q.dtype), k

    def logit_bias(self, params, q, q_positions, k_positions):
        return tupe.tupe_bias(
            q_positions,
            k_positions,
            params["table"],
            params["u_q"],
            params["u_k"],
            cls_theta=params.get("cls_theta") if self.untie_cls else None,
            relative_table=params.get("relative_table") if self.relative else None,
            bidirectional=self.bidirectional is not False,
            num_buckets=int(self.num_buckets),
            max_distance=int(self.max_distance),
            out_of_range=self.out_of_range,
        )
