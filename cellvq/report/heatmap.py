"""The marker heatmap: states x their top attention markers, mean attention z-scored per gene."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cellvq.report.draw import new_figure, rect

__all__ = ["figure", "heatmap_states", "state_attention"]


def heatmap_states(res) -> tuple[str, list[str]]:
    """The grouping and states shown in the marker heatmap: every label, else the 12 largest codes."""
    obs = res.adata.obs
    label_key = res.label_key
    if label_key and label_key in res.markers:
        mk = res.markers[label_key]
        order = obs[label_key].astype(str).value_counts().index
        return label_key, [s for s in order if s in set(mk["state"].astype(str))]
    mk = res.markers["cellvq_code"]
    order = obs["cellvq_code"].astype(str).value_counts().index
    return "cellvq_code", [s for s in order if s in set(mk["state"].astype(str))][:12]


def state_attention(adata, groupby: str, states: list[str], genes: list[str]) -> np.ndarray:
    """Mean ``layers["cellvq_graph_attention"]`` of each state's cells on each gene (states x genes)."""
    import scipy.sparse as sp

    layer = adata.layers["cellvq_graph_attention"]
    cols = pd.Index(adata.var_names.astype(str)).get_indexer(genes)
    A = sp.csr_matrix(layer)[:, cols]
    lab = adata.obs[groupby].astype(str).to_numpy()
    M = np.zeros((len(states), len(genes)))
    for i, s in enumerate(states):
        m = lab == s
        if m.any():
            M[i] = np.asarray(A[m].mean(axis=0)).ravel()
    return M


def _top_genes(mk: pd.DataFrame, states: list[str], per_state: int) -> tuple[list[str], list[str]]:
    """Each state's top markers in state order (a gene once, under the first state it marks) and their owner."""
    genes, owner = [], []
    for s in states:
        for g in mk[mk["state"] == s].sort_values("rank")["gene"].astype(str).head(per_state):
            if g not in genes:
                genes.append(g)
                owner.append(s)
    return genes, owner


def _matrix(res, groupby: str, mk: pd.DataFrame, states: list[str], genes: list[str]) -> tuple[np.ndarray, str]:
    """The heatmap's values (z-scored per gene) and the words for where they come from."""
    adata = res.adata
    if "cellvq_graph_attention" in adata.layers:
        M = state_attention(adata, groupby, states, genes)
        source = 'mean attention of the state\'s cells (layers["cellvq_graph_attention"])'
    else:  # fall back to the markers table (0 where a gene is not among a state's markers)
        piv = mk.pivot_table(index="state", columns="gene", values="attention", aggfunc="first")
        M = piv.reindex(index=states, columns=genes).fillna(0.0).to_numpy()
        source = "mean attention from the markers table"
    sd = M.std(axis=0)
    return np.divide(M - M.mean(axis=0), sd, out=np.zeros_like(M), where=sd > 0), source


def figure(res, per_state: int = 5):
    groupby, states = heatmap_states(res)
    mk = res.markers[groupby].copy()
    mk["state"] = mk["state"].astype(str)
    genes, owner = _top_genes(mk, states, per_state)
    Z, source = _matrix(res, groupby, mk, states, genes)
    sizes = res.adata.obs[groupby].astype(str).value_counts()
    w = max(8.0, 0.30 * len(genes) + 3.5)
    h = max(4.0, 0.42 * len(states) + 2.6)
    fig = new_figure(w, h)
    ax = fig.add_axes([2.3 / w, 1.25 / h, 1 - 3.6 / w, 1 - 2.0 / h])
    lim = max(2.0, float(np.abs(Z).max())) if Z.size else 2.0
    im = ax.imshow(Z, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
    ax.set_xticks(range(len(genes)))
    ax.set_xticklabels(genes, rotation=90, fontsize=9)
    ax.set_yticks(range(len(states)))
    name = "code " if groupby == "cellvq_code" else ""
    ax.set_yticklabels([f"{name}{s}  ({sizes.get(s, 0):,})" for s in states], fontsize=10)
    _outline_blocks(ax, states, owner)
    ax.tick_params(length=0)
    what = res.label_key if groupby == res.label_key else "cell code (12 largest)"
    ax.set_title(f"Top-{per_state} attention markers per {what}\n{source}, z-scored per gene", fontsize=12)
    cax = fig.add_axes([1 - 1.05 / w, 1.25 / h, 0.18 / w, 1 - 2.0 / h])
    cb = fig.colorbar(im, cax=cax)
    cb.set_label("z-score (per gene)", fontsize=10)
    ax.set_xlabel("marker gene (grouped by the state it marks; black box = that state's own markers)",
                  fontsize=9)
    return fig


def _outline_blocks(ax, states: list[str], owner: list[str]) -> None:
    """Outline each state's own marker block, so the diagonal structure is easy to read."""
    start = 0
    for i, s in enumerate(states):
        n = owner.count(s)
        if n:
            ax.add_patch(rect(start - 0.5, i - 0.5, n, 1.0))
            if start:
                ax.axvline(start - 0.5, color="white", lw=1.2)
        start += n
