"""Attention maps of trained models: the softmax weights their attention layers sow.

`layer_attention_weights` runs a `posenc_jax.nn` model with one layer asked to
sow its weights (``nnx.view(..., sow_weights=True)``, read with ``nnx.capture``),
so the maps are `posenc_jax.attention.attention_weights` of that layer's own
forward, not a recomputation. `figure_attention_maps` draws them for models in
memory; `run_attention_maps` / `save_attention_maps` / `draw_run_attention_maps`
store and draw the first layer of the trained runs of an experiment.

Shape legend: B batch, T query length, S key length (= T here), N heads.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from posenc_jax.harness.figures import int_ticks, save_figure
from posenc_jax.harness.results import atomic_write_bytes

__all__ = [
    "attention_map_lengths",
    "draw_run_attention_maps",
    "fig_attention_maps",
    "figure_attention_arrays",
    "figure_attention_maps",
    "layer_attention_weights",
    "load_attention_maps",
    "run_attention_maps",
    "save_attention_maps",
]


@nnx.jit
@nnx.capture(nnx.Intermediate)
def _sown_forward(model, tokens, positions, padding_mask):
    """The model's logits and its sown intermediates (jit-compiled once per model structure)."""
    return model(tokens, positions=positions, padding_mask=padding_mask)


def layer_attention_weights(
    model: Any,
    tokens: jax.Array,
    *,
    layer: int = 0,
    positions: jax.Array | None = None,
    padding_mask: jax.Array | None = None,
) -> np.ndarray:
    """Softmax attention weights of one layer of a `posenc_jax.nn` model, as the layer sows them.

    Runs the model's forward on a view of it in which only block ``layer``'s
    attention sows its weights (the model itself is left unchanged).

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
    if padding_mask is not None:
        padding_mask = jnp.asarray(padding_mask, bool)
    view = nnx.view(
        model, only=lambda path, _: tuple(path[:2]) == ("blocks", layer), sow_weights=True
    )
    _, sown = _sown_forward(view, tokens, positions, padding_mask)
    (weights,) = sown["blocks"][layer]["attn"]["attention_weights"].get_value()  # one call
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
    int_ticks(ax)


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
    is `layer_attention_weights` of ``layer``, ``head`` for the first row of the tokens
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
            weights = layer_attention_weights(model, tokens, layer=layer)
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
    return save_figure(
        figure_attention_maps(model_by_scheme, tokens_by_length, **options), out_path
    )


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
    `posenc_jax.harness.train.train` returns them); ``seed_index`` picks one. For each task
    length one deterministic example is drawn (the same for every scheme).

    Returns:
      {task length: ``[N, T, T]`` float32 weights}, T the sequence length.
    """
    params = jax.tree.map(lambda x: x[seed_index], state.params)
    rest = jax.tree.map(lambda x: x[seed_index], state.rest)
    model = nnx.merge(graphdef, params, rest)
    out = {}
    for length in lengths:
        batch = task.sample_batch(np.random.default_rng([int(length), 7919]), 1, int(length))
        out[int(length)] = layer_attention_weights(model, np.asarray(batch.tokens), layer=layer)[0]
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
        paths.append(save_figure(fig, out_dir / f"attention_{task}.png"))
    return paths
