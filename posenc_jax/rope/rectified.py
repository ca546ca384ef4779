"""Training-free RoPE extensions that cap or compress the distance beyond a window.

Within a window of ``w`` positions, a query and key see their true RoPE distance; beyond
it they see a distance that stays inside what training covered. Each method is a pair of
position maps for the far logits, applied to the query and key positions::

    logits_ij = RoPE(q, i) . RoPE(k, j)              if i - j < w     (neighbours)
              = RoPE(q, f(i)) . RoPE(k, g(j))        otherwise        (far keys)

- ReRoPE (Su 2023): f(i) = w, g(j) = 0, so every far key sits at distance w.
- Leaky ReRoPE (Su 2023): f(i) = (i + w (k - 1)) / k, g(j) = j / k, distance
  w + (i - j - w) / k: slope 1 inside the window, 1/k beyond.
- SelfExtend (Jin et al. 2024): f(i) = floor(i / G) + w - floor(w / G), g(j) =
  floor(j / G): grouped positions beyond the neighbour window, shifted so the two
  meet at distance w.
- StreamingLLM (Xiao et al. 2024), positions within the cache: only the first s keys
  (attention sinks) and the window are kept; the far term covers the sinks, seen from
  f(i) = min(i, s + w - 1), g(j) = j, and every other far key is masked out. (In the
  cache the window keys keep their distances; a sink at j sits s + w - 1 - j away.)

The far term rotates q and k again with the mapped positions, so the logits cost two
q.k products (the reference's two-pass attention). Keys enter unrotated; a KV cache keeps
them so.

Dual Chunk Attention (An et al. 2024) splits positions into chunks of ``s`` and never
rotates by more than ``s + w`` (w, a local window, s + w below the training length).
Every key sits at ``j mod s``; the query's position depends on how many chunks back
the key is::

    same chunk (intra):          q at i mod s            (distance i - j)
    previous chunk (successive): q at min(i mod s + s, s + w)
    earlier chunks (inter):      q at s + w

so neighbours across a chunk boundary keep their true distance up to ``w`` and far keys
all look like the farthest distance trained. That is three q.k products.

Shape legend: B batch, T queries, S keys, N heads, H head dim.

References: Su 2023, "Rectified Rotary Position Embeddings" (kexue.fm/archives/9708;
reference code bojone/rerope, rerope_patch.py: ``query_states2 =
apply_rotary_pos_emb(query_states, ..., position_ids * 0 + window)`` against unrotated keys,
``rectified_mask = (position_ids[:, -q_len:, None] - position_ids[:, None]).abs() < window``,
``torch.where(rectified_mask, attn_weights1, attn_weights2)``; leaky_rerope_patch.py: the
far query at ``position_ids + window * (scaling_factor - 1)`` and the far key at
``position_ids``, both under linear scaling by ``scaling_factor``); Jin et al. 2024,
"LLM Maybe LongLM: Self-Extend LLM Context Window Without Tuning" (ICML 2024, arXiv
2401.01325); An et al. 2024, "Training-Free Long-Context Scaling of Large Language
Models" (Dual Chunk Attention, ICML 2024, arXiv 2402.17463; reference code
HKUNLP/ChunkLlama, chunkllama_attn_replace.py: ``chunk_len = chunk_size - local_window``,
``qc_t = (q_t + chunk_len).clamp(max=chunk_size)``, ``k_t = arange % chunk_len``, the
inter-chunk query at ``qc_t[chunk_len - 1]``); Xiao et al. 2024, "Efficient Streaming
Language Models with Attention Sinks" (ICLR 2024, arXiv 2309.17453; reference code
mit-han-lab/streaming-llm, pos_shift/modify_llama.py: the query rotated at its
``position_ids``, ``key_position_ids = torch.arange(kv_seq_len)``; kv_cache.py,
``StartRecentKVCache``: the first ``start_size`` and the last ``recent_size`` keys).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from posenc_jax.rope.rotation import apply_rope
from posenc_jax.stick_breaking import MASK_VALUE

__all__ = [
    "RECTIFIED_METHODS",
    "dual_chunk_positions",
    "far_positions",
    "rectified_rope_logits",
]

RECTIFIED_METHODS = ("rerope", "leaky_rerope", "self_extend", "dual_chunk", "streaming_llm")


def far_positions(
    method: str,
    q_positions: jax.Array,
    k_positions: jax.Array,
    *,
    window: int,
    factor: float,
    sink_tokens: int = 0,
) -> tuple[jax.Array, jax.Array]:
    """The positions the far logits rotate q and k with: (f(i), g(j)) (two-term methods).

    Example:
        >>> import jax.numpy as jnp
        >>> fq, fk = far_positions("self_extend", jnp.array([10]), jnp.array([0, 3, 4]),
        ...                        window=4, factor=2)
        >>> (fq - fk).tolist()  # floor(10/2) + 4 - floor(4/2) - floor(j/2)
        [7, 6, 5]

    Args:
      method: "rerope", "leaky_rerope", "self_extend" or "streaming_llm".
      q_positions: [T] or [B, T]; k_positions: [S] or [B, S].
      window: w, the neighbour window.
      factor: k of Leaky ReRoPE (slope 1/k beyond the window) or G of SelfExtend (the
        group size); unused by ReRoPE and StreamingLLM.
      sink_tokens: StreamingLLM's s, the sinks kept before the window.

    Returns:
      Query and key positions of the far term (float32 for Leaky ReRoPE, int32 else).
    """
    q_positions, k_positions = jnp.asarray(q_positions), jnp.asarray(k_positions)
    if method == "dual_chunk":
        raise ValueError("dual_chunk has three position maps: use dual_chunk_positions")
    if method == "rerope":
        return jnp.full_like(q_positions, window), jnp.zeros_like(k_positions)
    if method == "streaming_llm":
        return jnp.minimum(q_positions, sink_tokens + window - 1), k_positions
    if method == "leaky_rerope":
        q = (q_positions.astype(jnp.float32) + window * (factor - 1.0)) / factor
        return q, k_positions.astype(jnp.float32) / factor
    if method == "self_extend":
        group = int(factor)
        shift = window - window // group
        return q_positions // group + shift, k_positions // group
    raise ValueError(f"unknown rectified RoPE method {method!r}; valid: {list(RECTIFIED_METHODS)}")


def dual_chunk_positions(
    q_positions: jax.Array, k_positions: jax.Array, *, chunk_size: int, local_window: int
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Dual Chunk Attention's positions and the chunk distance of each query-key pair.

    Example:
        >>> import jax.numpy as jnp
        >>> q_pos, k_pos, chunks = dual_chunk_positions(
        ...     jnp.array([9]), jnp.arange(10), chunk_size=4, local_window=1)
        >>> k_pos.tolist(), q_pos.tolist()  # query 9 = chunk 2, offset 1
        ([0, 1, 2, 3, 0, 1, 2, 3, 0, 1], [[1, 5, 5]])
        >>> chunks[0].tolist()  # 2 or more: inter, 1: successive, 0: intra
        [2, 2, 2, 2, 1, 1, 1, 1, 0, 0]

    Args:
      q_positions: [T] or [B, T]; k_positions: [S] or [B, S] (integer).
      chunk_size: s, the chunk length (> 0).
      local_window: w, how far into the next chunk keys keep their true distance
        (0 <= w).

    Returns:
      ``(q_positions [..., T, 3], k_positions [..., S], chunk_distance [..., T, S])``:
      the query's position for the intra, successive and inter terms, the key's
      position ``j mod s``, and ``i // s - j // s``.
    """
    qp, kp = jnp.asarray(q_positions), jnp.asarray(k_positions)
    offset = qp % chunk_size
    top = chunk_size + local_window  # the largest position any term rotates by
    q3 = jnp.stack(
        [offset, jnp.minimum(offset + chunk_size, top), jnp.full_like(offset, top)], axis=-1
    )
    chunks = (qp // chunk_size)[..., :, None] - (kp // chunk_size)[..., None, :]
    return q3, kp % chunk_size, chunks


def rectified_rope_logits(
    q: jax.Array,
    k: jax.Array,
    q_positions: jax.Array,
    k_positions: jax.Array,
    *,
    method: str,
    window: int,
    factor: float = 1.0,
    local_window: int = 0,
    sink_tokens: int = 0,
    rotate: Callable[..., jax.Array] | None = None,
    inv_freq: jax.Array | None = None,
) -> jax.Array:
    """q . k logits under ReRoPE, Leaky ReRoPE, SelfExtend, Dual Chunk Attention or
    StreamingLLM.

    Example:
        >>> import jax.numpy as jnp
        >>> from posenc_jax.rope import rope_frequencies
        >>> q = k = jnp.ones((1, 6, 1, 4))
        >>> inv_freq, _ = rope_frequencies(4)
        >>> logits = rectified_rope_logits(q, k, jnp.arange(6), jnp.arange(6),
        ...                                method="rerope", window=2, inv_freq=inv_freq)
        >>> bool(jnp.allclose(logits[0, 0, 5, :4], logits[0, 0, 2, 0]))  # all at distance 2
        True

    Args:
      q: [B, T, N, H] unrotated queries (already scaled by the caller if it scales);
        k: [B, S, N, H] unrotated keys.
      q_positions: [T] or [B, T]; k_positions: [S] or [B, S] (integer).
      method: one of `RECTIFIED_METHODS`.
      window, factor: see `far_positions`; for "dual_chunk", ``window`` is the chunk
        size s (``factor`` unused).
      local_window: Dual Chunk Attention's w (see `dual_chunk_positions`); unused by
        the others.
      sink_tokens: StreamingLLM's s: far keys at positions >= s get ``MASK_VALUE``
        (evicted from its cache); unused by the others.
      rotate: ``rotate(x, positions) -> x`` with RoPE's settings (frequencies, layout,
        partial rotary); default `apply_rope` with ``inv_freq``.
      inv_freq: the frequencies for the default ``rotate``.

    Returns:
      [B, N, T, S] float32: the near logits for ``i - j < window``, the far ones elsewhere
      (Dual Chunk Attention: the intra, successive or inter term by chunk distance).
    """
    if rotate is None:
        if inv_freq is None:
            raise ValueError("rectified_rope_logits needs rotate or inv_freq")

        def rotate(x, positions):
            return apply_rope(x, positions, inv_freq=inv_freq)

    def dot(a, b):
        return jnp.einsum("btnh,bsnh->bnts", a, b, preferred_element_type=jnp.float32)

    if method == "dual_chunk":
        q3, kp, chunks = dual_chunk_positions(
            q_positions, k_positions, chunk_size=window, local_window=local_window
        )
        kr = rotate(k, kp)
        intra, succ, inter = (dot(rotate(q, q3[..., m]), kr) for m in range(3))
        chunks = chunks[None, None] if chunks.ndim == 2 else chunks[:, None]  # [B|1, 1, T, S]
        return jnp.where(chunks <= 0, intra, jnp.where(chunks == 1, succ, inter))
    near = dot(rotate(q, q_positions), rotate(k, k_positions))
    fq, fk = far_positions(
        method, q_positions, k_positions, window=window, factor=factor, sink_tokens=sink_tokens
    )
    far = dot(rotate(q, fq), rotate(k, fk))
    qp = jnp.asarray(q_positions)
    kp = jnp.asarray(k_positions)
    qp = qp[None] if qp.ndim == 1 else qp
    kp = kp[None] if kp.ndim == 1 else kp
    distance = qp[:, None, :, None] - kp[:, None, None, :]  # [B, 1, T, S]
    if method == "streaming_llm":  # far keys other than the sinks are evicted
        far = jnp.where(kp[:, None, None, :] < sink_tokens, far, MASK_VALUE)
    return jnp.where(jnp.abs(distance) < window, near, far)
