"""Gene regulatory network export: GraphML, CSV, Cytoscape.js JSON and SIF (via networkx).

The network is a :class:`networkx.DiGraph` when one edge kind is exported and a
:class:`networkx.MultiDiGraph` keyed by kind (``REGULATES`` / ``CO_EXPRESSED``) when both are,
so a gene pair can carry both. Nodes are gene symbols with an ``ensemblId`` attribute where
known; edges carry ``kind``, ``weight`` and, where the run recorded them, the ``REGULATES``
evidence (``rank``, ``treeImportance``, ``treeConsensus``, ``attention``, ``perturbationZ``,
``perturbationLogFc``, ``spearman``, ``nEvidence``; an edge without a value has no attribute).

======================  ==========================================================================
format                  file
======================  ==========================================================================
``graphml``             GraphML 1.0 as ``networkx.write_graphml`` lays it out (Cytoscape desktop, Gephi,
                        yEd, igraph); :func:`export_edges` streams it from the edge table
``csv``                 one row per edge: ``source,target,kind,weight,sourceEnsemblId,targetEnsemblId``
                        and the evidence columns
``cytoscape``           Cytoscape.js JSON ``{"elements": {"nodes": [...], "edges": [...]}}``
                        (``networkx.cytoscape_data``; opens in Cytoscape desktop and Cytoscape.js)
``sif``                 Simple Interaction Format: ``source<TAB>kind<TAB>target`` (no weights)
======================  ==========================================================================

:func:`read_grn` reads any of them back into the same edge table.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import networkx as nx
import pandas as pd

__all__ = ["GRN_FORMATS", "export_edges", "grn_graph", "read_grn", "write_grn", "write_graphml_edges"]

GRN_FORMATS: dict[str, tuple[str, ...]] = {
    "graphml": (".graphml",),
    "csv": (".csv",),
    "cytoscape": (".cyjs", ".json"),
    "sif": (".sif",),
}
_ALIASES = {"cyjs": "cytoscape", "json": "cytoscape", "cytoscape.js": "cytoscape"}
EDGE_COLUMNS = ["source", "target", "kind", "weight"]
_ENDS = ("source", "target", "sourceEnsemblId", "targetEnsemblId")


def resolve_format(path: Path, format: str | None) -> str:  # noqa: A002
    """The export format named by ``format`` or, when ``None``, by the file suffix."""
    if format is None:
        suffix = path.suffix.lower()
        for name, suffixes in GRN_FORMATS.items():
            if suffix in suffixes:
                return name
        raise ValueError(
            f"cannot tell the format of {path.name!r} from its suffix; pass format= one of {list(GRN_FORMATS)} "
            "or use a suffix among " + ", ".join(s for v in GRN_FORMATS.values() for s in v)
        )
    name = _ALIASES.get(format.lower(), format.lower())
    if name not in GRN_FORMATS:
        raise ValueError(f"unknown GRN format {format!r}; choose one of {list(GRN_FORMATS)}")
    return name


def grn_graph(edges: pd.DataFrame) -> nx.DiGraph | nx.MultiDiGraph:
    """Build the network from an edge table (``source, target, kind, weight`` [+ Ensembl IDs])."""
    kinds = sorted(set(edges["kind"]))
    multi = len(kinds) > 1
    g: nx.DiGraph | nx.MultiDiGraph = nx.MultiDiGraph() if multi else nx.DiGraph()
    g.graph["kinds"] = ",".join(kinds)
    for row in edges.to_dict("records"):
        for end in ("source", "target"):
            ens = row.get(f"{end}EnsemblId")
            attrs = {"ensemblId": str(ens)} if isinstance(ens, str) and ens else {}
            g.add_node(row[end], **attrs)
        attrs = {"kind": row["kind"], "weight": float(row["weight"])}
        attrs.update({k: float(v) for k, v in row.items() if k not in (*_ENDS, "kind", "weight") and pd.notna(v)})
        if multi:
            g.add_edge(row["source"], row["target"], key=row["kind"], **attrs)
        else:
            g.add_edge(row["source"], row["target"], **attrs)
    return g


def _edge_table(g: nx.DiGraph | nx.MultiDiGraph) -> pd.DataFrame:
    rows, extra = [], {}
    for u, v, data in g.edges(data=True):
        row = {
            "source": u,
            "target": v,
            "kind": data.get("kind"),
            "weight": data.get("weight"),
            "sourceEnsemblId": g.nodes[u].get("ensemblId"),
            "targetEnsemblId": g.nodes[v].get("ensemblId"),
        }
        evidence = {k: val for k, val in data.items() if k not in row and k != "key"}
        extra.update(dict.fromkeys(evidence))
        rows.append({**row, **evidence})
    cols = [*EDGE_COLUMNS, "sourceEnsemblId", "targetEnsemblId", *extra]
    return pd.DataFrame(rows, columns=cols).sort_values(["kind", "source", "target"], ignore_index=True)


def write_grn(g: nx.DiGraph | nx.MultiDiGraph, path: str | Path, format: str | None = None) -> Path:  # noqa: A002
    """Write the network ``g`` to ``path`` in ``format`` (see the module docstring)."""
    path = Path(path)
    fmt = resolve_format(path, format)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "graphml":
        nx.write_graphml(g, path)
    elif fmt == "csv":
        _edge_table(g).to_csv(path, index=False)
    elif fmt == "cytoscape":
        data = nx.cytoscape_data(g)
        path.write_text(json.dumps(data, indent=1))
    else:  # sif
        lines = [f"{u}\t{d.get('kind', 'interacts')}\t{v}" for u, v, d in g.edges(data=True)]
        path.write_text("\n".join(lines) + ("\n" if lines else ""))
    return path


def export_edges(edges: pd.DataFrame, path: str | Path, format: str | None = None) -> Path:  # noqa: A002
    """Write an edge table (as :func:`grn_graph` takes it) to ``path``: GraphML straight from the table
    (:func:`write_graphml_edges`, no graph object in between), the other formats through :func:`write_grn`."""
    path = Path(path)
    if resolve_format(path, format) == "graphml":
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_graphml_edges(edges, path)
    return write_grn(grn_graph(edges), path, format)


_GRAPHML_HEAD = (
    "<?xml version='1.0' encoding='utf-8'?>\n"
    '<graphml xmlns="http://graphml.graphdrawing.org/xmlns" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
    'xsi:schemaLocation="http://graphml.graphdrawing.org/xmlns '
    'http://graphml.graphdrawing.org/xmlns/1.0/graphml.xsd">\n'
)


def write_graphml_edges(edges: pd.DataFrame, path: str | Path) -> Path:
    """GraphML of an edge table, the graph :func:`grn_graph` builds (same nodes, attributes and edge keys)
    written without building it: about 5x faster than ``networkx.write_graphml`` on a run's network.
    Nodes in order of first appearance, ``ensemblId`` where known; edges with ``kind``, ``weight`` and
    each evidence value that is not missing; with several kinds, each edge's GraphML id is its kind."""
    path = Path(path)
    kinds = sorted(set(edges["kind"]))
    evidence = [c for c in edges.columns if c not in (*_ENDS, "kind", "weight")]
    keys = [("ensemblId", "node", "string"), ("kind", "edge", "string"), ("weight", "edge", "double"),
            *((c, "edge", "double") for c in evidence), ("kinds", "graph", "string")]
    kid = {name: f"d{i}" for i, (name, _, _) in enumerate(keys)}
    out = [_GRAPHML_HEAD]
    out += [f'  <key id="{kid[n]}" for="{f}" attr.name="{n}" attr.type="{t}" />\n' for n, f, t in keys]
    out.append(f'  <graph edgedefault="directed">\n    <data key="{kid["kinds"]}">{escape(",".join(kinds))}</data>\n')
    ens: dict[str, str | None] = {}
    for end in ("source", "target"):
        col = edges[f"{end}EnsemblId"] if f"{end}EnsemblId" in edges.columns else [None] * len(edges)
        for sym, e in zip(edges[end], col, strict=True):
            if ens.get(sym) is None:
                ens[sym] = e if isinstance(e, str) and e else None
    order = dict.fromkeys(x for pair in zip(edges["source"], edges["target"], strict=True) for x in pair)
    for sym in order:
        data = f'\n      <data key="{kid["ensemblId"]}">{escape(ens[sym])}</data>\n    ' if ens[sym] else ""
        out.append(f"    <node id={quoteattr(str(sym))}>{data}</node>\n" if data else f"    <node id={quoteattr(str(sym))} />\n")
    values = {c: pd.to_numeric(edges[c], errors="coerce").to_numpy(float) for c in ["weight", *evidence]}
    multi = len(kinds) > 1
    for i, (u, v, kind) in enumerate(zip(edges["source"], edges["target"], edges["kind"], strict=True)):
        ident = f" id={quoteattr(str(kind))}" if multi else ""
        out.append(f"    <edge source={quoteattr(str(u))} target={quoteattr(str(v))}{ident}>\n"
                   f'      <data key="{kid["kind"]}">{escape(str(kind))}</data>\n')
        for c, arr in values.items():
            if not math.isnan(arr[i]):
                out.append(f'      <data key="{kid[c]}">{float(arr[i])!r}</data>\n')
        out.append("    </edge>\n")
    out.append("  </graph>\n</graphml>\n")
    path.write_text("".join(out), encoding="utf-8")
    return path


def read_grn(path: str | Path, format: str | None = None) -> pd.DataFrame:  # noqa: A002
    """Read an exported network back into an edge table ``source, target, kind, weight``.

    SIF carries no weights (``weight`` is NaN).
    """
    path = Path(path)
    fmt = resolve_format(path, format)
    if fmt == "graphml":
        table = _edge_table(nx.read_graphml(path))
    elif fmt == "csv":
        table = pd.read_csv(path)
    elif fmt == "cytoscape":
        table = _edge_table(nx.cytoscape_graph(json.loads(path.read_text())))
    else:
        table = pd.read_csv(path, sep="\t", header=None, names=["source", "kind", "target"])
        table["weight"] = float("nan")
    return table[EDGE_COLUMNS].sort_values(["kind", "source", "target"], ignore_index=True)
