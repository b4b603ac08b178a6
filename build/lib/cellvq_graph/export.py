"""Export (and re-import) gene networks: GraphML, CSV edge list, SIF and Cytoscape JSON.

* GraphML (``networkx.write_graphml``): nodes and edges with all attributes; directed.
* CSV edge list: one row per edge, ``source, target, weight, kind`` then any other edge attributes.
* SIF (Cytoscape's simple interaction format): ``source<TAB>kind<TAB>target`` per line; carries no weights,
  genes without edges are written on their own line.
* Cytoscape JSON (``networkx.cytoscape_data``): importable by Cytoscape desktop and cytoscape.js.

Attribute values are converted to plain ``str``/``int``/``float``/``bool`` so every format round-trips.
"""

from __future__ import annotations

import json
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd

__all__ = [
    "write_graphml",
    "write_edge_csv",
    "write_sif",
    "write_cytoscape_json",
    "export_network",
    "read_graphml",
    "read_edge_csv",
    "read_sif",
    "read_cytoscape_json",
]


def _plain(v):
    if isinstance(v, np.generic):
        return v.item()
    return v


def _clean(G: nx.DiGraph) -> nx.DiGraph:
    H = nx.DiGraph()
    for n, d in G.nodes(data=True):
        H.add_node(str(n), **{k: _plain(v) for k, v in d.items()})
    for u, v, d in G.edges(data=True):
        H.add_edge(str(u), str(v), **{k: _plain(x) for k, x in d.items()})
    return H


def write_graphml(G: nx.DiGraph, path: str | Path) -> Path:
    path = Path(path)
    nx.write_graphml(_clean(G), path)
    return path


def read_graphml(path: str | Path) -> nx.DiGraph:
    return nx.DiGraph(nx.read_graphml(path))


def write_edge_csv(G: nx.DiGraph, path: str | Path) -> Path:
    path = Path(path)
    df = nx.to_pandas_edgelist(_clean(G), source="source", target="target")
    first = [c for c in ("source", "target", "weight", "kind") if c in df.columns]
    df = df[first + [c for c in df.columns if c not in first]]
    df.to_csv(path, index=False)
    return path


def read_edge_csv(path: str | Path) -> nx.DiGraph:
    df = pd.read_csv(path, dtype={"source": str, "target": str})
    attrs = [c for c in df.columns if c not in ("source", "target")]
    return nx.from_pandas_edgelist(df, "source", "target", edge_attr=attrs or None, create_using=nx.DiGraph)


def write_sif(G: nx.DiGraph, path: str | Path, interaction_attr: str = "kind") -> Path:
    path = Path(path)
    lines = [f"{u}\t{d.get(interaction_attr, 'interacts')}\t{v}" for u, v, d in G.edges(data=True)]
    lines += [str(n) for n in G.nodes if G.degree(n) == 0]
    path.write_text("\n".join(lines) + ("\n" if lines else ""))
    return path


def read_sif(path: str | Path, interaction_attr: str = "kind") -> nx.DiGraph:
    G = nx.DiGraph()
    for line in Path(path).read_text().splitlines():
        parts = line.split("\t")
        if len(parts) == 1 and parts[0]:
            G.add_node(parts[0])
        elif len(parts) >= 3:
            for target in parts[2:]:
                G.add_edge(parts[0], target, **{interaction_attr: parts[1]})
    return G


def write_cytoscape_json(G: nx.DiGraph, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(json.dumps(nx.cytoscape_data(_clean(G))))
    return path


def read_cytoscape_json(path: str | Path) -> nx.DiGraph:
    return nx.DiGraph(nx.cytoscape_graph(json.loads(Path(path).read_text())))


def export_network(
    G: nx.DiGraph,
    folder: str | Path,
    name: str = "gene_network",
    formats: tuple[str, ...] = ("graphml", "csv", "sif", "cyjs"),
) -> dict[str, Path]:
    """Write ``G`` to ``folder/name.{graphml,csv,sif,cyjs}``; returns ``{format: path}``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    writers = {
        "graphml": write_graphml,
        "csv": write_edge_csv,
        "sif": write_sif,
        "cyjs": write_cytoscape_json,
    }
    unknown = set(formats) - set(writers)
    if unknown:
        raise ValueError(f"unknown formats {sorted(unknown)}; choose from {sorted(writers)}")
    return {f: writers[f](G, folder / f"{name}.{f}") for f in formats}
