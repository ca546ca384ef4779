"""The scheme base class: settings, parameters, the four hooks and the scheme's variants.

A scheme fills one or more of the four places where position enters a
transformer (see the design notes):

1. ``embed``      input: ``x + PE(positions)`` (learned, sinusoidal);
2. ``rotate``     q/k transform (RoPE and its scalings, xPos);
3. ``logit_bias`` additive logits term, possibly depending on q and k (ALiBi, T5, Shaw key
   term, Transformer-XL, DeBERTa);
4. ``value_term`` additive output term from the attention weights (Shaw value term).

A scheme whose logit term depends on the tokens themselves (FoX's forget gates) also
fills ``token_state``: from the layer input x it computes a per-token, per-head state
(carried across KV-cache calls), and attention hands the query and key states to
``logit_bias``.

Attention code calls the hooks a scheme declares in ``hooks`` and never branches
on scheme names. A scheme is a frozen dataclass of settings; parameters (learned
tables) are plain dicts of arrays created by ``init_embed_params`` /
``init_attention_params`` and passed back to the hooks, so this layer stays free
of Flax.

A scheme also owns its **variants**: the training-free context extensions it
offers (``context_extensions``, built by `Scheme.extend_context` for a training
and an evaluation length) and the copy that skips run-time position checks once
the host has checked them (`Scheme.assume_positions_below`) or once one call has
checked its positions (`Scheme.with_positions_checked`). The experiment
harness asks the scheme for these and never tests its name.

Shape legend: B batch, T query length, S key length, N heads, K key/value heads,
H head dim, D model dim.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import jax

Params = dict[str, jax.Array]

__all__ = ["DISTANCES", "FrozenDict", "Params", "Scheme", "thaw"]

DISTANCES = "distances"
"""The key of a call's distance table in the hook params of a scheme with
``accepts_distances`` (set per call by the attention layer, never a learned parameter)."""


@dataclasses.dataclass(frozen=True)
class Scheme:
    """Base class: a scheme that fills no hook (this is NoPE).

    Subclasses override the hooks they fill and list them in ``hooks``.
    ``needs_q_for_bias`` tells attention that ``logit_bias`` reads q (Shaw), and
    ``needs_k_for_bias`` that it reads the keys (Transformer-XL's ``u . k_j``,
    DeBERTa's position-to-content term), so attention passes them as ``k=``; either
    way the bias cannot be handed to a fused kernel as a plain additive array.
    ``context_extensions`` names the methods `extend_context` accepts. A scheme with
    the ``token_state`` hook computes a per-token state from the layer input
    (`token_state`) and its ``logit_bias`` receives the query and key states as the
    keywords ``q_state`` [B, T, N] and ``k_state`` [B, S, N]. ``needs_mask_for_bias``:
    ``logit_bias`` also receives ``allowed`` [B, 1, T, S] bool, the keys each query may
    attend (CoPE counts only those). ``tiles`` False: the logit term of a query and key
    reads keys outside their blockwise tile (CoPE), so only the dense path serves it.
    ``replaces_content_logits``: the logit hook returns the whole logit, q . k
    included (windowed RoPE: near and far rotations), so attention adds no q . k of
    its own. ``causal_only``: why the scheme serves causal attention only (None: both);
    `configure` then refuses ``causal=False`` with that reason. ``normalization`` is
    "softmax", or "stick_breaking" for a scheme whose weights break a stick from
    the nearest key back (`posenc_jax.stick_breaking`); such a scheme may fill the
    ``remainder`` hook, an output term from the stick no key took.
    ``accepts_distances``: the logit term is a function of ``k - q`` alone, so it can
    read a table of randomized distances in its place (Ruoss et al.'s Toeplitz
    randomization, `posenc_jax.random_distances`): a call that has one puts it in the
    hook's params under `DISTANCES` (``[W]`` or ``[B, W]``), and the hooks read
    ``params.get(DISTANCES)``. ``distances_by_default``: the reference randomizes this
    scheme that way (ALiBi, Transformer-XL), so the harness does unless told otherwise.
    """

    name: ClassVar[str] = "base"
    hooks: ClassVar[frozenset[str]] = frozenset()
    needs_q_for_bias: ClassVar[bool] = False
    needs_k_for_bias: ClassVar[bool] = False
    needs_mask_for_bias: ClassVar[bool] = False
    replaces_content_logits: ClassVar[bool] = False
    normalization: ClassVar[str] = "softmax"
    tiles: ClassVar[bool] = True
    causal_only: ClassVar[str | None] = None
    context_extensions: ClassVar[tuple[str, ...]] = ()
    reads_tokens: ClassVar[bool] = False
    accepts_distances: ClassVar[bool] = False
    distances_by_default: ClassVar[bool] = False

    # -- settings ---------------------------------------------------------
    def configure(self, *, causal: bool) -> Scheme:
        """Resolves settings that depend on the model (e.g. bidirectional = not causal).

        Raises:
          ValueError: ``causal=False`` for a scheme whose ``causal_only`` gives the
            reason it serves causal attention only.
        """
        if self.causal_only is not None and not causal:
            raise ValueError(
                f"{self.name} is causal only ({self.causal_only}); use it in TransformerLM "
                "or a causal MultiHeadAttention"
            )
        return self

    def bind_vocabulary(self, names: Sequence[str]) -> Scheme:
        """Resolves settings that depend on the vocabulary (``names[i]``: token i's name),
        for a scheme that reads the tokens (e.g. Abacus finds the digits); the others
        return themselves."""
        del names
        return self

    def validate(self, *, num_heads: int, head_dim: int, d_model: int) -> None:
        """Raises ValueError when the scheme cannot serve this model shape."""
        del num_heads, head_dim, d_model

    def rotated_dim(self, head_dim: int) -> int:
        """The last dim of q and k after the q/k hook (PoPE doubles it; v keeps head_dim)."""
        return head_dim

    def position_limit(self) -> int | None:
        """One past the largest position the scheme can encode, or None when unbounded."""
        return None

    def assume_positions_below(self, max_position: int) -> Scheme:
        """Checks now, on the host, that ``max_position`` positions fit; returns the scheme
        without its per-call position check.

        The experiment plan calls this once for the longest sequence it will run. A
        scheme whose hooks check positions at run time (a host callback under jit)
        returns a copy that skips that check; the others return themselves.

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

    def with_positions_checked(self, q_positions: jax.Array, k_positions: jax.Array) -> Scheme:
        """Checks one call's positions now; returns the scheme whose hooks skip that check.

        For a caller that calls the hooks many times on parts of one call's positions
        (blockwise attention, once per tile): a scheme whose logit hook checks
        positions at run time (a host callback under jit) checks them all here, once,
        and returns a copy without the per-call check. The others return themselves.

        Args:
          q_positions: [T] or [B, T]; k_positions: [S] or [B, S] (all of the call's).

        Raises:
          ValueError: (concrete positions) a position the scheme cannot encode;
            traced ones fail when the program runs, as the hook's own check would.
        """
        del q_positions, k_positions
        return self

    def extend_context(self, method: str, *, train_length: int, eval_length: int) -> Scheme:
        """This scheme with a training-free context extension for one evaluation length.

        Args:
          method: one of ``context_extensions``.
          train_length: sequence length (positions) the model was trained at.
          eval_length: sequence length it is evaluated or fine-tuned at.

        Raises:
          ValueError: ``method`` is not one of ``context_extensions`` (the message
            lists them).
        """
        del train_length, eval_length
        valid = list(self.context_extensions)
        raise ValueError(
            f"{self.name} offers no context extension {method!r}; valid choices: {valid}"
        )

    def to_config(self) -> dict[str, Any]:
        """The settings as a plain dict accepted by `make_scheme`."""
        out: dict[str, Any] = {"name": self.name}
        for f in dataclasses.fields(self):
            out[f.name] = thaw(getattr(self, f.name))
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

    def init_token_params(self, key: jax.Array, *, d_model: int, num_heads: int) -> Params:
        """Parameters of the ``token_state`` hook (once per attention layer)."""
        del key, d_model, num_heads
        return {}

    # -- hooks ------------------------------------------------------------
    def embed(self, params: Params, x: jax.Array, positions: jax.Array) -> jax.Array:
        """Hook 1. x: [B, T, D], positions: [T] or [B, T] -> [B, T, D]."""
        del params, positions
        return x

    def embed_tokens(
        self,
        params: Params,
        x: jax.Array,
        tokens: jax.Array,
        *,
        carry: jax.Array,
        segment_ids: jax.Array | None = None,
        key: jax.Array | None = None,
    ) -> tuple[jax.Array, jax.Array]:
        """Hook 1 of a scheme that reads the tokens (``reads_tokens``), in place of `embed`.

        x: [B, T, D], tokens: [B, T], carry: [B] int (what the scheme keeps between
        KV-cache decoding calls; zeros for a whole sequence), segment_ids: [B, T] or None,
        key: a PRNG key while training (None at evaluation) -> ([B, T, D], new carry [B]).
        """
        raise NotImplementedError(f"{self.name} does not read the tokens")

    def rotate(
        self,
        params: Params,
        q: jax.Array,
        k: jax.Array,
        q_positions: jax.Array,
        k_positions: jax.Array,
    ) -> tuple[jax.Array, jax.Array]:
        """Hook 2. q: [B, T, N, H], k: [B, S, K, H] -> the same, with the last dim
        ``rotated_dim(H)`` (H for every scheme but PoPE)."""
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
        [B, S]. A scheme with ``needs_k_for_bias`` also receives the keys as the
        keyword ``k``: [B, S, N, H], rotated, key heads repeated to the N query heads,
        not scaled (on a blockwise tile, the tile's keys); the others are called
        without it. Returns an array broadcastable to [B, N, T, S], float32.
        """
        raise NotImplementedError

    def token_state(
        self,
        params: Params,
        x: jax.Array,
        carry: jax.Array,
        *,
        key_mask: jax.Array | None = None,
    ) -> tuple[jax.Array, jax.Array]:
        """Hook of data-dependent schemes: per-token states from the layer input.

        x: [B, T, D] (the attention layer's input); carry: [B, N] float32, the state
        after the tokens before these (zeros at the start, the KV cache's carry when
        decoding); key_mask: [B, T] bool (True = real token) or None. Returns the
        states [B, T, N] float32 of these tokens and the carry [B, N] after them.
        Attention passes the states of the queries and keys to ``logit_bias`` as
        ``q_state`` and ``k_state``.
        """
        raise NotImplementedError

    def remainder_term(self, params: Params, remainder: jax.Array) -> jax.Array:
        """Hook of stick-breaking schemes: remainder [B, N, T] -> [B, T, N, H] added to outputs."""
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


class FrozenDict(dict):
    """A hashable read-only dict, so schemes with mapping settings stay static jit arguments."""

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


def thaw(value: Any) -> Any:
    """A plain (YAML/JSON-ready) copy: FrozenDicts become dicts, recursively."""
    if isinstance(value, FrozenDict):
        return {k: thaw(v) for k, v in value.items()}
    return value
