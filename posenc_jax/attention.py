"""Attention with position hooks: dense, fused (jax.nn.dot_product_attention) and blockwise.

Every path computes the same function::

    q, k = scheme.rotate(q, k)                         (done by the caller, before any cache)
    logits = (q * scale) . k + scheme.logit_bias(...) + bias
    w = softmax(where(allowed, logits, MASK_VALUE))    allowed = causal & key_mask & segments & mask
    out = w . v + scheme.value_term(w)

with ``causal`` meaning ``k_position <= q_position`` on the explicit positions, so
KV-cache offsets, left padding and randomized positions need no special case, and
``segments`` meaning equal segment ids (``segment_ids [B, T]`` of the queries,
``kv_segment_ids [B, S]`` of the keys), so packed documents whose positions
restart at 0 never see each other. A row with no allowed key returns zeros
(finite outputs and gradients). A scheme with the ``token_state`` hook (FoX) reads
per-token states of the queries and keys, ``q_state [B, T, N]`` and ``k_state [B, S, N]``,
which the caller computes from the layer input (`posenc_jax.nn.MultiHeadAttention` does).

`attention_weights` is the one implementation of the first three lines (the
[B, N, T, S] weights w); `dense_attention` multiplies them by v, the blockwise
path builds the same masked logits tile by tile (online softmax, no [T, S] array),
and `attend` dispatches between the paths as an `AttentionConfig` says.

Shape legend: B batch, T query length, S key length, N query heads, K key/value
heads (N % K == 0, grouped-query attention), H head dim.

References: Vaswani et al. 2017 (arXiv 1706.03762); Rabe & Staats 2021,
"Self-attention Does Not Need O(n^2) Memory" (arXiv 2112.05682); Dao et al. 2022,
"FlashAttention" (arXiv 2205.14135).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import operator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from posenc_jax import stick_breaking
from posenc_jax._checks import check_heads
from posenc_jax.schemes import Params, Scheme, make_scheme

__all__ = [
    "DENSE_BACKWARDS",
    "IMPLEMENTATIONS",
    "MASK_VALUE",
    "AttentionConfig",
    "ImplementationChoice",
    "attend",
    "attention_weights",
    "blockwise_attention",
    "dense_attention",
    "explain_implementation",
    "fused_attention",
    "select_implementation",
]

# Masked logits are *replaced* (not offset) by this value, so it never overflows;
# it stays many orders of magnitude below any ALiBi/T5 bias (|bias| <= slope * 2^31).
MASK_VALUE = stick_breaking.MASK_VALUE  # -1e30; stick-breaking weights rely on it too

IMPLEMENTATIONS = ("auto", "dense", "cudnn", "blockwise")
"""Choices of `AttentionConfig.implementation` (see `attend`)."""

DENSE_BACKWARDS = ("manual", "autodiff")
"""Choices of `dense_attention`'s ``backward`` (and `AttentionConfig.dense_backward`)."""


@dataclasses.dataclass(frozen=True)
class AttentionConfig:
    """How attention is computed (never what: every path computes the same function).

    Example:
        >>> AttentionConfig(blockwise_threshold=2048).implementation
        'auto'

    Attributes:
      implementation: "auto" (per call, see `select_implementation`), "dense"
        (`dense_attention`), "cudnn" (`fused_attention` with cuDNN) or "blockwise"
        (`blockwise_attention`).
      blockwise_threshold: with "auto", lengths above it use the blockwise path
        (None: never).
      block_size: query and key tile size of the blockwise path.
      low_precision_bias: with "auto", let the cuDNN path take a scheme's logit
        bias (ALiBi, T5, KERPLE, FIRE) in the bfloat16/float16 activation dtype,
        as `fused_attention` hands it to the kernel: faster, but the bias is
        rounded (step 0.0625 at |bias| 8-16 in bfloat16). False (default): such
        schemes take the dense or blockwise path, which keep the bias in float32.
      dense_backward: the dense path's gradient, "manual" (default: a hand-written
        backward with fewer passes over the [B, N, T, S] arrays; no forward-mode
        autodiff) or "autodiff" (JAX differentiates the forward; `jax.jvp` works).
        See `dense_attention`.
    """

    implementation: str = "auto"
    blockwise_threshold: int | None = 4096
    block_size: int = 512
    low_precision_bias: bool = False
    dense_backward: str = "manual"

    def __post_init__(self) -> None:
        if self.implementation not in IMPLEMENTATIONS:
            raise ValueError(
                f"AttentionConfig: implementation must be one of {list(IMPLEMENTATIONS)}; "
                f"got {self.implementation!r}"
            )
        threshold = self.blockwise_threshold
        if threshold is not None and (not _is_int(threshold) or threshold < 1):
            raise ValueError(
                "AttentionConfig: blockwise_threshold must be an int >= 1 or None (never "
                f"blockwise); got {threshold!r}"
            )
        if not _is_int(self.block_size) or self.block_size < 1:
            raise ValueError(
                f"AttentionConfig: block_size must be an int >= 1; got {self.block_size!r}"
            )
        if not isinstance(self.low_precision_bias, bool):
            raise ValueError(
                "AttentionConfig: low_precision_bias must be True or False; got "
                f"{self.low_precision_bias!r}"
            )
        if self.dense_backward not in DENSE_BACKWARDS:
            raise ValueError(
                f"AttentionConfig: dense_backward must be one of {list(DENSE_BACKWARDS)}; "
                f"got {self.dense_backward!r}"
            )


def _is_int(value: object) -> bool:
    if isinstance(value, bool):
        return False
    try:
        operator.index(value)
    except TypeError:
        return False
    return True


def _as_batched_positions(positions: jax.Array, batch: int, name: str = "positions") -> jax.Array:
    """[L] or [B, L] -> [B, L] int32/float."""
    positions = jnp.asarray(positions)
    if positions.ndim == 1:
        positions = positions[None, :]
    if positions.ndim != 2:
        raise ValueError(f"{name} must be [L] or [B, L]; got shape {positions.shape}")
    return jnp.broadcast_to(positions, (batch, positions.shape[-1]))


class _Segments(NamedTuple):
    """Segment ids of the queries [B, T] and of the keys [B, S] (equal ids attend)."""

    q: jax.Array
    k: jax.Array


def _segments(
    segment_ids: jax.Array | None,
    kv_segment_ids: jax.Array | None,
    *,
    batch: int,
    q_len: int,
    k_len: int,
) -> _Segments | None:
    """Checked, batched segment ids, or None when the call has none.

    segment_ids: [T] or [B, T] int (queries); kv_segment_ids: [S] or [B, S] int
    (keys), by default ``segment_ids`` (self-attention, T == S).
    """
    if segment_ids is None:
        if kv_segment_ids is not None:
            raise ValueError("kv_segment_ids needs segment_ids (the query segment ids [B, T]) too")
        return None
    if kv_segment_ids is None:
        if q_len != k_len:
            raise ValueError(
                "segment_ids alone serve self-attention (T == S); got T="
                f"{q_len}, S={k_len}: pass kv_segment_ids [B, S] for the keys"
            )
        kv_segment_ids = segment_ids
    out = []
    for name, ids, length in (
        ("segment_ids", segment_ids, q_len),
        ("kv_segment_ids", kv_segment_ids, k_len),
    ):
        ids = jnp.asarray(ids)
        shape_ok = ids.shape in ((length,), (batch, length)) or (
            ids.ndim == 2 and ids.shape[0] == 1 and ids.shape[1] == length
        )
        if not jnp.issubdtype(ids.dtype, jnp.integer) or not shape_ok:
            raise ValueError(
                f"{name} must be integer ids of shape [{length}] or [B={batch}, {length}]; "
                f"got shape {ids.shape} and dtype {ids.dtype}"
            )
        out.append(_as_batched_positions(ids, batch, name))
    return _Segments(*out)


