"""The subtype graph: cell types on a circle (bridged ones adjacent), subtypes fanned outside their parent
(``SUBTYPE_OF``), ``BRIDGES`` inside with width proportional to the number of intermediate cells.

Drawn from the run's store tables (``res.tables``), so the figure shows what the store holds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from cellvq.report.draw import cells_text, lighten, new_figure, outline
from cellvq.report.labels import place_labels

__all__ = ["StateGraph", "circle_order", "figure", "state_graph"]

R, R_SUB = 1.0, 1.6  # radius of the main states' circle and of their subtypes' ring
BRIDGE = "#d95f02"
LINK = "#555555"
DEFAULT_NODE = "#4c72b0"


@dataclass
class StateGraph:
    """What the figure draws: main states in circle order, their subtypes, positions and sizes."""

    order: list[str]
    children: dict[str, list[str]]
    pos: dict[str, np.ndarray]
    ncell: dict[str, int]
    name: dict[str, str]
    weights: dict[tuple[str, str], float]
    main_kind: str

    @property
    def parent_of(self) -> dict[str, str]:
        return {k: p for p, kids in self.children.items() for k in kids}

    @property
    def max_cells(self) -> float:
        return max([float(w) for w in self.weights.values()] + [1.0])

    def width(self, n: float) -> float:
        """Line width of a bridge of ``n`` intermediate cells."""
        return 0.8 + 10.0 * float(n) / self.max_cells

    def size(self, s: str) -> float:
        """Marker area of state ``s`` (area ~ sqrt of its cells, relative to the largest drawn)."""
        biggest = max([self.ncell.get(x, 0) for x in self.pos] + [1])
        return 90 + 2200 * np.sqrt(self.ncell.get(s, 0) / biggest)


def circle_order(names: list[str], weights: dict[tuple[str, str], float]) -> list[str]:
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


def _state_cells(t) -> pd.DataFrame:
    """The states table with ``nCells`` (from the table where filled, else counted in ``cell_state``)."""
    states = t.states.copy()
    if "nCells" in states and pd.to_numeric(states["nCells"], errors="coerce").notna().any():
        states["nCells"] = pd.to_numeric(states["nCells"], errors="coerce").fillna(0)
    else:
        states["nCells"] = states["stateId"].map(t.cell_state["stateId"].value_counts()).fillna(0)
    return states


def _main_states(states: pd.DataFrame, bridges: pd.DataFrame) -> tuple[str, list[str]]:
    """Cell types (largest first) when the run has them, else codes: the 12 largest plus bridged, at most 20."""
    main_kind = "cellType" if (states["kind"] == "cellType").any() else "code"
    mains = states.loc[states["kind"] == main_kind].sort_values("nCells", ascending=False)["stateId"].tolist()
    if main_kind == "code":
        bridged = set(bridges["stateA"]) | set(bridges["stateB"])
        keep = set(mains[:12]) | set([s for s in mains if s in bridged][:20])
        mains = [s for s in mains if s in keep][:20]
    return main_kind, mains


def _positions(order: list[str], children: dict[str, list[str]]) -> dict[str, np.ndarray]:
    """Angular slots on the circle (a state with subtypes gets room for its fan), subtypes on the outer ring."""
    slot = np.array([max(1.0, 0.55 * len(children.get(s, []))) for s in order])
    edges_ = np.concatenate([[0.0], np.cumsum(slot)]) / max(slot.sum(), 1e-9) * 2 * np.pi
    pos: dict[str, np.ndarray] = {}
    for i, s in enumerate(order):
        a = np.pi / 2 - (edges_[i] + edges_[i + 1]) / 2
        pos[s] = R * np.array([np.cos(a), np.sin(a)])
        kids = children.get(s, [])
        spread = 0.8 * (edges_[i + 1] - edges_[i]) * (len(kids) - 1) / max(len(kids), 1)
        for j, k in enumerate(kids):
            ak = a + (spread * (0.5 - j / (len(kids) - 1)) if len(kids) > 1 else 0.0)
            pos[k] = R_SUB * np.array([np.cos(ak), np.sin(ak)])
    return pos


def state_graph(t) -> StateGraph:
    """The :class:`StateGraph` of a run's store tables."""
    states = _state_cells(t)
    bridges = t.bridges if t.bridges is not None else pd.DataFrame(columns=["stateA", "stateB", "score", "nCells"])
    subtype_of = t.subtype_of if t.subtype_of is not None else pd.DataFrame(columns=["stateId", "parentStateId"])
    name = dict(zip(states["stateId"], states["name"].astype(str)))
    main_kind, mains = _main_states(states, bridges)
    weights = {(r.stateA, r.stateB): float(r.nCells) for r in bridges.itertuples(index=False)}
    order = circle_order(mains, weights)
    children: dict[str, list[str]] = {}
    for r in subtype_of.itertuples(index=False):
        if r.parentStateId in order:
            children.setdefault(r.parentStateId, []).append(r.stateId)
    for kids in children.values():
        kids.sort(key=lambda k: name[k])
    return StateGraph(order, children, _positions(order, children),
                      dict(zip(states["stateId"], states["nCells"].astype(int))), name, weights, main_kind)


def figure(res, palette: dict):
    g = state_graph(res.tables)
    fig = new_figure(12.5, 10.0)
    ax = fig.add_axes([0.01, 0.01, 0.70, 0.88])
    ax.set_aspect("equal")
    ax.axis("off")
    lim = 1.95 * R
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    shown = _draw_edges(ax, g)
    _draw_nodes(ax, g, palette)
    _draw_labels(ax, g)
    _title(fig, g, int(len(res.intermediates)), len(shown))
    _legend(fig, g)
    if not g.order:
        ax.text(0, 0, "no states to draw", ha="center", va="center", fontsize=12)
    return fig


