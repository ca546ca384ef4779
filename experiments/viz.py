"""Pictures of every positional encoding, drawn from the pure functions of `posenc_jax`.

Each picture has a ``figure_xxx(**options) -> Figure`` that builds it and a
``fig_xxx(out_path, **options) -> Path`` that writes it as a PNG; `draw_all` writes
them all (the ``posenc viz OUT_DIR`` command). The numbers plotted are the outputs
of the library's functions (`absolute.sinusoidal`, `rope.rope_frequencies`,
`rope.rope_decay_bound`, `alibi.alibi_bias`, `relative.t5_relative_bucket`,
`relative.shaw_relative_index`, `xpos.apply_xpos`, `kerple.kerple_bias`,
`fire.fire_normalized_distance`), so the figures show what the code computes.

Figures are `matplotlib.figure.Figure` objects rendered with the Agg backend and
never registered with pyplot, so nothing leaks between calls. `panel_axes` lists a
figure's panels without its colorbars.

Shape legend: B batch, T query length, S key length, N heads, H head dim.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from posenc_jax import absolute, alibi, fire, kerple, relative, rope, xpos
from posenc_jax.attention import MASK_VALUE

__all__ = [
    "DEFAULT_SCALINGS",
    "STATIC_FIGURES",
    "attention_map_lengths",
    "attention_weights",
    "draw_all",
    "draw_run_attention_maps",
    "fig_alibi",
    "fig_attention_maps",
    "fig_research_schemes",
    "fig_rope_decay",
    "fig_rope_frequencies",
    "fig_shaw",
    "fig_sinusoidal",
    "fig_t5_buckets",
    "figure_alibi",
    "figure_attention_arrays",
    "figure_attention_maps",
    "figure_research_schemes",
    "figure_rope_decay",
    "figure_rope_frequencies",
    "figure_shaw",
    "figure_sinusoidal",
    "figure_t5_buckets",
    "load_attention_maps",
    "panel_axes",
    "rope_scaling_methods",
    "run_attention_maps",
    "save_attention_maps",
]

DEFAULT_SCALINGS: dict[str, dict[str, Any]] = {
    "linear x4": {"rope_type": "linear", "factor": 4.0},
    "ntk x4": {"rope_type": "ntk", "factor": 4.0},
    "yarn x4": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 2048},
}
"""RoPE scalings compared in `figure_rope_decay` (Hugging Face ``rope_scaling`` dicts)."""

_DPI = 110


def panel_axes(fig: Figure) -> list[Axes]:
    """The data panels of a figure, in drawing order (colorbar axes left out)."""
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def _save(fig: Figure, out_path: str | Path) -> Path:
    path = Path(out_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=_DPI)
    return path


def _int_ticks(ax: Axes) -> None:
    """Integer ticks on both axes (positions of a heatmap)."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))


def _grid(fig: Figure, n: int, *, max_cols: int = 4) -> list[Axes]:
    cols = min(n, max_cols)
    rows = math.ceil(n / cols)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel().tolist()
    for ax in axes[n:]:
        fig.delaxes(ax)
    return axes[:n]


# --------------------------------------------------------------------------------------------
# Absolute
# --------------------------------------------------------------------------------------------


def figure_sinusoidal(*, dim: int = 128, length: int = 256, base: float = 10000.0) -> Figure:
    """Sinusoidal encodings: the dot-product matrix PE_i . PE_j and its decay with distance.

    Left: heatmap of ``PE_i . PE_j`` for positions 0 .. length-1. Right:
    ``PE_0 . PE_k`` against k (the product depends on k only, Vaswani et al. 2017).
    """
    pe = np.asarray(absolute.sinusoidal(jnp.arange(length), dim, base=base), np.float64)
    dots = pe @ pe.T  # [T, T]
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    ax_map, ax_line = fig.subplots(1, 2)
    im = ax_map.imshow(dots, cmap="viridis", origin="upper")
    fig.colorbar(im, ax=ax_map, shrink=0.85)
    ax_map.set_title(f"PE_i · PE_j (d={dim}, base={base:g})")
    ax_map.set_xlabel("position j")
    ax_map.set_ylabel("position i")
    ax_line.plot(np.arange(length), dots[0], label="PE_0 · PE_k")
    ax_line.set_title("dot product vs distance")
    ax_line.set_xlabel("distance k")
    ax_line.set_ylabel("PE_t · PE_(t+k)")
    ax_line.grid(True, alpha=0.3)
    ax_line.legend()
    return fig


