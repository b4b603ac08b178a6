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
``graphml``             ``networkx.write_graphml`` (Cytoscape desktop, Gephi, yEd, igraph)
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
from pathlib import Path

import networkx as nx
import pandas as pd

__all__ = ["GRN_FORMATS", "grn_graph", "read_grn", "write_grn"]

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
