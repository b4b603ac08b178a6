"""Figures and a markdown report of one pipeline run (``cellvq run --out``, ``cellvq demo``).

:func:`write_report` turns a :class:`cellvq.pipeline.PipelineResult` into a folder of PNG figures and a
``report.md`` that ties them together:

==============================  ==========================================================================
file                            content
==============================  ==========================================================================
``umap_cell_code.png``          UMAP of ``obsm["X_cellvq"]`` coloured by cell code (the 20 most frequent
                                codes in colour, the rest grey)
``umap_cell_type.png``          the same UMAP coloured by the label column (only when labels were given)
``marker_attention_heatmap.png``  states x their top-5 attention markers: mean attention of the state's
                                cells, z-scored per gene
``subtype_graph.png``           cell types, their subtypes (``SUBTYPE_OF``) and the ``BRIDGES`` between
                                states, edge width proportional to the number of intermediate cells
``gene_modules.png``            the largest modules of the gene network, TFs marked, hub genes labelled
``report.md``                   summary, marker tables, bridges, modules, timings and the Cypher /
                                ``cellvq`` commands that reproduce the marker tables from the store
==============================  ==========================================================================

The UMAP is computed once (scanpy, on ``obsm["X_cellvq"]``) and kept in ``obsm["X_cellvq_umap"]`` of the
result's AnnData, so a second report of the same result reuses it. Figures are drawn on
:class:`matplotlib.figure.Figure` objects with the Agg canvas, so writing a report never touches the pyplot
state or backend of the caller (a notebook keeps its inline figures).

The folder is written atomically: everything is built in a temporary sibling folder which then replaces
``out_dir``. When ``out_dir`` already holds files that are not part of a report (say the run's database),
those are left alone and each report file is moved in by an atomic rename, ``report.md`` last.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import shutil
import tempfile
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd

from graphdb.errors import redact_target
from graphdb.queries import REPORT_MARKERS_BY_KIND, REPORT_STATE_MARKERS

__all__ = ["write_report", "REPORT_FILES", "MARKERS_CYPHER", "ALL_MARKERS_CYPHER"]

#: Every file a report may hold (``umap_cell_type.png`` only when the run had labels).
REPORT_FILES = (
    "umap_cell_code.png",
    "umap_cell_type.png",
    "marker_attention_heatmap.png",
    "subtype_graph.png",
    "gene_modules.png",
    "report.md",
)
UMAP_KEY = "X_cellvq_umap"
DPI = 120
TOP_CODES = 20
OTHER_GREY = "#c8c8c8"

#: Read-only Cypher the report prints (named queries of :mod:`graphdb.queries`): one state's markers
#: (parameters ``runId``, ``state``, ``top``) and the top markers of every state of one kind (``runId``,
#: ``kind``, ``top``).
MARKERS_CYPHER = REPORT_STATE_MARKERS
ALL_MARKERS_CYPHER = REPORT_MARKERS_BY_KIND


# ---------------------------------------------------------------------------------------------------------
# entry point


def write_report(res, out_dir: str | os.PathLike[str], *, top_codes: int = TOP_CODES, dpi: int = DPI) -> Path:
    """Write the figures and ``report.md`` of a pipeline run into ``out_dir``; returns the report.md path.

    ``res`` is a :class:`cellvq.pipeline.PipelineResult`. ``top_codes``: codes coloured in the code UMAP.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"report folder {out_dir} exists and is a file; pass a folder path to --out")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the report folder is an ordinary folder
    try:
        _build(res, tmp, top_codes=top_codes, dpi=dpi)
        _move_into_place(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir / "report.md"


def _move_into_place(tmp: Path, out_dir: Path) -> None:
    if not out_dir.exists():
        os.replace(tmp, out_dir)
        return
    foreign = [p for p in out_dir.iterdir() if p.name not in REPORT_FILES]
    if not foreign:
        # only an older report: swap the whole folder, then drop the old one
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old", dir=out_dir.parent))
        old.rmdir()
        os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        shutil.rmtree(old, ignore_errors=True)
        return
    # the folder holds other things (e.g. the run's database): replace file by file, report.md last
    new = {p.name for p in tmp.iterdir()}
    for name in sorted(new, key=lambda n: n == "report.md"):
        os.replace(tmp / name, out_dir / name)
    for name in REPORT_FILES:
        if name not in new and (out_dir / name).exists():
            (out_dir / name).unlink()


def _build(res, folder: Path, *, top_codes: int, dpi: int) -> None:
    adata = res.adata
    label_key = _label_key(res)
    palette = _label_palette(adata, label_key)
    umap = _umap(adata)
    figs = {}
    figs["umap_cell_code.png"] = _fig_umap_codes(adata, umap, top_codes)
    if label_key:
        figs["umap_cell_type.png"] = _fig_umap_labels(adata, umap, label_key, palette)
    figs["marker_attention_heatmap.png"] = _fig_marker_heatmap(res, label_key)
    figs["subtype_graph.png"] = _fig_subtype_graph(res, label_key, palette)
    figs["gene_modules.png"] = _fig_gene_modules(res.network)
    for name, fig in figs.items():
        fig.savefig(folder / name, dpi=dpi, facecolor="white")
    (folder / "report.md").write_text(_markdown(res, label_key, sorted(figs), top_codes), encoding="utf-8")


# ---------------------------------------------------------------------------------------------------------
# shared helpers


def _label_key(res) -> str | None:
    """The label column of the run (the marker grouping other than the cell codes), if any."""
    try:
        key = json.loads(res.tables.run.get("parameters", "{}")).get("labelKey")
    except (AttributeError, TypeError, ValueError):
        key = None
    if key is None:
        key = next((g for g in res.markers if g != "cellvq_code"), None)
    return key if key is not None and key in res.adata.obs else None


def _figure(w: float, h: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h))
    FigureCanvasAgg(fig)
    return fig