def fig_sinusoidal(out_path: str | Path, **options: Any) -> Path:
    """Writes `figure_sinusoidal` as a PNG; returns the path."""
    return _save(figure_sinusoidal(**options), out_path)


# --------------------------------------------------------------------------------------------
# RoPE
# --------------------------------------------------------------------------------------------


def figure_rope_decay(
    *,
    head_dim: int = 128,
    max_distance: int = 4096,
    bases: Sequence[float] = (10000.0, 500000.0),
    scalings: Mapping[str, Mapping[str, Any]] | None = None,
    scaling_base: float = 10000.0,
) -> Figure:
    """RoPE long-term decay: RoFormer's averaged relative upper bound against distance.

    Left: one line per base (no scaling). Right: ``scaling_base`` without scaling
    ("none") and with each scaling of ``scalings`` (default `DEFAULT_SCALINGS`).
    Values are `posenc_jax.rope.rope_decay_bound` of the frequencies of
    `posenc_jax.rope.rope_frequencies`; distances 1 .. max_distance on a log axis.
    """
    scalings = DEFAULT_SCALINGS if scalings is None else scalings
    distances = np.arange(1, max_distance + 1)
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax_base, ax_scale = fig.subplots(1, 2, sharey=True)

    def bound(base: float, scaling: Mapping[str, Any] | None) -> np.ndarray:
        inv_freq, _ = rope.rope_frequencies(head_dim, base=base, scaling=scaling)
        return np.asarray(_decay_bound(distances, inv_freq))

    for base in bases:
        ax_base.plot(distances, bound(base, None), label=f"base {base:g}", linewidth=1)
    ax_scale.plot(distances, bound(scaling_base, None), label="none", linewidth=1)
    for label, scaling in scalings.items():
        ax_scale.plot(distances, bound(scaling_base, dict(scaling)), label=label, linewidth=1)
    ax_base.set_title(f"RoPE decay bound by base (H={head_dim})")
    ax_scale.set_title(f"RoPE decay bound by scaling (base {scaling_base:g})")
    ax_base.set_ylabel("(1/(d/2)) Σ_j |S_j|")
    for ax in (ax_base, ax_scale):
        ax.set_xscale("log")
        ax.set_xlabel("relative distance m - n")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    return fig


def fig_rope_decay(out_path: str | Path, **options: Any) -> Path:
    """Writes `figure_rope_decay` as a PNG; returns the path."""
    return _save(figure_rope_decay(**options), out_path)


def rope_scaling_methods(
    *, factor: float = 4.0, original_max_position_embeddings: int = 2048
) -> dict[str, dict[str, Any] | None]:
    """The scalings drawn by `figure_rope_frequencies`: none, linear, ntk, yarn, llama3."""
    orig = int(original_max_position_embeddings)
    return {
        "none": None,
        "linear": {"rope_type": "linear", "factor": factor},
        "ntk": {"rope_type": "ntk", "factor": factor},
        "yarn": {"rope_type": "yarn", "factor": factor, "original_max_position_embeddings": orig},
        "llama3": {
            "rope_type": "llama3",
            "factor": factor,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": orig,
        },
    }


