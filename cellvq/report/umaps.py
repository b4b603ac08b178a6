"""The report's UMAP figures: the embedding coloured by cell code and by the run's label column."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cellvq.report.draw import OTHER_GREY, cells_text, new_figure, point_size, style_embedding_axes
from cellvq.report.labels import place_labels

__all__ = ["codes_figure", "labels_figure"]


def codes_figure(adata, xy: np.ndarray, top_codes: int):
    """The ``top_codes`` most frequent codes in colour, the rest grey, small codes drawn on top."""
    from matplotlib import colormaps

    codes = adata.obs["cellvq_code"].astype(str).to_numpy()
    counts = pd.Series(codes).value_counts()
    top = counts.index[:top_codes].tolist()
    cmap = colormaps["tab20"]
    colours = {c: cmap(i % 20) for i, c in enumerate(top)}
    fig = new_figure(10.5, 7.0)
    ax = fig.add_axes([0.06, 0.08, 0.62, 0.80])
    s = point_size(len(codes))
    other = ~np.isin(codes, top)
    if other.any():
        ax.scatter(xy[other, 0], xy[other, 1], s=s, c=OTHER_GREY, linewidths=0, rasterized=True)
    for c in reversed(top):  # largest codes drawn last would hide small ones; draw small ones on top
        m = codes == c
        ax.scatter(xy[m, 0], xy[m, 1], s=s, color=colours[c], linewidths=0, rasterized=True)
    style_embedding_axes(ax)
    u = adata.uns.get("cellvq", {})
    ax.set_title(
        f"CellVQ embedding coloured by cell code\n{adata.n_obs:,} cells, {counts.size} codes used"
        f" (perplexity {float(u.get('code_perplexity', float('nan'))):.1f})",
        fontsize=13,
    )
    _codes_legend(fig, counts, colours, top_codes)
    return fig


def _codes_legend(fig, counts: pd.Series, colours: dict, top_codes: int) -> None:
    from matplotlib.lines import Line2D

    top = counts.index[:top_codes].tolist()
    rest = counts.index[top_codes:]
    handles = [
        Line2D([], [], marker="o", ls="", color=colours[c], markersize=8, label=f"{c}  ({cells_text(counts[c])})")
        for c in top
    ]
    if len(rest):
        n_rest_cells = int(counts.iloc[top_codes:].sum())
        handles.append(
            Line2D([], [], marker="o", ls="", color=OTHER_GREY, markersize=8,
                   label=f"other {len(rest)} codes ({cells_text(n_rest_cells)}), grey")
        )
    title = f"cell code (top {len(top)} by cells)" if len(rest) else "cell code"
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(0.69, 0.5), frameon=False, fontsize=9,
               title=title, title_fontsize=10, ncol=1 if len(handles) <= 22 else 2)


def labels_figure(adata, xy: np.ndarray, label_key: str, palette: dict):
    """Every label in its palette colour, named at its median position."""
    from matplotlib.lines import Line2D

    labels = adata.obs[label_key].astype(str).to_numpy()
    counts = pd.Series(labels).value_counts()
    fig = new_figure(10.5, 7.0)
    ax = fig.add_axes([0.06, 0.08, 0.62, 0.80])
    s = point_size(len(labels))
    for lab in counts.index:
        m = labels == lab
        ax.scatter(xy[m, 0], xy[m, 1], s=s, color=palette[lab], linewidths=0, rasterized=True)
    style_embedding_axes(ax)
    items = []
    for lab in counts.index:  # name each group at its median position
        m = labels == lab
        items.append((lab, float(np.median(xy[m, 0])), float(np.median(xy[m, 1])), (0.0, 0.0)))
    place_labels(ax, items, fontsize=10, weight="bold")
    ax.set_title(f"CellVQ embedding coloured by {label_key}\n{adata.n_obs:,} cells, {counts.size} groups",
                 fontsize=13)
    handles = [Line2D([], [], marker="o", ls="", color=palette[lab], markersize=8, label=f"{lab}  ({n:,})")
               for lab, n in counts.items()]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(0.69, 0.5), frameon=False, fontsize=10,
               title=label_key, title_fontsize=11)
    return fig