def _label_palette(adata, label_key: str | None) -> dict[str, Any]:
    from matplotlib import colormaps

    if not label_key:
        return {}
    order = adata.obs[label_key].astype(str).value_counts().index.tolist()
    cmap = colormaps["tab10"] if len(order) <= 10 else colormaps["tab20"]
    return {lab: cmap(i % cmap.N) for i, lab in enumerate(order)}


def _umap(adata, seed: int = 0) -> np.ndarray:
    """UMAP of ``obsm["X_cellvq"]`` (scanpy), computed once and kept in ``obsm["X_cellvq_umap"]``."""
    got = adata.obsm.get(UMAP_KEY) if hasattr(adata.obsm, "get") else None
    if got is not None and np.asarray(got).shape == (adata.n_obs, 2):
        return np.asarray(got)
    import anndata as ad
    import scanpy as sc

    from cellvq_graph.interpret import keep_torch_threads

    emb = np.asarray(adata.obsm["X_cellvq"], dtype=np.float32)
    light = ad.AnnData(obs=pd.DataFrame(index=adata.obs_names.astype(str)), obsm={"X_cellvq": emb})
    k = max(2, min(15, adata.n_obs - 1))
    with keep_torch_threads():
        sc.pp.neighbors(light, n_neighbors=k, use_rep="X_cellvq", random_state=seed)
        sc.tl.umap(light, random_state=seed)
    xy = np.asarray(light.obsm["X_umap"], dtype=np.float32)
    adata.obsm[UMAP_KEY] = xy
    return xy


def _point_size(n: int) -> float:
    return float(np.clip(24000 / max(n, 1), 3, 40))


