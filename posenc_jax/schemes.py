"""One registry of positional schemes: name -> settings + hooks.

A scheme fills one or more of the four places where position enters a
transformer (see the design notes):

1. ``embed``      input: ``x + PE(positions)`` (learned, sinusoidal);
2. ``rotate``     q/k transform (RoPE and its scalings);
3. ``logit_bias`` additive logits term, possibly depending on q (ALiBi, T5, Shaw key term);
4. ``value_term`` additive output term from the attention weights (Shaw value term).

Attention code calls the hooks a scheme declares in ``hooks`` and never branches
on scheme names. A scheme is a frozen dataclass of settings; parameters (learned
tables) are plain dicts of arrays created by ``init_embed_params`` /
``init_attention_params`` and passed back to the hooks, so this module stays free
of Flax.

Shape legend: B batch, T query length, S key length, N heads, K key/value heads,
H head dim, D model dim.

Example:
    >>> scheme = make_scheme({"name": "alibi"}).configure(causal=True)
    >>> sorted(scheme.hooks)
    ['logit_bias']
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from posenc_jax import absolute, alibi, relative, rope

Params = dict[str, jax.Array]

__all__ = [
    "SCHEMES",
    "AlibiScheme",
    "LearnedScheme",
    "NoPEScheme",
    "RopeScheme",
    "Scheme",
    "ShawScheme",
    "SinusoidalScheme",
    "T5Scheme",
    "list_schemes",
    "make_scheme",
    "register_scheme",
]


@dataclasses.dataclass(frozen=True)
class Scheme:
    """Base class: a scheme that fills no hook (this is NoPE).

    Subclasses override the hooks they fill and list them in ``hooks``.
    ``needs_q_for_bias`` tells attention that ``logit_bias`` reads q (Shaw), so
    the bias cannot be handed to a fused kernel as a plain additive array.
    """

    name: ClassVar[str] = "base"
    hooks: ClassVar[frozenset[str]] = frozenset()
    needs_q_for_bias: ClassVar[bool] = False

    # -- settings ---------------------------------------------------------
    def configure(self, *, causal: bool) -> Scheme:
        """Resolves settings that depend on the model (e.g. bidirectional = not causal)."""
        del causal
        return self

    def validate(self, *, num_heads: int, head_dim: int, d_model: int) -> None:
        """Raises ValueError when the scheme cannot serve this model shape."""
        del num_heads, head_dim, d_model

    def position_limit(self) -> int | None:
        """One past the largest position the scheme can encode, or None when unbounded."""
        return None

    def with_positions_checked(self, max_position: int) -> Scheme:
        """This scheme for inputs whose positions all lie in ``[0, max_position)``.

        The bound is checked here, once, on the host (the experiment plan does so for
        every length it will run); a scheme whose hooks check positions at run time
        returns a copy without that per-call check. Others return themselves.

        Raises:
          ValueError: ``max_position`` exceeds `position_limit`.
        """
        limit = self.position_limit()
        if limit is not None and max_position > limit:
            raise ValueError(
                f"{self.name}: positions up to {max_position - 1} exceed the limit of "
                f"{limit} positions"
            )
        return self

    def to_config(self) -> dict[str, Any]:
        """The settings as a plain dict accepted by `make_scheme`."""
        out: dict[str, Any] = {"name": self.name}
        out.update(dataclasses.asdict(self))
        return out

    # -- parameters -------------------------------------------------------
    def init_embed_params(self, key: jax.Array, *, d_model: int) -> Params:
        """Parameters of the input hook (once per model)."""
        del key, d_model
        return {}

    def init_attention_params(self, key: jax.Array, *, num_heads: int, head_dim: int) -> Params:
        """Parameters of the attention hooks (once per attention layer)."""
        del key, num_heads, head_dim
        return {}

    # -- hooks ------------------------------------------------------------
    def embed(self, params: Params, x: jax.Array, positions: jax.Array) -> jax.Array:
        """Hook 1. x: [B, T, D], positions: [T] or [B, T] -> [B, T, D]."""
        del params, positions
        return x

    def rotate(
        self,
        params: Params,
        q: jax.Array,
        k: jax.Array,
        q_positions: jax.Array,
        k_positions: jax.Array,
    ) -> tuple[jax.Array, jax.Array]:
        """Hook 2. q: [B, T, N, H], k: [B, S, K, H] -> same shapes."""
        del params, q_positions, k_positions
        return q, k

    def logit_bias(
        self,
        params: Params,
        q: jax.Array,
        q_positions: jax.Array,
        k_positions: jax.Array,
    ) -> jax.Array:
        """Hook 3. Additive term for the scaled logits.

        q: [B, T, N, H] already multiplied by the logit scale (only read when
        ``needs_q_for_bias``); q_positions: [T] or [B, T]; k_positions: [S] or
        [B, S]. Returns an array broadcastable to [B, N, T, S], float32.
        """
        raise NotImplementedError

    def value_term(
        self,
        params: Params,
        weights: jax.Array,
        q_positions: jax.Array,
        k_positions: jax.Array,
    ) -> jax.Array:
        """Hook 4. weights: [B, N, T, S] (softmax output) -> [B, T, N, H] added to outputs."""
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class NoPEScheme(Scheme):
    """No positional encoding: causal masking alone carries order.

    References: Kazemnejad et al. 2023, "The Impact of Positional Encoding on
    Length Generalization in Transformers" (arXiv 2305.19466).
    """

    name: ClassVar[str] = "nope"


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
        if int(self.max_length) < 1:
            raise ValueError(f"learned: max_length must be >= 1; got {self.max_length}")
        if not float(self.init_stddev) >= 0:
            raise ValueError(f"learned: init_stddev must be >= 0; got {self.init_stddev}")
        if self.out_of_range not in ("error", "clip"):
            raise ValueError(
                f"learned: out_of_range must be one of ['error', 'clip']; got {self.out_of_range!r}"
            )

    def position_limit(self) -> int | None:
        return None if self.out_of_range == "clip" else int(self.max_length)

    def with_positions_checked(self, max_position: int) -> Scheme:
        # In range by the check: "clip" then never clips, and skips the host callback
        # that "error" needs under jit (a device-host round trip every step).
        super().with_positions_checked(max_position)
        return dataclasses.replace(self, out_of_range="clip")

    def init_embed_params(self, key: jax.Array, *, d_model: int) -> Params:
        table = absolute.init_learned_table(
            key, int(self.max_length), d_model, stddev=float(self.init_stddev)
        )
        return {"table": table}

    def embed(self, params: Params, x: jax.Array, positions: jax.Array) -> jax.Array:
        pe = absolute.learned_lookup(params["table"], positions, out_of_range=self.out_of_range)
        return x + pe.astype(x.dtype)


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


@dataclasses.dataclass(frozen=True)
class RopeScheme(Scheme):
    """Rotary position embedding on q and k, with optional context-extension scaling.

    Settings:
      base: rotary base theta.
      rotary_fraction: fraction of the head dim that rotates (partial rotary).
      layout: "half" (GPT-NeoX, HF Llama) or "interleaved" (RoFormer, GPT-J).
      scaling: None or a dict in Hugging Face ``rope_scaling`` form
        (``{"rope_type": "yarn", "factor": 4.0, ...}``).

    Dynamic methods (dynamic NTK, LongRoPE) read the current length as
    ``max(k_positions) + 1``, a traced value, so one program serves all lengths.

    References: Su et al. 2021, "RoFormer" (arXiv 2104.09864).
    """

    name: ClassVar[str] = "rope"
    hooks: ClassVar[frozenset[str]] = frozenset({"rotate"})
    base: float = 10000.0
    rotary_fraction: float = 1.0
    layout: str = "half"
    scaling: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.layout not in ("half", "interleaved"):
            raise ValueError(
                f"rope: layout must be one of ['half', 'interleaved']; got {self.layout!r}"
            )
        if self.scaling is not None and not isinstance(self.scaling, Mapping):
            raise ValueError(f"rope: scaling must be a mapping or null; got {self.scaling!r}")
        if self.scaling is not None:
            # Hashable, immutable copy so the dataclass stays a valid static argument.
            object.__setattr__(self, "scaling", _FrozenDict(self.scaling))

    def validate(self, *, num_heads: int, head_dim: int, d_model: int) -> None:
        # rope_frequencies raises a ValueError naming the bad setting.
        rope.rope_frequencies(
            head_dim, base=self.base, rotary_fraction=self.rotary_fraction, scaling=self._scaling()
        )

    def _scaling(self) -> dict[str, Any] | None:
        return None if self.scaling is None else dict(self.scaling)

    def to_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "base": self.base,
            "rotary_fraction": self.rotary_fraction,
            "layout": self.layout,
            "scaling": self._scaling(),
        }

    def rotate(self, params, q, k, q_positions, k_positions):
        seq_len = jnp.max(k_positions) + 1
        inv_freq, factor = rope.rope_frequencies(
            q.shape[-1],
            base=self.base,
            rotary_fraction=self.rotary_fraction,
            scaling=self._scaling(),
            seq_len=seq_len,
        )
        q = rope.apply_rope(
            q, q_positions, inv_freq=inv_freq, attention_factor=factor, layout=self.layout
        )
        k = rope.apply_rope(
            k, k_positions, inv_freq=inv_freq, attention_factor=factor, layout=self.layout
        )
        return q, k


@dataclasses.dataclass(frozen=True)
class AlibiScheme(Scheme):
    """Attention with linear biases: -m_h * distance added to the logits.

    Settings:
      bidirectional: None (follow the model: causal -> False), True or False.

    References: Press, Smith, Lewis 2022, "Train Short, Test Long" (arXiv 2108.12409).
    """

    name: ClassVar[str] = "alibi"
    hooks: ClassVar[frozenset[str]] = frozenset({"logit_bias"})
    bidirectional: bool | None = None

    def configure(self, *, causal: bool) -> Scheme:
        if self.bidirectional is None:
            return dataclasses.replace(self, bidirectional=not causal)
        return self

    def logit_bias(self, params, q, q_positions, k_positions):
        slopes = alibi.alibi_slopes(q.shape[-2])
        return alibi.alibi_bias(
            q_positions, k_positions, slopes, bidirectional=bool(self.bidirectional)
        )


@dataclasses.dataclass(frozen=True)
class T5Scheme(Scheme):
    """T5 bucketed relative bias: a learned scalar per (bucket, head).

    Settings: num_buckets (32), max_distance (128), bidirectional (None: follow the model).

    References: Raffel et al. 2020, "Exploring the Limits of Transfer Learning"
    (arXiv 1910.10683).
    """

    name: ClassVar[str] = "t5"
    hooks: ClassVar[frozenset[str]] = frozenset({"logit_bias"})
    num_buckets: int = 32
    max_distance: int = 128
    bidirectional: bool | None = None

    def __post_init__(self) -> None:
        if int(self.num_buckets) < 2:
            raise ValueError(f"t5: num_buckets must be >= 2; got {self.num_buckets}")
        if int(self.max_distance) < 1:
            raise ValueError(f"t5: max_distance must be >= 1; got {self.max_distance}")

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
        ).astype(jnp.float32)


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
    max_distance: int = 16

    def __post_init__(self) -> None:
        if int(self.max_distance) < 0:
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
        )
        return out.astype(jnp.float32)

    def value_term(self, params, weights, q_positions, k_positions):
        return relative.shaw_value_term(
            weights,
            params["table_v"].astype(weights.dtype),
            q_positions,
            k_positions,
            max_distance=int(self.max_distance),
        )


class _FrozenDict(dict):
    """A hashable read-only dict, so schemes can be static jit arguments."""

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(sorted((k, _hashable(v)) for k, v in self.items())))

    def _readonly(self, *args, **kwargs):
        raise TypeError("scheme settings are read-only; use dataclasses.replace")

    __setitem__ = __delitem__ = update = pop = popitem = clear = setdefault = _readonly  # type: ignore[assignment]


def _hashable(v: Any) -> Any:
    if isinstance(v, list | tuple):
        return tuple(_hashable(x) for x in v)
    if isinstance(v, Mapping):
        return tuple(sorted((k, _hashable(x)) for k, x in v.items()))
    return v


SCHEMES: dict[str, type[Scheme]] = {}


def register_scheme(cls: type[Scheme]) -> type[Scheme]:
    """Adds a Scheme subclass to the registry under ``cls.name``."""
    SCHEMES[cls.name] = cls
    return cls


for _cls in (
    NoPEScheme,
    LearnedScheme,
    SinusoidalScheme,
    RopeScheme,
    AlibiScheme,
    T5Scheme,
    ShawScheme,
):
    register_scheme(_cls)


def list_schemes() -> list[str]:
    """Names accepted by `make_scheme`."""
    return sorted(SCHEMES)


def _settings_keys(cls: type[Scheme]) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def make_scheme(spec: str | Mapping[str, Any] | Scheme) -> Scheme:
    """Builds a scheme from a name, a config dict ``{"name": ..., **settings}`` or a Scheme.

    Unknown names and unknown settings raise a ValueError listing the valid ones.

    Example:
        >>> make_scheme({"name": "rope", "base": 500000.0}).base
        500000.0
    """
    if isinstance(spec, Scheme):
        return spec
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, Mapping) or "name" not in spec:
        raise ValueError(
            f"a scheme is a name or a mapping with a 'name' key; got {spec!r}; "
            f"valid names: {list_schemes()}"
        )
    name = spec["name"]
    if name not in SCHEMES:
        raise ValueError(f"unknown scheme {name!r}; valid schemes: {list_schemes()}")
    cls = SCHEMES[name]
    keys = _settings_keys(cls)
    kwargs = {}
    for k, v in spec.items():
        if k == "name":
            continue
        if k not in keys:
            raise ValueError(
                f"unknown setting {k!r} for scheme {name!r}; valid settings: {sorted(keys)}"
            )
        kwargs[k] = v
    return cls(**kwargs)