def figure_rope_frequencies(
    *,
    head_dim: int = 128,
    base: float = 10000.0,
    factor: float = 4.0,
    original_max_position_embeddings: int = 2048,
) -> Figure:
    """Per-pair RoPE wavelengths ``2 pi / theta_i`` for each scaling method (log y).

    One line per method of `rope_scaling_methods`, labelled by its name; a dashed
    line marks the original context length. Linear interpolation stretches every
    wavelength by the factor, NTK mostly the long ones; YaRN and Llama 3 leave the
    short wavelengths alone and stretch those beyond the context.
    """
    fig = Figure(figsize=(6.8, 4.4), layout="constrained")
    ax = fig.subplots()
    pairs = np.arange(head_dim // 2)
    for label, scaling in rope_scaling_methods(
        factor=factor, original_max_position_embeddings=original_max_position_embeddings
    ).items():
        inv_freq, _ = rope.rope_frequencies(head_dim, base=base, scaling=scaling)
        ax.plot(pairs, 2 * np.pi / np.asarray(inv_freq, np.float64), label=label, linewidth=1.2)
    ax.axhline(
        original_max_position_embeddings,
        color="gray",
        linestyle="--",
        linewidth=1,
        label="_context",
    )
    ax.set_yscale("log")
    ax.set_xlabel("rotary pair i")
    ax.set_ylabel("wavelength 2π/θ_i (positions)")
    ax.set_title(f"RoPE wavelengths (H={head_dim}, base {base:g}, factor {factor:g})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def fig_rope_frequencies(out_path: str | Path, **options: Any) -> Path:
    """Writes `figure_rope_frequencies` as a PNG; returns the path."""
    return _save(figure_rope_frequencies(**options), out_path)


# --------------------------------------------------------------------------------------------
# ALiBi, T5, Shaw
# --------------------------------------------------------------------------------------------


def figure_alibi(*, num_heads: int = 8, length: int = 16, bidirectional: bool = False) -> Figure:
    """ALiBi biases per head: one [T, S] heatmap per head.

    Causal (default): the entries after the query (removed by the causal mask) are
    masked out of the picture. Values are `posenc_jax.alibi.alibi_bias`.
    """
    pos = jnp.arange(length)
    slopes = np.asarray(alibi.alibi_slopes(num_heads))
    bias = np.asarray(alibi.alibi_bias(pos, pos, slopes, bidirectional=bidirectional))  # [N,T,S]
    future = np.arange(length)[None, :] > np.arange(length)[:, None]
    size = (3.0 * min(num_heads, 4), 2.9 * math.ceil(num_heads / 4))
    fig = Figure(figsize=size, layout="constrained")
    for h, ax in enumerate(_grid(fig, num_heads)):
        data = bias[h] if bidirectional else np.ma.masked_array(bias[h], mask=future)
        ax.imshow(data, cmap="magma", origin="upper")
        ax.set_title(f"head {h}: m = {slopes[h]:.3g}", fontsize=9)
        ax.set_xlabel("key j", fontsize=8)
        ax.set_ylabel("query i", fontsize=8)
        _int_ticks(ax)
    formula = "-m·|i - j|, bidirectional" if bidirectional else "-m·(i - j), causal"
    fig.suptitle(f"ALiBi bias {formula} ({num_heads} heads)")
    return fig


def fig_alibi(out_path: str | Path, **options: Any) -> Path:
    """Writes `figure_alibi` as a PNG; returns the path."""
    return _save(figure_alibi(**options), out_path)


def figure_t5_buckets(*, num_buckets: int = 32, max_distance: int = 128, span: int = 300) -> Figure:
    """T5 bucket index against relative position k - q, bidirectional and causal.

    Values are `posenc_jax.relative.t5_relative_bucket`; dotted lines mark
    +-max_distance, where the logarithmic buckets saturate.
    """
    rel = np.arange(-span, span + 1)
    fig = Figure(figsize=(11, 4.0), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, bidirectional in zip(axes, (True, False), strict=True):
        buckets = relative.t5_relative_bucket(
            jnp.asarray(rel),
            bidirectional=bidirectional,
            num_buckets=num_buckets,
            max_distance=max_distance,
        )
        ax.plot(rel, np.asarray(buckets), drawstyle="steps-mid", label="bucket")
        for x in (-max_distance, max_distance):
            ax.axvline(x, color="gray", linestyle=":", linewidth=1, label="_max_distance")
        kind = "bidirectional" if bidirectional else "causal"
        ax.set_title(f"T5 buckets, {kind} ({num_buckets} buckets, max {max_distance})")
        ax.set_xlabel("relative position k - q")
        ax.set_ylabel("bucket")
        ax.grid(True, alpha=0.3)
    return fig


def fig_t5_buckets(out_path: str | Path, **options: Any) -> Path:
    """Writes `figure_t5_buckets` as a PNG; returns the path."""
    return _save(figure_t5_buckets(**options), out_path)


def figure_shaw(*, length: int = 16, max_distance: int = 4) -> Figure:
    """Shaw et al.'s clipped relative index ``clip(j - i, -K, K) + K`` as a [T, S] heatmap.

    Values are `posenc_jax.relative.shaw_relative_index` (row of the embedding
    tables a^K, a^V used for the pair).
    """
    pos = jnp.arange(length)
    index = np.asarray(relative.shaw_relative_index(pos, pos, max_distance))
    fig = Figure(figsize=(5.4, 4.6), layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(index, cmap="coolwarm", origin="upper")
    fig.colorbar(im, ax=ax, shrink=0.85, label="table row")
    ax.set_title(f"Shaw clipped relative index (K={max_distance})")
    ax.set_xlabel("key j")
    ax.set_ylabel("query i")
    _int_ticks(ax)
    return fig


def fig_shaw(out_path: str | Path, **options: Any) -> Path:
    """Writes `figure_shaw` as a PNG; returns the path."""
    return _save(figure_shaw(**options), out_path)


# --------------------------------------------------------------------------------------------
# xPos, KERPLE, FIRE
# --------------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("head_dim", "scale_base", "max_distance"))
def _aligned_scores(*, head_dim: int, scale_base: float, max_distance: int):
    """q.k / H of all-ones q at positions 0 .. max_distance and k at 0: (RoPE, xPos)."""
    r = jnp.arange(max_distance + 1)
    zero = jnp.zeros(1, jnp.int32)
    ones = jnp.ones((max_distance + 1, 1, head_dim), jnp.float32)  # [T, N=1, H]
    key = jnp.ones((1, 1, head_dim), jnp.float32)  # [S=1, N=1, H]
    inv_freq, _ = rope.rope_frequencies(head_dim)
    zeta = xpos.xpos_zeta(head_dim)
    kw = dict(inv_freq=inv_freq, zeta=zeta, scale_base=scale_base)
    xq = xpos.apply_xpos(ones, r, downscale=False, **kw)
    xk = xpos.apply_xpos(key, zero, downscale=True, **kw)
    rq = rope.apply_rope(ones, r, inv_freq=inv_freq)
    rk = rope.apply_rope(key, zero, inv_freq=inv_freq)
    return jnp.sum(rq * rk, -1)[:, 0] / head_dim, jnp.sum(xq * xk, -1)[:, 0] / head_dim


# One compiled program per figure instead of one per operation.
_kerple_bias = jax.jit(kerple.kerple_bias, static_argnames=("kind", "eps"))
_fire_input = jax.jit(fire.fire_normalized_distance, static_argnames=("eps",))
_decay_bound = jax.jit(rope.rope_decay_bound)


def figure_research_schemes(
    *,
    head_dim: int = 64,
    scale_base: float = 512.0,
    max_distance: int = 2048,
    kerple: Sequence[tuple[str, float, float]] = (
        ("log", 1.0, 0.5),
        ("log", 2.0, 0.02),
        ("power", 0.5, 0.5),
        ("power", 0.02, 1.0),
    ),
    fire_queries: Sequence[int] = (128, 512, 2048, 8192),
    fire_c: float = 0.1,
    fire_threshold: float = 512.0,
) -> Figure:
    """xPos, KERPLE and FIRE in three panels.

    * xPos: q.k / H of all-ones q and k against distance, for RoPE and for xPos
      (`posenc_jax.xpos.apply_xpos` on q at position r and k at 0): the same
      oscillation, damped by the per-pair decay.
    * KERPLE: the bias ``kerple_bias`` against distance for (kind, r1, r2) triples.
    * FIRE: the MLP input ``fire_normalized_distance`` against i - j for several
      query positions i: below the threshold L it is psi(i - j) / psi(L), above it
      the whole [0, i] range is squeezed into [0, 1] (progressive interpolation).
    """
    fig = Figure(figsize=(15, 4.2), layout="constrained")
    ax_x, ax_k, ax_f = fig.subplots(1, 3)

    r = np.arange(max_distance + 1)
    rope_curve, xpos_curve = _aligned_scores(
        head_dim=head_dim, scale_base=float(scale_base), max_distance=max_distance
    )
    ax_x.plot(r, np.asarray(rope_curve), label="RoPE")
    ax_x.plot(r, np.asarray(xpos_curve), label="xPos")
    ax_x.set_title(f"xPos vs RoPE, aligned q = k (H={head_dim}, scale_base {scale_base:g})")
    ax_x.set_xlabel("distance n - m")
    ax_x.set_ylabel("q·k / H")

    for kind in dict.fromkeys(k for k, _, _ in kerple):  # one call per kind, heads = curves
        rows = [(r1, r2) for k, r1, r2 in kerple if k == kind]
        r1s, r2s = (jnp.array(v, jnp.float32) for v in zip(*rows, strict=True))
        bias = np.asarray(_kerple_bias(r, np.zeros(1, np.int32), r1s, r2s, kind=kind))
        for n, (r1, r2) in enumerate(rows):  # bias: [N, T, S=1]
            ax_k.plot(r, bias[n, :, 0], label=f"{kind} r1={r1:g} r2={r2:g}")
    ax_k.set_title("KERPLE bias")
    ax_k.set_xlabel("distance |m - n|")
    ax_k.set_ylabel("bias")

    queries = np.asarray(fire_queries)
    keys = np.arange(int(queries.max()) + 1)
    u = np.asarray(_fire_input(queries, keys, c=fire_c, threshold=fire_threshold))  # [T, S]
    for row, i in enumerate(queries):
        ax_f.plot(i - np.arange(i + 1), u[row, : i + 1], label=f"query i = {i}")
    ax_f.set_xscale("symlog", linthresh=1.0)
    ax_f.set_title(f"FIRE input ψ(i-j)/ψ(max(i, L)) (c={fire_c:g}, L={fire_threshold:g})")
    ax_f.set_xlabel("distance i - j")
    ax_f.set_ylabel("normalised distance")
    for ax in (ax_x, ax_k, ax_f):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    return fig


def fig_research_schemes(out_path: str | Path, **options: Any) -> Path:
    """Writes `figure_research_schemes` as a PNG; returns the path."""
    return _save(figure_research_schemes(**options), out_path)


# --------------------------------------------------------------------------------------------
# Attention maps of trained models
# --------------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("scheme", "causal"))
def _layer_weights(scheme, params, q, k, positions, key_mask, *, causal):
    """Softmax weights [B, N, T, T] from projected q [B, T, N, H], k [B, T, K, H]."""
    b, t, n, hd = q.shape
    q, k = scheme.rotate(params, q, k, positions, positions)
    k = jnp.repeat(k, n // k.shape[2], axis=2)  # [B, T, N, H]
    qs = q * jnp.asarray(1.0 / math.sqrt(hd), q.dtype)
    logits = jnp.einsum("btnh,bsnh->bnts", qs, k, preferred_element_type=jnp.float32)
    if "logit_bias" in scheme.hooks:
        logits = logits + scheme.logit_bias(params, qs, positions, positions)
    allowed = jnp.broadcast_to(key_mask[:, None, None, :], (b, 1, t, t))
    if causal:
        allowed = allowed & (positions[:, None, None, :] <= positions[:, None, :, None])
    logits = jnp.where(allowed, logits, MASK_VALUE)
    weights = jax.nn.softmax(logits, axis=-1)
    return jnp.where(jnp.any(allowed, axis=-1, keepdims=True), weights, 0.0)


def attention_weights(
    model: Any,
    tokens: jax.Array,
    *,
    layer: int = 0,
    positions: jax.Array | None = None,
    padding_mask: jax.Array | None = None,
) -> np.ndarray:
    """Softmax attention weights of one layer of a `posenc_jax.nn` model.

    Runs the model's embedding and the blocks before ``layer``, then recomputes
    that layer's attention with its own projections and the scheme's hooks
    (rotate, logit bias, position-based causal mask, padding mask), exactly as
    `posenc_jax.attention.dense_attention` does before it multiplies by v.

    Args:
      model: a `posenc_jax.nn.TransformerLM` or `TransformerEncoder`.
      tokens: ``[B, T]`` int tokens.
      layer: block index.
      positions: ``[T]`` or ``[B, T]``; default 0 .. T-1.
      padding_mask: ``[B, T]`` bool, True = real token.

    Returns:
      ``[B, N, T, T]`` float32 weights (rows of fully masked queries are 0).
    """
    tokens = jnp.asarray(tokens)
    b, t = tokens.shape
    if not 0 <= layer < len(model.blocks):
        raise ValueError(f"layer must be in [0, {len(model.blocks)}); got layer={layer}")
    positions = jnp.arange(t, dtype=jnp.int32) if positions is None else jnp.asarray(positions)
    positions = jnp.broadcast_to(positions, (b, t))
    x = model.embed(tokens)  # [B, T, D]
    x = model.scheme.embed(model.pos_params.get_value(), x, positions)
    for block in list(model.blocks)[:layer]:
        x = block(x, positions=positions, padding_mask=padding_mask)
    block = model.blocks[layer]
    attn = block.attn
    h = block.norm1(x)
    n, kv, hd = attn.num_heads, attn.num_kv_heads, attn.head_dim
    q = attn.q_proj(h).reshape(b, t, n, hd)  # [B, T, N, H]
    k = attn.k_proj(h).reshape(b, t, kv, hd)  # [B, T, K, H]
    key_mask = jnp.ones((b, t), bool) if padding_mask is None else jnp.asarray(padding_mask, bool)
    weights = _layer_weights(
        attn.scheme, attn.pos_params.get_value(), q, k, positions, key_mask, causal=attn.causal
    )
    return np.asarray(weights, np.float32)


def _attention_panel(
    ax: Axes, weights: np.ndarray, label: str, length: int, train_length: int | None
) -> None:
    """One [T, T] map (query rows, key columns), titled with T and train/beyond."""
    ax.imshow(weights, cmap="viridis", origin="upper", interpolation="nearest")
    note = ""
    if train_length is not None:
        note = " (train)" if length <= train_length else " (beyond training)"
    ax.set_title(f"{label}, T={weights.shape[-1]}{note}", fontsize=9)
    ax.set_xlabel("key", fontsize=8)
    ax.set_ylabel("query", fontsize=8)
    _int_ticks(ax)


def figure_attention_maps(
    model_by_scheme: Mapping[str, Any],
    tokens_by_length: Mapping[int, Any],
    *,
    layer: int = 0,
    head: int = 0,
    train_length: int | None = None,
) -> Figure:
    """Attention maps of trained models: one panel per (scheme, length).

    Rows are schemes (in the order given), columns are lengths (sorted). Each panel
    is `attention_weights` of ``layer``, ``head`` for the first row of the tokens
    of that length. Lengths above ``train_length`` are titled "beyond training".

    Args:
      model_by_scheme: scheme label -> trained `posenc_jax.nn` model.
      tokens_by_length: length -> tokens ``[T]`` or ``[B, T]``.
      layer, head: which attention map.
      train_length: the training length, for the titles.
    """
    if not model_by_scheme or not tokens_by_length:
        raise ValueError("figure_attention_maps needs at least one model and one length")
    lengths = sorted(tokens_by_length)
    schemes = list(model_by_scheme)
    fig = Figure(figsize=(3.2 * len(lengths), 3.0 * len(schemes)), layout="constrained")
    axes = fig.subplots(len(schemes), len(lengths), squeeze=False)
    for row, label in enumerate(schemes):
        model = model_by_scheme[label]
        for col, length in enumerate(lengths):
            tokens = jnp.asarray(tokens_by_length[length])
            tokens = tokens.reshape(-1, tokens.shape[-1])[:1]  # [1, T]
            weights = attention_weights(model, tokens, layer=layer)
            _attention_panel(axes[row, col], weights[0, head], label, length, train_length)
    fig.suptitle(f"attention weights, layer {layer}, head {head}")
    return fig


def fig_attention_maps(
    model_by_scheme: Mapping[str, Any],
    tokens_by_length: Mapping[int, Any],
    out_path: str | Path,
    **options: Any,
) -> Path:
    """Writes `figure_attention_maps` as a PNG; returns the path."""
    return _save(figure_attention_maps(model_by_scheme, tokens_by_length, **options), out_path)


# --------------------------------------------------------------------------------------------
# Attention maps of experiment runs
# --------------------------------------------------------------------------------------------


def attention_map_lengths(
    task: Any, train_length: int, eval_lengths: Sequence[int], *, max_tokens: int
) -> list[int]:
    """Task lengths pictured for a run: the training length and the longest beyond it.

    Only lengths whose sequence (``task.sequence_length``) has at most ``max_tokens``
    positions are kept, so the pictures stay readable and cheap; an empty list when
    even the training length is longer.
    """
    if max_tokens <= 0 or task.sequence_length(train_length) > max_tokens:
        return []
    beyond = [n for n in eval_lengths if n > train_length and task.sequence_length(n) <= max_tokens]
    return [int(train_length)] + ([int(max(beyond))] if beyond else [])


def run_attention_maps(
    task: Any,
    graphdef: Any,
    state: Any,
    lengths: Sequence[int],
    *,
    seed_index: int = 0,
    layer: int = 0,
) -> dict[int, np.ndarray]:
    """First-layer attention weights of one trained seed of an experiment run.

    ``state`` holds the parameters of every seed stacked on a leading axis (as
    `experiments.train.train` returns them); ``seed_index`` picks one. For each task
    length one deterministic example is drawn (the same for every scheme).

    Returns:
      {task length: ``[N, T, T]`` float32 weights}, T the sequence length.
    """
    from flax import nnx

    params = jax.tree.map(lambda x: x[seed_index], state.params)
    rest = jax.tree.map(lambda x: x[seed_index], state.rest)
    model = nnx.merge(graphdef, params, rest)
    out = {}
    for length in lengths:
        batch = task.sample_batch(np.random.default_rng([int(length), 7919]), 1, int(length))
        out[int(length)] = attention_weights(model, np.asarray(batch.tokens), layer=layer)[0]
    return out


def save_attention_maps(
    path: str | Path,
    maps: Mapping[int, np.ndarray],
    *,
    scheme: str,
    task: str,
    train_length: int,
) -> Path:
    """Writes run attention maps (float16) to an ``.npz`` atomically; returns the path."""
    import io

    from experiments.results import atomic_write_bytes

    buf = io.BytesIO()
    arrays = {f"length_{n}": np.asarray(w, np.float16) for n, w in maps.items()}
    np.savez_compressed(
        buf, scheme=np.str_(scheme), task=np.str_(task), train_length=train_length, **arrays
    )
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def load_attention_maps(path: str | Path) -> dict[str, Any]:
    """Reads `save_attention_maps`: {scheme, task, train_length, maps: {length: [N, T, T]}}."""
    with np.load(path) as data:
        maps = {
            int(k.removeprefix("length_")): np.asarray(data[k], np.float32)
            for k in data.files
            if k.startswith("length_")
        }
        return {
            "scheme": str(data["scheme"]),
            "task": str(data["task"]),
            "train_length": int(data["train_length"]),
            "maps": dict(sorted(maps.items())),
        }


def figure_attention_arrays(
    maps_by_scheme: Mapping[str, Mapping[int, np.ndarray]],
    *,
    train_length: int | None = None,
    title: str = "",
) -> Figure:
    """Head-averaged attention maps: one row per scheme, one column per length.

    Args:
      maps_by_scheme: scheme label -> {task length: ``[N, T, T]`` weights}.
      train_length: the training length (task units), for the panel titles.
      title: figure title.
    """
    if not maps_by_scheme:
        raise ValueError("figure_attention_arrays needs at least one scheme")
    lengths = sorted({n for maps in maps_by_scheme.values() for n in maps})
    schemes = list(maps_by_scheme)
    fig = Figure(figsize=(3.2 * len(lengths), 2.9 * len(schemes)), layout="constrained")
    axes = fig.subplots(len(schemes), len(lengths), squeeze=False)
    for row, label in enumerate(schemes):
        for col, length in enumerate(lengths):
            ax = axes[row, col]
            weights = maps_by_scheme[label].get(length)
            if weights is None:
                ax.set_axis_off()
                continue
            _attention_panel(ax, np.mean(weights, axis=0), label, length, train_length)
    fig.suptitle(title or "attention weights, layer 0, mean over heads")
    return fig


def draw_run_attention_maps(
    out_dir: str | Path, records: Sequence[Mapping[str, Any]]
) -> list[Path]:
    """Writes ``attention_<task>.png`` from the maps saved under ``out_dir/attention``.

    Only maps of runs that have records are drawn; schemes in record order.
    """
    out_dir = Path(out_dir)
    folder = out_dir / "attention"
    if not folder.is_dir():
        return []
    runs = {(r["scheme"], r["task"]) for r in records}
    order = list(dict.fromkeys(r["scheme"] for r in records))
    by_task: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.glob("*.npz")):
        saved = load_attention_maps(path)
        if (saved["scheme"], saved["task"]) in runs and saved["maps"]:
            by_task.setdefault(saved["task"], {})[saved["scheme"]] = saved
    paths = []
    for task, saved in sorted(by_task.items()):
        schemes = sorted(saved, key=order.index)
        fig = figure_attention_arrays(
            {s: saved[s]["maps"] for s in schemes},
            train_length=saved[schemes[0]]["train_length"],
            title=f"{task}: attention weights of the first layer, mean over heads, first seed",
        )
        paths.append(_save(fig, out_dir / f"attention_{task}.png"))
    return paths


# --------------------------------------------------------------------------------------------
# All
# --------------------------------------------------------------------------------------------

STATIC_FIGURES = {
    "sinusoidal.png": fig_sinusoidal,
    "rope_decay.png": fig_rope_decay,
    "rope_frequencies.png": fig_rope_frequencies,
    "alibi.png": fig_alibi,
    "t5_buckets.png": fig_t5_buckets,
    "shaw.png": fig_shaw,
    "xpos_kerple_fire.png": fig_research_schemes,
}
"""File name -> figure writer of the pictures that need no trained model."""


def draw_all(
    out_dir: str | Path,
    *,
    model_by_scheme: Mapping[str, Any] | None = None,
    tokens_by_length: Mapping[int, Any] | None = None,
    train_length: int | None = None,
) -> list[Path]:
    """Writes every picture into ``out_dir`` (created); returns the PNG paths.

    The pictures of `STATIC_FIGURES` always; ``attention_maps.png`` too when
    trained models and tokens are given (see `figure_attention_maps`).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [writer(out_dir / name) for name, writer in STATIC_FIGURES.items()]
    if model_by_scheme and tokens_by_length:
        paths.append(
            fig_attention_maps(
                model_by_scheme,
                tokens_by_length,
                out_dir / "attention_maps.png",
                train_length=train_length,
            )
        )
    return paths