def _style_embedding_axes(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel("UMAP 1")
    ax.set_ylabel("UMAP 2")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _cells(n: int) -> str:
    return f"{int(n):,} cell" + ("" if int(n) == 1 else "s")


def _outline(width: float = 3.0):
    import matplotlib.patheffects as pe

    return [pe.withStroke(linewidth=width, foreground="white")]


# ---------------------------------------------------------------------------------------------------------
# figures


def _place_labels(ax, items, *, fontsize: float = 9.0, obstacles=None, obstacle_pt: float = 6.0,
                  iterations: int = 300, **text_kw) -> list:
    """Draw labels near their anchor points without overlapping each other (a small force-free repel).

    ``items``: ``(text, x, y, (dx, dy))`` with the anchor in data coordinates and the preferred offset of
    the label centre in points, optionally followed by a dict of text keywords for that label.
    ``obstacles``: extra data points (e.g. all nodes) labels should not cover. Labels pushed far from
    their anchor get a thin leader line. Works in display units, so call it after the axes limits are final.
    """
    if not items:
        return []
    fig = ax.figure
    ax.set_xlim(ax.get_xlim())
    ax.set_ylim(ax.get_ylim())
    px = fig.dpi / 72.0
    T = ax.transData
    items = [tuple(it) + ({},) if len(it) == 4 else tuple(it) for it in items]
    anchors = T.transform(np.array([[it[1], it[2]] for it in items], dtype=float))
    # measure each label as it will be drawn (font, weight, lines) with the figure's renderer
    renderer = fig.canvas.get_renderer()
    w, h = np.zeros(len(items)), np.zeros(len(items))
    for k, it in enumerate(items):
        probe = ax.text(0, 0, it[0], fontsize=fontsize, **{**text_kw, **it[4]})
        bb = probe.get_window_extent(renderer)
        w[k], h[k] = bb.width + 3 * px, bb.height + 1 * px
        probe.remove()
    want = anchors + np.array([[it[3][0] * px, it[3][1] * px] for it in items], dtype=float)
    pos = want.copy()
    obs = T.transform(np.asarray(obstacles, dtype=float)) if obstacles is not None and len(obstacles) else None
    r_ob = obstacle_pt * px
    bbox = ax.get_window_extent()
    n = len(items)
    # phase 1: labels repel each other and the nodes, with a weak pull home; phase 2: labels only, so
    # no two labels overlap in the end even where nodes are dense
    for it in range(iterations + 200):
        avoid_nodes = it < iterations
        moved = False
        for i in range(n):
            for j in range(i + 1, n):
                d = pos[j] - pos[i]
                ox = (w[i] + w[j]) / 2 - abs(d[0])
                oy = (h[i] + h[j]) / 2 - abs(d[1])
                if ox > 0 and oy > 0:
                    moved = True
                    if ox < oy:
                        step = (ox / 2 + 0.5) * (1 if d[0] >= 0 else -1)
                        pos[i, 0] -= step
                        pos[j, 0] += step
                    else:
                        step = (oy / 2 + 0.5) * (1 if d[1] >= 0 else -1)
                        pos[i, 1] -= step
                        pos[j, 1] += step
            if avoid_nodes and obs is not None:
                d = obs - pos[i]
                ox = w[i] / 2 + r_ob - np.abs(d[:, 0])
                oy = h[i] / 2 + r_ob - np.abs(d[:, 1])
                hit = (ox > 0) & (oy > 0)
                hit &= np.hypot(*(obs - anchors[i]).T) > 1e-6  # a label may sit next to its own node
                if hit.any():
                    k = int(np.argmax(np.minimum(ox, oy) * hit))
                    moved = True
                    if ox[k] < oy[k]:
                        pos[i, 0] -= (ox[k] + 0.5) * (1 if d[k, 0] >= 0 else -1)
                    else:
                        pos[i, 1] -= (oy[k] + 0.5) * (1 if d[k, 1] >= 0 else -1)
        if avoid_nodes:
            pos += 0.02 * (want - pos)  # a weak pull back toward the preferred place
        pos[:, 0] = np.clip(pos[:, 0], bbox.x0 + w / 2, bbox.x1 - w / 2)
        pos[:, 1] = np.clip(pos[:, 1], bbox.y0 + h / 2, bbox.y1 - h / 2)
        if not moved and not avoid_nodes:
            break
        if not moved and avoid_nodes:
            continue
    inv = T.inverted()
    data_pos = inv.transform(pos)
    texts = []
    for k, (t, x, y, _, own) in enumerate(items):
        far = np.hypot(*(pos[k] - want[k])) > 10 * px
        arrow = dict(arrowstyle="-", lw=0.6, color="#555555", shrinkA=0, shrinkB=3) if far else None
        texts.append(ax.annotate(t, xy=(x, y), xytext=tuple(data_pos[k]), textcoords="data", ha="center",
                                 va="center", fontsize=fontsize, arrowprops=arrow, zorder=6,
                                 path_effects=_outline(2.5), **{**text_kw, **own}))
    return texts




def _fig_umap_codes(adata, xy: np.ndarray, top_codes: int):
    from matplotlib import colormaps
    from matplotlib.lines import Line2D

    codes = adata.obs["cellvq_code"].astype(str).to_numpy()
    counts = pd.Series(codes).value_counts()
    top = counts.index[:top_codes].tolist()
    cmap = colormaps["tab20"]
    colours = {c: cmap(i % 20) for i, c in enumerate(top)}
    rest = counts.index[top_codes:]
    n_rest_cells = int(counts.iloc[top_codes:].sum())
    fig = _figure(10.5, 7.0)
    ax = fig.add_axes([0.06, 0.08, 0.62, 0.80])
    s = _point_size(len(codes))
    other = ~np.isin(codes, top)
    if other.any():
        ax.scatter(xy[other, 0], xy[other, 1], s=s, c=OTHER_GREY, linewidths=0, rasterized=True)
    for c in reversed(top):  # largest codes drawn last would hide small ones; draw small ones on top
        m = codes == c
        ax.scatter(xy[m, 0], xy[m, 1], s=s, color=colours[c], linewidths=0, rasterized=True)
    _style_embedding_axes(ax)
    u = adata.uns.get("cellvq", {})
    ax.set_title(
        f"CellVQ embedding coloured by cell code\n{adata.n_obs:,} cells, {counts.size} codes used"
        f" (perplexity {float(u.get('code_perplexity', float('nan'))):.1f})",
        fontsize=13,
    )
    handles = [
        Line2D([], [], marker="o", ls="", color=colours[c], markersize=8, label=f"{c}  ({_cells(counts[c])})")
        for c in top
    ]
    if len(rest):
        handles.append(
            Line2D([], [], marker="o", ls="", color=OTHER_GREY, markersize=8,
                   label=f"other {len(rest)} codes ({_cells(n_rest_cells)}), grey")
        )
    title = f"cell code (top {len(top)} by cells)" if len(rest) else "cell code"
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(0.69, 0.5), frameon=False, fontsize=9,
               title=title, title_fontsize=10, ncol=1 if len(handles) <= 22 else 2)
    return fig


def _fig_umap_labels(adata, xy: np.ndarray, label_key: str, palette: dict):
    from matplotlib.lines import Line2D

    labels = adata.obs[label_key].astype(str).to_numpy()
    counts = pd.Series(labels).value_counts()
    fig = _figure(10.5, 7.0)
    ax = fig.add_axes([0.06, 0.08, 0.62, 0.80])
    s = _point_size(len(labels))
    for lab in counts.index:
        m = labels == lab
        ax.scatter(xy[m, 0], xy[m, 1], s=s, color=palette[lab], linewidths=0, rasterized=True)
    _style_embedding_axes(ax)
    items = []
    for lab in counts.index:  # name each group at its median position
        m = labels == lab
        items.append((lab, float(np.median(xy[m, 0])), float(np.median(xy[m, 1])), (0.0, 0.0)))
    _place_labels(ax, items, fontsize=10, weight="bold")
    ax.set_title(f"CellVQ embedding coloured by {label_key}\n{adata.n_obs:,} cells, {counts.size} groups",
                 fontsize=13)
    handles = [Line2D([], [], marker="o", ls="", color=palette[lab], markersize=8, label=f"{lab}  ({n:,})")
               for lab, n in counts.items()]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(0.69, 0.5), frameon=False, fontsize=10,
               title=label_key, title_fontsize=11)
    return fig


def _heatmap_states(res, label_key: str | None) -> tuple[str, list[str]]:
    """The grouping and states shown in the marker heatmap: every label, else the 12 largest codes."""
    obs = res.adata.obs
    if label_key and label_key in res.markers:
        mk = res.markers[label_key]
        order = obs[label_key].astype(str).value_counts().index
        return label_key, [s for s in order if s in set(mk["state"].astype(str))]
    mk = res.markers["cellvq_code"]
    order = obs["cellvq_code"].astype(str).value_counts().index
    return "cellvq_code", [s for s in order if s in set(mk["state"].astype(str))][:12]