class _States(NamedTuple):
    """Per-token states of the queries [B, T, N] and keys [B, S, N] (``token_state`` hook)."""

    q: jax.Array
    k: jax.Array


def _states(
    scheme: Scheme,
    q_state: jax.Array | None,
    k_state: jax.Array | None,
    *,
    batch: int,
    q_len: int,
    k_len: int,
    heads: int,
) -> _States | None:
    """Checked per-token states when the scheme reads them, else None.

    Raises:
      ValueError: the scheme has the ``token_state`` hook and a state is missing or
        has the wrong shape (the message names the argument and the shape wanted).
    """
    if "token_state" not in scheme.hooks:
        return None
    out = []
    for name, state, length in (("q_state", q_state, q_len), ("k_state", k_state, k_len)):
        want = (batch, length, heads)
        if state is None:
            raise ValueError(
                f"scheme {scheme.name!r} computes its logit term from per-token states: pass "
                f"{name} of shape {list(want)} (MultiHeadAttention computes them from its "
                "input with scheme.token_state)"
            )
        state = jnp.asarray(state)
        if state.ndim != 3 or state.shape[1:] != want[1:] or state.shape[0] not in (1, batch):
            raise ValueError(f"{name} must have shape {list(want)}; got {list(state.shape)}")
        out.append(jnp.broadcast_to(state.astype(jnp.float32), want))
    return _States(*out)


def _reads_q_or_k(scheme: Scheme) -> bool:
    """The scheme's logit term reads q, k or the tokens, it adds a value term, or its
    weights are not a softmax: a fused softmax kernel cannot take it."""
    return (
        scheme.needs_q_for_bias
        or scheme.needs_k_for_bias
        or bool({"value_term", "token_state", "remainder"} & scheme.hooks)
        or scheme.normalization != "softmax"
    )


def _sink(sink_logits: jax.Array, num_heads: int) -> jax.Array:
    """Checked sink logits: [N] float32, one per query head."""
    sink = jnp.asarray(sink_logits, jnp.float32)
    if sink.shape != (num_heads,):
        raise ValueError(
            f"sink_logits must have shape [N={num_heads}] (one per query head); got "
            f"{list(sink.shape)}"
        )
    return sink


