"""Attention with position hooks: dense, fused (jax.nn.dot_product_attention) and blockwise.

Every path computes the same function::

    q, k = scheme.rotate(q, k)                         (done by the caller, before any cache)
    logits = (q * scale) . k + scheme.logit_bias(...) + bias
    w = softmax(where(allowed, logits, MASK_VALUE))    allowed = causal & key_mask & mask
    out = w . v + scheme.value_term(w)

with ``causal`` meaning ``k_position <= q_position`` on the explicit positions, so
KV-cache offsets, left padding and randomized positions need no special case.
A row with no allowed key returns zeros (finite outputs and gradients).

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
import math
import operator
from typing import NamedTuple

import jax
import jax.numpy as jnp

from posenc_jax._checks import check_heads
from posenc_jax.schemes import Params, Scheme, make_scheme

__all__ = [
    "IMPLEMENTATIONS",
    "MASK_VALUE",
    "AttentionConfig",
    "attend",
    "attention_weights",
    "blockwise_attention",
    "dense_attention",
    "fused_attention",
    "select_implementation",
]

# Masked logits are *replaced* (not offset) by this value, so it never overflows;
# it stays many orders of magnitude below any ALiBi/T5 bias (|bias| <= slope * 2^31).
MASK_VALUE = -1e30

IMPLEMENTATIONS = ("auto", "dense", "cudnn", "blockwise")
"""Choices of `AttentionConfig.implementation` (see `attend`)."""


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
    """

    implementation: str = "auto"
    blockwise_threshold: int | None = 4096
    block_size: int = 512

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


def _is_int(value: object) -> bool:
    if isinstance(value, bool):
        return False
    try:
        operator.index(value)
    except TypeError:
        return False
    return True