def _state_attention(adata, groupby: str, states: list[str], genes: list[str]) -> np.ndarray:
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


def _fig_marker_heatmap(res, label_key: str | None, per_state: int = 5):
    groupby, states = _heatmap_states(res, label_key)
    mk = res.markers[groupby].copy()
    mk["state"] = mk["state"].astype(str)
    genes, owner = [], []
    for s in states:
        for g in mk[mk["state"] == s].sort_values("rank")["gene"].astype(str).head(per_state):
            if g not in genes:
                genes.append(g)
                owner.append(s)
    adata = res.adata
    if "cellvq_graph_attention" in adata.layers:
        M = _state_attention(adata, groupby, states, genes)
        source = 'mean attention of the state\'s cells (layers["cellvq_graph_attention"])'
    else:  # fall back to the markers table (0 where a gene is not among a state's markers)
        piv = mk.pivot_table(index="state", columns="gene", values="attention", aggfunc="first")
        M = piv.reindex(index=states, columns=genes).fillna(0.0).to_numpy()
        source = "mean attention from the markers table"
    sd = M.std(axis=0)
    Z = np.divide(M - M.mean(axis=0), sd, out=np.zeros_like(M), where=sd > 0)
    sizes = adata.obs[groupby].astype(str).value_counts()
    w = max(8.0, 0.30 * len(genes) + 3.5)
    h = max(4.0, 0.42 * len(states) + 2.6)
    fig = _figure(w, h)
    ax = fig.add_axes([2.3 / w, 1.25 / h, 1 - 3.6 / w, 1 - 2.0 / h])
    lim = max(2.0, float(np.abs(Z).max())) if Z.size else 2.0
    im = ax.imshow(Z, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
    ax.set_xticks(range(len(genes)))
    ax.set_xticklabels(genes, rotation=90, fontsize=9)
    ax.set_yticks(range(len(states)))
    name = "code " if groupby == "cellvq_code" else ""
    ax.set_yticklabels([f"{name}{s}  ({sizes.get(s, 0):,})" for s in states], fontsize=10)
    # outline each state's own marker block, so the diagonal structure is easy to read
    start = 0
    for i, s in enumerate(states):
        n = owner.count(s)
        if n:
            ax.add_patch(_rect(start - 0.5, i - 0.5, n, 1.0))
            if start:
                ax.axvline(start - 0.5, color="white", lw=1.2)
        start += n
    ax.tick_params(length=0)
    what = label_key if groupby == label_key else "cell code (12 largest)"
    ax.set_title(f"Top-{per_state} attention markers per {what}\n{source}, z-scored per gene", fontsize=12)
    cax = fig.add_axes([1 - 1.05 / w, 1.25 / h, 0.18 / w, 1 - 2.0 / h])
    cb = fig.colorbar(im, cax=cax)
    cb.set_label("z-score (per gene)", fontsize=10)
    ax.set_xlabel("marker gene (grouped by the state it marks; black box = that state's own markers)",
                  fontsize=9)
    return fig


def _rect(x, y, w, h):
    from matplotlib.patches import Rectangle

    return Rectangle((x, y), w, h, fill=False, edgecolor="black", lw=1.4)


def _lighten(colour, amount: float = 0.55):
    from matplotlib.colors import to_rgb

    r, g, b = to_rgb(colour)
    return (r + (1 - r) * amount, g + (1 - g) * amount, b + (1 - b) * amount)


def _circle_order(names: list[str], weights: dict[tuple[str, str], float]) -> list[str]:
    """Order states around a circle so that strongly bridged states sit next to each other (greedy)."""
    if len(names) <= 3:
        return names
    left = list(names)
    order = [left.pop(0)]
    while left:
        last = order[-1]
        best = max(left, key=lambda n: (weights.get((last, n), 0) + weights.get((n, last), 0), -left.index(n)))
        order.append(best)
        left.remove(best)
    return order


def _fig_subtype_graph(res, label_key: str | None, palette: dict):
    """Cell types on a circle (bridged ones adjacent), subtypes fanned outside their parent, bridges inside."""
    from matplotlib.lines import Line2D

    t = res.tables
    states = t.states.copy()
    if "nCells" in states and pd.to_numeric(states["nCells"], errors="coerce").notna().any():
        states["nCells"] = pd.to_numeric(states["nCells"], errors="coerce").fillna(0)
    else:
        states["nCells"] = states["stateId"].map(t.cell_state["stateId"].value_counts()).fillna(0)
    ncell = dict(zip(states["stateId"], states["nCells"].astype(int)))
    name = dict(zip(states["stateId"], states["name"].astype(str)))
    bridges = t.bridges if t.bridges is not None else pd.DataFrame(columns=["stateA", "stateB", "score", "nCells"])
    subtype_of = t.subtype_of if t.subtype_of is not None else pd.DataFrame(columns=["stateId", "parentStateId"])
    main_kind = "cellType" if (states["kind"] == "cellType").any() else "code"
    mains = states.loc[states["kind"] == main_kind].sort_values("nCells", ascending=False)["stateId"].tolist()
    if main_kind == "code":  # many codes: the 12 largest plus the bridged ones, at most 20
        bridged = set(bridges["stateA"]) | set(bridges["stateB"])
        keep = set(mains[:12]) | set([s for s in mains if s in bridged][:20])
        mains = [s for s in mains if s in keep][:20]
    weights = {(r.stateA, r.stateB): float(r.nCells) for r in bridges.itertuples(index=False)}
    order = _circle_order(mains, weights)
    children: dict[str, list[str]] = {}
    for r in subtype_of.itertuples(index=False):
        if r.parentStateId in order:
            children.setdefault(r.parentStateId, []).append(r.stateId)
    for kids in children.values():
        kids.sort(key=lambda k: name[k])
    # angular slots: a state with subtypes gets room for its fan
    slot = np.array([max(1.0, 0.55 * len(children.get(s, []))) for s in order])
    edges_ = np.concatenate([[0.0], np.cumsum(slot)]) / max(slot.sum(), 1e-9) * 2 * np.pi
    R, R_sub = 1.0, 1.6
    pos: dict[str, np.ndarray] = {}
    for i, s in enumerate(order):
        a = np.pi / 2 - (edges_[i] + edges_[i + 1]) / 2
        pos[s] = R * np.array([np.cos(a), np.sin(a)])
        kids = children.get(s, [])
        spread = 0.8 * (edges_[i + 1] - edges_[i]) * (len(kids) - 1) / max(len(kids), 1)
        for j, k in enumerate(kids):
            ak = a + (spread * (0.5 - j / (len(kids) - 1)) if len(kids) > 1 else 0.0)
            pos[k] = R_sub * np.array([np.cos(ak), np.sin(ak)])
    parent_of = {k: p for p, kids in children.items() for k in kids}

    fig = _figure(12.5, 10.0)
    ax = fig.add_axes([0.01, 0.01, 0.70, 0.88])
    ax.set_aspect("equal")
    ax.axis("off")
    lim = 1.95 * R
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    max_cells = max([float(w) for w in weights.values()] + [1.0])

    def width(n: float) -> float:
        return 0.8 + 10.0 * float(n) / max_cells

    biggest = max([ncell.get(s, 0) for s in pos] + [1])

    def size(s: str) -> float:
        return 90 + 2200 * np.sqrt(ncell.get(s, 0) / biggest)

    shown = sorted(((a, b, w) for (a, b), w in weights.items() if a in pos and b in pos), key=lambda x: x[2])
    for a, b, w in shown:
        (x0, y0), (x1, y1) = pos[a], pos[b]
        ax.plot([x0, x1], [y0, y1], color="#d95f02", alpha=0.55, lw=width(w), solid_capstyle="round", zorder=1)
        if w >= 0.05 * max_cells:
            ax.text((x0 + x1) / 2, (y0 + y1) / 2, f"{int(w)}", fontsize=9, color="#7a3500", ha="center",
                    va="center", path_effects=_outline(2.5), zorder=5)
    for k, p in parent_of.items():
        (x0, y0), (x1, y1) = pos[p], pos[k]
        ax.plot([x0, x1], [y0, y1], color="#555555", lw=1.2, ls=(0, (3, 2)), zorder=1)
    default = "#4c72b0"
    for s in order:
        ax.scatter(*pos[s], s=size(s), color=palette.get(name[s], default), edgecolors="black", linewidths=1.2,
                   zorder=3)
    for k, p in parent_of.items():
        col = palette.get(name[p], default)
        ax.scatter(*pos[k], s=size(k), color=_lighten(col), edgecolors=col, linewidths=1.5, zorder=3)

    def offset(s: str, text: str, fontsize: float, outward: bool) -> tuple[float, float]:
        """Label centre (points from the node) so the label's near edge clears the node."""
        r_pt = np.sqrt(size(s) / np.pi) + 6
        u = pos[s] / max(np.linalg.norm(pos[s]), 1e-9) * (1 if outward else -1)
        lines = text.split("\n")
        w_pt, h_pt = 0.64 * fontsize * max(map(len, lines)), 1.25 * fontsize * len(lines)
        return (float(u[0] * (r_pt + w_pt / 2)), float(u[1] * (r_pt + h_pt / 2)))

    items = []
    for s in order:  # cell types with subtypes: label inside the circle, the others outside
        text = f"{name[s]}\n({_cells(ncell.get(s, 0))})"
        items.append((text, *pos[s], offset(s, text, 10, s not in children)))
    for k, p in parent_of.items():
        short = name[k][len(name[p]):].lstrip(":") if name[k].startswith(name[p]) else name[k]
        text = f":{short} ({ncell.get(k, 0)})"
        items.append((text, *pos[k], offset(k, text, 8.5, True)))
    big = [it for it in items if "\n" in it[0]]
    small = [it for it in items if "\n" not in it[0]]
    nodes = np.array(list(pos.values()))
    _place_labels(ax, big, fontsize=10, weight="bold", obstacles=nodes, obstacle_pt=12)
    _place_labels(ax, small, fontsize=8.5, obstacles=nodes, obstacle_pt=10)

    n_inter = int(len(res.intermediates))
    kind_word = "cell types" if main_kind == "cellType" else "cell codes"
    split = (f"{len(children)} split into {len(parent_of)} subtypes" if parent_of
             else "no subtypes" + (" (subtypes need a label column)" if main_kind == "code" else ""))
    fig.suptitle(
        f"States, subtypes and bridges\n{len(order)} {kind_word}; {split}; "
        f"{n_inter:,} intermediate cells in {len(shown)} bridges",
        fontsize=13, x=0.37, y=0.97,
    )
    ref = sorted({v for v in (5, 10, 25, 50, 100, 250, 500, 1000) if v <= max_cells}, reverse=True)[:3][::-1]
    handles = [
        Line2D([], [], marker="o", ls="", markersize=14, markerfacecolor="#999999", markeredgecolor="black",
               label="cell type" if main_kind == "cellType" else "cell code"),
    ] + ([
        Line2D([], [], marker="o", ls="", markersize=10, markerfacecolor="#dddddd", markeredgecolor="#777777",
               label="subtype (Leiden), ':k (cells)'"),
        Line2D([], [], color="#555555", lw=1.2, ls=(0, (3, 2)), label="SUBTYPE_OF"),
    ] if parent_of else []) + [
        Line2D([], [], color="#d95f02", alpha=0.55, lw=width(v), label=f"BRIDGES: {v} cells") for v in ref
    ]
    leg = fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.72, 0.85), frameon=False, fontsize=10,
                     title="node area ~ cells\nedge number = intermediate\ncells between two states",
                     title_fontsize=10, labelspacing=1.2, borderpad=0.5)
    leg._legend_box.align = "left"
    if not order:
        ax.text(0, 0, "no states to draw", ha="center", va="center", fontsize=12)
    return fig


