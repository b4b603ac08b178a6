"""Drawing helpers shared by the report's figures (Agg canvas, no pyplot state)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["OTHER_GREY", "cells_text", "label_palette", "lighten", "new_figure", "outline", "point_size", "rect",
           "style_embedding_axes"]

OTHER_GREY = "#c8c8c8"


def new_figure(w: float, h: float):
    """A :class:`matplotlib.figure.Figure` on its own Agg canvas, so the caller's pyplot is left alone."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h))
    FigureCanvasAgg(fig)
    return fig


def label_palette(adata, label_key: str | None) -> dict[str, Any]:
    """One colour per label, the largest label first (tab10, or tab20 beyond 10 labels)."""
    from matplotlib import colormaps

    if not label_key:
        return {}
    order = adata.obs[label_key].astype(str).value_counts().index.tolist()
    cmap = colormaps["tab10"] if len(order) <= 10 else colormaps["tab20"]
    return {lab: cmap(i % cmap.N) for i, lab in enumerate(order)}


def point_size(n: int) -> float:
    return float(np.clip(24000 / max(n, 1), 3, 40))


def style_embedding_axes(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel("UMAP 1")
    ax.set_ylabel("UMAP 2")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def cells_text(n: int) -> str:
    return f"{int(n):,} cell" + ("" if int(n) == 1 else "s")


def outline(width: float = 3.0):
    """A white stroke behind text, so labels read over points and edges."""
    import matplotlib.patheffects as pe

    return [pe.withStroke(linewidth=width, foreground="white")]


def rect(x, y, w, h):
    from matplotlib.patches import Rectangle

    return Rectangle((x, y), w, h, fill=False, edgecolor="black", lw=1.4)


def lighten(colour, amount: float = 0.55):
    from matplotlib.colors import to_rgb

    r, g, b = to_rgb(colour)
    return (r + (1 - r) * amount, g + (1 - g) * amount, b + (1 - b) * amount)
