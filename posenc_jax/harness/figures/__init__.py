"""Figures: pictures of the encodings, attention maps of trained runs, result plots.

* `posenc_jax.harness.figures.encodings`: what each positional encoding computes, drawn
  from the pure functions of `posenc_jax` (the ``posenc viz`` command).
* `posenc_jax.harness.figures.attention_maps`: attention weights of trained models, as
  their attention layers sow them.
* `posenc_jax.harness.figures.results`: metric against evaluation length, per task.

Every figure is a `matplotlib.figure.Figure` built without pyplot, so no
backend is selected or needed and nothing leaks between calls; `save_figure`
writes any of them as a PNG. `panel_axes` lists a figure's panels without its
colorbars.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

__all__ = ["DPI", "int_ticks", "panel_axes", "save_figure"]

DPI = 110
"""Resolution of every written figure (dots per inch)."""


def save_figure(fig: Figure, out_path: str | Path) -> Path:
    """Writes ``fig`` as a PNG at `DPI` (parent folders created); returns the path."""
    path = Path(out_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


def panel_axes(fig: Figure) -> list[Axes]:
    """The data panels of a figure, in drawing order (colorbar axes left out)."""
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def int_ticks(ax: Axes) -> None:
    """Integer ticks on both axes (positions of a heatmap)."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