def _module_table(G: nx.DiGraph, max_modules: int = 8) -> list[dict[str, Any]]:
    """The largest modules by total edge weight inside them (a module of many weak edges between lowly
    expressed genes ranks below a tight module of marker genes): id, genes (hubs first by weighted degree),
    TFs, hubs, edges, weight."""
    und = G.to_undirected()
    mods: dict[int, list[str]] = {}
    for n, d in G.nodes(data=True):
        mods.setdefault(int(d.get("module", -1)), []).append(n)
    rows = []
    for m, genes in mods.items():
        if len(genes) < 3:
            continue
        sub = und.subgraph(genes)
        deg = dict(sub.degree(weight="weight"))
        ranked = sorted(genes, key=lambda x: (-deg[x], x))
        tfs = [g for g in ranked if G.nodes[g].get("is_tf")]
        weight = float(sum(d.get("weight", 1.0) for *_, d in sub.edges(data=True)))
        rows.append({"module": m, "genes": ranked, "tfs": tfs, "hubs": ranked[:3], "edges": sub.number_of_edges(),
                     "weight": weight})
    rows.sort(key=lambda r: (-r["weight"], -len(r["genes"]), r["module"]))
    return rows[:max_modules]


def _fig_gene_modules(G: nx.DiGraph, max_modules: int = 8):
    from matplotlib import colormaps
    from matplotlib.lines import Line2D

    mods = _module_table(G, max_modules)
    ncol = 4 if len(mods) > 4 else max(len(mods), 1)
    nrow = max(1, int(np.ceil(len(mods) / ncol)))
    fig = _figure(4.2 * ncol, 4.4 * nrow + 1.3)
    cmap = colormaps["tab10"]
    und = G.to_undirected()
    top_h = 1.0 - 1.15 / (4.4 * nrow + 1.3)
    for i, row in enumerate(mods):
        r, c = divmod(i, ncol)
        ax = fig.add_axes([c / ncol + 0.01, top_h * (1 - (r + 1) / nrow) + 0.01, 1 / ncol - 0.02, top_h / nrow - 0.05])
        ax.axis("off")
        sub = und.subgraph(row["genes"])
        pos = nx.spring_layout(sub, seed=0, weight="weight", k=1.6 / np.sqrt(max(len(sub), 1)), iterations=100)
        colour = cmap(i % 10)
        ws = np.array([d.get("weight", 0.5) for _, _, d in sub.edges(data=True)])
        nx.draw_networkx_edges(sub, pos, ax=ax, edge_color="#9a9a9a", alpha=0.45,
                               width=0.4 + 2.0 * (ws - ws.min()) / (np.ptp(ws) + 1e-9) if len(ws) else 1.0)
        tfs = set(row["tfs"])
        plain = [g for g in sub if g not in tfs]
        nx.draw_networkx_nodes(sub, pos, nodelist=plain, ax=ax, node_color=[colour], node_size=55,
                               edgecolors="white", linewidths=0.6)
        if tfs:
            nx.draw_networkx_nodes(sub, pos, nodelist=sorted(tfs), ax=ax, node_color=[colour], node_shape="D",
                                   node_size=110, edgecolors="black", linewidths=1.3)
        labels = list(dict.fromkeys(row["hubs"] + row["tfs"][:2]))
        ax.margins(0.12)
        ax.autoscale_view()
        hubs = [(g, *pos[g], (0.0, 9.0)) for g in labels if g in row["hubs"]]
        tf_labels = [(g, *pos[g], (0.0, 9.0), {"weight": "normal"}) for g in labels if g not in row["hubs"]]
        node_xy = np.array([pos[g] for g in sub])
        _place_labels(ax, hubs + tf_labels, fontsize=9, obstacles=node_xy, obstacle_pt=3, weight="bold")
        ax.set_title(f"module {row['module']}: {len(row['genes'])} genes, {len(row['tfs'])} TFs\n"
                     f"hubs: {', '.join(row['hubs'])}",
                     fontsize=11, color=colour, weight="bold")
    n_mod = len({d.get("module") for _, d in G.nodes(data=True)})
    fig.suptitle(
        f"Gene network modules (Leiden): {G.number_of_nodes():,} genes, {G.number_of_edges():,} edges, "
        f"{n_mod} modules; the {len(mods)} largest by total edge weight shown",
        fontsize=14, y=0.995,
    )
    handles = [
        Line2D([], [], marker="o", ls="", markersize=7, markerfacecolor="#777777", markeredgecolor="white",
               label="gene"),
        Line2D([], [], marker="D", ls="", markersize=8, markerfacecolor="#777777", markeredgecolor="black",
               label="transcription factor (Lambert 2018)"),
        Line2D([], [], color="#9a9a9a", lw=2, label="edge (width ∝ weight)"),
        Line2D([], [], ls="", label="bold label = hub gene (top-3 weighted degree), plain label = TF"),
    ]
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 1.0 - 0.45 / (4.4 * nrow + 1.3)),
               ncol=4, frameon=False, fontsize=9.5, handletextpad=0.4)
    if not mods:
        fig.text(0.5, 0.5, "the gene network has no module of 3+ genes", ha="center", va="center", fontsize=12)
    return fig


