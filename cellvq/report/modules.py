"""Gene modules of the run's gene network: the module table (report.md) and its figure (one panel per module)."""

from __future__ import annotations

from typing import Any

import networkx as nx
import numpy as np

from cellvq.report.draw import new_figure
from cellvq.report.labels import place_labels

__all__ = ["figure", "module_graph", "module_table"]

EDGE_GREY = "#9a9a9a"


def module_table(G: nx.DiGraph, max_modules: int = 8) -> list[dict[str, Any]]:
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


def figure(G: nx.DiGraph, max_modules: int = 8):
    """The ``max_modules`` strongest modules, four panels a row: TFs as diamonds, hubs and TFs labelled."""
    from matplotlib import colormaps

    mods = module_table(G, max_modules)
    ncol = 4 if len(mods) > 4 else max(len(mods), 1)
    nrow = max(1, int(np.ceil(len(mods) / ncol)))
    height = 4.4 * nrow + 1.3
    fig = new_figure(4.2 * ncol, height)
    cmap = colormaps["tab10"]
    und = G.to_undirected()
    top_h = 1.0 - 1.15 / height
    for i, row in enumerate(mods):
        r, c = divmod(i, ncol)
        ax = fig.add_axes([c / ncol + 0.01, top_h * (1 - (r + 1) / nrow) + 0.01, 1 / ncol - 0.02, top_h / nrow - 0.05])
        _module_panel(ax, module_graph(und, row["genes"]), row, cmap(i % 10))
    n_mod = len({d.get("module") for _, d in G.nodes(data=True)})
    fig.suptitle(
        f"Gene network modules (Leiden): {G.number_of_nodes():,} genes, {G.number_of_edges():,} edges, "
        f"{n_mod} modules; the {len(mods)} largest by total edge weight shown",
        fontsize=14, y=0.995,
    )
    _legend(fig, height)
    if not mods:
        fig.text(0.5, 0.5, "the gene network has no module of 3+ genes", ha="center", va="center", fontsize=12)
    return fig


def module_graph(und: nx.Graph, genes: list[str]) -> nx.Graph:
    """The module's induced subgraph with nodes in ``genes`` order and edges sorted, so its spring layout is
    the same in every process (a networkx subgraph view iterates its nodes in set order, which changes with
    the string hash seed)."""
    sub = nx.Graph()
    sub.add_nodes_from(genes)
    view = und.subgraph(genes)
    edges = [(*sorted((u, v)), d) for u, v, d in view.edges(data=True)]
    sub.add_edges_from(sorted(edges, key=lambda e: e[:2]))
    return sub


def _module_panel(ax, sub: nx.Graph, row: dict[str, Any], colour) -> None:
    """One module: spring layout, edge width by weight, TFs as black-edged diamonds, hubs and 2 TFs named."""
    ax.axis("off")
    pos = nx.spring_layout(sub, seed=0, weight="weight", k=1.6 / np.sqrt(max(len(sub), 1)), iterations=100)
    ws = np.array([d.get("weight", 0.5) for _, _, d in sub.edges(data=True)])
    nx.draw_networkx_edges(sub, pos, ax=ax, edge_color=EDGE_GREY, alpha=0.45,
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
    place_labels(ax, hubs + tf_labels, fontsize=9, obstacles=node_xy, obstacle_pt=3, weight="bold")
    ax.set_title(f"module {row['module']}: {len(row['genes'])} genes, {len(row['tfs'])} TFs\n"
                 f"hubs: {', '.join(row['hubs'])}",
                 fontsize=11, color=colour, weight="bold")


def _legend(fig, height: float) -> None:
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], marker="o", ls="", markersize=7, markerfacecolor="#777777", markeredgecolor="white",
               label="gene"),
        Line2D([], [], marker="D", ls="", markersize=8, markerfacecolor="#777777", markeredgecolor="black",
               label="transcription factor (Lambert 2018)"),
        Line2D([], [], color=EDGE_GREY, lw=2, label="edge (width ∝ weight)"),
        Line2D([], [], ls="", label="bold label = hub gene (top-3 weighted degree), plain label = TF"),
    ]
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 1.0 - 0.45 / height),
               ncol=4, frameon=False, fontsize=9.5, handletextpad=0.4)
