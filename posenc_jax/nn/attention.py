"""Flax NNX multi-head attention that takes a positional scheme.

Shape legend: B batch, T query length, S key length, N query heads, K key/value
heads, H head dim, D model dim.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from posenc_jax._checks import check_at_run_time, check_heads
from posenc_jax.attention import AttentionConfig, attend, attention_weights
from posenc_jax.random_distances import check_distance_table
from posenc_jax.schemes import DISTANCES, Scheme, make_scheme
from posenc_jax.softmax_scale import SoftmaxScale, make_softmax_scale, scale_queries

__all__ = ["MultiHeadAttention"]


def _raise_if_overflow(index: Any, *, new: int, max_length: int) -> None:
    end = int(index) + new
    if end > max_length:
        raise ValueError(
            f"KV cache overflow: writing {new} token(s) at cache index {int(index)} reaches "
            f"index {end} > max_length={max_length}; call init_cache(batch_size, max_length) "
            f"with max_length >= {end}"
        )


def _check_cache_room(index: jax.Array, new: int, max_length: int) -> None:
    """Raises ValueError when ``new`` tokens written at ``index`` pass ``max_length`` slots.

    A concrete index (eager call) is checked now; a traced one (under jit) when the
    program runs, by a host callback taken only on overflow
    (`posenc_jax._checks.check_at_run_time`): jax then raises a
    ``JaxRuntimeError`` with the message.
    """
    check = functools.partial(_raise_if_overflow, new=new, max_length=max_length)
    check_at_run_time(check, index, when=lambda i: i + new > max_length)


def _allowed_key_count(inputs: dict[str, Any], b: int, t: int) -> jax.Array:
    """[B, T] float32: the keys each query may attend without a causal mask.

    Counts the real keys (``key_mask``) of the query's segment; one compare-and-sum
    over [B, T, S] that XLA fuses into the reduction (no [T, S] array is kept).
    """
    key_mask = inputs.get("key_mask")
    q_seg, k_seg = (
        inputs.get("segment_ids"),
        inputs.get("kv_segment_ids", inputs.get("segment_ids")),
    )
    s = inputs["k_positions"].shape[-1]
    valid = jnp.ones((b, s), bool) if key_mask is None else jnp.asarray(key_mask, bool)
    if q_seg is None:
        return jnp.broadcast_to(jnp.sum(valid, axis=-1, dtype=jnp.float32)[:, None], (b, t))
    q_seg = jnp.broadcast_to(jnp.asarray(q_seg), (b, t))
    k_seg = jnp.broadcast_to(jnp.asarray(k_seg), (b, s))
    same = (q_seg[:, :, None] == k_seg[:, None, :]) & valid[:, None, :]  # [B, T, S]
    return jnp.sum(same, axis=-1, dtype=jnp.float32)


class MultiHeadAttention(nnx.Module):
    """Multi-head (optionally grouped-query) self-attention with position hooks.

    The scheme's q/k hook rotates q and k with their explicit positions; its logit
    and value hooks are called inside the attention kernel (dense, cuDNN or
    blockwise, as ``attention`` says; by default chosen per call by
    `posenc_jax.attention.select_implementation`). The module holds the scheme's
    attention parameters (T5 table, Shaw tables, FoX's gate projection) as one
    ``nnx.Param`` pytree. A scheme with the ``token_state`` hook (FoX) gets the
    per-token states computed from this layer's input x; the KV cache keeps each
    key's state and the running carry, so decoding continues the prompt's states.

    Packed sequences pass ``segment_ids`` [B, T] (a token attends only to tokens
    with its id) and positions that restart in each document. The KV cache keeps
    each key's position and segment id next to it, so decoding continues a packed
    prompt; decoding past the ``max_length`` slots of `init_cache` is an error.

    With ``sow_weights=True`` (a constructor keyword, an attribute, or
    ``nnx.view(model, sow_weights=True)``) each call also sows its softmax weights
    ``[B, N, T, S]`` float32 as the ``nnx.Intermediate`` ``"attention_weights"``,
    computed by `posenc_jax.attention.attention_weights` whatever path the forward
    took: this materialises the [B, N, T, S] array even when the forward itself is
    blockwise. Collect them with ``nnx.capture`` (flax's way to read intermediates).

    ``softmax_scale`` (a `posenc_jax.softmax_scale.SoftmaxScale`, a kind name or
    a dict) adds a length-scaled softmax to any scheme: after the scheme's q/k
    hook, each query is multiplied by its factor (log n, Qwen's logn, SSMax or
    Llama 4's temperature), so every attention path and KV-cache decoding get it
    alike. n, the number of keys a query attends, is ``position + 1`` for causal
    attention and the count of its allowed keys (padding, segments) otherwise.
    SSMax's per-head s is the ``nnx.Param`` ``softmax_scale_params["s"]`` [N].

    ``sliding_window`` (an int w) limits each query to keys less than w positions away
    (local attention, as in Mistral, Gemma and gpt-oss's sliding layers);
    ``attention_chunk`` (an int C) to keys of its own chunk of C positions (``pos //
    C``; Llama 4's chunked attention in its RoPE layers); ``sink_tokens`` (an int s,
    with a window) keeps the keys at positions below s visible (StreamingLLM's attention
    sinks; `init_rolling_cache` then decodes a stream of any length in s + w - 1
    cache slots); ``attention_sinks=True``
    adds gpt-oss's learned sink: one logit per head (``nnx.Param`` ``sink_logits`` [N],
    zeros at init) for a virtual key with a zero value, so a head can put weight on
    "nothing". All three act on every path (dense, blockwise, KV-cache decoding) and
    keep the call off the cuDNN kernel.

    ``qkv_bias`` / ``out_bias`` add biases to the q, k, v / output projections;
    ``qk_norm=True`` applies an RMSNorm (epsilon ``norm_eps``, a learned scale [H]
    shared by the heads) to each head's query and key before the scheme's q/k hook
    (Qwen3, Gemma 3); ``logit_softcap`` c soft-caps the logits (``c * tanh(logit / c)``,
    Gemma 2).

    Example:
        >>> attn = MultiHeadAttention(32, num_heads=4, scheme="alibi", causal=True,
        ...                           rngs=nnx.Rngs(0))
        >>> attn(jnp.ones((2, 5, 32)), positions=jnp.arange(5)).shape
        (2, 5, 32)
        >>> forward = nnx.capture(nnx.view(attn, sow_weights=True), nnx.Intermediate)
        >>> out, sown = forward(jnp.ones((2, 5, 32)), positions=jnp.arange(5))
        >>> sown["attention_weights"].get_value()[0].shape  # a tuple: one entry per call
        (2, 4, 5, 5)

    References: Vaswani et al. 2017 (arXiv 1706.03762); Ainslie et al. 2023, GQA
    (arXiv 2305.13245).
    """

    def __init__(
        self,
        d_model: int,
        *,
        num_heads: int,
        scheme: Scheme | str | dict[str, Any] = "nope",
        num_kv_heads: int | None = None,
        head_dim: int | None = None,
        causal: bool = True,
        dropout_rate: float = 0.0,
        attention: AttentionConfig | None = None,
        sow_weights: bool = False,
        softmax_scale: SoftmaxScale | str | dict[str, Any] | None = None,
        sliding_window: int | None = None,
        attention_chunk: int | None = None,
        sink_tokens: int = 0,
        attention_sinks: bool = False,
        qkv_bias: bool = False,
        out_bias: bool = False,
        qk_norm: bool = False,
        norm_eps: float = 1e-6,
        logit_softcap: float | None = None,
        dtype: jnp.dtype | None = None,
        param_dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ) -> None:
        num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        for key, value in (
            ("sliding_window", sliding_window),
            ("attention_chunk", attention_chunk),
        ):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ValueError(f"{key} must be None or an int >= 1; got {value!r}")
        if isinstance(sink_tokens, bool) or not isinstance(sink_tokens, int) or sink_tokens < 0:
            raise ValueError(f"sink_tokens must be an int >= 0; got {sink_tokens!r}")
        if sink_tokens and sliding_window is None:
            raise ValueError(
                f"sink_tokens={sink_tokens} keeps the first tokens visible beyond a sliding "
                "window: set sliding_window too"
            )
        if not isinstance(attention_sinks, bool):
            raise ValueError(f"attention_sinks must be True or False; got {attention_sinks!r}")
        num_heads, num_kv_heads = check_heads(num_heads, num_kv_heads, "MultiHeadAttention")
        if head_dim is None:
            if d_model % num_heads:
                raise ValueError(
                    f"d_model ({d_model}) must be divisible by num_heads ({num_heads}), "
                    "or pass head_dim"
                )
            head_dim = d_model // num_heads
        if head_dim < 1:
            raise ValueError(f"head_dim must be >= 1; got {head_dim} (more heads than dims?)")
        self.scheme = make_scheme(scheme).configure(causal=causal)
        self.scheme.validate(num_heads=num_heads, head_dim=head_dim, d_model=d_model)
        self.num_heads, self.num_kv_heads, self.head_dim = num_heads, num_kv_heads, head_dim
        self.causal = causal
        self.attention = AttentionConfig() if attention is None else attention
        self.sow_weights = sow_weights
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.q_proj = nnx.Linear(d_model, num_heads * head_dim, use_bias=qkv_bias, **kw)
        self.k_proj = nnx.Linear(d_model, num_kv_heads * head_dim, use_bias=qkv_bias, **kw)
        self.v_proj = nnx.Linear(d_model, num_kv_heads * head_dim, use_bias=qkv_bias, **kw)
        self.o_proj = nnx.Linear(num_heads * head_dim, d_model, use_bias=out_bias, **kw)
        # Qwen3 / Gemma 3: RMSNorm over each head's H dims, before the positional hook
        self.q_norm = nnx.data(nnx.RMSNorm(head_dim, epsilon=norm_eps, **kw) if qk_norm else None)
        self.k_norm = nnx.data(nnx.RMSNorm(head_dim, epsilon=norm_eps, **kw) if qk_norm else None)
        pos_params = self.scheme.init_attention_params(
            rngs.params(), num_heads=num_heads, head_dim=head_dim
        )
        if "token_state" in self.scheme.hooks:  # FoX's forget-gate projection
            pos_params = {
                **pos_params,
                **self.scheme.init_token_params(
                    rngs.params(), d_model=d_model, num_heads=num_heads
                ),
            }
        self.pos_params = nnx.Param(pos_params)
        self.softmax_scale = make_softmax_scale(softmax_scale)
        scale_params = {}
        if self.softmax_scale is not None:
            scale_params = self.softmax_scale.init_params(num_heads=num_heads)
        self.softmax_scale_params = nnx.data(nnx.Param(scale_params) if scale_params else None)
        self.sliding_window = sliding_window
        self.attention_chunk = attention_chunk
        self.sink_tokens = sink_tokens
        self.logit_softcap = logit_softcap
        # gpt-oss: one learned sink logit per query head, zeros at init
        self.sink_logits = nnx.data(
            nnx.Param(jnp.zeros((num_heads,), jnp.float32)) if attention_sinks else None
        )
        self.dropout = nnx.Dropout(dropout_rate, rngs=rngs)
        self.cache: dict[str, nnx.Cache] | None = None

    def set_view(self, sow_weights: bool | None = None) -> None:
        """Used by ``nnx.view``.

        Args:
          sow_weights: sow the softmax weights of every call (see the class docstring).
        """
        if sow_weights is not None:
            self.sow_weights = sow_weights

    # -- KV cache ------------------------------------------------------------
    def init_cache(self, batch_size: int, max_length: int, *, dtype=jnp.float32) -> None:
        """Allocates a KV cache of ``max_length`` slots for incremental decoding.

        The cache keeps, per slot, the rotated key, the value, the key's position,
        whether it is a real token and its segment id (and, for a scheme with the
        ``token_state`` hook, the key's state, plus the carry after the last one).
        Writing past ``max_length`` is an error (see `__call__`), never a silent
        overwrite.
        """
        self._allocate_cache(batch_size, max_length, dtype)

    def init_rolling_cache(self, batch_size: int, *, dtype=jnp.float32) -> None:
        """Allocates a ring-buffer KV cache that decodes a stream of any length.

        With a sliding window w (and ``sink_tokens`` s), a query never sees keys other
        than the first s and the last w - 1 before it, so the cache holds s + w - 1
        slots (at least s + 1): the first s tokens stay, later ones overwrite the
        oldest slot of the ring. Memory is constant in the stream length; each step
        attends to the cache and the new tokens, sorted by age (StreamingLLM's
        ``StartRecentKVCache``; Mistral's rolling buffer without sinks).

        Raises:
          ValueError: without ``sliding_window`` (every key would have to stay).
        """
        if self.sliding_window is None:
            raise ValueError(
                "init_rolling_cache needs sliding_window (and optionally sink_tokens): "
                "without a window every key stays visible; use init_cache(batch, max_length)"
            )
        slots = self.sink_tokens + max(self.sliding_window - 1, 1)
        self._allocate_cache(batch_size, slots, dtype)
        self.cache["written"] = nnx.Cache(jnp.full((slots,), -1, jnp.int32))  # token count

    def _allocate_cache(self, batch_size: int, max_length: int, dtype) -> None:
        shape = (batch_size, max_length, self.num_kv_heads, self.head_dim)
        k_shape = (*shape[:-1], self.scheme.rotated_dim(self.head_dim))  # PoPE: 2H
        cache = {
            "k": nnx.Cache(jnp.zeros(k_shape, dtype)),
            "v": nnx.Cache(jnp.zeros(shape, dtype)),
            "positions": nnx.Cache(jnp.zeros((batch_size, max_length), jnp.int32)),
            "valid": nnx.Cache(jnp.zeros((batch_size, max_length), bool)),
            "segment_ids": nnx.Cache(jnp.zeros((batch_size, max_length), jnp.int32)),
            "index": nnx.Cache(jnp.zeros((), jnp.int32)),
        }
        if "token_state" in self.scheme.hooks:  # per-key states [B, S, N] and the carry [B, N]
            n = self.num_heads
            cache["token_state"] = nnx.Cache(jnp.zeros((batch_size, max_length, n), jnp.float32))
            cache["token_carry"] = nnx.Cache(jnp.zeros((batch_size, n), jnp.float32))
        self.cache = nnx.data(cache)

    def _last_segment(self, b: int, t: int) -> jax.Array:
        """[B, T]: the segment id of each row's last cached key (0 for an empty cache)."""
        c = self.cache
        last = jnp.maximum(c["index"][...] - 1, 0)
        if self._rolling:
            last = self._ring_slot(last)
        ids = jax.lax.dynamic_slice_in_dim(c["segment_ids"][...], last, 1, axis=1)  # [B, 1]
        return jnp.broadcast_to(ids, (b, t))

    @property
    def _rolling(self) -> bool:
        """Whether the cache is the ring buffer of `init_rolling_cache`."""
        return self.cache is not None and "written" in self.cache

    def _ring_slot(self, count: jax.Array) -> jax.Array:
        """The rolling cache's slot of the token written ``count``-th (0-based)."""
        sinks = self.sink_tokens
        ring = self.cache["k"].shape[1] - sinks
        return jnp.where(count < sinks, count, sinks + (count - sinks) % ring)

    def _update_rolling_cache(self, k, v, positions, key_mask, segment_ids, states=None):
        """Attends over the cache (sorted by age) and the new tokens, then writes the
        new tokens into the ring; returns what `_update_cache` returns, S = slots + T."""
        c = self.cache
        idx, t, size = c["index"][...], k.shape[1], c["k"].shape[1]
        order = jnp.argsort(c["written"][...])  # oldest first; empty slots (-1) lead
        # Token idx + i goes to its ring slot unless a later new token takes that slot.
        count = idx + jnp.arange(t)
        keep = (count < self.sink_tokens) | (count >= idx + t - (size - self.sink_tokens))
        slots = jnp.where(keep, self._ring_slot(count), size)  # size: dropped
        new = {"k": k, "v": v, "positions": positions, "valid": key_mask,
               "segment_ids": segment_ids}  # fmt: skip
        if states is not None:
            new["token_state"] = states
        out = {}
        for name, value in new.items():
            old = c[name][...]
            value = value.astype(old.dtype)
            out[name] = jnp.concatenate([jnp.take(old, order, axis=1), value], axis=1)
            c[name][...] = old.at[:, slots].set(value, mode="drop")
        c["written"][...] = c["written"][...].at[slots].set(count, mode="drop")
        c["index"][...] = idx + t
        names = ("k", "v", "positions", "valid", "segment_ids")
        return (*(out[name] for name in names), out.get("token_state"))

    def _update_cache(self, k, v, positions, key_mask, segment_ids, states=None):
        """Writes the new keys at the cache index; returns the whole cache.

        k, v: [B, T, K, H]; positions, key_mask, segment_ids: [B, T]; states: [B, T, N]
        or None. Returns k, v [B, S, K, H] and positions, valid, segment ids [B, S]
        (S = max_length), and the cached states [B, S, N] (None without states).
        """
        if self._rolling:
            return self._update_rolling_cache(k, v, positions, key_mask, segment_ids, states)
        c = self.cache
        idx = c["index"][...]
        _check_cache_room(idx, k.shape[1], c["k"].shape[1])
        start = (0, idx, 0, 0)
        c["k"][...] = jax.lax.dynamic_update_slice(c["k"][...], k.astype(c["k"].dtype), start)
        c["v"][...] = jax.lax.dynamic_update_slice(c["v"][...], v.astype(c["v"].dtype), start)
        for name, new in (
            ("positions", positions),
            ("valid", key_mask),
            ("segment_ids", segment_ids),
        ):
            old = c[name][...]
            c[name][...] = jax.lax.dynamic_update_slice(old, new.astype(old.dtype), (0, idx))
        cached_states = None
        if states is not None:
            old = c["token_state"][...]
            cached_states = jax.lax.dynamic_update_slice(old, states.astype(old.dtype), (0, idx, 0))
            c["token_state"][...] = cached_states
        c["index"][...] = idx + k.shape[1]
        names = ("k", "v", "positions", "valid", "segment_ids")
        return (*(c[name][...] for name in names), cached_states)

    # -- forward ---------------------------------------------------------------
    def __call__(
        self,
        x: jax.Array,
        *,
        positions: jax.Array,
        segment_ids: jax.Array | None = None,
        padding_mask: jax.Array | None = None,
        decode: bool = False,
        deterministic: bool = True,
        relative_distances: jax.Array | None = None,
    ) -> jax.Array:
        """Self-attention of x: [B, T, D] at positions [T] or [B, T].

        Args:
          segment_ids: [T] or [B, T] int; tokens attend only to tokens of the same
            segment (packed documents; give positions that restart per document).
            None: one segment. With ``decode``, the ids of the new tokens, stored
            in the cache with their keys; None continues each row's last cached
            segment (segment 0 in an empty cache).
          padding_mask: [B, T] bool, True = real token (used as key mask).
          decode: use and extend the KV cache (call `init_cache` first).
          deterministic: disable dropout.
          relative_distances: [W] or [B, W] int, a table of randomized signed distances
            that a scheme with ``accepts_distances`` reads in place of ``k - q``
            (Ruoss et al.'s Toeplitz randomization; `posenc_jax.random_distances`).
            W = 2 R - 1 with R at least the longest sequence (the cache's
            ``max_length`` when decoding). None: the positions' own distances.

        Returns:
          [B, T, D].

        Raises:
          ValueError: with ``decode``, when the new tokens do not fit in the
            cache's ``max_length`` slots. Eagerly it is raised before any write;
            under ``jax.jit``/``nnx.jit`` a host callback raises it when the step
            runs, surfacing as a ``jax.errors.JaxRuntimeError`` carrying the same
            message.
        """
        b, t, _ = x.shape
        q = self.q_proj(x).reshape(b, t, self.num_heads, self.head_dim)  # [B, T, N, H]
        k = self.k_proj(x).reshape(b, t, self.num_kv_heads, self.head_dim)  # [B, T, K, H]
        v = self.v_proj(x).reshape(b, t, self.num_kv_heads, self.head_dim)  # [B, T, K, H]
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        positions = jnp.broadcast_to(jnp.asarray(positions), (b, t))
        if segment_ids is not None:
            segment_ids = jnp.broadcast_to(jnp.asarray(segment_ids), (b, t))
        params = self.pos_params.get_value()
        if relative_distances is not None:
            params = {**params, DISTANCES: self._distance_table(relative_distances, t, decode)}
        inputs = dict(q_positions=positions, segment_ids=segment_ids, key_mask=padding_mask)
        if decode:
            q, k, v, inputs = self._decode_inputs(q, k, v, inputs, params, x)
        else:
            q, k = self.scheme.rotate(params, q, k, positions, positions)
            inputs.update(k_positions=positions)
            if "token_state" in self.scheme.hooks:
                carry = jnp.zeros((b, self.num_heads), jnp.float32)
                states, _ = self.scheme.token_state(params, x, carry, key_mask=padding_mask)
                inputs.update(q_state=states, k_state=states)  # [B, T, N]
        if self.softmax_scale is not None:
            q = self._scale_queries(q, inputs)
        inputs.update(scheme=self.scheme, params=params, causal=self.causal)
        if self.sliding_window is not None:
            inputs.update(sliding_window=self.sliding_window)
        if self.attention_chunk is not None:
            inputs.update(attention_chunk=self.attention_chunk)
        if self.sink_tokens:
            inputs.update(sink_tokens=self.sink_tokens)
        if self.logit_softcap is not None:
            inputs.update(logit_softcap=self.logit_softcap)
        if self.sink_logits is not None:
            inputs.update(sink_logits=self.sink_logits.get_value())
        out = attend(q, k, v, attention=self.attention, aligned=not decode, **inputs)
        if self.sow_weights:
            weights = attention_weights(q, k, **inputs)  # [B, N, T, S]
            self.sow(nnx.Intermediate, "attention_weights", weights)
        out = self.o_proj(out.reshape(b, t, self.num_heads * self.head_dim))  # [B, T, D]
        return self.dropout(out, deterministic=deterministic)

    def _distance_table(self, table: jax.Array, t: int, decode: bool) -> jax.Array:
        """A call's distance table [W] or [B, W], checked against the scheme and the length."""
        if not self.scheme.accepts_distances:
            raise ValueError(
                f"relative_distances: scheme {self.scheme.name} does not read a table of "
                "randomized distances (its logit term is not a function of k - q alone); "
                "randomize its positions instead"
            )
        table = check_distance_table(table, "MultiHeadAttention", name="relative_distances")
        longest = t
        if decode and self.cache is not None:
            longest = self.cache["positions"].shape[-1]
        if table.shape[-1] < 2 * longest - 1:
            raise ValueError(
                f"relative_distances: a table of width W = {table.shape[-1]} serves offsets "
                f"up to {(table.shape[-1] - 1) // 2}, but this call has {longest} keys; "
                f"draw it for W >= {2 * longest - 1}"
            )
        return table

    def _scale_queries(self, q: jax.Array, inputs: dict[str, Any]) -> jax.Array:
        """q [B, T, N, H] times the length-scaled softmax multiplier of each query."""
        n = None  # causal: position + 1
        if not self.causal and self.softmax_scale.needs_key_count:
            n = _allowed_key_count(inputs, q.shape[0], q.shape[1])
        params = {} if self.softmax_scale_params is None else self.softmax_scale_params.get_value()
        m = self.softmax_scale.multiplier(params, positions=inputs["q_positions"], n=n)
        return scale_queries(q, m)  # m: [B, T, N] or [B, T, 1]

    def _decode_inputs(self, q, k, v, inputs, params, x):
        """Rotates the new q/k, writes k/v to the cache; attention inputs over the whole cache.

        q: [B, T, N, H]; k, v: [B, T, K, H]; x: [B, T, D] -> q, cached k, v [B, S, K, H]
        and the attention keyword arguments (positions, key mask, segment ids and token
        states of the cache).
        """
        if self.cache is None:
            raise ValueError("decode=True needs a KV cache: call init_cache(batch, max_length)")
        b, t = q.shape[:2]
        positions = inputs["q_positions"]
        # Rotate the new keys with their own positions before caching, then attend
        # over every cached key. Dynamic NTK / LongRoPE see only the new tokens' positions
        # (length = latest position + 1), as in Hugging Face; cached keys keep theirs.
        q, k = self.scheme.rotate(params, q, k, positions, positions)
        new_mask = inputs["key_mask"]
        new_mask = jnp.ones((b, t), bool) if new_mask is None else new_mask
        segment_ids = inputs["segment_ids"]
        segment_ids = self._last_segment(b, t) if segment_ids is None else segment_ids
        states = None
        if "token_state" in self.scheme.hooks:  # continue from the cached carry
            carry = self.cache["token_carry"]
            states, carry[...] = self.scheme.token_state(params, x, carry[...], key_mask=new_mask)
        k, v, k_positions, key_mask, kv_segment_ids, k_states = self._update_cache(
            k, v, positions, new_mask, segment_ids, states
        )
        inputs = dict(
            q_positions=positions,
            k_positions=k_positions,
            key_mask=key_mask,
            segment_ids=segment_ids,
            kv_segment_ids=kv_segment_ids,
        )
        if states is not None:
            inputs.update(q_state=states, k_state=k_states)
        return q, k, v, inputs
