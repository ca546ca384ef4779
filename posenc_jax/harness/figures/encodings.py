"""Pictures of every positional encoding, drawn from the pure functions of `posenc_jax`.

Each picture has a ``figure_xxx(**options) -> Figure`` that builds it and a
``fig_xxx(out_path, **options) -> Path`` that writes it as a PNG; `draw_all` writes
them all (the ``posenc viz OUT_DIR`` command). The numbers plotted are the outputs
of the library's functions (`absolute.sinusoidal`, `rope.rope_frequencies`,
`rope.rope_decay_bound`, `alibi.alibi_bias`, `relative.t5_relative_bucket`,
`relative.shaw_relative_index`, `xpos.apply_xpos`, `kerple.kerple_bias`,
`fire.fire_normalized_distance`, `transformer_xl.xl_relative_logits`,
`deberta.deberta_log_bucket`, `deberta.deberta_relative_index`, `tupe.tupe_bias`,
`fox.fox_bias`, `stick_breaking.stick_breaking_weights`, `cope.cope_positions`,
`pope.apply_pope`, `abacus.abacus_ids`,
`random_distances.sample_relative_distances`), so the
figures show what the code computes.

Shape legend: B batch, T query length, S key length, N heads, H head dim.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from posenc_jax import (
    abacus,
    absolute,
    alibi,
    cope,
    deberta,
    fire,
    fox,
    kerple,
    pope,
    random_distances,
    relative,
    rope,
    stick_breaking,
    transformer_xl,
    tupe,
    xpos,
)
from posenc_jax.harness.figures import int_ticks, save_figure

__all__ = [
    "DEFAULT_SCALINGS",
    "STATIC_FIGURES",
    "draw_all",
    "fig_abacus",
    "fig_alibi",
    "fig_deberta",
    "fig_gated",
    "fig_pope",
    "fig_randomized_alibi",
    "fig_research_schemes",
    "fig_rope_decay",
    "fig_rope_frequencies",
    "fig_shaw",
    "fig_sinusoidal",
    "fig_t5_buckets",
    "fig_transformer_xl",
    "fig_tupe",
    "figure_abacus",
    "figure_alibi",
    "figure_deberta",
    "figure_gated",
    "figure_pope",
    "figure_randomized_alibi",
    "figure_research_schemes",
    "figure_rope_decay",
    "figure_rope_frequencies",
    "figure_shaw",
    "figure_sinusoidal",
    "figure_t5_buckets",
    "figure_transformer_xl",
    "figure_tupe",
    "rope_scaling_methods",
]

DEFAULT_SCALINGS: dict[str, dict[str, Any]] = {
    "linear x4": {"rope_type": "linear", "factor": 4.0},
    "ntk x4": {"rope_type": "ntk", "factor": 4.0},
    "yarn x4": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 2048},
}
"""RoPE scalings compared in `figure_rope_decay` (Hugging Face ``rope_scaling`` dicts)."""


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
    return save_figure(figure_sinusoidal(**options), out_path)


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
    return save_figure(figure_rope_decay(**options), out_path)


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
    return save_figure(figure_rope_frequencies(**options), out_path)


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
        int_ticks(ax)
    formula = "-m·|i - j|, bidirectional" if bidirectional else "-m·(i - j), causal"
    fig.suptitle(f"ALiBi bias {formula} ({num_heads} heads)")
    return fig


def fig_alibi(out_path: str | Path, **options: Any) -> Path:
    """Writes `figure_alibi` as a PNG; returns the path."""
    return save_figure(figure_alibi(**options), out_path)


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
    return save_figure(figure_t5_buckets(**options), out_path)


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
    int_ticks(ax)
    return fig


def fig_shaw(out_path: str | Path, **options: Any) -> Path:
    """Writes `figure_shaw` as a PNG; returns the path."""
    return save_figure(figure_shaw(**options), out_path)


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
    return save_figure(figure_research_schemes(**options), out_path)


# --------------------------------------------------------------------------------------------
# Transformer-XL, DeBERTa, TUPE
# --------------------------------------------------------------------------------------------


def figure_transformer_xl(
    *,
    dim: int = 64,
    num_heads: int = 4,
    head_dim: int = 16,
    length: int = 32,
    span: int = 64,
    clamp_len: int | None = None,
    seed: int = 0,
) -> Figure:
    """Transformer-XL's global position term ``v . W_R R_{i-j}`` (term (d)) per head.

    W_R and v are drawn at random (``seed``; the scheme's initial scale for W_R, unit
    v): the shape of the term, not trained values. Left: a ``[T, S]`` heatmap for head
    0, constant along every diagonal (a function of i - j only). Right: each head
    against ``i - j`` in ``[-span, span]``; with ``clamp_len`` the curves are flat
    beyond it. Values are `posenc_jax.transformer_xl.xl_relative_logits` of v.
    """
    kw, kv = jax.random.split(jax.random.PRNGKey(seed))
    w_r = jax.random.normal(kw, (dim, num_heads, head_dim)) / math.sqrt(dim)
    v = jax.random.normal(kv, (1, 1, num_heads, head_dim))
    pos = jnp.arange(length)
    grid = transformer_xl.xl_relative_logits(
        jnp.broadcast_to(v, (1, length, num_heads, head_dim)), w_r, pos, pos, clamp_len=clamp_len
    )  # [1, N, T, T]
    keys = jnp.arange(-span, span + 1)
    curve = transformer_xl.xl_relative_logits(
        v, w_r, jnp.zeros(1, jnp.int32), -keys, clamp_len=clamp_len
    )  # [1, N, 1, 2 span + 1]: distance i - j = keys
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax_map, ax_line = fig.subplots(1, 2)
    im = ax_map.imshow(np.asarray(grid[0, 0]), cmap="coolwarm", origin="upper")
    fig.colorbar(im, ax=ax_map, shrink=0.85)
    ax_map.set_title("head 0: v·W_R R_(i-j)")
    ax_map.set_xlabel("key j")
    ax_map.set_ylabel("query i")
    int_ticks(ax_map)
    for n in range(num_heads):
        ax_line.plot(np.asarray(keys), np.asarray(curve[0, n, 0]), label=f"head {n}", linewidth=1)
    if clamp_len is not None:
        for x in (-clamp_len, clamp_len):
            ax_line.axvline(x, color="gray", linestyle=":", linewidth=1, label="_clamp_len")
    ax_line.set_title(f"term (d) vs distance (D_r={dim}, random W_R, v)")
    ax_line.set_xlabel("distance i - j")
    ax_line.set_ylabel("v·W_R R_(i-j)")
    ax_line.grid(True, alpha=0.3)
    ax_line.legend(fontsize=8)
    return fig


def fig_transformer_xl(out_path: str | Path, **options: Any) -> Path:
    """Writes `figure_transformer_xl` as a PNG; returns the path."""
    return save_figure(figure_transformer_xl(**options), out_path)


def figure_deberta(
    *,
    position_buckets: int = 256,
    max_relative_positions: int = 512,
    span: int = 1200,
    length: int = 24,
    small_buckets: int = 8,
    small_max: int = 16,
) -> Figure:
    """DeBERTa's relative positions: the log buckets, and the table row of each pair.

    Left: `posenc_jax.deberta.deberta_log_bucket` against ``i - j`` (DeBERTa-v2/v3
    settings by default): exact up to ``+-position_buckets // 2`` (dotted), then
    logarithmic, reaching ``+-(position_buckets - 1)`` at ``+-(max_relative_positions -
    1)`` (dashed). Right: the row ``delta(i, j)`` of the tables ``K^r``, ``Q^r`` read by
    each pair (`posenc_jax.deberta.deberta_relative_index`) for small settings.
    """
    rel = np.arange(-span, span + 1)
    buckets = deberta.deberta_log_bucket(
        jnp.asarray(rel),
        position_buckets=position_buckets,
        max_relative_positions=max_relative_positions,
    )
    pos = jnp.arange(length)
    index = deberta.deberta_relative_index(
        pos, pos, position_buckets=small_buckets, max_relative_positions=small_max
    )
    fig = Figure(figsize=(11, 4.4), layout="constrained")
    ax_line, ax_map = fig.subplots(1, 2)
    ax_line.plot(rel, np.asarray(buckets), drawstyle="steps-mid", label="bucket")
    mid, edge = position_buckets // 2, max_relative_positions - 1
    for x in (-mid, mid):
        ax_line.axvline(x, color="gray", linestyle=":", linewidth=1, label="_exact")
    for x in (-edge, edge):
        ax_line.axvline(x, color="gray", linestyle="--", linewidth=1, label="_max")
    ax_line.set_title(
        f"DeBERTa log buckets ({position_buckets} buckets, max {max_relative_positions})"
    )
    ax_line.set_xlabel("relative position i - j")
    ax_line.set_ylabel("bucket")
    ax_line.grid(True, alpha=0.3)
    im = ax_map.imshow(np.asarray(index), cmap="coolwarm", origin="upper")
    fig.colorbar(im, ax=ax_map, shrink=0.85, label="table row")
    ax_map.set_title(f"row δ(i, j) ({small_buckets} buckets, max {small_max})")
    ax_map.set_xlabel("key j")
    ax_map.set_ylabel("query i")
    int_ticks(ax_map)
    return fig


def fig_deberta(out_path: str | Path, **options: Any) -> Path:
    """Writes `figure_deberta` as a PNG; returns the path."""
    return save_figure(figure_deberta(**options), out_path)


def figure_tupe(
    *, length: int = 24, dim: int = 32, num_buckets: int = 16, max_distance: int = 32
) -> Figure:
    """TUPE's positional logits as [T, S] heatmaps, [CLS] (position 0) untied.

    Left: the untied term ``(p_i U^Q).(p_j U^K) / sqrt(2d)`` with a sinusoidal table p
    and identity projections (an illustration: TUPE learns both), and
    ``theta = (-1, 1)`` for the [CLS] row and column. Right: TUPE-R's relative part
    alone, a T5 table holding its bucket ids (bidirectional), with the same thetas.
    Values are `posenc_jax.tupe.tupe_bias`.
    """
    pos = jnp.arange(length)
    table = absolute.sinusoidal(pos, dim)  # [L, D_p]
    eye = jnp.eye(dim)[:, None, :]  # [D_p, N=1, H=D_p]
    theta = jnp.array([[-1.0], [1.0]])
    untied = tupe.tupe_bias(pos, pos, table, eye, eye, cls_theta=theta)  # [1, T, T]
    zeros = jnp.zeros((dim, 1, 1))
    rel_table = jnp.arange(num_buckets, dtype=jnp.float32)[:, None]
    rel = tupe.tupe_bias(
        pos,
        pos,
        jnp.zeros((length, dim)),
        zeros,
        zeros,
        cls_theta=theta,
        relative_table=rel_table,
        num_buckets=num_buckets,
        max_distance=max_distance,
    )
    fig = Figure(figsize=(11, 4.6), layout="constrained")
    axes = fig.subplots(1, 2)
    titles = (
        f"untied term, sinusoidal p (d={dim}), [CLS] θ = (-1, 1)",
        f"TUPE-R buckets ({num_buckets}, max {max_distance}), [CLS] θ = (-1, 1)",
    )
    for ax, data, title in zip(axes, (untied, rel), titles, strict=True):
        im = ax.imshow(np.asarray(data[0]), cmap="viridis", origin="upper")
        fig.colorbar(im, ax=ax, shrink=0.85)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("key j")
        ax.set_ylabel("query i")
        int_ticks(ax)
    return fig


def fig_tupe(out_path: str | Path, **options: Any) -> Path:
    """Writes `figure_tupe` as a PNG; returns the path."""
    return save_figure(figure_tupe(**options), out_path)


def figure_gated(
    *,
    length: int = 32,
    gate: float = 0.9,
    closing_gate: float = 0.02,
    logits: Sequence[float] = (-2.0, 0.0, 2.0),
    unit: int = 5,
) -> Figure:
    """FoX's decay, stick-breaking's weights and CoPE's positions for the last query of a row.

    Left: FoX's multiplier ``exp(L_i - L_j)`` of each key's weight (`fox.fox_bias`) for
    forget gates all ``gate`` (the decay of ALiBi with slope ``-log gate``) and for the
    same gates with ``closing_gate`` at the middle token, which forgets what came before
    it. Right: stick-breaking weights (`stick_breaking.stick_breaking_weights`) of
    earlier keys that all have the same logit z: nearer keys take their share first,
    where a softmax would spread the weight evenly. Third: CoPE's position of each key
    (`cope.cope_positions`) when the gates are 1 on every key, and when they are 1 only
    on every ``unit``-th token (say, the end of each sentence) and 0 elsewhere: the
    position then counts units, not tokens.
    """
    i = length - 1
    keys = np.arange(length)
    fig = Figure(figsize=(13.0, 3.2), layout="constrained")
    left, right, third = fig.subplots(1, 3)
    gates = np.full(length, gate)
    closing = gates.copy()
    closing[length // 2] = closing_gate
    for label, g in (
        (f"f = {gate:g} everywhere", gates),
        (f"f = {closing_gate:g} at token {length // 2}", closing),
    ):
        cum, _ = fox.cumulative_log_forget(jnp.log(jnp.asarray(g, jnp.float32))[None, :, None])
        decay = np.exp(np.asarray(fox.fox_bias(cum, cum))[0, 0, i])  # [S]
        left.plot(keys, decay, marker=".", label=label)
    left.set_yscale("log")
    left.set_xlabel(f"key j (query i = {i})", fontsize=8)
    left.set_ylabel("exp(L_i - L_j)", fontsize=8)
    left.set_title("FoX: product of the forget gates after each key", fontsize=9)
    left.legend(fontsize=7)
    left.xaxis.set_major_locator(MaxNLocator(integer=True))
    for z in logits:
        weights, rem = stick_breaking.stick_breaking_weights(jnp.full((i,), z, jnp.float32))
        right.plot(
            keys[:i],
            np.asarray(weights),
            marker=".",
            label=f"z = {z:g} (left over {float(rem):.2g})",
        )
    right.set_xlabel(f"earlier key j (query i = {i})", fontsize=8)
    right.set_ylabel("weight A_ij", fontsize=8)
    right.set_title("stick-breaking: equal logits, nearer keys first", fontsize=9)
    right.legend(fontsize=7)
    right.xaxis.set_major_locator(MaxNLocator(integer=True))
    allowed = jnp.ones((1, 1, 1, length), bool)
    every = jnp.full((1, 1, 1, length), 60.0)  # gate logits: sigmoid ~ 1 or ~ 0
    units = jnp.where(jnp.arange(length) % unit == unit - 1, 60.0, -60.0)[None, None, None]
    for label, z in (("every gate 1", every), (f"gate 1 on every {unit}th token", units)):
        p = np.asarray(cope.cope_positions(z, allowed, npos=length + 1))[0, 0, 0]
        third.step(keys, p, where="mid", label=label)
    third.set_xlabel(f"key j (query i = {i})", fontsize=8)
    third.set_ylabel("position p_ij", fontsize=8)
    third.set_title("CoPE: positions count what the gates select", fontsize=9)
    third.legend(fontsize=7)
    third.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle("Positions and decay that the tokens choose: FoX, stick-breaking, CoPE")
    return fig


def fig_gated(out_path: str | Path, **options: Any) -> Path:
    """Writes `figure_gated` as a PNG; returns the path."""
    return save_figure(figure_gated(**options), out_path)


def figure_pope(*, head_dim: int = 32, max_distance: int = 64, pairs: int = 3) -> Figure:
    """q . k / H against the distance for a few random (q, k) pairs, RoPE beside PoPE.

    RoPE (`rope.apply_rope`) rotates pairs of the content itself, so where each pair
    peaks and changes sign depends on the content; PoPE (`pope.apply_pope`) takes
    magnitudes from the content and phases from positions only, so every pair's
    curve is a sum of cosines of the distance with non-negative weights, largest at
    distance 0 (phase bias 0).
    """
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    q = jax.random.normal(keys[0], (pairs, 1, 1, head_dim))  # [B, T=1, N=1, H]
    k = jax.random.normal(keys[1], (pairs, 1, 1, head_dim))
    d = jnp.arange(max_distance + 1)
    zero = jnp.zeros(1, jnp.int32)
    inv_freq, _ = rope.rope_frequencies(head_dim)
    rq = rope.apply_rope(jnp.broadcast_to(q, (pairs, d.size, 1, head_dim)), d, inv_freq=inv_freq)
    rk = rope.apply_rope(k, zero, inv_freq=inv_freq)
    freq = pope.pope_frequencies(head_dim)
    pq = pope.apply_pope(jnp.broadcast_to(q, (pairs, d.size, 1, head_dim)), d, freq)
    pk = pope.apply_pope(k, zero, freq)
    fig = Figure(figsize=(9.0, 3.2), layout="constrained")
    left, right = fig.subplots(1, 2, sharey=False)
    for b in range(pairs):
        left.plot(d, np.asarray(jnp.sum(rq[b] * rk[b], -1))[:, 0] / head_dim, label=f"pair {b}")
        right.plot(d, np.asarray(jnp.sum(pq[b] * pk[b], -1))[:, 0] / head_dim, label=f"pair {b}")
    for ax, title in (
        (left, "RoPE: content and position mixed"),
        (right, "PoPE: magnitude x phase"),
    ):
        ax.axhline(0.0, color="0.6", lw=0.8)
        ax.set_xlabel("distance i - j", fontsize=8)
        ax.set_ylabel("q . k / H", fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(f"Scores of random q, k against distance (H = {head_dim})")
    return fig


def fig_pope(out_path: str | Path, **options: Any) -> Path:
    """Writes `figure_pope` as a PNG; returns the path."""
    return save_figure(figure_pope(**options), out_path)


def figure_abacus(*, a: int = 98765, b: int = 4321, offset: int = 37) -> Figure:
    """Abacus ids (`abacus.abacus_ids`) of the tokens of ``a + b = a + b``, every number
    written least significant digit first: digits of the same significance share an id in
    all three numbers, at evaluation (offset 0) and shifted by one training ``offset``."""
    numbers = [str(a)[::-1], str(b)[::-1], str(a + b)[::-1]]
    text = [*numbers[0], "+", *numbers[1], "=", *numbers[2]]
    is_digit = jnp.asarray([c.isdigit() for c in text])
    fig = Figure(figsize=(9.0, 3.2), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(text))
    for k, marker in ((0, "o"), (offset, "s")):
        ids = np.asarray(abacus.abacus_ids(is_digit, offset=k))
        ax.plot(x, ids, marker=marker, linestyle="none", label=f"offset {k}")
    ax.set_xticks(x, text)
    ax.set_xlabel("token (numbers least significant digit first)", fontsize=8)
    ax.set_ylabel("Abacus id (0: not a digit)", fontsize=8)
    ax.set_title("Abacus: a digit's id is its place in its number", fontsize=9)
    ax.legend(fontsize=7)
    return fig


def fig_abacus(out_path: str | Path, **options: Any) -> Path:
    """Writes `figure_abacus` as a PNG; returns the path."""
    return save_figure(figure_abacus(**options), out_path)


def figure_randomized_alibi(*, length: int = 12, max_distance: int = 64, seed: int = 0) -> Figure:
    """ALiBi's bias (slope 1, ``bidirectional="ruoss"``) three ways: ordinary positions,
    randomized positions (a sorted random subset of [0, max_distance), Ruoss et al.'s
    way for any scheme) and randomized distances (`random_distances.sample_relative_distances`,
    their reference code's way for ALiBi: the bias stays Toeplitz)."""
    pos = jnp.arange(length)
    key_pos, key_dist = jax.random.split(jax.random.key(seed))
    random_pos = jnp.sort(jax.random.choice(key_pos, max_distance, (length,), replace=False))
    table = random_distances.sample_relative_distances(
        key_dist, length=length, max_distance=max_distance
    )
    one = jnp.ones((1,))
    panels = (
        ("positions 0..T-1", alibi.alibi_bias(pos, pos, one, bidirectional="ruoss")),
        (
            f"random positions from [0, {max_distance})",
            alibi.alibi_bias(random_pos, random_pos, one, bidirectional="ruoss"),
        ),
        (
            f"random distances from [1, {max_distance})",
            alibi.alibi_bias(pos, pos, one, bidirectional="ruoss", distances=table),
        ),
    )
    fig = Figure(figsize=(10.0, 3.4), layout="constrained")
    axes = fig.subplots(1, 3)
    low = min(float(np.min(np.asarray(b))) for _, b in panels)
    for ax, (title, bias) in zip(axes, panels, strict=True):
        image = ax.imshow(np.asarray(bias)[0], cmap="magma", origin="upper", vmin=low, vmax=0.0)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("key j", fontsize=8)
        ax.set_ylabel("query i", fontsize=8)
        int_ticks(ax)
    fig.colorbar(image, ax=axes, shrink=0.8, label="bias (m = 1)")
    fig.suptitle(
        "ALiBi randomized: random positions break the diagonals, random distances keep them"
    )
    return fig


def fig_randomized_alibi(out_path: str | Path, **options: Any) -> Path:
    """Writes `figure_randomized_alibi` as a PNG; returns the path."""
    return save_figure(figure_randomized_alibi(**options), out_path)


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
    "transformer_xl.png": fig_transformer_xl,
    "deberta.png": fig_deberta,
    "tupe.png": fig_tupe,
    "gated.png": fig_gated,
    "pope.png": fig_pope,
    "abacus.png": fig_abacus,
    "randomized_alibi.png": fig_randomized_alibi,
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
    trained models and tokens are given (see
    `posenc_jax.harness.figures.attention_maps.figure_attention_maps`).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [writer(out_dir / name) for name, writer in STATIC_FIGURES.items()]
    if model_by_scheme and tokens_by_length:
        from posenc_jax.harness.figures.attention_maps import fig_attention_maps  # imports Flax

        paths.append(
            fig_attention_maps(
                model_by_scheme,
                tokens_by_length,
                out_dir / "attention_maps.png",
                train_length=train_length,
            )
        )
    return paths
