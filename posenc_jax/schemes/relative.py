"""Relative schemes whose logit terms read the content: Shaw et al.'s relative
representations (a key term in the logits, hook 3, and a value term in the outputs,
hook 4), Transformer-XL / XLNet (q and k against sinusoidal R_{i-j}, global u and v)
and DeBERTa's disentangled attention (content-to-position, position-to-content).

References: Shaw, Uszkoreit, Vaswani 2018, "Self-Attention with Relative Position
Representations" (arXiv 1803.02155); Dai et al. 2019, "Transformer-XL" (arXiv
1901.02860); He et al. 2021, "DeBERTa" (arXiv 2006.03654).
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp

from posenc_jax import deberta, relative, transformer_xl
from posenc_jax._checks import as_int, positive_float
from posenc_jax.schemes.base import DISTANCES, Scheme
from posenc_jax.schemes.registry import register_scheme

__all__ = ["DebertaScheme", "ShawScheme", "TransformerXLScheme"]


@register_scheme
@dataclasses.dataclass(frozen=True)
class ShawScheme(Scheme):
    """Relative position representations: clipped key and value embeddings.

    Settings: max_distance K (16 in the paper); tables of 2K+1 rows of size H,
    shared across heads.

    References: Shaw, Uszkoreit, Vaswani 2018, "Self-Attention with Relative
    Position Representations" (arXiv 1803.02155).
    """

    name: ClassVar[str] = "shaw"
    hooks: ClassVar[frozenset[str]] = frozenset({"logit_bias", "value_term"})
    needs_q_for_bias: ClassVar[bool] = True
    accepts_distances: ClassVar[bool] = True
    max_distance: int = 16

    def __post_init__(self) -> None:
        if as_int(self.max_distance, "max_distance", "shaw") < 0:
            raise ValueError(f"shaw: max_distance must be >= 0; got {self.max_distance}")

    def init_attention_params(self, key, *, num_heads, head_dim):
        kk, kv = jax.random.split(key)
        rows = 2 * int(self.max_distance) + 1
        std = 1.0 / math.sqrt(head_dim)
        return {
            "table_k": std * jax.random.normal(kk, (rows, head_dim)),
            "table_v": std * jax.random.normal(kv, (rows, head_dim)),
        }

    def logit_bias(self, params, q, q_positions, k_positions):
        out = relative.shaw_key_logits(
            q,
            params["table_k"].astype(q.dtype),
            q_positions,
            k_positions,
            max_distance=int(self.max_distance),
            distances=params.get(DISTANCES),
        )
        return out.astype(jnp.float32)

    def value_term(self, params, weights, q_positions, k_positions):
        return relative.shaw_value_term(
            weights,
            params["table_v"].astype(weights.dtype),
            q_positions,
            k_positions,
            max_distance=int(self.max_distance),
            distances=params.get(DISTANCES),
        )


@register_scheme
@dataclasses.dataclass(frozen=True)
class TransformerXLScheme(Scheme):
    """Transformer-XL / XLNet relative attention: q.k + (q + v).W_R R_{i-j} + u.k in the logits.

    The logit hook adds terms (b), (c), (d) of the paper to the content term (a):
    ``(q_i + v) . W_R R_{i-j}`` by `posenc_jax.transformer_xl.xl_relative_logits`
    and ``u . k_j`` from the keys attention passes (``needs_k_for_bias``). All four
    are scaled by the logit scale as in the paper: q arrives scaled, and the terms of
    u and v are divided by ``sqrt(H)``, the default scale, so u and v keep the paper's
    units. No setting for the direction: causal models mask the keys after the query,
    bidirectional ones (XLNet) read ``R_{i-j}`` for negative distances too.

    Settings:
      dim: D_r, size of the sinusoidal R (None: N * H, the paper's d_model); even.
      base: wavelength base of R (10000).
      clamp_len: distances beyond it read ``R_{+-clamp_len}`` (the authors' option,
        1000 in the WikiText-103 model; None: no clamp).

    Parameters per layer: w_r [D_r, N, H], u [N, H], v [N, H] (the paper shares u and
    v across layers; each layer has its own here).

    References: Dai et al. 2019, "Transformer-XL: Attentive Language Models Beyond a
    Fixed-Length Context", section 3.3 (arXiv 1901.02860); Yang et al. 2019, "XLNet"
    (arXiv 1906.08237).
    """

    name: ClassVar[str] = "xl"
    hooks: ClassVar[frozenset[str]] = frozenset({"logit_bias"})
    needs_q_for_bias: ClassVar[bool] = True
    needs_k_for_bias: ClassVar[bool] = True
    accepts_distances: ClassVar[bool] = True
    distances_by_default: ClassVar[bool] = True
    dim: int | None = None
    base: float = 10000.0
    clamp_len: int | None = None

    def __post_init__(self) -> None:
        if self.dim is not None:
            d = as_int(self.dim, "dim", "xl")
            if d < 2 or d % 2:
                raise ValueError(f"xl: dim must be even and >= 2 (or None: N * H); got dim={d}")
        positive_float(self.base, "base", "xl")
        if self.clamp_len is not None and as_int(self.clamp_len, "clamp_len", "xl") < 0:
            raise ValueError(f"xl: clamp_len must be >= 0 (or None); got {self.clamp_len}")

    def _dim(self, num_heads: int, head_dim: int) -> int:
        return num_heads * head_dim if self.dim is None else int(self.dim)

    def validate(self, *, num_heads, head_dim, d_model):
        d = self._dim(num_heads, head_dim)
        if d % 2:
            raise ValueError(
                f"xl needs an even size of R; dim=None gives N * H = {num_heads} * {head_dim} "
                f"= {d}: pass an even dim"
            )

    def init_attention_params(self, key, *, num_heads, head_dim):
        kr, ku, kv = jax.random.split(key, 3)
        d = self._dim(num_heads, head_dim)
        # R has D_r / 2 (sin, cos) pairs, |R|^2 = D_r / 2: W_R R starts with variance 1/2.
        return {
            "w_r": jax.random.normal(kr, (d, num_heads, head_dim)) / math.sqrt(d),
            "u": 0.02 * jax.random.normal(ku, (num_heads, head_dim)),  # the authors' init_std
            "v": 0.02 * jax.random.normal(kv, (num_heads, head_dim)),
        }

    def logit_bias(self, params, q, q_positions, k_positions, *, k):
        unit = 1.0 / math.sqrt(q.shape[-1])  # the paper's 1/sqrt(d) for the terms of u and v
        qv = q + (unit * params["v"]).astype(q.dtype)  # q already scaled
        position = transformer_xl.xl_relative_logits(
            qv,
            params["w_r"].astype(q.dtype),
            q_positions,
            k_positions,
            base=self.base,
            clamp_len=self.clamp_len,
            distances=params.get(DISTANCES),
        )  # [B, N, T, S]
        content = jnp.einsum(
            "nh,bsnh->bns",
            (unit * params["u"]).astype(k.dtype),
            k,
            preferred_element_type=jnp.float32,
        )  # [B, N, S]
        return position + content[:, :, None, :]


@register_scheme
@dataclasses.dataclass(frozen=True)
class DebertaScheme(Scheme):
    """DeBERTa's disentangled attention: content-to-position and position-to-content terms.

    Logits ``(q.k + q.K^r[delta(i,j)] + k.Q^r[delta(i,j)]) / sqrt(c H)`` with
    ``c = 1 + (number of extra terms)``: the q/k hook scales q by ``1/sqrt(c)`` (so the
    attention's ``1/sqrt(H)`` becomes ``1/sqrt(c H)``, for q.k and the
    content-to-position term, which reads the scaled q), and the logit hook adds
    `posenc_jax.deberta.deberta_c2p` and `posenc_jax.deberta.deberta_p2c` (the
    latter from the keys, ``needs_k_for_bias``, divided by ``sqrt(c H)``).

    Settings:
      position_buckets: log buckets beyond ``position_buckets // 2`` (256 in
        DeBERTa-v2/v3), or None for plain clipping (DeBERTa v1).
      max_relative_positions: 512; with buckets, ``|i - j| = max_relative_positions - 1``
        reaches the last bucket; without, the clipping distance.
      c2p, p2c: which terms to add (both in DeBERTa; ``pos_att_type``).

    Parameters per layer: pos_key ``K^r`` and pos_query ``Q^r``, each ``[2 span, N,
    H]`` (span = position_buckets, or max_relative_positions without buckets): the
    projected tables ``P W_{k,r}``, ``P W_{q,r}``. DeBERTa shares P across layers, and
    v2/v3 project it with the layer's own content projections (``share_att_key``); the
    q/k projections belong to the attention module, so each layer learns its tables
    here (the same family of functions when D >= N H).

    References: He et al. 2021, "DeBERTa: Decoding-enhanced BERT with Disentangled
    Attention", section 3.1 (arXiv 2006.03654); Hugging Face transformers DebertaV2.
    """

    name: ClassVar[str] = "deberta"
    hooks: ClassVar[frozenset[str]] = frozenset({"rotate", "logit_bias"})
    needs_q_for_bias: ClassVar[bool] = True
    needs_k_for_bias: ClassVar[bool] = True
    accepts_distances: ClassVar[bool] = True
    position_buckets: int | None = 256
    max_relative_positions: int = 512
    c2p: bool = True
    p2c: bool = True

    def __post_init__(self) -> None:
        for name in ("c2p", "p2c"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(
                    f"deberta: {name} must be True or False; got {getattr(self, name)!r}"
                )
        self.span()  # validates the bucket settings

    def span(self) -> int:
        """Half the rows of each table (`posenc_jax.deberta.deberta_span`)."""
        return deberta.deberta_span(
            position_buckets=self.position_buckets,
            max_relative_positions=self.max_relative_positions,
        )

    def scale_factor(self) -> int:
        """``1 + (number of extra terms)``: logits are divided by ``sqrt(scale_factor * H)``."""
        return 1 + int(self.c2p) + int(self.p2c)

    def _buckets(self) -> dict:
        return {
            "position_buckets": self.position_buckets,
            "max_relative_positions": self.max_relative_positions,
        }

    def init_attention_params(self, key, *, num_heads, head_dim):
        kk, kq = jax.random.split(key)
        shape = (2 * self.span(), num_heads, head_dim)
        std = 1.0 / math.sqrt(head_dim)
        params = {}
        if self.c2p:
            params["pos_key"] = std * jax.random.normal(kk, shape)
        if self.p2c:
            params["pos_query"] = std * jax.random.normal(kq, shape)
        return params

    def rotate(self, params, q, k, q_positions, k_positions):
        return q * jnp.asarray(1.0 / math.sqrt(self.scale_factor()), q.dtype), k

    def logit_bias(self, params, q, q_positions, k_positions, *, k):
        out = jnp.zeros((), jnp.float32)
        if not (self.c2p or self.p2c):
            return out
        buckets = self._buckets()
        # One index for both terms: they read the same row of their tables.
        index = deberta.deberta_relative_index(
            q_positions, k_positions, distances=params.get(DISTANCES), **buckets
        )
        args = (q_positions, k_positions)
        if self.c2p:  # q arrives scaled by 1/sqrt(c H)
            table = params["pos_key"].astype(q.dtype)
            out = out + deberta.deberta_c2p(q, table, *args, index=index, **buckets)
        if self.p2c:
            unit = 1.0 / math.sqrt(self.scale_factor() * k.shape[-1])
            table = (unit * params["pos_query"]).astype(k.dtype)
            out = out + deberta.deberta_p2c(k, table, *args, index=index, **buckets)
        return out
