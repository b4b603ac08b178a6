"""Labels placed near their anchor points without overlapping each other (a small force-free repel)."""

from __future__ import annotations

import numpy as np

from cellvq.report.draw import outline

__all__ = ["place_labels"]


def place_labels(ax, items, *, fontsize: float = 9.0, obstacles=None, obstacle_pt: float = 6.0,
                 iterations: int = 300, **text_kw) -> list:
    """Draw labels near their anchor points without overlapping each other.

    ``items``: ``(text, x, y, (dx, dy))`` with the anchor in data coordinates and the preferred offset of
    the label centre in points, optionally followed by a dict of text keywords for that label.
    ``obstacles``: extra data points (e.g. all nodes) labels should not cover. Labels pushed far from
    their anchor get a thin leader line. Works in display units, so call it after the axes limits are final.
    """
    if not items:
        return []
    ax.set_xlim(ax.get_xlim())
    ax.set_ylim(ax.get_ylim())
    px = ax.figure.dpi / 72.0
    T = ax.transData
    items = [tuple(it) + ({},) if len(it) == 4 else tuple(it) for it in items]
    anchors = T.transform(np.array([[it[1], it[2]] for it in items], dtype=float))
    size = _measure(ax, items, fontsize, text_kw, px)
    want = anchors + np.array([[it[3][0] * px, it[3][1] * px] for it in items], dtype=float)
    nodes = None
    if obstacles is not None and len(obstacles):
        nodes = (T.transform(np.asarray(obstacles, dtype=float)), obstacle_pt * px)
    pos = _relax(want.copy(), want, anchors, size, nodes, ax.get_window_extent(), iterations)
    return _annotate(ax, items, T.inverted().transform(pos), np.hypot(*(pos - want).T) > 10 * px, fontsize, text_kw)


def _measure(ax, items, fontsize: float, text_kw: dict, px: float) -> tuple[np.ndarray, np.ndarray]:
    """Width and height (display units, with a small margin) of each label as it will be drawn."""
    renderer = ax.figure.canvas.get_renderer()
    w, h = np.zeros(len(items)), np.zeros(len(items))
    for k, it in enumerate(items):
        probe = ax.text(0, 0, it[0], fontsize=fontsize, **{**text_kw, **it[4]})
        bb = probe.get_window_extent(renderer)
        w[k], h[k] = bb.width + 3 * px, bb.height + 1 * px
        probe.remove()
    return w, h


def _relax(pos, want, anchors, size, nodes, bbox, iterations: int) -> np.ndarray:
    """Phase 1: labels repel each other and the nodes, with a weak pull home; phase 2 (200 more rounds):
    labels only, so no two labels overlap in the end even where nodes are dense. Labels stay in the axes."""
    w, h = size
    for it in range(iterations + 200):
        avoid_nodes = it < iterations
        moved = False
        for i in range(len(pos)):
            moved |= _separate_from_later(pos, w, h, i)
            if avoid_nodes and nodes is not None:
                moved |= _step_off_nodes(pos, anchors, w, h, i, nodes)
        if avoid_nodes:
            pos += 0.02 * (want - pos)  # a weak pull back toward the preferred place
        pos[:, 0] = np.clip(pos[:, 0], bbox.x0 + w / 2, bbox.x1 - w / 2)
        pos[:, 1] = np.clip(pos[:, 1], bbox.y0 + h / 2, bbox.y1 - h / 2)
        if not moved and not avoid_nodes:
            break
    return pos


def _separate_from_later(pos, w, h, i: int) -> bool:
    """Push label ``i`` and every later label it overlaps apart along the axis of least overlap."""
    moved = False
    for j in range(i + 1, len(pos)):
        d = pos[j] - pos[i]
        ox = (w[i] + w[j]) / 2 - abs(d[0])
        oy = (h[i] + h[j]) / 2 - abs(d[1])
        if ox > 0 and oy > 0:
            moved = True
            axis, over = (0, ox) if ox < oy else (1, oy)
            step = (over / 2 + 0.5) * (1 if d[axis] >= 0 else -1)
            pos[i, axis] -= step
            pos[j, axis] += step
    return moved


def _step_off_nodes(pos, anchors, w, h, i: int, nodes) -> bool:
    """Move label ``i`` off the node it overlaps most (its own anchor node excepted)."""
    xy, radius = nodes
    d = xy - pos[i]
    ox = w[i] / 2 + radius - np.abs(d[:, 0])
    oy = h[i] / 2 + radius - np.abs(d[:, 1])
    hit = (ox > 0) & (oy > 0)
    hit &= np.hypot(*(xy - anchors[i]).T) > 1e-6  # a label may sit next to its own node
    if not hit.any():
        return False
    k = int(np.argmax(np.minimum(ox, oy) * hit))
    axis, over = (0, ox[k]) if ox[k] < oy[k] else (1, oy[k])
    pos[i, axis] -= (over + 0.5) * (1 if d[k, axis] >= 0 else -1)
    return True


def _annotate(ax, items, data_pos, far, fontsize: float, text_kw: dict) -> list:
    """Draw each label at its place; a label far from its anchor gets a thin leader line."""
    texts = []
    for k, (t, x, y, _, own) in enumerate(items):
        arrow = dict(arrowstyle="-", lw=0.6, color="#555555", shrinkA=0, shrinkB=3) if far[k] else None
        texts.append(ax.annotate(t, xy=(x, y), xytext=tuple(data_pos[k]), textcoords="data", ha="center",
                                 va="center", fontsize=fontsize, arrowprops=arrow, zorder=6,
                                 path_effects=outline(2.5), **{**text_kw, **own}))
    return texts
