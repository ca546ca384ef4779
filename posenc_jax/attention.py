"""Attention with position hooks: dense, fused (jax.nn.dot_product_attention) and blockwise.

Every path computes the same function::

    q, k = scheme.rotate(q, k)                         (done by the caller, before any cache)
    logits = (q * scale) . k + scheme.logit_bias(...) + bias
    w = softmax(where(allowed, logits, MASK_VALUE))    allowed = causal & key_mask & mask
    out = w . v + scheme.value_term(w)

with ``causal`` meaning ``k_position <= q_position`` on the explicit positions, so
KV-cache offsets, left padding and randomized positions need no special case.
A row with no allowed key returns zeros (finite outputs and gradients).

Shape legend: B batch, T query length, S key length, N query heads, K key/value
heads (N % K == 0, grouped-query attention), H head dim.

References: Vaswani et al. 2017 (arXiv 1706.03762); Rabe & Staats 2021,
"Self-attention Does Not Need O(n^2) Memory" (arXiv 2112.05682); Dao et al. 2022,
"FlashAttention" (arXiv 2205.14135).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from posenc_jax.schemes import Params, Scheme, make_scheme

__all__ = [
    "MASK_VALUE",
    "attend",
    "blockwise_attention",
    "dense_attention",
    "select_implementation",
]

# Masked logits are *replaced* (not offset) by this value, so it never overflows;
# it stays many orders of magnitude below any ALiBi/T5 bias (|bias| <= slope * 2^31).
MASK_VALUE = -1e30

IMPLEMENTATIONS = ("auto", "xla", "cudnn", "blockwise")


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
    kv_heads = x.shape[-2]
    if num_heads % kv_heads:
        raise ValueError(
            f"the number of query heads ({num_heads}) must be a multiple of the number of "
            f"key/value heads ({kv_heads})"
        )
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
    """Attention that materialises the [B, N, T, S] logits; reference for the other paths.

    Args:
      q: [B, T, N, H]; k, v: [B, S, K, H] (already rotated by the scheme's q/k hook).
      q_positions: [T] or [B, T]; k_positions: [S] or [B, S].
      scheme: fills the logit and value hooks (None = NoPE). params: its attention params.
      causal: allow only keys with position <= the query position.
      key_mask: [B, S] bool, True = a real key (padding mask).
      mask: optional extra bool mask broadcastable to [B, N, T, S].
      bias: optional extra additive bias broadcastable to [B, N, T, S].
      scale: logit scale, default 1/sqrt(H).

    Returns:
      [B, T, N, H] in v's dtype.
    """
    scheme = make_scheme(scheme or "nope")
    params = params or {}
    b, _, n, h = q.shape
    k, v = _repeat_kv(k, n), _repeat_kv(v, n)
    q_pos = _as_batched_positions(q_positions, b)
    k_pos = _as_batched_positions(k_positions, b)
    scale = 1.0 / math.sqrt(h) if scale is None else scale
    qs = q * jnp.asarray(scale, q.dtype)
    logits = jnp.einsum("btnh,bsnh->bnts", qs, k, preferred_element_type=jnp.float32)
    if "logit_bias" in scheme.hooks:
        logits = logits + scheme.logit_bias(params, qs, q_pos, k_pos)
    if bias is not None:
        logits = logits + bias.astype(jnp.float32)
    allowed = _allowed(q_pos, k_pos, causal=causal, key_mask=key_mask)
    if mask is not None:
        allowed = allowed & mask.astype(bool)
    logits = jnp.where(allowed, logits, MASK_VALUE)
    weights = jax.nn.softmax(logits, axis=-1)
    weights = jnp.where(jnp.any(allowed, axis=-1, keepdims=True), weights, 0.0)
    out = jnp.einsum("bnts,bsnh->btnh", weights.astype(v.dtype), v)
    if "value_term" in scheme.hooks:
        out = out + scheme.value_term(params, weights.astype(v.dtype), q_pos, k_pos).astype(
            out.dtype
        )
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
    if scheme.needs_q_for_bias or "value_term" in scheme.hooks:
        raise ValueError(
            f"scheme {scheme.name!r} reads q in its logit term or adds a value term; "
            "use implementation='xla' or 'blockwise'"
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
    """Chooses "cudnn", "xla" (dense) or "blockwise" for one attention call.

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
      One of "cudnn", "xla", "blockwise".
    """
    if blockwise_threshold is not None and max(q_len, k_len) > blockwise_threshold:
        return "blockwise"
    cudnn_ok = (
        platform == "gpu"
        and jnp.dtype(dtype) in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
        and head_dim % 8 == 0
        and head_dim <= 128
        and not scheme.needs_q_for_bias
        and "value_term" not in scheme.hooks
        and not has_mask
        and aligned
    )
    return "cudnn" if cudnn_ok else "xla"


def _pad_to(x: jax.Array, axis: int, multiple: int, value=0) -> jax.Array:
    pad = (-x.shape[axis]) % multiple
    if pad == 0:
        return x
    widths = [(0, 0)] * x.ndim
    widths[axis] = (0, pad)
    return jnp.pad(x, widths, constant_values=value)


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

    qs = _pad_to(q * jnp.asarray(scale, q.dtype), 1, q_block)
    q_pos_p = _pad_to(q_pos, 1, q_block)
    kp, vp = _pad_to(k, 1, k_block), _pad_to(v, 1, k_block)
    k_pos_p = _pad_to(k_pos, 1, k_block)
    key_mask_p = _pad_to(key_mask.astype(bool), 1, k_block, value=False)
    nq, nk = qs.shape[1] // q_block, kp.shape[1] // k_block

    # Block-major views: [nk, B, k_block, ...] for lax.scan.
    k_blocks = kp.reshape(b, nk, k_block, n, h).swapaxes(0, 1)
    v_blocks = vp.reshape(b, nk, k_block, n, h).swapaxes(0, 1)
    kpos_blocks = k_pos_p.reshape(b, nk, k_block).swapaxes(0, 1)
    kmask_blocks = key_mask_p.reshape(b, nk, k_block).swapaxes(0, 1)

    @jax.checkpoint
    def one_query_block(args):
        qb, qpos = args  # [B, tq, N, H], [B, tq]

        @functools.partial(jax.checkpoint, prevent_cse=False)
        def step(carry, kv):
            acc, m, l, any_ok = carry
            kb, vb, kpos, kmask = kv
            logits = jnp.einsum("btnh,bsnh->bnts", qb, kb, preferred_element_type=jnp.float32)
            if "logit_bias" in scheme.hooks:
                logits = logits + scheme.logit_bias(params, qb, qpos, kpos)
            ok = _allowed(qpos, kpos, causal=causal, key_mask=kmask)  # [B, 1, tq, tk]
            logits = jnp.where(ok, logits, MASK_VALUE)
            m_new = jnp.maximum(m, jnp.max(logits, axis=-1))  # [B, N, tq]
            p = jnp.exp(logits - m_new[..., None])
            corr = jnp.exp(m - m_new)
            l = l * corr + jnp.sum(p, axis=-1)
            pv = jnp.einsum(
                "bnts,bsnh->btnh", p.astype(vb.dtype), vb, preferred_element_type=jnp.float32
            )
            if "value_term" in scheme.hooks:
                pv = pv + scheme.value_term(params, p.astype(vb.dtype), qpos, kpos).astype(
                    jnp.float32
                )
            acc = acc * jnp.swapaxes(corr, 1, 2)[..., None] + pv
            any_ok = any_ok | jnp.any(ok, axis=-1)[:, 0]
            return (acc, m_new, l, any_ok), None

        tq = qb.shape[1]
        init = (
            jnp.zeros((b, tq, n, h), jnp.float32),
            jnp.full((b, n, tq), -jnp.inf, jnp.float32),
            jnp.zeros((b, n, tq), jnp.float32),
            jnp.zeros((b, tq), bool),
        )
        (acc, _, l, any_ok), _ = jax.lax.scan(
            step, init, (k_blocks, v_blocks, kpos_blocks, kmask_blocks)
        )
        out = acc / jnp.swapaxes(l, 1, 2)[..., None]
        return jnp.where(any_ok[:, :, None, None], out, 0.0)

    q_blocks = qs.reshape(b, nq, q_block, n, h).swapaxes(0, 1)
    qpos_blocks = q_pos_p.reshape(b, nq, q_block).swapaxes(0, 1)
    out = jax.lax.map(one_query_block, (q_blocks, qpos_blocks))  # [nq, B, tq, N, H]
    out = out.swapaxes(0, 1).reshape(b, nq * q_block, n, h)[:, :t]
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
    implementation: str = "auto",
    blockwise_threshold: int | None = 4096,
    block_size: int = 512,
    aligned: bool = False,
) -> jax.Array:
    """Dispatches to the fused, dense or blockwise path (all compute the same function).

    Args:
      q: [B, T, N, H]; k, v: [B, S, K, H], already rotated.
      implementation: "auto" (see `select_implementation`), "xla" (dense),
        "cudnn" (jax.nn.dot_product_attention with cuDNN) or "blockwise".
      blockwise_threshold: with "auto", lengths above it use the blockwise path.
      block_size: tile size of the blockwise path.
      aligned: q and k share positions (self-attention without cache).

    Returns:
      [B, T, N, H].
    """
    scheme = make_scheme(scheme or "nope")
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(
            f"implementation must be one of {list(IMPLEMENTATIONS)}; got {implementation!r}"
        )
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
            blockwise_threshold=blockwise_threshold,
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
            raise ValueError("implementation='cudnn' takes no key_mask; use 'xla' or 'blockwise'")
        return fused_attention(q, k, v, implementation="cudnn", **common)
    if implementation == "blockwise":
        return blockwise_attention(
            q, k, v, key_mask=key_mask, q_block=block_size, k_block=block_size, **common
        )
    return dense_attention(q, k, v, key_mask=key_mask, **common)