# ---------------------------------------------------------------------------------------------------------
# markdown


def _md_escape(x: Any) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def _md_table(header: list[str], rows: list[list[Any]]) -> str:
    out = ["| " + " | ".join(_md_escape(h) for h in header) + " |",
           "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(_md_escape(v) for v in r) + " |" for r in rows]
    return "\n".join(out)


def _fmt(v: Any, nd: int = 3) -> str:
    if isinstance(v, float | np.floating):
        return f"{v:.{nd}f}" if np.isfinite(v) else "n/a"
    return str(v)


def _dataset_name(ds) -> str | None:
    if isinstance(ds, pd.DataFrame):
        return str(ds["name"].iloc[0]) if "name" in ds and len(ds) else None
    if isinstance(ds, dict):
        return ds.get("name")
    return None


def _markdown(res, label_key: str | None, figures: list[str], top_codes: int) -> str:
    adata = res.adata
    s = res.summary
    u = adata.uns.get("cellvq", {})
    obs = adata.obs
    dataset = _dataset_name(res.tables.dataset)
    lines = [f"# CellVQ report: {dataset or 'dataset'}", ""]
    lines.append(
        f"Run `{res.run_id}`, written {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}"
        + (f" to the store `{redact_target(res.db)}`." if res.db else " (not written to a store).")
    )
    lines += ["", "## Summary", ""]
    rows = [
        ["cells", f"{s.get('cells', adata.n_obs):,}"],
        ["genes", f"{s.get('genes', adata.n_vars):,}"],
        ["model", f"{u.get('model', 'cellvq')} (checkpoint sha256 {str(u.get('checkpoint_sha256', ''))[:12]})"],
        ["codes used", f"{s.get('codes_used', u.get('codes_used'))} of {u.get('n_codes', '?')}"],
        ["code perplexity", _fmt(float(s.get("code_perplexity", u.get("code_perplexity", np.nan))), 2)],
        ["gene match rate", f"{float(s.get('gene_match_rate', np.nan)):.1%}"],
        ["count match rate", f"{float(s.get('count_match_rate', np.nan)):.1%}"],
    ]
    if label_key and "code_ari" in s:
        rows += [[f"ARI codes vs {label_key}", _fmt(float(s["code_ari"]))],
                 [f"NMI codes vs {label_key}", _fmt(float(s["code_nmi"]))]]
    rows += [
        ["intermediate cells", f"{s.get('intermediate_cells', len(res.intermediates)):,}"],
        ["gene network", f"{s.get('gene_network_nodes', res.network.number_of_nodes()):,} genes, "
                         f"{s.get('gene_network_edges', res.network.number_of_edges()):,} edges, "
                         f"{s.get('gene_modules', '?')} modules"],
        ["subtyped cell types", ", ".join(s.get("subtyped_cell_types", [])) or "none"],
    ]
    lines.append(_md_table(["", "value"], rows))

    # codes
    codes = obs["cellvq_code"].astype(str)
    counts = codes.value_counts()
    lines += ["", "## Cell codes", "", "![UMAP coloured by cell code](umap_cell_code.png)", ""]
    if "umap_cell_type.png" in figures:
        lines += [f"![UMAP coloured by {label_key}](umap_cell_type.png)", ""]
    lines.append(
        f"The UMAP is computed from `obsm[\"X_cellvq\"]` (the foundation model's pooled embedding). "
        f"{counts.size} codes are used; the {min(top_codes, counts.size)} most frequent are coloured"
        + (f", the other {counts.size - top_codes} ({int(counts.iloc[top_codes:].sum()):,} cells) are grey."
           if counts.size > top_codes else ".")
    )
    lines.append("")
    header = ["code", "cells"]
    if label_key:
        header += [f"main {label_key}", "purity"]
    rows = []
    for c, n in counts.head(12).items():
        r = [c, f"{n:,}"]
        if label_key:
            vc = obs.loc[codes == c, label_key].astype(str).value_counts()
            r += [vc.index[0], f"{vc.iloc[0] / n:.0%}"]
        rows.append(r)
    lines += ["Largest codes:", "", _md_table(header, rows)]

    # markers
    groupby, states = _heatmap_states(res, label_key)
    lines += ["", "## Marker genes per state", ""]
    lines.append(
        "Genes ranked by CellVQ-Graph attention contrasted against the other states (`score` = mean attention "
        "in the state minus mean attention elsewhere); the heatmap shows the top 5 per state."
    )
    lines += ["", "![marker attention heatmap](marker_attention_heatmap.png)", ""]
    mk_tables = [(groupby, states)]
    if groupby != "cellvq_code":
        mk_tables.append(("cellvq_code", [c for c in counts.index if c in
                                          set(res.markers["cellvq_code"]["state"].astype(str))][:10]))
    for g, sts in mk_tables:
        mk = res.markers[g].copy()
        mk["state"] = mk["state"].astype(str)
        sizes = obs[g].astype(str).value_counts()
        rows = []
        for st in sts:
            top = mk[mk["state"] == st].sort_values("rank").head(10)["gene"].astype(str).tolist()
            rows.append([st, f"{sizes.get(st, 0):,}", ", ".join(top)])
        title = f"Top 10 markers per {g}" + (" (10 largest codes)" if g == "cellvq_code" else "")
        lines += [f"### {title}", "", _md_table(["state", "cells", "markers (best first)"], rows), ""]

    # subtypes and bridges
    lines += ["## Subtypes and intermediate states", "", "![subtype graph](subtype_graph.png)", ""]
    if res.subtypes:
        rows = []
        for parent, (labs, smk) in res.subtypes.items():
            vc = labs.dropna().astype(str).value_counts()
            smk = smk.copy()
            smk["state"] = smk["state"].astype(str)
            for sub in sorted(vc.index):
                top = smk[smk["state"] == sub].sort_values("rank").head(5)["gene"].astype(str).tolist()
                rows.append([sub, parent, f"{vc[sub]:,}", ", ".join(top) or "-"])
        lines += ["### Subtypes", "", _md_table(["subtype", "of", "cells", "top markers"], rows), ""]
    br = res.tables.bridges
    lines.append("### Bridges (cells whose graph neighbourhood mixes two states)")
    lines.append("")
    if br is not None and len(br):
        br = br.sort_values("nCells", ascending=False)
        rows = [[r.stateA, r.stateB, f"{int(r.nCells):,}", f"{float(r.score):.2f}"] for r in br.itertuples(index=False)]
        lines.append(_md_table(["state A", "state B", "intermediate cells", "mean score"], rows))
    else:
        lines.append("No intermediate cells were found.")

    # modules
    mods = _module_table(res.network)
    lines += ["", "## Gene modules", "", "![gene modules](gene_modules.png)", ""]
    lines.append("Leiden modules of the attention/gene-embedding network, the largest by total edge weight; "
                 "genes listed by weighted degree (hubs first), TFs in bold.")
    lines.append("")
    rows = []
    for m in mods:
        tfs = set(m["tfs"])
        genes = [f"**{g}**" if g in tfs else g for g in m["genes"][:15]]
        more = f" (+{len(m['genes']) - 15})" if len(m["genes"]) > 15 else ""
        rows.append([m["module"], len(m["genes"]), m["edges"], f"{m['weight']:.1f}", ", ".join(genes) + more,
                     ", ".join(m["tfs"][:8]) or "-"])
    lines.append(_md_table(["module", "genes", "edges", "edge weight", "genes (hubs first)", "TFs"], rows))

    # timings
    lines += ["", "## Timings", ""]
    rows = [[k, f"{float(v):.1f}"] for k, v in res.timings.items()]
    rows.append(["**total**", f"**{sum(float(v) for v in res.timings.values()):.1f}**"])
    lines.append(_md_table(["step", "seconds"], rows))

    # reproduce
    lines += ["", "## Reproduce the marker tables from the store", ""]
    if res.db:
        kind = "cellType" if groupby != "cellvq_code" else "code"
        db = shlex.quote(redact_target(res.db))
        run = shlex.quote(res.run_id)
        pick = "B" if "B" in states else (states[0] if states else "<name>")
        example = f"{kind}:{pick}"
        lines.append("Named query, one state at a time (states are `code:<code>`, `cellType:<name>`, "
                     "`subtype:<name>`):")
        lines += ["", "```bash"]
        for st in states:
            lines.append(f"cellvq query markers --db {db} -p {shlex.quote('state=' + kind + ':' + st)} "
                         f"-p top=10 -p run_id={run}")
        lines += ["```", "", "The same with hand-written read-only Cypher (values travel as `$parameters`):", ""]
        lines += ["```cypher", MARKERS_CYPHER.replace(" RETURN", "\nRETURN").replace(" ORDER", "\nORDER"), "```", ""]
        lines += ["```bash",
                  f"cellvq cypher {shlex.quote(MARKERS_CYPHER)} --db {db} -p runId={run} "
                  f"-p {shlex.quote('state=' + example)} -p top=10",
                  "```", "", "Every state of the table at once:", "", "```bash",
                  f"cellvq cypher {shlex.quote(ALL_MARKERS_CYPHER)} --db {db} -p runId={run} -p kind={kind} "
                  "-p top=10",
                  "```", "", "From Python:", "", "```python", "import graphdb", "",
                  f"with graphdb.open_store({redact_target(res.db)!r}, read_only=True) as store:",
                  f"    print(store.markers({example!r}, top=10, run_id={res.run_id!r}))",
                  f"    print(store.query({MARKERS_CYPHER!r},",
                  f"                      {{'runId': {res.run_id!r}, 'state': {example!r}, 'top': 10}}))",
                  "```"]
    else:
        lines.append("This run was not written to a store; run `cellvq run <file.h5ad> --db <path>` to query it "
                     "with `cellvq query markers -p state=cellType:<name>`.")
    lines.append("")
    return "\n".join(lines)
