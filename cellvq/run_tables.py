"""Pipeline read-outs -> ``graphdb.RunTables``: one short function per table (camelCase, plain values).

:func:`to_run_tables` composes them; each ``*_table`` function builds one table of
:class:`graphdb.RunTables` from the AnnData the pipeline annotated and the read-outs of
:mod:`cellvq_graph` (markers, subtypes, intermediate cells, gene network, property importance).
State ids are ``<kind>:<name>`` with kind ``code``, ``cellType`` or ``subtype``.
"""

from __future__ import annotations

import json
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd

__all__ = [
    "REGULATES_COLUMNS",
    "REGULATORY_TOP",
    "associated_with_table",
    "bridges_table",
    "cell_property_table",
    "cell_state_table",
    "cells_table",
    "dataset_row",
    "expresses_table",
    "gene_edge_tables",
    "gene_table",
    "marker_rows",
    "markers_table",
    "obs_names",
    "package_version",
    "properties_table",
    "provenance_command",
    "regulates_table",
    "run_row",
    "state_id",
    "states_table",
    "subtype_of_table",
    "to_run_tables",
]

#: ``REGULATES`` edges kept from :func:`cellvq_graph.regulatory_network` (the strongest, by ``rank``).
REGULATORY_TOP = 5000
#: cellvq_graph's regulatory-network columns -> the store's camelCase ``REGULATES`` properties.
REGULATES_COLUMNS = {
    "score": "weight", "rank": "rank", "tree_importance": "treeImportance", "tree_consensus": "treeConsensus",
    "attention": "attention", "perturbation_z": "perturbationZ", "perturbation_logfc": "perturbationLogFc",
    "spearman": "spearman", "n_evidence": "nEvidence",
}


def to_run_tables(
    adata, model, markers, subtypes, inter, net, prop_imp, *, run_id, dataset_id, dataset_name, label_key,
    properties, expresses_top_k=5, graph_epochs=100, seed=0, command=None, regulatory=None, bridge_doublets=None,
):
    """Map the read-outs onto ``graphdb.RunTables`` (camelCase tables of plain values).

    States carry the descriptions of :func:`cellvq_graph.describe_states` (subtypes also its one-line
    name); ``regulatory`` (a :func:`cellvq_graph.regulatory_network` table) becomes ``regulates`` with its
    evidence columns (:func:`regulates_table`); ``bridge_doublets`` (a
    :func:`cellvq_graph.doublets.bridge_doublets` table) adds the doublet call to each bridge. ``model`` is accepted for compatibility and unused (the
    checkpoint is read from ``adata.uns["cellvq"]``).
    """
    import graphdb

    expresses = expresses_table(adata, expresses_top_k)
    co_expressed, regulates = gene_edge_tables(net, regulatory)
    return graphdb.RunTables(
        run=run_row(adata, run_id, label_key, properties, graph_epochs=graph_epochs, seed=seed, command=command),
        dataset=dataset_row(adata, dataset_id, dataset_name),
        cells=cells_table(adata),
        genes=gene_table(_mentioned_genes(net, markers, subtypes, expresses, regulates)),
        states=states_table(adata, markers, subtypes, label_key),
        properties=properties_table(adata.obs, properties),
        cell_state=cell_state_table(adata, subtypes, label_key),
        cell_property=cell_property_table(adata, properties),
        markers=markers_table(markers, subtypes, label_key),
        co_expressed=co_expressed,
        regulates=regulates,
        subtype_of=subtype_of_table(subtypes),
        bridges=bridges_table(inter, label_key, bridge_doublets),
        associated_with=associated_with_table(prop_imp, label_key),
        expresses=expresses,
    )


# ---------------------------------------------------------------------------------------------------------
# ids


def state_id(kind: str, value: str) -> str:
    return f"{kind}:{value}"


def obs_names(adata) -> list[str]:
    return [str(x) for x in adata.obs_names]


def _main_kind(label_key: str | None) -> str:
    """The kind of the states that bridges and property associations refer to."""
    return "cellType" if label_key else "code"


def _kind_of(label_key: str | None) -> dict[str | None, str]:
    """Marker grouping (obs column) -> state kind."""
    return {"cellvq_code": "code", label_key: "cellType"}


# ---------------------------------------------------------------------------------------------------------
# the run and its dataset