def _as_batched_positions(positions: jax.Array, batch: int) -> jax.Array:
    """[L] or [B, L] -> [B, L] int32/float."""
    positions = jnp.asarray(positions)
    if positions.ndim == 1:
        positions = positions[None, :]
    if positions.ndim != 2:
        raise ValueError(f"positions must be [L] or [B, L]; got shape {positions.shape}")
    return jnp.broadcast_to(positions, (batch, positions.shape[-1]))


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
) -> jax.Array:
    """Boolean [B, 1, T, S] from positions ([B, T], [B, S]) and key_mask [B, S]."""
    allowed = jnp.ones((q_pos.shape[0], 1, q_pos.shape[1], k_pos.shape[1]), dtype=bool)
    if causal:
        allowed = allowed & (k_pos[:, None, None, :] <= q_pos[:, None, :, None])
    if key_mask is not None:
        allowed = allowed & key_mask[:, None, None, :].astype(bool)
    return allowed


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
    mask: jax.Array | None = None,
    bias: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Logits with every additive term, masked: [B, N, T, S] float32 and allowed [B, 1, T, S].

    qs: [B, T, N, H] already scaled; k: [B, S, N, H]; q_pos [B, T], k_pos [B, S].
    `attention_weights` calls it on all keys, `blockwise_attention` on one tile.
    """
    logits = jnp.einsum("btnh,bsnh->bnts", qs, k, preferred_element_type=jnp.float32)
    if "logit_bias" in scheme.hooks:
        keys = {"k": k} if scheme.needs_k_for_bias else {}  # u . k_j, DeBERTa's p2c
        logits = logits + scheme.logit_bias(params, qs, q_pos, k_pos, **keys)
    if bias is not None:
        logits = logits + bias.astype(jnp.float32)
    allowed = _allowed(q_pos, k_pos, causal=causal, key_mask=key_mask)
    if mask is not None:
        allowed = allowed & mask.astype(bool)
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
    mask: jax.Array | None = None,
    bias: jax.Array | None = None,
    scale: float | None = None,
) -> jax.Array:
    """Softmax attention weights: the [B, N, T, S] array that every path multiplies v by.

    ``softmax(where(allowed, (q * scale) . k + logit_bias + bias, MASK_VALUE))``,
    with the scheme's logit hook called here; its q/k hook (rotation) is the
    caller's, as for every attention path. A query with no allowed key gets a row
    of zeros. Materialises [B, N, T, S] float32 logits and weights.

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
      mask: optional extra bool mask broadcastable to [B, N, T, S].
      bias: optional extra additive bias broadcastable to [B, N, T, S].
      scale: logit scale, default 1/sqrt(H).

    Returns:
      [B, N, T, S] float32 weights; each row sums to 1, or is 0 where no key is allowed.

    References: Vaswani et al. 2017 (arXiv 1706.03762).
    """
    scheme = make_scheme(scheme or "nope")
    params = params or {}
    b, _, n, h = q.shape
    k = _repeat_kv(k, n)  # [B, S, N, H]
    q_pos = _as_batched_positions(q_positions, b)
    k_pos = _as_batched_positions(k_positions, b)
    scale = 1.0 / math.sqrt(h) if scale is None else scale
    qs = q * jnp.asarray(scale, q.dtype)
    logits, allowed = _masked_logits(
        qs,
        k,
        q_pos,
        k_pos,
        scheme=scheme,
        params=params,
        causal=causal,
        key_mask=key_mask,
        mask=mask,
        bias=bias,
    )  # [B, N, T, S], [B, 1, T, S]
    weights = jax.nn.softmax(logits, axis=-1)
    return jnp.where(jnp.any(allowed, axis=-1, keepdims=True), weights, 0.0)


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
    mask: jax.Array | None = None,
    bias: jax.Array | None = None,
    scale: float | None = None,
) -> jax.Array:
    """`attention_weights` times v (plus the scheme's value term); reference for the other paths.

    Args:
      q: [B, T, N, H]; k, v: [B, S, K, H] (already rotated by the scheme's q/k hook).
      q_positions, k_positions, scheme, params, causal, key_mask, mask, bias, scale:
        as in `attention_weights`; the scheme also fills the value hook here.

    Returns:
      [B, T, N, H] in v's dtype.
    """
    scheme = make_scheme(scheme or "nope")
    params = params or {}
    weights = attention_weights(
        q,
        k,
        q_positions=q_positions,
        k_positions=k_positions,
        scheme=scheme,
        params=params,
        causal=causal,
        key_mask=key_mask,
        mask=mask,
        bias=bias,
        scale=scale,
    ).astype(v.dtype)  # [B, N, T, S]
    v = _repeat_kv(v, q.shape[2])  # [B, S, N, H]
    out = jnp.einsum("bnts,bsnh->btnh", weights, v)
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
    scale: float | None = None,
    implementation: str | None = "cudnn",
) -> jax.Array:
    """`jax.nn.dot_product_attention` for schemes whose logit term does not read q.

    The causal mask is passed as ``is_causal`` (index based), so the caller must
    ensure queries and keys are the same positions (self-attention without cache);
    `select_implementation` checks that. Bias-only schemes (ALiBi, T5) pass their
    bias materialised as [B, N, T, S].
    """
    scheme = make_scheme(scheme or "nope")
    if scheme.needs_q_for_bias or scheme.needs_k_for_bias or "value_term" in scheme.hooks:
        raise ValueError(
            f"scheme {scheme.name!r} reads q or k in its logit term or adds a value term; "
            "use AttentionConfig(implementation='dense') or 'blockwise'"
        )
    b = q.shape[0]
    bias = None
    if "logit_bias" in scheme.hooks:
        q_pos = _as_batched_positions(q_positions, b)
        k_pos = _as_batched_positions(k_positions, b)
        bias = scheme.logit_bias(params or {}, q, q_pos, k_pos)
        bias = jnp.broadcast_to(bias, (b, q.shape[2], q.shape[1], k.shape[1])).astype(q.dtype)
    return jax.nn.dot_product_attention(
        q, k, v, bias=bias, scale=scale, is_causal=causal, implementation=implementation
    )


def select_implementation(
    *,
    scheme: Scheme,
    platform: str,
    dtype: jnp.dtype,
    head_dim: int,
    q_len: int,
    k_len: int,
    has_mask: bool,
    aligned: bool,
    blockwise_threshold: int | None = 4096,
) -> str:
    """Chooses "cudnn", "dense" or "blockwise" for one attention call (``implementation="auto"``).

    Args:
      scheme: the positional scheme (its hooks decide what a fused kernel can take).
      platform: ``jax.devices()[0].platform`` ("cpu", "gpu", "tpu").
      dtype: the dtype of q/k/v.
      head_dim: H.
      q_len, k_len: T and S.
      has_mask: a padding mask or extra mask is present (cuDNN path takes none).
      aligned: queries and keys share positions (self-attention, no KV cache), so
        an index-based causal mask equals the position-based one.
      blockwise_threshold: use blockwise when max(T, S) exceeds it (None: never).

    Returns:
      One of "cudnn", "dense", "blockwise".
    """
    if blockwise_threshold is not None and max(q_len, k_len) > blockwise_threshold:
        return "blockwise"
    cudnn_ok = (
        platform == "gpu"
        and jnp.dtype(dtype) in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
        and head_dim % 8 == 0
        and head_dim <= 128
        and not scheme.needs_q_for_bias
        and not scheme.needs_k_for_bias
        and "value_term" not in scheme.hooks
        and not has_mask
        and aligned
    )
    return "cudnn" if cudnn_ok else "dense"


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
    def empty(cls, b: int, tq: int, n: int, h: int) -> _OnlineSoftmax:
        return cls(
            jnp.zeros((b, tq, n, h), jnp.float32),
            jnp.full((b, n, tq), -jnp.inf, jnp.float32),
            jnp.zeros((b, n, tq), jnp.float32),
            jnp.zeros((b, tq), bool),
        )

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


def _key_block_step(state, key_block, *, qb, qpos, scheme, params, causal):
    """Scan body over key blocks: key_block = (k [B, tk, N, H], v, positions, mask [B, tk])."""
    kb, vb, kpos, kmask = key_block
    logits, ok = _masked_logits(
        qb, kb, qpos, kpos, scheme=scheme, params=params, causal=causal, key_mask=kmask
    )  # [B, N, tq, tk], [B, 1, tq, tk]
    state = _online_softmax_update(state, logits, ok, vb, qpos, kpos, scheme=scheme, params=params)
    return state, None


def _query_block_attention(query_block, key_blocks, *, scheme, params, causal):
    """[B, tq, N, H] float32 attention of one query block over every key block.

    query_block: (q [B, tq, N, H] scaled, positions [B, tq]); key_blocks: block-major
    (k, v [nk, B, tk, N, H], positions, mask [nk, B, tk]). Each key step is
    rematerialised in the backward pass, so only the carry is stored per step.
    """
    qb, qpos = query_block
    b, tq, n, h = qb.shape
    step = functools.partial(
        _key_block_step, qb=qb, qpos=qpos, scheme=scheme, params=params, causal=causal
    )
    step = jax.checkpoint(step, prevent_cse=False)
    state, _ = jax.lax.scan(step, _OnlineSoftmax.empty(b, tq, n, h), key_blocks)
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
    scale: float | None = None,
    q_block: int = 512,
    k_block: int = 512,
) -> jax.Array:
    """Memory-efficient attention: online softmax over key blocks, queries in blocks.

    Every positional term (ALiBi/T5 bias, Shaw key and value terms, causal and
    padding masks) is computed per [q_block, k_block] tile from positions, so no
    [N, T, S] array ever exists. Differentiable: each query block is rematerialised
    in the backward pass. Same arguments and result as `dense_attention` (without
    the dense ``mask``/``bias`` arrays, which would be O(T*S)).

    Args:
      q: [B, T, N, H]; k, v: [B, S, K, H]; positions [T]/[B, T] and [S]/[B, S].
      key_mask: [B, S] bool padding mask (True = real key).
      q_block, k_block: tile sizes; T and S need not be multiples of them.

    Returns:
      [B, T, N, H] in v's dtype.

    References: Rabe & Staats 2021 (arXiv 2112.05682); Dao et al. 2022 (arXiv 2205.14135).
    """
    scheme = make_scheme(scheme or "nope")
    params = params or {}
    if q_block < 1 or k_block < 1:
        raise ValueError(f"q_block and k_block must be >= 1; got {q_block}, {k_block}")
    b, t, n, h = q.shape
    s = k.shape[1]
    k, v = _repeat_kv(k, n), _repeat_kv(v, n)
    scale = 1.0 / math.sqrt(h) if scale is None else scale
    q_pos = _as_batched_positions(q_positions, b)
    k_pos = _as_batched_positions(k_positions, b)
    if key_mask is None:
        key_mask = jnp.ones((b, s), dtype=bool)
    q_block, k_block = min(q_block, t), min(k_block, s)

    query_blocks = (  # [nq, B, tq, N, H], [nq, B, tq]
        _blocks(q * jnp.asarray(scale, q.dtype), q_block),
        _blocks(q_pos, q_block),
    )
    key_blocks = (  # [nk, B, tk, N, H] twice, [nk, B, tk] twice
        _blocks(k, k_block),
        _blocks(v, k_block),
        _blocks(k_pos, k_block),
        _blocks(key_mask.astype(bool), k_block, pad_value=False),
    )
    one_query_block = functools.partial(
        _query_block_attention, key_blocks=key_blocks, scheme=scheme, params=params, causal=causal
    )
    out = jax.lax.map(jax.checkpoint(one_query_block), query_blocks)  # [nq, B, tq, N, H]
    out = out.swapaxes(0, 1).reshape(b, -1, n, h)[:, :t]  # [B, T, N, H]
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
    scale: float | None = None,
    attention: AttentionConfig | None = None,
    aligned: bool = False,
) -> jax.Array:
    """Dispatches to the fused, dense or blockwise path (all compute the same function).

    Args:
      q: [B, T, N, H]; k, v: [B, S, K, H], already rotated.
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
            q_len=q.shape[1],
            k_len=k.shape[1],
            has_mask=key_mask is not None,
            aligned=aligned,
            blockwise_threshold=attention.blockwise_threshold,
        )
    common = dict(
        q_positions=q_positions,
        k_positions=k_positions,
        scheme=scheme,
        params=params,
        causal=causal,
        scale=scale,
    )
    if implementation == "cudnn":
        if key_mask is not None:
            raise ValueError(
                "implementation='cudnn' takes no key_mask; use AttentionConfig(implementation="
                "'dense') or 'blockwise'"
            )
        return fused_attention(q, k, v, implementation="cudnn", **common)
    if implementation == "blockwise":
        size = attention.block_size
        return blockwise_attention(q, k, v, key_mask=key_mask, q_block=size, k_block=size, **common)
    return dense_attention(q, k, v, key_mask=key_mask, **common)
