"""Schemes that rotate q and k (hook 2): RoPE with its context extensions, and xPos.

References: Su et al. 2021, "RoFormer" (arXiv 2104.09864); Sun et al. 2022, "A
Length-Extrapolatable Transformer" (arXiv 2212.10554).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import jax.numpy as jnp

from posenc_jax import pope, rope, xpos
from posenc_jax._checks import as_int, check_choice, positive_float
from posenc_jax.rope import rectified
from posenc_jax.schemes.base import FrozenDict, Scheme
from posenc_jax.schemes.registry import register_scheme

__all__ = ["PopeScheme", "RopeScheme", "WindowedRopeScheme", "XposScheme"]


@register_scheme
@dataclasses.dataclass(frozen=True)
class RopeScheme(Scheme):
    """Rotary position embedding on q and k, with optional context-extension scaling.

    Settings:
      base: rotary base theta.
      rotary_fraction: fraction of the head dim that rotates (partial rotary).
      layout: "half" (GPT-NeoX, HF Llama) or "interleaved" (RoFormer, GPT-J).
      scaling: None or a dict in Hugging Face ``rope_scaling`` form
        (``{"rope_type": "yarn", "factor": 4.0, ...}``).
      keep_fraction: p-RoPE's p (Barbero et al. 2025), the fraction of the
        frequencies kept, the highest; the pairs of the others are not rotated
        (`posenc_jax.rope.p_rope_keep_count`). 1.0 (default): all of them. Not
        the same as ``rotary_fraction``, which rotates a prefix of the dims with
        a schedule recomputed over them (GPT-NeoX partial rotary); Hugging Face's
        ``rope_type="proportional"`` (Gemma 4) is p-RoPE. Composes with every
        scaling (the lowest frequencies of the scaled schedule are removed).

    Dynamic methods (dynamic NTK, LongRoPE) pick their frequencies from the
    current length, ``seq_len = max position + 1`` as Hugging Face computes it, a
    traced value, so one program serves all lengths. The length is each row's
    own: ``max(k_positions[b]) + 1`` for ``[B, S]`` positions (a row's logits do
    not depend on the rows batched beside it; Hugging Face takes the maximum over
    the whole batch, so this equals Hugging Face run one sequence at a time).
    Padding slots must not carry positions above their row's largest real
    position: `posenc_jax.nn.positions_from_padding` (the models' default with a
    padding mask) gives left padding position 0 and right padding the last real
    position, so any padding works with it; explicit positions that count on
    through the padding make the padding part of the row's length.

    **Cached decoding** with these methods differs from a full forward pass over
    the same tokens, as in Hugging Face (transformers issue #25104): each decoding
    step rotates its new keys with the frequencies of the length so far, and the
    cache keeps them, while a full forward rotates every key with the
    frequencies of the final length. Once the length passes the original
    context, keys from earlier steps therefore carry other frequencies than the
    queries. The other scalings are static and decode exactly.

    Context extensions (`extend_context`): "linear" (position interpolation),
    "ntk", "dynamic" and "yarn", each with the training length as the original
    context and factor = evaluation length / training length (at least 1;
    "dynamic" grows its base with the length it sees from factor 1). "rerope",
    "leaky_rerope" and "self_extend" return a `WindowedRopeScheme` (true distances
    within half the training length, capped or compressed beyond); "dual_chunk" one
    with Dual Chunk Attention's chunks; "streaming_llm" one with StreamingLLM's sinks
    and window (positions within its cache).

    Example:
        >>> s = RopeScheme().extend_context("yarn", train_length=64, eval_length=256)
        >>> s.scaling["rope_type"], s.scaling["factor"]
        ('yarn', 4.0)

    References: Su et al. 2021, "RoFormer" (arXiv 2104.09864); Chen et al. 2023
    (position interpolation, arXiv 2306.15595); Peng et al. 2023 (YaRN, arXiv 2309.00071);
    Barbero et al. 2025 (p-RoPE, arXiv 2410.06205).
    """

    name: ClassVar[str] = "rope"
    hooks: ClassVar[frozenset[str]] = frozenset({"rotate"})
    context_extensions: ClassVar[tuple[str, ...]] = (
        "linear",
        "ntk",
        "dynamic",
        "yarn",
        *rectified.RECTIFIED_METHODS,
    )
    base: float = 10000.0
    rotary_fraction: float = 1.0
    layout: str = "half"
    scaling: Mapping[str, Any] | None = None
    keep_fraction: float = 1.0

    def __post_init__(self) -> None:
        check_choice(self.layout, "layout", rope.LAYOUTS, "rope")
        rope.p_rope_keep_count(2, self.keep_fraction)  # raises a ValueError naming keep_fraction
        if self.scaling is not None and not isinstance(self.scaling, Mapping):
            raise ValueError(f"rope: scaling must be a mapping or null; got {self.scaling!r}")
        if self.scaling is not None:
            # Hashable, immutable copy so the dataclass stays a valid static argument.
            object.__setattr__(self, "scaling", FrozenDict(self.scaling))

    def _scaling(self) -> dict[str, Any] | None:
        return None if self.scaling is None else dict(self.scaling)

    def _frequencies(self, head_dim: int, seq_len: Any = None):
        return rope.rope_frequencies(
            head_dim,
            base=self.base,
            rotary_fraction=self.rotary_fraction,
            scaling=self._scaling(),
            seq_len=seq_len,
            keep_fraction=self.keep_fraction,
        )

    def validate(self, *, num_heads: int, head_dim: int, d_model: int) -> None:
        self._frequencies(head_dim)  # raises a ValueError naming the bad setting

    def extend_context(self, method: str, *, train_length: int, eval_length: int) -> Scheme:
        if method not in self.context_extensions:
            return super().extend_context(
                method, train_length=train_length, eval_length=eval_length
            )
        if method in rectified.RECTIFIED_METHODS:
            return self._windowed(method, train_length=train_length, eval_length=eval_length)
        factor = 1.0 if method == "dynamic" else max(1.0, eval_length / train_length)
        scaling = {
            "rope_type": method,
            "factor": factor,
            "original_max_position_embeddings": train_length,
        }
        return dataclasses.replace(self, scaling=scaling)

    def _windowed(self, method: str, *, train_length: int, eval_length: int) -> Scheme:
        """ReRoPE, Leaky ReRoPE or SelfExtend with w = L // 2 and the smallest factor that
        keeps the far distance of the longest query-key pair (E - 1) within L - 1; Dual
        Chunk Attention with the reference's defaults (chunk s = 3L/4 - L/16, local
        window L/16: ChunkLlama's ``replace_with_chunkllama``); StreamingLLM with 4 sinks
        and a cache of L positions (sinks + window = L)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(RopeScheme)}
        if method == "dual_chunk":
            local = train_length // 16
            chunk = max(1, train_length * 3 // 4 - local)
            return WindowedRopeScheme(**fields, method=method, window=chunk, local_window=local)
        if method == "streaming_llm":  # 4 sinks (the reference's start_size), cache of L
            sinks = min(4, max(0, train_length - 2))
            window = max(1, train_length - sinks)
            return WindowedRopeScheme(**fields, method=method, window=window, sink_tokens=sinks)
        window = max(1, train_length // 2)
        reach = max(1, train_length - 1 - window)
        factor = max(1.0, (eval_length - 1 - window) / reach)
        if method == "self_extend":  # floor(i/G) - floor(j/G) can exceed (i - j)/G by 1
            factor = float(max(1, math.ceil((eval_length - 1 - window) / max(1, reach - 1))))
        return WindowedRopeScheme(**fields, method=method, window=window, factor=factor)

    def rotate(self, params, q, k, q_positions, k_positions):
        # One length a row for [B, S] positions ([] for [S]); static scalings ignore it.
        seq_len = jnp.max(jnp.asarray(k_positions), axis=-1) + 1  # [] or [B]
        inv_freq, factor = self._frequencies(q.shape[-1], seq_len=seq_len)  # [(B,) R/2]
        rotate = dict(inv_freq=inv_freq, attention_factor=factor, layout=self.layout)
        return (
            rope.apply_rope(q, q_positions, **rotate),
            rope.apply_rope(k, k_positions, **rotate),
        )


@register_scheme
@dataclasses.dataclass(frozen=True)
class XposScheme(Scheme):
    """xPos: RoPE with a per-pair exponential decay of the logits with distance.

    Settings:
      base: RoPE base theta (10000).
      scale_base: positions per decay unit (512).
      gamma: decay offset, zeta_i = (i / (H/2) + gamma) / (1 + gamma) (0.4).
      layout: "interleaved" (torchscale) or "half".
      center: the position where query and key scales are 1 (0). Logits do not
        depend on it, only the range where they are exact does:
        ``|p - center| <= xpos_window(...)``, 27,194 positions for the defaults in
        float32 and bfloat16 (3,398 in float16), see `posenc_jax.xpos.apply_xpos`.
      out_of_range: "error" (default: a position outside that window raises, at
        run time under jit, by a host callback) or "clip" (the log scale is
        clipped: finite, but the fastest pairs stop decaying there).

    **Why a fixed centre.** Queries are scaled by ``zeta^((n - c) / scale_base)``
    and keys by ``zeta^(-(m - c) / scale_base)``; the product is exact for any c
    shared by the two. With a KV cache, keys are scaled when they are computed
    and kept (`posenc_jax.nn.MultiHeadAttention` caches them after this hook),
    while later queries are scaled in later calls, so a centre chosen per call
    (torchscale takes the middle of the current sequence, and re-applies xPos to
    its whole unscaled key cache at every step) would leave cached keys with
    another centre than the query: logits off by ``zeta^((c_key - c_query) /
    scale_base)`` per pair. A centre that is a setting, shared by every call,
    keeps full forward passes and cached decoding exact; positions outside its
    window raise instead of losing their decay silently.

    `assume_positions_below` (called once by the experiment plan for the longest
    sequence) checks on the host that positions ``0 .. max_position - 1`` fit the
    float32 window, moving ``center`` to the middle of that range when they do
    not fit around the current one (e.g. ``center=16003`` for a 32,008-position
    evaluation; logits do not change), and returns the scheme without the run-time
    check. It assumes float32 or bfloat16 q and k (the harness's dtypes); in
    float16 the window is 3,398 positions. `position_limit` is the longest such
    range, ``2 * window + 1`` (54,389 positions for the defaults), or None with
    ``out_of_range="clip"``.

    Causal models only: for keys after the query the factor grows with distance,
    so ``configure(causal=False)`` raises.

    References: Sun et al. 2022, "A Length-Extrapolatable Transformer" (arXiv 2212.10554);
    torchscale ``torchscale/component/xpos_relative_position.py`` (``XPOS``).
    """

    name: ClassVar[str] = "xpos"
    hooks: ClassVar[frozenset[str]] = frozenset({"rotate"})
    base: float = 10000.0
    scale_base: float = 512.0
    gamma: float = 0.4
    layout: str = "interleaved"
    center: int = 0
    out_of_range: str = "error"

    def __post_init__(self) -> None:
        check_choice(self.layout, "layout", rope.LAYOUTS, "xpos")
        for field in ("base", "scale_base", "gamma"):
            positive_float(getattr(self, field), field, "xpos")
        as_int(self.center, "center", "xpos")
        check_choice(self.out_of_range, "out_of_range", xpos.XPOS_OUT_OF_RANGE_POLICIES, "xpos")

    def configure(self, *, causal: bool) -> Scheme:
        if not causal:
            raise ValueError(
                "xpos is defined for causal attention (its factor zeta^((n - m) / scale_base) "
                "grows for keys after the query); got causal=False; use 'rope' for "
                "bidirectional models"
            )
        return self

    def validate(self, *, num_heads: int, head_dim: int, d_model: int) -> None:
        xpos.xpos_zeta(head_dim, gamma=self.gamma)

    def _window(self, dtype) -> int:
        return xpos.xpos_window(gamma=self.gamma, scale_base=self.scale_base, dtype=dtype)

    def position_limit(self) -> int | None:
        # The longest run of positions 0 .. L-1 that fits one float32 window (with the
        # centre in its middle, as assume_positions_below sets it).
        return None if self.out_of_range == "clip" else 2 * self._window(jnp.float32) + 1

    def assume_positions_below(self, max_position: int) -> Scheme:
        window = self._window(jnp.float32)
        last = int(max_position) - 1
        center = int(self.center)
        fits = center - window <= 0 and last <= center + window
        if fits and self.out_of_range == "clip":
            return self
        if not fits:
            if last > 2 * window and self.out_of_range != "clip":  # "clip" accepts the loss
                raise ValueError(
                    f"xpos: positions 0 .. {last} span more than the window where float32 "
                    f"xPos scales are exact (2 * {window} + 1 positions for "
                    f"scale_base={self.scale_base}, gamma={self.gamma}); raise scale_base or "
                    "evaluate shorter sequences"
                )
            center = last // 2
        return dataclasses.replace(self, center=center, out_of_range="clip")

    def rotate(self, params, q, k, q_positions, k_positions):
        head_dim = q.shape[-1]
        if self.out_of_range == "error":
            # One check for q and k; apply_xpos then skips its own.
            xpos.check_xpos_window(
                q_positions,
                k_positions,
                center=int(self.center),
                window=self._window(q.dtype),
                dtype=q.dtype,
            )
        inv_freq, _ = rope.rope_frequencies(head_dim, base=self.base)
        common = dict(
            inv_freq=inv_freq,
            zeta=xpos.xpos_zeta(head_dim, gamma=self.gamma),
            scale_base=self.scale_base,
            center=int(self.center),
            layout=self.layout,
            out_of_range="clip",
        )
        q = xpos.apply_xpos(q, q_positions, downscale=False, **common)
        k = xpos.apply_xpos(k, k_positions, downscale=True, **common)
        return q, k


@register_scheme
@dataclasses.dataclass(frozen=True)
class PopeScheme(Scheme):
    """PoPE: polar coordinates, softplus magnitudes from the content, phases from positions.

    The q/k hook maps q and k [.., H] to [.., 2H] (`posenc_jax.pope.apply_pope`): the
    score is ``sum_c softplus(q_c) softplus(k_c) cos((i - j) theta_c - delta_c)`` with
    ``theta_c = base^(-c/H)`` and a learned per-head phase bias delta [N, H] (zeros at
    init, clipped to [-2 pi, 0]). Values keep H. The reference scales the logits by
    ``1/sqrt(H)`` of the original head dim; attention scales by ``1/sqrt(2H)`` of the
    wider queries, so this hook multiplies the queries by sqrt(2) to give the reference's
    logits on every path. The KV cache keeps the 2H-wide keys (`rotated_dim`).

    Settings:
      base: the frequency base (10000).

    Example:
        >>> PopeScheme().rotated_dim(64)
        128

    References: Gopalakrishnan et al. 2025, "Decoupling the 'What' and 'Where' With
    Polar Coordinate Positional Embeddings" (arXiv 2509.10534).
    """

    name: ClassVar[str] = "pope"
    hooks: ClassVar[frozenset[str]] = frozenset({"rotate"})
    base: float = 10000.0

    def __post_init__(self) -> None:
        positive_float(self.base, "base", "pope")
        if self.base <= 1:
            raise ValueError(f"pope needs base > 1; got base={self.base!r}")

    def rotated_dim(self, head_dim: int) -> int:
        return 2 * head_dim

    def init_attention_params(self, key, *, num_heads, head_dim):
        del key  # x_transformers.py PolarEmbedding: learned_bias = zeros(heads, 1, dim)
        return {"phase_bias": jnp.zeros((num_heads, head_dim), jnp.float32)}

    def rotate(self, params, q, k, q_positions, k_positions):
        inv_freq = pope.pope_frequencies(q.shape[-1], base=float(self.base))
        q = pope.apply_pope(q, q_positions, inv_freq, phase_bias=params["phase_bias"])
        k = pope.apply_pope(k, k_positions, inv_freq)
        return q * jnp.asarray(math.sqrt(2.0), q.dtype), k  # logits / sqrt(H), not sqrt(2H)


@register_scheme
@dataclasses.dataclass(frozen=True)
class WindowedRopeScheme(RopeScheme):
    """RoPE with true distances inside a window and capped or grouped ones beyond it.

    The training-free extensions ReRoPE, Leaky ReRoPE, SelfExtend and Dual Chunk
    Attention (`posenc_jax.rope.rectified`): the logit hook computes the whole q . k term
    (``replaces_content_logits``) from unrotated q and k, with RoPE's own settings
    (base, layout, partial rotary, scaling, p-RoPE) for both the near and the far
    rotation. The q/k hook leaves q and k as they are, so a KV cache keeps unrotated
    keys and each decoding step computes both terms against them. Causal only: the
    methods are defined for decoder language models.

    Settings (besides `RopeScheme`'s):
      method: "rerope" (far keys at distance ``window``), "leaky_rerope" (slope
        1/``factor`` beyond the window), "self_extend" (positions grouped by
        ``factor`` beyond the window), "dual_chunk" (chunks of ``window``) or
        "streaming_llm" (sinks and a window of ``window``).
      window: w, the neighbour window (> 0); Dual Chunk Attention's chunk size s.
      factor: Leaky ReRoPE's k or SelfExtend's group size G (>= 1; integer for
        SelfExtend); unused by ReRoPE and Dual Chunk Attention.
      local_window: Dual Chunk Attention's w (>= 0): keys in the previous chunk keep
        their true distance up to ``window + local_window``; unused by the others.
      sink_tokens: StreamingLLM's s (>= 0): the first s keys stay visible beyond the
        window, at distance ``s + window - 1 - j``; the other far keys are masked.
        Unused by the others. (A model with ``sliding_window=window`` and
        ``sink_tokens=s`` can then decode with a ring-buffer cache:
        `posenc_jax.nn.TransformerLM.init_rolling_cache`.)

    `RopeScheme.extend_context` builds it for a training length L and an evaluation
    length E: w = L // 2; Leaky ReRoPE's k and SelfExtend's G the smallest that keep
    the far distance of E - 1 within L - 1; Dual Chunk Attention with the reference's
    s = 3L/4 - L/16 and w = L/16, whatever E; StreamingLLM with 4 sinks and a window
    of L - 4.

    Example:
        >>> s = RopeScheme().extend_context("self_extend", train_length=64, eval_length=256)
        >>> s.method, s.window, s.factor
        ('self_extend', 32, 8.0)

    References: Su 2023, ReRoPE and Leaky ReRoPE (kexue.fm/archives/9708); Jin et al.
    2024, SelfExtend (arXiv 2401.01325); An et al. 2024, Dual Chunk Attention (arXiv
    2402.17463); Xiao et al. 2024, StreamingLLM (arXiv 2309.17453).
    """

    name: ClassVar[str] = "windowed_rope"
    hooks: ClassVar[frozenset[str]] = frozenset({"logit_bias"})
    needs_q_for_bias: ClassVar[bool] = True
    needs_k_for_bias: ClassVar[bool] = True
    replaces_content_logits: ClassVar[bool] = True
    causal_only: ClassVar[str | None] = (
        "ReRoPE, SelfExtend, Dual Chunk Attention and StreamingLLM extend decoder language models"
    )
    context_extensions: ClassVar[tuple[str, ...]] = ()
    method: str = "rerope"
    window: int = 512
    factor: float = 1.0
    local_window: int = 0
    sink_tokens: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice(self.method, "method", rectified.RECTIFIED_METHODS, "windowed_rope")
        if as_int(self.window, "window", "windowed_rope") < 1:
            raise ValueError(f"windowed_rope needs window >= 1; got window={self.window!r}")
        for key in ("local_window", "sink_tokens"):
            if as_int(getattr(self, key), key, "windowed_rope") < 0:
                raise ValueError(
                    f"windowed_rope needs {key} >= 0; got {key}={getattr(self, key)!r}"
                )
        factor = positive_float(self.factor, "factor", "windowed_rope")
        if factor < 1 or (self.method == "self_extend" and factor != int(factor)):
            kind = "an integer group size" if self.method == "self_extend" else "a number"
            raise ValueError(
                f"windowed_rope ({self.method}) needs factor >= 1, {kind}; got factor={factor!r}"
            )

    def rotate(self, params, q, k, q_positions, k_positions):
        return q, k  # both rotations happen in the logit hook

    def logit_bias(self, params, q, q_positions, k_positions, *, k):
        inv_freq, attention_factor = self._frequencies(q.shape[-1])
        rotate = dict(inv_freq=inv_freq, attention_factor=attention_factor, layout=self.layout)
        return rectified.rectified_rope_logits(
            q,
            k,
            q_positions,
            k_positions,
            method=self.method,
            window=self.window,
            factor=self.factor,
            local_window=self.local_window,
            sink_tokens=self.sink_tokens,
            rotate=lambda x, positions: rope.apply_rope(x, positions, **rotate),
        )