def _repeat_kv(x: jax.Array, num_heads: int) -> jax.Array:
    """[B, S, K, H] -> [B, S, N, H] for grouped-query attention."""
    num_heads, kv_heads = check_heads(num_heads, x.shape[-2], "attention")
    return jnp.repeat(x, num_heads // kv_heads, axis=-2) if kv_heads != num_heads else x


def _allowed(
    q_pos: jax.Array,
    k_pos: jax.Array,
    *,
    causal: bool,
    key_mask: jax.Array | None,
    segments: _Segments | None = None,
    sliding_window: int | None = None,
    attention_chunk: int | None = None,
    sink_tokens: int = 0,
) -> jax.Array:
    """Boolean [B, 1, T, S] from positions ([B, T], [B, S]), key_mask [B, S], segments, a
    sliding window (``|q_pos - k_pos| < sliding_window``) and chunks (``q_pos //
    attention_chunk == k_pos // attention_chunk``)."""
    allowed = jnp.ones((q_pos.shape[0], 1, q_pos.shape[1], k_pos.shape[1]), dtype=bool)
    if causal:
        allowed = allowed & (k_pos[:, None, None, :] <= q_pos[:, None, :, None])
    if sliding_window is not None:
        distance = q_pos[:, None, :, None] - k_pos[:, None, None, :]
        near = jnp.abs(distance) < sliding_window
        if sink_tokens:  # StreamingLLM: the first tokens stay visible
            near = near | (k_pos < sink_tokens)[:, None, None, :]
        allowed = allowed & near
    if attention_chunk is not None:
        same = (q_pos // attention_chunk)[:, None, :, None] == (k_pos // attention_chunk)[
            :, None, None, :
        ]
        allowed = allowed & same
    if key_mask is not None:
        allowed = allowed & key_mask[:, None, None, :].astype(bool)
    if segments is not None:
        allowed = allowed & (segments.q[:, None, :, None] == segments.k[:, None, None, :])
    return allowed


class _Prepared(NamedTuple):
    """A call's inputs as every path reads them (see `_prepared`)."""

    qs: jax.Array  # [B, T, N, H], scaled
    k: jax.Array  # [B, S, N, H], key heads repeated
    q_pos: jax.Array  # [B, T]
    k_pos: jax.Array  # [B, S]
    segments: _Segments | None
    states: _States | None


def _prepared(
    q: jax.Array,
    k: jax.Array,
    *,
    scheme: Scheme,
    q_positions: jax.Array,
    k_positions: jax.Array,
    segment_ids: jax.Array | None,
    kv_segment_ids: jax.Array | None,
    q_state: jax.Array | None,
    k_state: jax.Array | None,
    scale: float | None,
) -> _Prepared:
    """q scaled (default 1/sqrt(H)), k's heads repeated to q's, positions [B, T] and
    [B, S], segments and token states checked."""
    b, t, n, h = q.shape
    k = _repeat_kv(k, n)  # [B, S, N, H]
    s_len = k.shape[1]
    return _Prepared(
        q * jnp.asarray(1.0 / math.sqrt(h) if scale is None else scale, q.dtype),
        k,
        _as_batched_positions(q_positions, b),
        _as_batched_positions(k_positions, b),
        _segments(segment_ids, kv_segment_ids, batch=b, q_len=t, k_len=s_len),
        _states(scheme, q_state, k_state, batch=b, q_len=t, k_len=s_len, heads=n),
    )


def _mask_and_terms(
    qs: jax.Array,
    k: jax.Array,
    q_pos: jax.Array,
    k_pos: jax.Array,
    *,
    scheme: Scheme,
    params: Params,
    causal: bool,
    key_mask: jax.Array | None,
    segments: _Segments | None,
    states: _States | None,
    mask: jax.Array | None,
    bias: jax.Array | None,
    sliding_window: int | None,
    attention_chunk: int | None,
    sink_tokens: int,
) -> tuple[jax.Array, list[jax.Array]]:
    """allowed [B, 1, T, S] (or [B, N, T, S] with a per-head ``mask``) and the terms added
    to q . k before the mask: the scheme's logit bias and ``bias`` (float32, each
    broadcastable to [B, N, T, S]), which `_masked_logits` adds in order."""
    allowed = _allowed(
        q_pos,
        k_pos,
        causal=causal,
        key_mask=key_mask,
        segments=segments,
        sliding_window=sliding_window,
        attention_chunk=attention_chunk,
        sink_tokens=sink_tokens,
    )
    if mask is not None:
        allowed = allowed & mask.astype(bool)
    terms = []
    if "logit_bias" in scheme.hooks:
        keys = {"k": k} if scheme.needs_k_for_bias else {}  # u . k_j, DeBERTa's p2c
        if states is not None:
            keys.update(q_state=states.q, k_state=states.k)  # FoX's cumulative forget gates
        if scheme.needs_mask_for_bias:
            keys.update(allowed=allowed)  # CoPE counts only the keys a query may attend
        terms.append(scheme.logit_bias(params, qs, q_pos, k_pos, **keys))
    if bias is not None:
        terms.append(bias.astype(jnp.float32))
    return allowed, terms


def _masked_logits(
    qs: jax.Array,
    k: jax.Array,
    q_pos: jax.Array,
    k_pos: jax.Array,
    *,
    scheme: Scheme,
    params: Params,
    causal: bool,
    key_mask: jax.Array | None,
    segments: _Segments | None = None,
    states: _States | None = None,
    mask: jax.Array | None = None,
    bias: jax.Array | None = None,
    sliding_window: int | None = None,
    attention_chunk: int | None = None,
    sink_tokens: int = 0,
    logit_softcap: float | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Logits with every additive term, masked: [B, N, T, S] float32 and allowed [B, 1, T, S].

    qs: [B, T, N, H] already scaled; k: [B, S, N, H]; q_pos [B, T], k_pos [B, S];
    segments: ids [B, T] and [B, S] (or None); states: per-token states [B, T, N] and
    [B, S, N] (or None). `attention_weights` calls it on all keys,
    `blockwise_attention` on one tile.
    """
    if scheme.replaces_content_logits:  # the hook computes q . k itself (windowed RoPE)
        logits = jnp.zeros((), jnp.float32)
    else:
        logits = jnp.einsum("btnh,bsnh->bnts", qs, k, preferred_element_type=jnp.float32)
    allowed, terms = _mask_and_terms(
        qs,
        k,
        q_pos,
        k_pos,
        scheme=scheme,
        params=params,
        causal=causal,
        key_mask=key_mask,
        segments=segments,
        states=states,
        mask=mask,
        bias=bias,
        sliding_window=sliding_window,
        attention_chunk=attention_chunk,
        sink_tokens=sink_tokens,
    )
    for term in terms:
        logits = logits + term
    if logit_softcap is not None:  # Gemma 2: c * tanh(logits / c), before the mask
        logits = logit_softcap * jnp.tanh(logits / logit_softcap)
    return jnp.where(allowed, logits, MASK_VALUE), allowed


def attention_weights(
    q: jax.Array,
    k: jax.Array,
    *,
    q_positions: jax.Array,
    k_positions: jax.Array,
    scheme: Scheme | str | None = None,
    params: Params | None = None,
    causal: bool = False,
    key_mask: jax.Array | None = None,
    segment_ids: jax.Array | None = None,
    kv_segment_ids: jax.Array | None = None,
    q_state: jax.Array | None = None,
    k_state: jax.Array | None = None,
    mask: jax.Array | None = None,
    bias: jax.Array | None = None,
    scale: float | None = None,
    sliding_window: int | None = None,
    attention_chunk: int | None = None,
    sink_tokens: int = 0,
    logit_softcap: float | None = None,
    sink_logits: jax.Array | None = None,
) -> jax.Array:
    """Softmax attention weights: the [B, N, T, S] array that every path multiplies v by.

    ``softmax(where(allowed, (q * scale) . k + logit_bias + bias, MASK_VALUE))``,
    with the scheme's logit hook called here; its q/k hook (rotation) is the
    caller's, as for every attention path. A query with no allowed key gets a row
    of zeros. Materialises [B, N, T, S] float32 logits and weights. A scheme whose
    ``normalization`` is "stick_breaking" gets stick-breaking weights instead of the
    softmax (`posenc_jax.stick_breaking`; rows sum to at most 1).

    Example:
        >>> q, k = jnp.ones((1, 3, 2, 4)), jnp.ones((1, 3, 2, 4))
        >>> w = attention_weights(q, k, q_positions=jnp.arange(3), k_positions=jnp.arange(3),
        ...                       scheme="alibi", causal=True)
        >>> w.shape, bool(jnp.allclose(w.sum(-1), 1.0))
        ((1, 2, 3, 3), True)

    Args:
      q: [B, T, N, H]; k: [B, S, K, H] (already rotated by the scheme's q/k hook).
      q_positions: [T] or [B, T]; k_positions: [S] or [B, S].
      scheme: fills the logit hook (None = NoPE). params: its attention params.
      causal: allow only keys with position <= the query position.
      key_mask: [B, S] bool, True = a real key (padding mask).
      segment_ids: [T] or [B, T] int, the queries' segment (packed documents);
        a query attends only to keys of its own segment. None: one segment.
      kv_segment_ids: [S] or [B, S] int, the keys' segment; default
        ``segment_ids`` (self-attention; needs T == S).
      q_state, k_state: [B, T, N] and [B, S, N] float per-token states, needed
        (only) by a scheme with the ``token_state`` hook (FoX).
      mask: optional extra bool mask broadcastable to [B, N, T, S].
      bias: optional extra additive bias broadcastable to [B, N, T, S].
      scale: logit scale, default 1/sqrt(H).
      sliding_window: keys at ``|q_pos - k_pos| >= sliding_window`` are masked (local
        attention; None: no window).
      attention_chunk: keys outside the query's chunk (``pos // attention_chunk``) are
        masked (Llama 4's chunked local attention; None: no chunks).
      sink_tokens: with a sliding window, keys at positions below it stay visible
        (StreamingLLM's attention sinks: the first tokens of the stream); 0: none.
      sink_logits: [N] float, one learned logit per query head for a virtual key with a
        zero value (gpt-oss's attention sinks): the softmax runs over the keys and the
        sink, so a row's weights sum to less than 1. None: no sink.
      logit_softcap: c: each logit (content and positional terms, after the scale)
        becomes ``c * tanh(logit / c)`` before the mask (Gemma 2's soft-capping). None:
        none.

    Returns:
      [B, N, T, S] float32 weights; each row sums to 1 (less with a sink), or is 0
      where no key is allowed.

    References: Vaswani et al. 2017 (arXiv 1706.03762).
    """
    scheme = make_scheme(scheme or "nope")
    params = params or {}
    n = q.shape[2]
    qs, k, q_pos, k_pos, segments, states = _prepared(
        q,
        k,
        scheme=scheme,
        q_positions=q_positions,
        k_positions=k_positions,
        segment_ids=segment_ids,
        kv_segment_ids=kv_segment_ids,
        q_state=q_state,
        k_state=k_state,
        scale=scale,
    )
    logits, allowed = _masked_logits(
        qs,
        k,
        q_pos,
        k_pos,
        scheme=scheme,
        params=params,
        causal=causal,
        key_mask=key_mask,
        segments=segments,
        states=states,
        mask=mask,
        bias=bias,
        sliding_window=sliding_window,
        attention_chunk=attention_chunk,
        sink_tokens=sink_tokens,
        logit_softcap=logit_softcap,
    )  # [B, N, T, S], [B, 1, T, S]
    if scheme.normalization == "stick_breaking":  # masked keys take and break nothing
        if sink_logits is not None:
            raise ValueError("sink_logits need a softmax; stick-breaking attention has none")
        weights, _ = stick_breaking.stick_breaking_weights(logits)
        return weights
    if sink_logits is not None:  # gpt-oss: softmax over [logits, sink], the sink dropped
        sink = _sink(sink_logits, n)[None, :, None, None]  # [1, N, 1, 1]
        top = jnp.maximum(jnp.max(logits, axis=-1, keepdims=True), sink)
        e = jnp.exp(logits - top)
        return e / (jnp.sum(e, axis=-1, keepdims=True) + jnp.exp(sink - top))
    weights = jax.nn.softmax(logits, axis=-1)
    return jnp.where(jnp.any(allowed, axis=-1, keepdims=True), weights, 0.0)


def _manual_backward_applies(
    scheme: Scheme, *, logit_softcap: float | None, sink_logits: jax.Array | None
) -> bool:
    """Whether `_softmax_values` computes this call: a plain softmax over q . k plus
    additive terms, with no cap, sink, value term or stick remainder."""
    return (
        scheme.normalization == "softmax"
        and not scheme.replaces_content_logits
        and logit_softcap is None
        and sink_logits is None
        and "value_term" not in scheme.hooks
        and "remainder" not in scheme.hooks
    )


def _sum_to_shape(x: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Sums x over the axes that broadcasting ``shape`` up to ``x.shape`` added or
    stretched (the cotangent of a broadcast input)."""
    lead = x.ndim - len(shape)
    x = jnp.sum(x, axis=tuple(range(lead))) if lead else x
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and x.shape[i] != 1)
    return jnp.sum(x, axis=stretched, keepdims=True) if stretched else x


def _bmm(a: jax.Array, b: jax.Array) -> jax.Array:
    """[X, Y, M, K] x [X, Y, K, N] -> [X, Y, M, N] in float32: each operand in the layout
    of a plain matrix product (rows of a, columns of b), so no [T, S] array is transposed.
    """
    dims = (((3,), (2,)), ((0, 1), (0, 1)))
    return jax.lax.dot_general(a, b, dims, preferred_element_type=jnp.float32)


def _softmax_values_forward(qs, k, v, extra, allowed):
    """out [B, T, N, H] and the residuals: e = exp(s - max) (0 where masked), 1 / sum."""
    q_h = jnp.transpose(qs, (0, 2, 1, 3))  # [B, N, T, H]
    s = _bmm(q_h, jnp.transpose(k, (0, 2, 3, 1))) + extra  # [B, N, T, S]
    s = jnp.where(allowed, s, -jnp.inf)
    top = jnp.max(s, axis=-1, keepdims=True)
    top = jnp.where(jnp.isfinite(top), top, 0.0)  # a row with no allowed key
    e = jnp.exp(s - top)  # [B, N, T, S] float32
    total = jnp.sum(e, axis=-1, keepdims=True)  # [B, N, T, 1]
    inv = 1.0 / jnp.where(total > 0, total, 1.0)
    # The normalisation on the small side: (e . v) / sum.
    out_h = _bmm(e.astype(v.dtype), jnp.transpose(v, (0, 2, 1, 3))) * inv  # [B, N, T, H]
    out = jnp.transpose(out_h, (0, 2, 1, 3)).astype(v.dtype)
    return out, (q_h, k, v, e, inv, out_h)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _softmax_values(extra_shape, qs, k, v, extra, allowed):
    """softmax(where(allowed, qs . k + extra, -inf)) . v, zeros for a row with no key.

    The backward is FlashAttention's (Dao et al. 2022, Algorithm 2's identities on the
    whole arrays): with P = e / sum and g the output's cotangent,
    dS = P * (g . v^T - rowsum(g * out)), so the [B, N, T, S] arrays are read and
    written once each way instead of once per primitive of the softmax and mask, and
    every product reads them in a matrix layout (no transposed copy of one).
    """
    del extra_shape
    return _softmax_values_forward(qs, k, v, extra, allowed)[0]


def _softmax_values_fwd(extra_shape, qs, k, v, extra, allowed):
    del extra_shape
    return _softmax_values_forward(qs, k, v, extra, allowed)


def _softmax_values_bwd(extra_shape, residuals, g):
    q_h, k, v, e, inv, out_h = residuals
    gs = jnp.transpose(g, (0, 2, 1, 3)).astype(jnp.float32) * inv  # [B, N, T, H]: g / sum
    gs_t = jnp.transpose(gs, (0, 1, 3, 2))  # [B, N, H, T]
    dv = _bmm(gs_t, e)  # [B, N, H, S]: (P^T . g)^T
    dp = _bmm(gs, jnp.transpose(v, (0, 2, 3, 1)).astype(jnp.float32))  # (g . v^T) / sum
    row = jnp.sum(gs * out_h, axis=-1, keepdims=True)  # [B, N, T, 1]: rowsum(g * out) / sum
    ds = e * (dp - row)  # P * (g . v^T - rowsum(g * out)), 0 where masked
    dq = _bmm(ds, jnp.transpose(k, (0, 2, 1, 3)).astype(jnp.float32))  # [B, N, T, H]
    dk = _bmm(jnp.transpose(q_h, (0, 1, 3, 2)).astype(jnp.float32), ds)  # [B, N, H, S]
    dextra = _sum_to_shape(ds, extra_shape)
    return (
        jnp.transpose(dq, (0, 2, 1, 3)).astype(q_h.dtype),
        jnp.transpose(dk, (0, 3, 1, 2)).astype(k.dtype),
        jnp.transpose(dv, (0, 3, 1, 2)).astype(v.dtype),
        dextra,
        None,
    )


_softmax_values.defvjp(_softmax_values_fwd, _softmax_values_bwd)


def dense_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    *,
    q_positions: jax.Array,
    k_positions: jax.Array,
    scheme: Scheme | str | None = None,
    params: Params | None = None,
    causal: bool = False,
    key_mask: jax.Array | None = None,
    segment_ids: jax.Array | None = None,
    kv_segment_ids: jax.Array | None = None,
    q_state: jax.Array | None = None,
    k_state: jax.Array | None = None,
    mask: jax.Array | None = None,
    bias: jax.Array | None = None,
    scale: float | None = None,
    sliding_window: int | None = None,
    attention_chunk: int | None = None,
    sink_tokens: int = 0,
    logit_softcap: float | None = None,
    sink_logits: jax.Array | None = None,
    backward: str = "manual",
) -> jax.Array:
    """`attention_weights` times v (plus the scheme's value term); reference for the other paths.

    Args:
      q: [B, T, N, H]; k, v: [B, S, K, H] (already rotated by the scheme's q/k hook).
      q_positions, k_positions, scheme, params, causal, key_mask, segment_ids,
        kv_segment_ids, q_state, k_state, mask, bias, scale, sliding_window,
        attention_chunk, sink_tokens, sink_logits, logit_softcap: as in
        `attention_weights`; the
        scheme also fills the value hook here.
      backward: "manual" (default): where the weights are a plain softmax (no cap,
        sink, value term or stick-breaking), the gradient is written out as
        FlashAttention's backward on whole arrays, ``dS = P * (dO . v^T - rowsum(dO *
        out))``, and the forward normalises ``exp(s - max) . v`` on the [B, T, N, H]
        side, so the [B, N, T, S] arrays take a few passes instead of one per
        primitive and are never copied into a transposed layout (the CPU train step
        of a small LM is 0.59x to 0.80x the autodiff one, see docs/performance.md);
        the same function, reverse-mode only (`jax.grad`, `jax.vjp`). "autodiff": JAX
        differentiates the forward below, for forward-mode autodiff (`jax.jvp`,
        `jax.jacfwd`).

    Returns:
      [B, T, N, H] in v's dtype.

    References: Dao et al. 2022, "FlashAttention" (arXiv 2205.14135), the backward pass.
    """
    if backward not in DENSE_BACKWARDS:
        raise ValueError(f"backward must be one of {list(DENSE_BACKWARDS)}; got {backward!r}")
    scheme = make_scheme(scheme or "nope")
    params = params or {}
    if backward == "manual" and _manual_backward_applies(
        scheme, logit_softcap=logit_softcap, sink_logits=sink_logits
    ):
        qs, k, q_pos, k_pos, segments, states = _prepared(
            q,
            k,
            scheme=scheme,
            q_positions=q_positions,
            k_positions=k_positions,
            segment_ids=segment_ids,
            kv_segment_ids=kv_segment_ids,
            q_state=q_state,
            k_state=k_state,
            scale=scale,
        )
        allowed, terms = _mask_and_terms(
            qs,
            k,
            q_pos,
            k_pos,
            scheme=scheme,
            params=params,
            causal=causal,
            key_mask=key_mask,
            segments=segments,
            states=states,
            mask=mask,
            bias=bias,
            sliding_window=sliding_window,
            attention_chunk=attention_chunk,
            sink_tokens=sink_tokens,
        )
        v = _repeat_kv(v, q.shape[2])  # [B, S, N, H]
        extra = functools.reduce(operator.add, terms) if terms else jnp.zeros((), jnp.float32)
        return _softmax_values(jnp.shape(extra), qs, k, v, extra, allowed)
    weights32 = attention_weights(
        q,
        k,
        q_positions=q_positions,
        k_positions=k_positions,
        scheme=scheme,
        params=params,
        causal=causal,
        key_mask=key_mask,
        segment_ids=segment_ids,
        kv_segment_ids=kv_segment_ids,
        q_state=q_state,
        k_state=k_state,
        mask=mask,
        bias=bias,
        scale=scale,
        sliding_window=sliding_window,
        attention_chunk=attention_chunk,
        sink_tokens=sink_tokens,
        logit_softcap=logit_softcap,
        sink_logits=sink_logits,
    )  # [B, N, T, S] float32
    weights = weights32.astype(v.dtype)
    v = _repeat_kv(v, q.shape[2])  # [B, S, N, H]
    out = jnp.einsum("bnts,bsnh->btnh", weights, v)
    if "remainder" in scheme.hooks:  # stick-breaking: the stick no key took
        remainder = 1.0 - jnp.sum(weights32, axis=-1)  # [B, N, T]
        out = out + scheme.remainder_term(params, remainder).astype(out.dtype)
    if "value_term" in scheme.hooks:
        b = q.shape[0]
        q_pos = _as_batched_positions(q_positions, b)
        k_pos = _as_batched_positions(k_positions, b)
        out = out + scheme.value_term(params, weights, q_pos, k_pos).astype(out.dtype)
    return out


def fused_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    *,
    q_positions: jax.Array,
    k_positions: jax.Array,
    scheme: Scheme | str | None = None,
    params: Params | None = None,
    causal: bool = False,
    segment_ids: jax.Array | None = None,
    kv_segment_ids: jax.Array | None = None,
    scale: float | None = None,
    implementation: str | None = "cudnn",
) -> jax.Array:
    """`jax.nn.dot_product_attention` for schemes whose logit term does not read q.

    The causal mask is passed as ``is_causal`` (index based), so the caller must
    ensure queries and keys are the same positions (self-attention without cache);
    `select_implementation` checks that. Bias-only schemes (ALiBi, T5) pass their
    bias materialised as [B, N, T, S]: in float32 for ``implementation="xla"``
    (XLA adds it to float32 logits), in q's dtype for ``"cudnn"`` (jax's
    documentation does not say that cuDNN takes a float32 bias with bfloat16
    q/k/v; benchmarks/cudnn_bias_precision.py tries it on a GPU). bfloat16 rounds
    |bias| in [8, 16) to steps of 0.0625, so `select_implementation` keeps such
    schemes off cuDNN for bfloat16/float16 activations unless asked.

    Segment ids become the boolean ``mask`` [B, 1, T, S] of equal ids (the jax
    function has no segment-id argument; cuDNN folds that mask into its bias), so
    `select_implementation` sends calls with segment ids elsewhere. With segment
    ids, ``is_causal`` (by index) equals the position-based causal mask when
    positions increase within each segment, as in packed documents.

    Args:
      q: [B, T, N, H]; k, v: [B, S, K, H] (already rotated).
      segment_ids, kv_segment_ids: as in `attention_weights`.
      implementation: passed to `jax.nn.dot_product_attention` ("cudnn", "xla"
        or None).

    Returns:
      [B, T, N, H].
    """
    scheme = make_scheme(scheme or "nope")
    if _reads_q_or_k(scheme):
        raise ValueError(
            f"scheme {scheme.name!r} reads q, k or the tokens in its logit term, adds a "
            "value term or is not a softmax; "
            "use AttentionConfig(implementation='dense') or 'blockwise'"
        )
    b = q.shape[0]
    bias = None
    if "logit_bias" in scheme.hooks:
        q_pos = _as_batched_positions(q_positions, b)
        k_pos = _as_batched_positions(k_positions, b)
        bias = scheme.logit_bias(params or {}, q, q_pos, k_pos).astype(jnp.float32)
        bias = jnp.broadcast_to(bias, (b, q.shape[2], q.shape[1], k.shape[1]))
        if implementation == "cudnn":
            bias = bias.astype(q.dtype)
    segments = _segments(segment_ids, kv_segment_ids, batch=b, q_len=q.shape[1], k_len=k.shape[1])
    mask = None
    if segments is not None:
        mask = segments.q[:, None, :, None] == segments.k[:, None, None, :]  # [B, 1, T, S]
    return jax.nn.dot_product_attention(
        q, k, v, bias=bias, mask=mask, scale=scale, is_causal=causal, implementation=implementation
    )


class ImplementationChoice(NamedTuple):
    """The attention path `explain_implementation` chose, and why."""

    implementation: str
    reason: str


_LOW_PRECISION = (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))


def _cudnn_refusal(
    *,
    scheme: Scheme,
    platform: str,
    dtype: jnp.dtype,
    head_dim: int,
    has_mask: bool,
    has_segment_ids: bool,
    aligned: bool,
    low_precision_bias: bool,
) -> str | None:
    """Why the cuDNN path cannot (or should not) take this call; None when it can."""
    dtype = jnp.dtype(dtype)
    if platform != "gpu":
        return f"cuDNN needs a GPU; platform is {platform!r}"
    if dtype not in _LOW_PRECISION:
        return f"cuDNN needs bfloat16 or float16 q/k/v; got {dtype}"
    if head_dim % 8 or head_dim > 128:
        return f"cuDNN needs head_dim a multiple of 8 and at most 128; got {head_dim}"
    if _reads_q_or_k(scheme):
        return (
            f"scheme {scheme.name!r} reads q, k or the tokens in its logit term, adds a "
            "value term or is not a softmax"
        )
    if has_mask:
        return "a padding or extra mask is present; the cuDNN path takes none"
    if has_segment_ids:
        return "segment ids are present; cuDNN would take them only as a dense [B, 1, T, S] mask"
    if not aligned:
        return "queries and keys do not share positions (KV cache): is_causal would be wrong"
    if "logit_bias" in scheme.hooks and not low_precision_bias:
        return (
            f"scheme {scheme.name!r} adds a logit bias, which the cuDNN path takes in "
            f"{dtype} (bfloat16 step 0.0625 at |bias| 8-16); the dense path keeps it in "
            "float32 (AttentionConfig(low_precision_bias=True) allows cuDNN)"
        )
    return None


def explain_implementation(
    *,
    scheme: Scheme,
    platform: str,
    dtype: jnp.dtype,
    head_dim: int,
    q_len: int,
    k_len: int,
    has_mask: bool,
    aligned: bool,
    has_segment_ids: bool = False,
    blockwise_threshold: int | None = 4096,
    low_precision_bias: bool = False,
    value_head_dim: int | None = None,
    has_sinks: bool = False,
    has_softcap: bool = False,
) -> ImplementationChoice:
    """The path ``implementation="auto"`` takes for one attention call, and the reason.

    Blockwise above the threshold; otherwise cuDNN when the fused kernel computes
    the same function at full accuracy, else dense. Pure Python on static facts,
    so every decision can be checked on any machine.

    Example:
        >>> explain_implementation(scheme=make_scheme("alibi"), platform="gpu",
        ...     dtype=jnp.bfloat16, head_dim=64, q_len=512, k_len=512, has_mask=False,
        ...     aligned=True).implementation
        'dense'

    Args:
      scheme: the positional scheme (its hooks decide what a fused kernel can take).
      platform: ``jax.devices()[0].platform`` ("cpu", "gpu", "tpu").
      dtype: the dtype of q/k/v.
      head_dim: H.
      q_len, k_len: T and S.
      has_mask: a padding mask or extra mask is present (cuDNN path takes none).
      aligned: queries and keys share positions (self-attention, no KV cache), so
        an index-based causal mask equals the position-based one.
      has_segment_ids: the call has segment ids (packed documents).
      blockwise_threshold: use blockwise when max(T, S) exceeds it (None: never).
      low_precision_bias: let cuDNN take a scheme's logit bias in a bfloat16 or
        float16 ``dtype`` (see `AttentionConfig`).
      value_head_dim: v's head dim when it differs from q's and k's (PoPE's q and k
        are twice as wide); None: the same as ``head_dim``.
      has_sinks: the call has learned sink logits (no fused kernel takes them).
      has_softcap: the call soft-caps its logits (no fused kernel takes it).

    Returns:
      ``ImplementationChoice(implementation, reason)``, implementation one of
      "cudnn", "dense", "blockwise".
    """
    if not scheme.tiles:
        return ImplementationChoice(
            "dense",
            f"scheme {scheme.name!r} does not tile (its logit term reads every key between "
            "a key and its query) and reads q and k (no fused kernel)",
        )
    if blockwise_threshold is not None and max(q_len, k_len) > blockwise_threshold:
        return ImplementationChoice(
            "blockwise",
            f"max(T, S) = {max(q_len, k_len)} > blockwise_threshold={blockwise_threshold}",
        )
    refusal = _cudnn_refusal(
        scheme=scheme,
        platform=platform,
        dtype=dtype,
        head_dim=head_dim,
        has_mask=has_mask,
        has_segment_ids=has_segment_ids,
        aligned=aligned,
        low_precision_bias=low_precision_bias,
    )
    if refusal is None and has_sinks:
        refusal = "learned sink logits: jax.nn.dot_product_attention has no sink"
    if refusal is None and has_softcap:
        refusal = "logit soft-capping: jax.nn.dot_product_attention has none"
    if refusal is None and value_head_dim not in (None, head_dim):
        refusal = (
            f"q and k have head dim {head_dim} and v {value_head_dim}; the cuDNN path takes "
            "one head dim"
        )
    if refusal is not None:
        return ImplementationChoice("dense", refusal)
    return ImplementationChoice("cudnn", "the fused cuDNN kernel takes every term of this call")


def select_implementation(**facts: Any) -> str:
    """Chooses "cudnn", "dense" or "blockwise" for one attention call (``implementation="auto"``).

    ``explain_implementation(**facts).implementation``: the keyword arguments are
    `explain_implementation`'s (which also says why), so the two cannot differ.

    Example:
        >>> select_implementation(scheme=make_scheme("rope"), platform="cpu",
        ...     dtype=jnp.float32, head_dim=64, q_len=8192, k_len=8192, has_mask=False,
        ...     aligned=True)
        'blockwise'

    Returns:
      One of "cudnn", "dense", "blockwise".
    """
    return explain_implementation(**facts).implementation


# help() and inspect show explain_implementation's keywords.
select_implementation.__signature__ = inspect.signature(explain_implementation).replace(
    return_annotation=str
)


def _pad_to(x: jax.Array, axis: int, multiple: int, value=0) -> jax.Array:
    pad = (-x.shape[axis]) % multiple
    if pad == 0:
        return x
    widths = [(0, 0)] * x.ndim
    widths[axis] = (0, pad)
    return jnp.pad(x, widths, constant_values=value)


class _OnlineSoftmax(NamedTuple):
    """The scan carry of one query block: softmax over the key blocks seen so far."""

    acc: jax.Array  # [B, tq, N, H] float32: sum_j exp(logit_j - m) v_j (+ value term)
    m: jax.Array  # [B, N, tq] float32: running max of the logits
    l: jax.Array  # [B, N, tq] float32: running sum of exp(logit_j - m)
    any_ok: jax.Array  # [B, tq] bool: some key was allowed

    @classmethod
    def empty(
        cls, b: int, tq: int, n: int, h: int, sink: jax.Array | None = None
    ) -> _OnlineSoftmax:
        """The carry before any key; with a sink [N], its exp(sink - m) starts the sum."""
        if sink is None:
            m, l = jnp.full((b, n, tq), -jnp.inf, jnp.float32), jnp.zeros((b, n, tq), jnp.float32)
        else:
            m, l = jnp.broadcast_to(sink[None, :, None], (b, n, tq)), jnp.ones((b, n, tq))
        return cls(jnp.zeros((b, tq, n, h), jnp.float32), m, l, jnp.zeros((b, tq), bool))

    def result(self) -> jax.Array:
        """[B, tq, N, H] float32 output; zeros for queries that saw no allowed key."""
        out = self.acc / jnp.swapaxes(self.l, 1, 2)[..., None]
        return jnp.where(self.any_ok[:, :, None, None], out, 0.0)


def _online_softmax_update(state, logits, ok, vb, qpos, kpos, *, scheme, params):
    """Folds one key block into the online softmax (Rabe & Staats 2021, Dao et al. 2022).

    state: `_OnlineSoftmax`; logits: [B, N, tq, tk] masked; ok: [B, 1, tq, tk];
    vb: [B, tk, N, H]; qpos [B, tq], kpos [B, tk]. The earlier sums are rescaled
    by exp(m - m_new), so the result equals the softmax over all blocks so far.
    """
    m_new = jnp.maximum(state.m, jnp.max(logits, axis=-1))  # [B, N, tq]
    p = jnp.exp(logits - m_new[..., None])  # [B, N, tq, tk]
    corr = jnp.exp(state.m - m_new)  # [B, N, tq]
    l = state.l * corr + jnp.sum(p, axis=-1)
    pv = jnp.einsum("bnts,bsnh->btnh", p.astype(vb.dtype), vb, preferred_element_type=jnp.float32)
    if "value_term" in scheme.hooks:
        pv = pv + scheme.value_term(params, p.astype(vb.dtype), qpos, kpos).astype(jnp.float32)
    acc = state.acc * jnp.swapaxes(corr, 1, 2)[..., None] + pv  # [B, tq, N, H]
    any_ok = state.any_ok | jnp.any(ok, axis=-1)[:, 0]
    return _OnlineSoftmax(acc, m_new, l, any_ok)


def _key_block_step(state, key_block, *, qb, qpos, qseg, qstate, scheme, params, causal, local):
    """Scan body over key blocks.

    key_block = (k [B, tk, N, H], v, positions [B, tk], mask [B, tk], segment ids
    [B, tk] or None, token states [B, tk, N] or None); qseg: the query block's
    segment ids [B, tq] or None; qstate: its token states [B, tq, N] or None.
    """
    vb, kpos = key_block[1], key_block[2]
    logits, ok = _tile_logits(
        qb, qpos, qseg, qstate, key_block, scheme=scheme, params=params, causal=causal, local=local
    )
    state = _online_softmax_update(state, logits, ok, vb, qpos, kpos, scheme=scheme, params=params)
    return state, None


def _tile_logits(qb, qpos, qseg, qstate, key_block, *, scheme, params, causal, local):
    """Masked logits [B, N, tq, tk] and allowed [B, 1, tq, tk] of one query and key tile.

    local: the window, chunk and sink-token settings of `_masked_logits`.
    """
    kb, _, kpos, kmask, kseg, kstate = key_block
    return _masked_logits(
        qb,
        kb,
        qpos,
        kpos,
        scheme=scheme,
        params=params,
        causal=causal,
        key_mask=kmask,
        segments=None if kseg is None else _Segments(qseg, kseg),
        states=None if kstate is None else _States(qstate, kstate),
        **local,
    )


def _stick_breaking_key_block_step(
    state, key_block, *, qb, qpos, qseg, qstate, scheme, params, causal, local
):
    """Scan body over key blocks, nearest first, for stick-breaking weights."""
    logits, _ = _tile_logits(
        qb, qpos, qseg, qstate, key_block, scheme=scheme, params=params, causal=causal, local=local
    )
    return state.update(logits, key_block[1]), None


def _query_block_attention(query_block, key_blocks, *, scheme, params, causal, local, sink):
    """[B, tq, N, H] float32 attention of one query block over every key block.

    query_block: (q [B, tq, N, H] scaled, positions [B, tq], segment ids [B, tq] or
    None, token states [B, tq, N] or None); key_blocks: block-major (k, v
    [nk, B, tk, N, H], positions, mask, segment ids [nk, B, tk] or None, token
    states [nk, B, tk, N] or None). Each key step is rematerialised in the backward
    pass, so only the carry is stored per step.
    """
    qb, qpos, qseg, qstate = query_block
    b, tq, n, _ = qb.shape
    h = key_blocks[1].shape[-1]  # v's head dim (PoPE's q and k are twice as wide)
    stick = scheme.normalization == "stick_breaking"
    step = functools.partial(
        _stick_breaking_key_block_step if stick else _key_block_step,
        qb=qb,
        qpos=qpos,
        qseg=qseg,
        qstate=qstate,
        scheme=scheme,
        params=params,
        causal=causal,
        local=local,
    )
    step = jax.checkpoint(step, prevent_cse=False)
    if stick:  # the key tiles from the nearest (last) to the farthest
        tiles = stick_breaking.StickBreakingTiles.empty(b, tq, n, h)
        tiles, _ = jax.lax.scan(step, tiles, key_blocks, reverse=True)
        out = tiles.acc
        if "remainder" in scheme.hooks:
            out = out + scheme.remainder_term(params, tiles.remainder()).astype(jnp.float32)
        return out
    state, _ = jax.lax.scan(step, _OnlineSoftmax.empty(b, tq, n, h, sink), key_blocks)
    return state.result()


def _blocks(x: jax.Array, block: int, *, pad_value=0) -> jax.Array:
    """[B, L, ...] -> block-major [L_padded / block, B, block, ...], padded at the end."""
    x = _pad_to(x, 1, block, value=pad_value)
    b, length = x.shape[:2]
    return x.reshape(b, length // block, block, *x.shape[2:]).swapaxes(0, 1)


def blockwise_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    *,
    q_positions: jax.Array,
    k_positions: jax.Array,
    scheme: Scheme | str | None = None,
    params: Params | None = None,
    causal: bool = False,
    key_mask: jax.Array | None = None,
    segment_ids: jax.Array | None = None,
    kv_segment_ids: jax.Array | None = None,
    q_state: jax.Array | None = None,
    k_state: jax.Array | None = None,
    scale: float | None = None,
    q_block: int = 512,
    k_block: int = 512,
    sliding_window: int | None = None,
    attention_chunk: int | None = None,
    sink_tokens: int = 0,
    logit_softcap: float | None = None,
    sink_logits: jax.Array | None = None,
) -> jax.Array:
    """Memory-efficient attention: online softmax over key blocks, queries in blocks.

    Every positional term (ALiBi/T5 bias, Shaw key and value terms, causal,
    padding and segment masks) is computed per [q_block, k_block] tile from
    positions and segment ids, so no
    [N, T, S] array ever exists. Differentiable: each query block is rematerialised
    in the backward pass. Same arguments and result as `dense_attention` (without
    the dense ``mask``/``bias`` arrays, which would be O(T*S)).

    Args:
      q: [B, T, N, H]; k, v: [B, S, K, H]; positions [T]/[B, T] and [S]/[B, S].
      key_mask: [B, S] bool padding mask (True = real key).
      segment_ids, kv_segment_ids: [B, T] and [B, S] int, as in `attention_weights`.
      q_state, k_state: [B, T, N] and [B, S, N] per-token states, as in
        `attention_weights` (sliced per tile like the positions).
      q_block, k_block: tile sizes; T and S need not be multiples of them.
      sliding_window, attention_chunk, sink_tokens, sink_logits, logit_softcap: as in
        `attention_weights` (the window and chunks mask each tile, the cap applies per
        tile; the sink starts each query block's running softmax sum).

    Returns:
      [B, T, N, H] in v's dtype.

    References: Rabe & Staats 2021 (arXiv 2112.05682); Dao et al. 2022 (arXiv 2205.14135).
    """
    scheme = make_scheme(scheme or "nope")
    params = params or {}
    if not scheme.tiles:
        raise ValueError(
            f"scheme {scheme.name!r} does not tile: its logit term reads every key between "
            "a key and its query, which one [q_block, k_block] tile does not hold; use "
            "AttentionConfig(implementation='dense')"
        )
    if q_block < 1 or k_block < 1:
        raise ValueError(f"q_block and k_block must be >= 1; got {q_block}, {k_block}")
    b, t, n, h = q.shape
    s = k.shape[1]
    k, v = _repeat_kv(k, n), _repeat_kv(v, n)
    scale = 1.0 / math.sqrt(h) if scale is None else scale
    q_pos = _as_batched_positions(q_positions, b)
    k_pos = _as_batched_positions(k_positions, b)
    # Run-time position checks once per call, not once per tile.
    scheme = scheme.with_positions_checked(q_pos, k_pos)
    segments = _segments(segment_ids, kv_segment_ids, batch=b, q_len=t, k_len=s)
    states = _states(scheme, q_state, k_state, batch=b, q_len=t, k_len=s, heads=n)
    sink = None if sink_logits is None else _sink(sink_logits, n)
    if sink is not None and scheme.normalization != "softmax":
        raise ValueError("sink_logits need a softmax; stick-breaking attention has none")
    if key_mask is None:
        key_mask = jnp.ones((b, s), dtype=bool)
    q_block, k_block = min(q_block, t), min(k_block, s)

    query_blocks = (  # [nq, B, tq, N, H], [nq, B, tq], [nq, B, tq] or None, [nq, B, tq, N] or None
        _blocks(q * jnp.asarray(scale, q.dtype), q_block),
        _blocks(q_pos, q_block),
        None if segments is None else _blocks(segments.q, q_block),
        None if states is None else _blocks(states.q, q_block),
    )
    key_blocks = (  # [nk, B, tk, N, H] twice, [nk, B, tk] twice, [nk, B, tk] or None, [.., N]
        _blocks(k, k_block),
        _blocks(v, k_block),
        _blocks(k_pos, k_block),
        _blocks(key_mask.astype(bool), k_block, pad_value=False),
        None if segments is None else _blocks(segments.k, k_block),
        None if states is None else _blocks(states.k, k_block),
    )
    one_query_block = functools.partial(
        _query_block_attention,
        key_blocks=key_blocks,
        scheme=scheme,
        params=params,
        causal=causal,
        local=dict(
            sliding_window=sliding_window,
            attention_chunk=attention_chunk,
            sink_tokens=sink_tokens,
            logit_softcap=logit_softcap,
        ),
        sink=sink,
    )
    out = jax.lax.map(jax.checkpoint(one_query_block), query_blocks)  # [nq, B, tq, N, H]
    out = out.swapaxes(0, 1).reshape(b, -1, n, v.shape[-1])[:, :t]  # [B, T, N, H]
    return out.astype(v.dtype)


def attend(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    *,
    q_positions: jax.Array,
    k_positions: jax.Array,
    scheme: Scheme | str | None = None,
    params: Params | None = None,
    causal: bool = False,
    key_mask: jax.Array | None = None,
    segment_ids: jax.Array | None = None,
    kv_segment_ids: jax.Array | None = None,
    q_state: jax.Array | None = None,
    k_state: jax.Array | None = None,
    scale: float | None = None,
    attention: AttentionConfig | None = None,
    aligned: bool = False,
    sliding_window: int | None = None,
    attention_chunk: int | None = None,
    sink_tokens: int = 0,
    logit_softcap: float | None = None,
    sink_logits: jax.Array | None = None,
) -> jax.Array:
    """Dispatches to the fused, dense or blockwise path (all compute the same function).

    Example:
        >>> q = k = v = jnp.ones((1, 4, 2, 8))
        >>> attend(q, k, v, q_positions=jnp.array([0, 1, 0, 1]),
        ...        k_positions=jnp.array([0, 1, 0, 1]), causal=True,
        ...        segment_ids=jnp.array([0, 0, 1, 1])).shape  # two packed documents
        (1, 4, 2, 8)

    Args:
      q: [B, T, N, H]; k, v: [B, S, K, H], already rotated.
      q_positions, k_positions, scheme, params, causal, key_mask, segment_ids,
        kv_segment_ids, q_state, k_state, scale, sliding_window, attention_chunk,
        sink_tokens, sink_logits, logit_softcap: as in `attention_weights` (a window,
        chunks, sinks or a cap keep the call off the cuDNN path).
      attention: the path and its settings (None: ``AttentionConfig()``, "auto").
      aligned: q and k share positions (self-attention without cache).

    Returns:
      [B, T, N, H].
    """
    scheme = make_scheme(scheme or "nope")
    attention = AttentionConfig() if attention is None else attention
    implementation = attention.implementation
    if implementation == "auto":
        implementation = select_implementation(
            scheme=scheme,
            platform=jax.devices()[0].platform,
            dtype=q.dtype,
            head_dim=q.shape[-1],
            value_head_dim=v.shape[-1],
            q_len=q.shape[1],
            k_len=k.shape[1],
            has_mask=key_mask is not None
            or sliding_window is not None
            or attention_chunk is not None,
            has_sinks=sink_logits is not None,
            has_softcap=logit_softcap is not None,
            aligned=aligned,
            has_segment_ids=segment_ids is not None,
            blockwise_threshold=attention.blockwise_threshold,
            low_precision_bias=attention.low_precision_bias,
        )
    common = dict(
        q_positions=q_positions,
        k_positions=k_positions,
        scheme=scheme,
        params=params,
        causal=causal,
        segment_ids=segment_ids,
        kv_segment_ids=kv_segment_ids,
        scale=scale,
    )
    states = dict(q_state=q_state, k_state=k_state)
    local = dict(
        sliding_window=sliding_window,
        attention_chunk=attention_chunk,
        sink_logits=sink_logits,
        logit_softcap=logit_softcap,
    )
    if implementation == "cudnn":
        if any(value is not None for value in local.values()):
            raise ValueError(
                "implementation='cudnn' takes no sliding_window, attention_chunk, "
                "sink_logits or logit_softcap; use "
                "AttentionConfig(implementation='dense') or 'blockwise'"
            )
        if key_mask is not None:
            raise ValueError(
                "implementation='cudnn' takes no key_mask; use AttentionConfig(implementation="
                "'dense') or 'blockwise'"
            )
        return fused_attention(q, k, v, implementation="cudnn", **common)
    local.update(sink_tokens=sink_tokens)  # only with a window, which cuDNN refuses above
    if implementation == "blockwise":
        size = attention.block_size
        return blockwise_attention(
            q, k, v, key_mask=key_mask, q_block=size, k_block=size, **states, **local, **common
        )
    return dense_attention(
        q, k, v, key_mask=key_mask, backward=attention.dense_backward, **states, **local, **common
    )