def _draw_edges(ax, g: StateGraph) -> list[tuple[str, str, float]]:
    """Bridges (numbered when they carry 5%+ of the largest), then dashed SUBTYPE_OF links; returns the
    bridges drawn."""
    shown = sorted(((a, b, w) for (a, b), w in g.weights.items() if a in g.pos and b in g.pos), key=lambda x: x[2])
    for a, b, w in shown:
        (x0, y0), (x1, y1) = g.pos[a], g.pos[b]
        ax.plot([x0, x1], [y0, y1], color=BRIDGE, alpha=0.55, lw=g.width(w), solid_capstyle="round", zorder=1)
        if w >= 0.05 * g.max_cells:
            ax.text((x0 + x1) / 2, (y0 + y1) / 2, f"{int(w)}", fontsize=9, color="#7a3500", ha="center",
                    va="center", path_effects=outline(2.5), zorder=5)
    for k, p in g.parent_of.items():
        (x0, y0), (x1, y1) = g.pos[p], g.pos[k]
        ax.plot([x0, x1], [y0, y1], color=LINK, lw=1.2, ls=(0, (3, 2)), zorder=1)
    return shown


def _draw_nodes(ax, g: StateGraph, palette: dict) -> None:
    for s in g.order:
        ax.scatter(*g.pos[s], s=g.size(s), color=palette.get(g.name[s], DEFAULT_NODE), edgecolors="black",
                   linewidths=1.2, zorder=3)
    for k, p in g.parent_of.items():
        col = palette.get(g.name[p], DEFAULT_NODE)
        ax.scatter(*g.pos[k], s=g.size(k), color=lighten(col), edgecolors=col, linewidths=1.5, zorder=3)


def _label_offset(g: StateGraph, s: str, text: str, fontsize: float, outward: bool) -> tuple[float, float]:
    """Label centre (points from the node) so the label's near edge clears the node."""
    r_pt = np.sqrt(g.size(s) / np.pi) + 6
    u = g.pos[s] / max(np.linalg.norm(g.pos[s]), 1e-9) * (1 if outward else -1)
    lines = text.split("\n")
    w_pt, h_pt = 0.64 * fontsize * max(map(len, lines)), 1.25 * fontsize * len(lines)
    return (float(u[0] * (r_pt + w_pt / 2)), float(u[1] * (r_pt + h_pt / 2)))


def _draw_labels(ax, g: StateGraph) -> None:
    """Main states named with their cells (inside the circle when they have subtypes, else outside);
    subtypes as ``:k (cells)``."""
    items = []
    for s in g.order:
        text = f"{g.name[s]}\n({cells_text(g.ncell.get(s, 0))})"
        items.append((text, *g.pos[s], _label_offset(g, s, text, 10, s not in g.children)))
    for k, p in g.parent_of.items():
        short = g.name[k][len(g.name[p]):].lstrip(":") if g.name[k].startswith(g.name[p]) else g.name[k]
        text = f":{short} ({g.ncell.get(k, 0)})"
        items.append((text, *g.pos[k], _label_offset(g, k, text, 8.5, True)))
    big = [it for it in items if "\n" in it[0]]
    small = [it for it in items if "\n" not in it[0]]
    nodes = np.array(list(g.pos.values()))
    place_labels(ax, big, fontsize=10, weight="bold", obstacles=nodes, obstacle_pt=12)
    place_labels(ax, small, fontsize=8.5, obstacles=nodes, obstacle_pt=10)


def _title(fig, g: StateGraph, n_inter: int, n_bridges: int) -> None:
    kind_word = "cell types" if g.main_kind == "cellType" else "cell codes"
    parent_of = g.parent_of
    split = (f"{len(g.children)} split into {len(parent_of)} subtypes" if parent_of
             else "no subtypes" + (" (subtypes need a label column)" if g.main_kind == "code" else ""))
    fig.suptitle(
        f"States, subtypes and bridges\n{len(g.order)} {kind_word}; {split}; "
        f"{n_inter:,} intermediate cells in {n_bridges} bridges",
        fontsize=13, x=0.37, y=0.97,
    )


def _legend(fig, g: StateGraph) -> None:
    from matplotlib.lines import Line2D

    ref = sorted({v for v in (5, 10, 25, 50, 100, 250, 500, 1000) if v <= g.max_cells}, reverse=True)[:3][::-1]
    handles = [
        Line2D([], [], marker="o", ls="", markersize=14, markerfacecolor="#999999", markeredgecolor="black",
               label="cell type" if g.main_kind == "cellType" else "cell code"),
    ] + ([
        Line2D([], [], marker="o", ls="", markersize=10, markerfacecolor="#dddddd", markeredgecolor="#777777",
               label="subtype (Leiden), ':k (cells)'"),
        Line2D([], [], color=LINK, lw=1.2, ls=(0, (3, 2)), label="SUBTYPE_OF"),
    ] if g.parent_of else []) + [
        Line2D([], [], color=BRIDGE, alpha=0.55, lw=g.width(v), label=f"BRIDGES: {v} cells") for v in ref
    ]
    leg = fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.72, 0.85), frameon=False, fontsize=10,
                     title="node area ~ cells\nedge number = intermediate\ncells between two states",
                     title_fontsize=10, labelspacing=1.2, borderpad=0.5)
    leg._legend_box.align = "left"