def run_row(adata, run_id: str, label_key: str | None, properties, *, graph_epochs: int, seed: int,
            command: str | None) -> dict:
    u = adata.uns["cellvq"]
    parameters = {"graphEpochs": graph_epochs, "seed": seed, "labelKey": label_key,
                  "properties": list(properties), "quantizer": u.get("quantizer")}
    return {"runId": run_id, "model": str(u.get("model", "cellvq")), "checkpointHash": str(u.get("checkpoint_sha256", "")),
            "parameters": json.dumps(parameters), "command": provenance_command(command),
            "packageVersion": package_version()}


def dataset_row(adata, dataset_id: str, dataset_name: str) -> dict:
    return {"datasetId": dataset_id, "name": dataset_name, "nCells": int(adata.n_obs)}


def package_version() -> str:
    """The installed cellvq version (recorded on every Run node)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cellvq")
    except PackageNotFoundError:  # pragma: no cover - a source checkout that was never installed
        return "unknown"


def provenance_command(command: str | None) -> str:
    """The command that made the run (default: this process's arguments), without any credentials."""
    import shlex
    import sys

    from graphdb.errors import redact_command

    if command is None:
        return shlex.join(redact_command([Path(sys.argv[0]).name, *sys.argv[1:]])) if sys.argv else ""
    return shlex.join(redact_command(shlex.split(command)))


# ---------------------------------------------------------------------------------------------------------
# cells and genes


def cells_table(adata) -> pd.DataFrame:
    obs = adata.obs
    cells = pd.DataFrame({"cellId": obs_names(adata), "code": obs["cellvq_code"].astype(str).to_numpy()})
    if "nCount_RNA" in obs:
        cells["nCounts"] = obs["nCount_RNA"].to_numpy(dtype=float)
    return cells


def expresses_table(adata, top_k: int) -> pd.DataFrame | None:
    """Each cell's ``top_k`` most attended genes (``layers["cellvq_graph_attention"]``); ``None`` without
    the layer or with ``top_k=0``."""
    att = adata.layers.get("cellvq_graph_attention") if hasattr(adata.layers, "get") else None
    if att is None or not top_k:
        return None
    import scipy.sparse as sp

    A = sp.csr_matrix(att)
    names = np.asarray(adata.var_names.astype(str))
    cell_ids = obs_names(adata)
    rows = []
    for i in range(A.shape[0]):
        lo, hi = A.indptr[i], A.indptr[i + 1]
        for j in np.argsort(-A.data[lo:hi])[:top_k]:
            rows.append((cell_ids[i], names[A.indices[lo + j]], float(A.data[lo + j])))
    return pd.DataFrame(rows, columns=["cellId", "symbol", "attention"])


def gene_table(symbols) -> pd.DataFrame:
    """Every gene a table mentions, with Ensembl IDs from GENCODE v44 where known."""
    from foundation.data import GeneVocab

    vocab = GeneVocab.build(sorted(symbols))
    return pd.DataFrame({"symbol": vocab.symbols, "ensemblId": [e or None for e in vocab.ensembl_ids]})


def _mentioned_genes(net: nx.DiGraph, markers, subtypes, expresses, regulates) -> set[str]:
    genes: set[str] = set(net.nodes)
    for df in [*markers.values(), *(mk for _, mk in subtypes.values())]:
        genes.update(df["gene"].astype(str))
    if expresses is not None:
        genes.update(expresses["symbol"])
    genes.update(regulates["source"])
    genes.update(regulates["target"])
    return genes


# ---------------------------------------------------------------------------------------------------------
# states


def states_table(adata, markers: dict[str, pd.DataFrame], subtypes, label_key: str | None) -> pd.DataFrame:
    """Code, cell-type and subtype states, each with a generated description (:func:`_describe`)."""
    codes = adata.obs["cellvq_code"].astype(str).to_numpy()
    rows = [{"stateId": state_id("code", c), "kind": "code", "name": c} for c in sorted(set(codes))]
    if label_key:
        labels = adata.obs[label_key].astype(str).to_numpy()
        rows += [{"stateId": state_id("cellType", t), "kind": "cellType", "name": t} for t in sorted(set(labels))]
    for parent, (labels_s, _) in subtypes.items():
        words = _subtype_words(adata, parent)
        for sub in sorted(set(labels_s.dropna().astype(str))):
            name, text = words.get(sub, (sub, None))
            rows.append({"stateId": state_id("subtype", sub), "kind": "subtype", "name": name, "description": text})
    return _describe(adata, markers, label_key, pd.DataFrame(rows))


def _subtype_words(adata, parent: str) -> dict[str, tuple[str, str]]:
    """``{subtype label: (one-line name, description)}`` stored by :func:`cellvq_graph.subtypes`."""
    import cellvq_graph as cg

    try:
        desc = cg.read_table(adata, "subtype_descriptions", parent)
    except KeyError:  # a type with a single subtype gets no description
        return {}
    return {str(s): (str(n), str(d)) for s, n, d in zip(desc["state"], desc["name"], desc["description"])}


def _describe(adata, markers: dict[str, pd.DataFrame], label_key: str | None, states: pd.DataFrame) -> pd.DataFrame:
    """Descriptions of the code and cell-type states (:func:`cellvq_graph.describe_states`). Their
    ``name`` stays the label (users address states by it); the generated name opens the description."""
    import cellvq_graph as cg

    kind_of = _kind_of(label_key)
    text = {}
    for groupby, mk in markers.items():
        if groupby not in kind_of or mk.empty:
            continue
        cfg = cg.DescribeConfig(reference_key=label_key)
        desc = cg.describe_states(adata, mk, groupby, cfg)
        text.update({state_id(kind_of[groupby], str(s)): str(d) for s, d in zip(desc["state"], desc["description"])})
    out = states.copy()
    if "description" not in out:
        out["description"] = None
    out["description"] = out["description"].where(out["description"].notna(), out["stateId"].map(text))
    return out


def cell_state_table(adata, subtypes, label_key: str | None) -> pd.DataFrame:
    """Every cell in its code, its cell type (with labels) and its subtype (where it has one)."""
    cell_ids = obs_names(adata)
    codes = adata.obs["cellvq_code"].astype(str).to_numpy()
    parts = [pd.DataFrame({"cellId": cell_ids, "stateId": [state_id("code", c) for c in codes]})]
    if label_key:
        labels = adata.obs[label_key].astype(str).to_numpy()
        parts.append(pd.DataFrame({"cellId": cell_ids, "stateId": [state_id("cellType", t) for t in labels]}))
    for labels_s, _ in subtypes.values():
        lab = labels_s.dropna().astype(str)
        parts.append(pd.DataFrame({"cellId": [str(c) for c in lab.index],
                                   "stateId": [state_id("subtype", s) for s in lab]}))
    return pd.concat(parts, ignore_index=True)


def subtype_of_table(subtypes) -> pd.DataFrame:
    rows = [{"stateId": state_id("subtype", sub), "parentStateId": state_id("cellType", parent)}
            for parent, (labels_s, _) in subtypes.items() for sub in sorted(set(labels_s.dropna().astype(str)))]
    return pd.DataFrame(rows, columns=["stateId", "parentStateId"])


def marker_rows(df: pd.DataFrame, kind: str) -> list[dict]:
    """The rows of one :func:`cellvq_graph.markers` table as ``MARKER_OF`` rows of states of ``kind``."""
    return [{"stateId": state_id(kind, str(r.state)), "symbol": str(r.gene), "score": float(r.score),
             "rank": int(r.rank), "attention": float(r.attention), "logFc": float(r.logfc)}
            for r in df.itertuples(index=False)]


def markers_table(markers: dict[str, pd.DataFrame], subtypes, label_key: str | None) -> pd.DataFrame:
    """Markers of codes and cell types (other groupings as ``cluster`` states), then of subtypes."""
    kind_of = _kind_of(label_key)
    rows = [row for g, df in markers.items() for row in marker_rows(df, kind_of.get(g, "cluster"))]
    rows += [row for _, sub_mk in subtypes.values() for row in marker_rows(sub_mk, "subtype")]
    return pd.DataFrame(rows)


BRIDGE_DOUBLET_COLUMNS = {"doublet_score": "doubletScore", "doublet_share": "doubletShare",
                          "enrichment": "doubletEnrichment", "p_value": "doubletP"}


def bridges_table(inter: pd.DataFrame, label_key: str | None, doublets: pd.DataFrame | None = None) -> pd.DataFrame:
    """One ``BRIDGES`` row per unordered state pair of the intermediate cells: mean score, cell count and,
    with ``doublets`` (:func:`cellvq_graph.doublets.bridge_doublets`), the doublet call of its cells
    (``doubletScore`` mean scrublet score, ``doubletShare`` called, ``doubletEnrichment`` over the data's
    share, ``doubletP`` one-sided binomial p-value)."""
    kind = _main_kind(label_key)
    rows = []
    if len(inter):
        pairs = inter.assign(a=inter["state_a"].astype(str), b=inter["state_b"].astype(str))
        pairs[["a", "b"]] = np.sort(pairs[["a", "b"]].to_numpy(), axis=1)
        for (a, b), grp in pairs.groupby(["a", "b"]):
            rows.append({"stateA": state_id(kind, a), "stateB": state_id(kind, b),
                         "score": float(grp["score"].mean()), "nCells": int(len(grp)), "bridge": f"{a}|{b}"})
    out = pd.DataFrame(rows, columns=["stateA", "stateB", "score", "nCells", "bridge"])
    if doublets is not None and len(doublets):
        calls = doublets.set_index("bridge")[list(BRIDGE_DOUBLET_COLUMNS)].rename(columns=BRIDGE_DOUBLET_COLUMNS)
        out = out.join(calls, on="bridge")
    return out.drop(columns="bridge")


# ---------------------------------------------------------------------------------------------------------
# properties


def properties_table(obs: pd.DataFrame, properties) -> pd.DataFrame:
    rows = [{"propertyId": f"{p}={v}", "kind": p, "value": v}
            for p in properties for v in sorted(set(obs[p].astype(str).to_numpy()))]
    return pd.DataFrame(rows, columns=["propertyId", "kind", "value"])


def cell_property_table(adata, properties) -> pd.DataFrame | None:
    cell_ids = obs_names(adata)
    parts = [pd.DataFrame({"cellId": cell_ids, "propertyId": [f"{p}={v}" for v in adata.obs[p].astype(str).to_numpy()]})
             for p in properties]
    return pd.concat(parts, ignore_index=True) if parts else None


def associated_with_table(prop_imp: pd.DataFrame, label_key: str | None) -> pd.DataFrame:
    """Which states attend to which property values (:func:`cellvq_graph.property_importance`)."""
    kind = _main_kind(label_key)
    rows = [{"stateId": state_id(kind, str(r.state)), "propertyId": f"{r.property_kind}={r.property_value}",
             "attention": float(r.attention)} for r in prop_imp.itertuples(index=False)] if len(prop_imp) else []
    return pd.DataFrame(rows, columns=["stateId", "propertyId", "attention"])


# ---------------------------------------------------------------------------------------------------------
# gene-gene edges


def gene_edge_tables(net: nx.DiGraph, regulatory: pd.DataFrame | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(co_expressed, regulates)``. Without ``regulatory`` the gene network's TF-oriented edges
    (``kind == "regulates"``) are ``REGULATES`` and the rest ``CO_EXPRESSED``; with it every gene-network
    edge is ``CO_EXPRESSED`` and ``REGULATES`` is :func:`regulates_table` of ``regulatory``."""
    co, reg = [], []
    for u, v, d in net.edges(data=True):
        is_reg = d.get("kind") == "regulates" and regulatory is None
        (reg if is_reg else co).append({"source": u, "target": v, "weight": float(d["weight"])})
    cols = ["source", "target", "weight"]
    regulates = pd.DataFrame(reg, columns=cols) if regulatory is None else regulates_table(regulatory)
    return pd.DataFrame(co, columns=cols), regulates


def regulates_table(edges: pd.DataFrame, top: int = REGULATORY_TOP) -> pd.DataFrame:
    """The ``regulates`` table of a :func:`cellvq_graph.regulatory_network` edge table: its ``top``
    strongest edges, ``weight`` = the combined ``score``, every evidence column camelCased."""
    kept = edges.sort_values("rank").head(top)
    cols = {"source": "source", "target": "target", **REGULATES_COLUMNS}
    return kept[list(cols)].rename(columns=cols).astype({"source": str, "target": str}).reset_index(drop=True)
