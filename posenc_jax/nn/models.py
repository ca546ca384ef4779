"""Transformer blocks and tiny models (decoder-only LM, bidirectional encoder).

Shape legend: B batch, T length, D model dim, V vocabulary, C output classes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from posenc_jax.attention import AttentionConfig
from posenc_jax.nn.architecture import MLP, Architecture, embed_scale, make_architecture
from posenc_jax.nn.attention import MultiHeadAttention
from posenc_jax.nn.patterns import layer_pattern
from posenc_jax.schemes import Scheme, make_scheme
from posenc_jax.softmax_scale import SoftmaxScale, make_softmax_scale

__all__ = [
    "TransformerBlock",
    "TransformerEncoder",
    "TransformerLM",
    "generate",
    "positions_from_padding",
    "positions_from_segments",
]

NORMS = ("layernorm", "rmsnorm")


def positions_from_padding(padding_mask: jax.Array) -> jax.Array:
    """Positions that skip padding: cumsum(mask) - 1, clipped at 0.

    padding_mask: [B, T] bool (True = real token) -> [B, T] int32. A left-padded
    row then gets positions 0, 1, ... on its real tokens, exactly as unpadded.
    """
    return jnp.maximum(jnp.cumsum(padding_mask.astype(jnp.int32), axis=-1) - 1, 0)


def positions_from_segments(
    segment_ids: jax.Array, padding_mask: jax.Array | None = None
) -> jax.Array:
    """Positions that restart at 0 where the segment id changes (packed documents).

    Each run of equal consecutive ids is one document; padding tokens (False in
    ``padding_mask``) are not counted, as in `positions_from_padding`.

    Example:
        >>> positions_from_segments(jnp.array([[0, 0, 0, 0, 1, 1, 1]])).tolist()
        [[0, 1, 2, 3, 0, 1, 2]]

    Args:
      segment_ids: [B, T] int.
      padding_mask: [B, T] bool, True = real token; None: all real.

    Returns:
      [B, T] int32.
    """
    segment_ids = jnp.asarray(segment_ids)
    real = jnp.ones(segment_ids.shape, jnp.int32)
    if padding_mask is not None:
        real = jnp.asarray(padding_mask).astype(jnp.int32)
    count = jnp.cumsum(real, axis=-1)  # real tokens up to and including t
    starts = jnp.concatenate(
        [jnp.ones_like(segment_ids[..., :1], bool), segment_ids[..., 1:] != segment_ids[..., :-1]],
        axis=-1,
    )  # [B, T]: a new document starts at t
    # Real tokens before the start of t's document (count - real is nondecreasing).
    before = jax.lax.cummax(jnp.where(starts, count - real, 0), axis=segment_ids.ndim - 1)
    return jnp.maximum(count - before - 1, 0)


def _norm(
    kind: str, d_model: int, *, eps: float = 1e-6, dtype, param_dtype, rngs: nnx.Rngs
) -> nnx.Module:
    kw = dict(epsilon=eps, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    if kind == "layernorm":
        return nnx.LayerNorm(d_model, **kw)
    if kind == "rmsnorm":
        return nnx.RMSNorm(d_model, **kw)
    raise ValueError(f"norm must be one of {list(NORMS)}; got {kind!r}")


class TransformerBlock(nnx.Module):
    """Pre-norm block: x + attn(norm1(x)), then x + mlp(norm2(x)).

    ``architecture`` (an `posenc_jax.nn.Architecture` or a mapping of its fields)
    rewires it: parallel residuals (GPT-NeoX, GPT-J), post-norms (Gemma), a gated
    MLP, biases, q/k norm.

    References: Xiong et al. 2020, "On Layer Normalization in the Transformer
    Architecture" (arXiv 2002.04745).
    """

    def __init__(
        self,
        d_model: int,
        *,
        num_heads: int,
        scheme: Scheme | str | dict[str, Any] = "nope",
        num_kv_heads: int | None = None,
        mlp_ratio: int = 4,
        norm: str = "layernorm",
        causal: bool = True,
        dropout_rate: float = 0.0,
        attention: AttentionConfig | None = None,
        softmax_scale: SoftmaxScale | str | dict[str, Any] | None = None,
        sliding_window: int | None = None,
        attention_chunk: int | None = None,
        sink_tokens: int = 0,
        attention_sinks: bool = False,
        architecture: Architecture | Mapping[str, Any] | None = None,
        dtype: jnp.dtype | None = None,
        param_dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ) -> None:
        arch = make_architecture(architecture)
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.residual = arch.residual
        self.norm1 = _norm(norm, d_model, eps=arch.norm_eps, **kw)  # before attention
        self.attn = MultiHeadAttention(
            d_model,
            num_heads=num_heads,
            scheme=scheme,
            num_kv_heads=num_kv_heads,
            causal=causal,
            dropout_rate=dropout_rate,
            attention=attention,
            softmax_scale=softmax_scale,
            sliding_window=sliding_window,
            attention_chunk=attention_chunk,
            sink_tokens=sink_tokens,
            attention_sinks=attention_sinks,
            head_dim=arch.head_dim,
            qkv_bias=arch.attention_bias,
            out_bias=arch.attention_out_bias,
            qk_norm=arch.qk_norm,
            norm_eps=arch.norm_eps,
            logit_softcap=arch.attn_logit_softcap,
            **kw,
        )

        def make_norm():
            return _norm(norm, d_model, eps=arch.norm_eps, **kw)

        shared = arch.residual == "parallel_shared_norm"
        self.norm2 = nnx.data(None if shared else make_norm())
        self.post_attn_norm = nnx.data(make_norm() if arch.post_norms else None)
        self.post_mlp_norm = nnx.data(make_norm() if arch.post_norms else None)
        hidden = mlp_ratio * d_model if arch.mlp_dim is None else arch.mlp_dim
        self.mlp = MLP(d_model, hidden, arch=arch, **kw)
        self.dropout = nnx.Dropout(dropout_rate, rngs=rngs)

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
        """x: [B, T, D] -> [B, T, D]; keywords as in `MultiHeadAttention.__call__`."""
        h = self.norm1(x)
        a = self.attn(
            h,
            positions=positions,
            segment_ids=segment_ids,
            padding_mask=padding_mask,
            decode=decode,
            deterministic=deterministic,
            relative_distances=relative_distances,
        )
        if self.post_attn_norm is not None:
            a = self.post_attn_norm(a)
        if self.residual == "sequential":
            x = x + a
            h = self.norm2(x)
        elif self.norm2 is not None:  # parallel: both branches read the block's input
            h = self.norm2(x)
        m = self.mlp(h)
        if self.post_mlp_norm is not None:
            m = self.post_mlp_norm(m)
        m = self.dropout(m, deterministic=deterministic)
        return x + m if self.residual == "sequential" else x + a + m


class _Transformer(nnx.Module):
    """Embedding, blocks, final norm and a per-position head of ``num_classes`` outputs."""

    causal: bool = True

    def __init__(
        self,
        vocab_size: int,
        *,
        num_classes: int,
        scheme: Scheme | str | dict[str, Any] = "nope",
        num_layers: int = 2,
        d_model: int = 64,
        num_heads: int = 4,
        num_kv_heads: int | None = None,
        mlp_ratio: int = 4,
        norm: str = "layernorm",
        dropout_rate: float = 0.0,
        attention: AttentionConfig | None = None,
        softmax_scale: SoftmaxScale | str | dict[str, Any] | None = None,
        sliding_window: int | None = None,
        attention_chunk: int | None = None,
        sink_tokens: int = 0,
        attention_sinks: bool = False,
        layer_pattern: Sequence[Mapping[str, Any]] | Mapping[str, Any] | None = None,
        architecture: Architecture | Mapping[str, Any] | None = None,
        dtype: jnp.dtype | None = None,
        param_dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ) -> None:
        arch = make_architecture(architecture)
        for key, value in (
            ("vocab_size", vocab_size),
            ("num_classes", num_classes),
            ("num_layers", num_layers),
            ("d_model", d_model),
            ("num_heads", num_heads),
        ):
            if int(value) < 1:
                raise ValueError(f"{key} must be >= 1; got {value}")
        if num_heads > d_model and arch.head_dim is None:
            raise ValueError(f"num_heads ({num_heads}) must not exceed d_model ({d_model})")
        if arch.tie_embeddings and num_classes != vocab_size:
            raise ValueError(
                f"architecture.tie_embeddings needs num_classes == vocab_size; got "
                f"{num_classes} classes for {vocab_size} tokens"
            )
        head_dim = d_model // num_heads if arch.head_dim is None else arch.head_dim
        self.scheme = make_scheme(scheme).configure(causal=self.causal)
        self.scheme.validate(num_heads=num_heads, head_dim=head_dim, d_model=d_model)
        softmax_scale = make_softmax_scale(softmax_scale)  # one validation for every layer
        model_layer = dict(
            scheme=self.scheme,
            sliding_window=sliding_window,
            attention_chunk=attention_chunk,
            sink_tokens=sink_tokens,
            softmax_scale=softmax_scale,
            attention_sinks=attention_sinks,
        )
        layers = self._layers(layer_pattern, model_layer, num_layers, num_heads, d_model, head_dim)
        self.d_model = d_model
        self.embed_scale = arch.embed_scale
        self.final_logit_softcap = arch.final_logit_softcap
        self.embed = nnx.Embed(
            vocab_size,
            d_model,
            embedding_init=nnx.initializers.normal(1.0),
            dtype=dtype,
            param_dtype=param_dtype,
            rngs=rngs,
        )
        self.pos_params = nnx.Param(self.scheme.init_embed_params(rngs.params(), d_model=d_model))
        # A scheme that reads the tokens (Abacus) draws its training randomness from the
        # dropout stream and keeps a carry between KV-cache decoding calls.
        reads = self.scheme.reads_tokens
        self.token_rngs = nnx.data(rngs["dropout"].fork() if reads else None)
        self.token_carry = nnx.data(None)
        norm_kw = dict(eps=arch.norm_eps, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.embed_norm = nnx.data(_norm(norm, d_model, **norm_kw) if arch.embed_norm else None)
        self.blocks = nnx.List(
            [
                TransformerBlock(
                    d_model,
                    num_heads=num_heads,
                    num_kv_heads=num_kv_heads,
                    mlp_ratio=mlp_ratio,
                    norm=norm,
                    causal=self.causal,
                    dropout_rate=dropout_rate,
                    attention=attention,
                    architecture=arch,
                    dtype=dtype,
                    param_dtype=param_dtype,
                    rngs=rngs,
                    **layer,
                )
                for layer in layers
            ]
        )
        self.final_norm = _norm(norm, d_model, **norm_kw)
        head_kw = dict(use_bias=arch.head_bias, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.head = nnx.data(
            None if arch.tie_embeddings else nnx.Linear(d_model, num_classes, **head_kw)
        )
        self.head_bias = nnx.data(
            nnx.Param(jnp.zeros((num_classes,), param_dtype))
            if arch.tie_embeddings and arch.head_bias
            else None
        )
        self.dropout = nnx.Dropout(dropout_rate, rngs=rngs)

    def __call__(
        self,
        tokens: jax.Array,
        *,
        positions: jax.Array | None = None,
        segment_ids: jax.Array | None = None,
        padding_mask: jax.Array | None = None,
        decode: bool = False,
        deterministic: bool = True,
        rngs: nnx.Rngs | None = None,
        relative_distances: jax.Array | None = None,
    ) -> jax.Array:
        """Logits for tokens.

        Args:
          tokens: [B, T] int ids in [0, vocab_size) (an eager call with others is an
            error naming them).
          positions: [T] or [B, T]; default: restarting at each new segment id
            (`positions_from_segments`) when ``segment_ids`` are given, else from
            padding_mask (cumsum - 1) when given, else 0..T-1. Pass them explicitly
            for KV-cache offsets or randomized positions.
          segment_ids: [T] or [B, T] int, for packed sequences: a token attends only
            to tokens with the same id (see `MultiHeadAttention.__call__`, also
            for decoding).
          padding_mask: [B, T] bool, True = real token.
          decode: incremental decoding with the KV cache (see `init_cache`).
          deterministic: disable dropout and a scheme's training randomness (Abacus's
            offsets).
          rngs: random streams for this call's training randomness of a scheme that
            reads the tokens (its ``dropout`` stream); default: the model's own, forked
            at construction. Pass a fresh ``nnx.Rngs(dropout=key)`` inside a
            ``jax.grad`` or ``jax.jit`` that merges the model from its state.
          relative_distances: tables of randomized signed distances, one per layer,
            ``[num_layers, W]`` (shared by the batch) or ``[B, num_layers, W]``, for a
            scheme with ``accepts_distances`` (Ruoss et al.'s Toeplitz randomization:
            `posenc_jax.random_distances.sample_relative_distances`); each layer reads
            its own in place of ``k - q``. None: the positions' own distances.

        Returns:
          [B, T, C] float32 logits (C = V for `TransformerLM`).
        """
        b, t = tokens.shape
        _check_token_ids(tokens, self.embed.num_embeddings)
        if segment_ids is not None:
            segment_ids = jnp.broadcast_to(jnp.asarray(segment_ids), (b, t))
        if positions is None:
            positions = self._default_positions(t, segment_ids, padding_mask, decode=decode)
        positions = jnp.broadcast_to(jnp.asarray(positions), (b, t))
        x = embed_scale(self.embed(tokens), self.embed_scale)  # [B, T, D]
        if self.scheme.reads_tokens:
            stream = None if deterministic else (self.token_rngs if rngs is None else rngs.dropout)
            x = self._embed_tokens(x, tokens, segment_ids, decode=decode, stream=stream)
        else:
            x = self.scheme.embed(self.pos_params.get_value(), x, positions)
        if self.embed_norm is not None:
            x = self.embed_norm(x)
        x = self.dropout(x, deterministic=deterministic)
        tables = self._layer_tables(relative_distances)
        for block, table in zip(self.blocks, tables, strict=True):
            x = block(
                x,
                positions=positions,
                segment_ids=segment_ids,
                padding_mask=padding_mask,
                decode=decode,
                deterministic=deterministic,
                relative_distances=table,
            )
        x = self.final_norm(x)
        if self.head is not None:
            logits = self.head(x)
        else:
            logits = self.embed.attend(x)  # tied: x @ embedding.T
            if self.head_bias is not None:
                logits = logits + self.head_bias.get_value()
        logits = logits.astype(jnp.float32)
        if self.final_logit_softcap is not None:  # Gemma 2
            cap = self.final_logit_softcap
            logits = cap * jnp.tanh(logits / cap)
        return logits

    def _layer_tables(self, tables: jax.Array | None) -> list:
        """Each block's distance table ([W] or [B, W]) from the call's, or Nones."""
        n = len(self.blocks)
        if tables is None:
            return [None] * n
        tables = jnp.asarray(tables)
        if tables.ndim not in (2, 3) or tables.shape[-2] != n:
            raise ValueError(
                f"relative_distances must have shape [num_layers, W] or [B, num_layers, W] "
                f"with num_layers = {n}; got shape {tables.shape}"
            )
        return [tables[..., i, :] for i in range(n)]

    def _embed_tokens(self, x, tokens, segment_ids, *, decode: bool, stream) -> jax.Array:
        """The input hook of a scheme that reads the tokens (``scheme.reads_tokens``)."""
        b = tokens.shape[0]
        if decode:
            if self.token_carry is None:
                raise ValueError("decode=True needs a cache: call init_cache first")
            carry = self.token_carry.get_value()
        else:
            carry = jnp.zeros((b,), jnp.int32)
        key = None if stream is None else stream()  # training: a fresh key per call
        x, carry = self.scheme.embed_tokens(
            self.pos_params.get_value(), x, tokens, carry=carry, segment_ids=segment_ids, key=key
        )
        if decode:
            self.token_carry.set_value(carry)
        return x

    def _layers(self, pattern, model_layer, num_layers, num_heads, d_model, head_dim) -> list:
        """Each layer's scheme, window, chunk, softmax scale and sinks: the model's,
        overridden by ``pattern`` (see `posenc_jax.nn.patterns`)."""
        pattern = layer_pattern(pattern)
        if pattern is None:
            return [dict(model_layer) for _ in range(num_layers)]
        entries = []
        for j, entry in enumerate(pattern):
            layer = {**model_layer, **entry}
            try:
                if "scheme" in entry:
                    layer["scheme"] = make_scheme(entry["scheme"]).configure(causal=self.causal)
                    layer["scheme"].validate(
                        num_heads=num_heads, head_dim=head_dim, d_model=d_model
                    )
                    if "embed" in layer["scheme"].hooks:
                        raise ValueError(
                            f"{layer['scheme'].name} acts on the embeddings, once per model: "
                            "make it the model's scheme"
                        )
                if "softmax_scale" in entry:
                    layer["softmax_scale"] = make_softmax_scale(entry["softmax_scale"])
            except ValueError as e:
                raise ValueError(f"layer_pattern[{j}]: {e}") from None
            entries.append(layer)
        return [dict(entries[i % len(entries)]) for i in range(num_layers)]

    @staticmethod
    def _default_positions(t, segment_ids, padding_mask, *, decode: bool) -> jax.Array:
        """[T] or [B, T] positions when the caller gives none (see `__call__`)."""
        if decode:
            raise ValueError("decode=True needs explicit positions (the cache offset)")
        if segment_ids is not None:
            return positions_from_segments(segment_ids, padding_mask)
        if padding_mask is not None:
            return positions_from_padding(padding_mask)
        return jnp.arange(t, dtype=jnp.int32)

    def init_cache(self, batch_size: int, max_length: int, *, dtype=jnp.float32) -> None:
        """Allocates KV caches of ``max_length`` slots in every layer.

        Decoding more than ``max_length`` tokens in all is an error naming
        ``max_length`` (see `MultiHeadAttention.__call__`).
        """
        for block in self.blocks:
            block.attn.init_cache(batch_size, max_length, dtype=dtype)
        self._init_token_carry(batch_size)

    def _init_token_carry(self, batch_size: int) -> None:
        if self.scheme.reads_tokens:
            self.token_carry = nnx.Cache(jnp.zeros((batch_size,), jnp.int32))

    def init_rolling_cache(self, batch_size: int, *, dtype=jnp.float32) -> None:
        """Allocates ring-buffer KV caches: decoding a stream of any length in constant
        memory (see `MultiHeadAttention.init_rolling_cache`); every layer needs a
        sliding window."""
        for i, block in enumerate(self.blocks):
            if block.attn.sliding_window is None:
                raise ValueError(
                    f"init_rolling_cache: layer {i} has no sliding_window, so its cache "
                    "must keep every key; use init_cache(batch, max_length)"
                )
        for block in self.blocks:
            block.attn.init_rolling_cache(batch_size, dtype=dtype)
        self._init_token_carry(batch_size)


def _check_token_ids(tokens: jax.Array, vocab_size: int) -> None:
    """Raises when an eager call's token id has no embedding row (the lookup would give
    NaN). Traced ids are not checked: a run-time check would cost a host callback on
    every vmapped step; the harness's tasks draw their ids from the model's vocabulary."""
    if isinstance(tokens, jax.core.Tracer) or tokens.size == 0:
        return
    ids = np.asarray(tokens)  # concrete (perhaps closed over by a trace): on the host
    lo, hi = int(ids.min()), int(ids.max())
    if lo < 0 or hi >= vocab_size:
        raise ValueError(
            f"tokens must be ids in [0, {vocab_size - 1}] (vocab_size={vocab_size}); got ids "
            f"from {lo} to {hi}"
        )


class TransformerLM(_Transformer):
    """Decoder-only (causal) tiny language model with a positional scheme.

    Next-token logits over the input vocabulary: [B, T] tokens -> [B, T, V].

    Example:
        >>> model = TransformerLM(16, scheme="rope", num_layers=1, d_model=32,
        ...                       num_heads=4, rngs=nnx.Rngs(0))
        >>> model(jnp.zeros((2, 7), jnp.int32)).shape
        (2, 7, 16)

    Args:
      vocab_size: V, the number of token ids (input embedding and output head).
      **kwargs: the model settings (scheme, num_layers, d_model, num_heads,
        num_kv_heads, mlp_ratio, norm, dropout_rate, attention, softmax_scale
        (a length-scaled softmax in every layer), sliding_window, attention_chunk,
        sink_tokens and attention_sinks (local attention, chunked attention,
        StreamingLLM's sink tokens and gpt-oss's learned sinks in every layer; see
        `posenc_jax.nn.MultiHeadAttention`), layer_pattern
        (per-layer overrides of those, e.g. Gemma 3's or Llama 4's; see
        `posenc_jax.nn.patterns`), dtype, param_dtype, rngs).

    References: Radford et al. 2019 (GPT-2).
    """

    causal = True

    def __init__(self, vocab_size: int, **kwargs: Any) -> None:
        super().__init__(vocab_size, num_classes=vocab_size, **kwargs)


class TransformerEncoder(_Transformer):
    """Bidirectional encoder with a per-position classification head.

    [B, T] tokens -> [B, T, C] logits over ``num_classes`` classes.

    Example:
        >>> model = TransformerEncoder(16, num_classes=3, scheme="alibi", num_layers=1,
        ...                            d_model=32, num_heads=4, rngs=nnx.Rngs(0))
        >>> model(jnp.zeros((2, 7), jnp.int32)).shape
        (2, 7, 3)

    Args:
      vocab_size: V, the number of input token ids (the embedding table).
      num_classes: C, the outputs of the head at each position; default V (when
        the answers are tokens of the same vocabulary, as in the experiment tasks).
      **kwargs: the model settings, as for `TransformerLM`.

    References: Devlin et al. 2019 (BERT); Ruoss et al. 2023 (arXiv 2305.16843).
    """

    causal = False

    def __init__(self, vocab_size: int, *, num_classes: int | None = None, **kwargs: Any) -> None:
        num_classes = vocab_size if num_classes is None else num_classes
        super().__init__(vocab_size, num_classes=num_classes, **kwargs)


def generate(
    model: TransformerLM,
    prompt: jax.Array,
    *,
    max_new_tokens: int,
    prompt_mask: jax.Array | None = None,
    max_length: int | None = None,
) -> jax.Array:
    """Greedy decoding with the KV cache.

    Example:
        >>> model = TransformerLM(16, num_layers=1, d_model=16, num_heads=2, rngs=nnx.Rngs(0))
        >>> generate(model, jnp.array([[1, 2, 3]]), max_new_tokens=2).shape
        (1, 5)

    Args:
      model: a TransformerLM.
      prompt: [B, T0] int tokens; left-pad rows of different lengths and pass
        ``prompt_mask`` ([B, T0] bool, True = real token).
      max_new_tokens: number of tokens to append.
      max_length: KV-cache slots, at least T0 + max_new_tokens (the default). A
        fixed value lets one compiled decoding step serve every prompt length.

    Returns:
      [B, T0 + max_new_tokens] tokens.

    Raises:
      ValueError: ``max_length`` is below T0 + max_new_tokens (checked before
        any decoding), or ``max_new_tokens`` is negative.
    """
    if not model.causal:
        raise ValueError("generate needs a causal model (TransformerLM)")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0; got {max_new_tokens}")
    b, t0 = prompt.shape
    if max_length is None:
        max_length = t0 + max_new_tokens
    if max_length < t0 + max_new_tokens:
        raise ValueError(
            f"generate: max_length={max_length} KV-cache slots cannot hold the prompt "
            f"({t0} tokens) and max_new_tokens={max_new_tokens}; pass max_length >= "
            f"{t0 + max_new_tokens} or fewer max_new_tokens"
        )
    mask = jnp.ones((b, t0), bool) if prompt_mask is None else prompt_mask.astype(bool)
    model.init_cache(b, max_length)
    positions = positions_from_padding(mask)
    logits = _decode_step(model, prompt, positions, mask)
    next_pos = positions[:, -1:] + 1
    out = [prompt]
    token = jnp.argmax(logits[:, -1:], axis=-1).astype(prompt.dtype)  # [B, 1]
    for step in range(max_new_tokens):
        out.append(token)
        if step == max_new_tokens - 1:
            break
        logits = _decode_step(model, token, next_pos, jnp.ones((b, 1), bool))
        token = jnp.argmax(logits[:, -1:], axis=-1).astype(prompt.dtype)
        next_pos = next_pos + 1
    return jnp.concatenate(out, axis=1)


@nnx.jit
def _decode_step(model, tokens, positions, mask):
    return model(tokens, positions=positions, padding_mask=mask, decode=True)
