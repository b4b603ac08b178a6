"""The main job: counts -> CellVQ embedding and codes -> CellVQ-Graph -> read-outs -> graph store.

``run(adata, db=...)`` composes the three packages and maps the graph read-outs onto
``graphdb.RunTables`` (this module is the only place where the packages meet). Every step is timed
and reported through an optional callback so that the CLI can show progress.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd

DEFAULT_PROPERTIES = ("cell_type", "tissue", "disease", "age", "sex", "condition")


@dataclass
class PipelineResult:
    adata: Any
    graph_model: Any
    tables: Any
    markers: dict[str, pd.DataFrame]
    subtypes: dict[str, tuple[pd.Series, pd.DataFrame]]
    intermediates: pd.DataFrame
    network: nx.DiGraph
    property_importance: pd.DataFrame
    run_id: str
    db: str | None
    timings: dict[str, float] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


def _state_id(kind: str, value: str) -> str:
    return f"{kind}:{value}"


def _step(name: str, timings: dict[str, float], on_step: Callable[[str], None] | None):
    class _T:
        def __enter__(self):
            if on_step:
                on_step(name)
            self.t = time.perf_counter()

        def __exit__(self, *exc):
            timings[name] = round(time.perf_counter() - self.t, 2)

    return _T()


def run(
    adata,
    db: str | Path | None = None,
    *,
    model=None,
    layer: str | None = None,
    properties: Sequence[str] = DEFAULT_PROPERTIES,
    label_key: str | None = "cell_type",
    subtype_types: Sequence[str] | None = None,
    graph_epochs: int = 100,
    run_id: str | None = None,
    dataset_id: str = "dataset",
    dataset_name: str | None = None,
    seed: int = 0,
    top_markers: int = 50,
    expresses_top_k: int = 5,
    on_step: Callable[[str], None] | None = None,
    progress: bool = False,
    command: str | None = None,
    quiet: bool = False,
    regulatory=None,
) -> PipelineResult:
    """Run the whole chain on ``adata`` (raw counts) and, when ``db`` is given, write the run to it.

    ``label_key``: an obs column of known labels (cell types) used for labelled states, subtypes and
    marker tables beside the cell codes; skipped when absent. ``subtype_types``: the labels to split into
    subtypes (default: every label with at least 100 cells).

    Phases are printed as plain lines on stderr (:class:`cellvq.progress.PhaseLog`) unless ``on_step`` is
    given or ``quiet=True``.

    ``regulatory``: a :class:`cellvq_graph.RegulatoryConfig`; when given, the ``REGULATES`` edges are the
    :data:`REGULATORY_TOP` strongest edges of :func:`cellvq_graph.regulatory_network` with their evidence
    columns (and the gene network's TF-oriented similarity edges are stored as ``CO_EXPRESSED``); when
    ``None`` they are the gene network's TF-oriented edges, as before.
    """
    import cellvq_graph as cg
    import foundation

    timings: dict[str, float] = {}
    if on_step is None and not quiet:
        from cellvq.progress import PhaseLog

        on_step = PhaseLog()
    from foundation.data import drop_counter_rows, symbols_as_var_names

    drop_counter_rows(adata)  # HTSeq-count summary rows (__no_feature, ...) are not genes
    symbols_as_var_names(adata)  # Ensembl IDs -> symbols before the graph tables key genes by symbol
    if label_key is not None and label_key not in adata.obs:
        warnings.warn(f"obs[{label_key!r}] is absent: no labelled states or subtypes", stacklevel=2)
        label_key = None
    if label_key is not None:
        from cellvq.obs_checks import normalize_labels

        normalize_labels(adata, label_key)  # integer labels as strings; missing labels named, not "nan"

    with _step("embed", timings, on_step):
        model = model or foundation.load_pretrained()
        model.embed(adata, layer=layer, progress=progress)
        adata.obs["cellvq_code"] = adata.obs["cellvq_code"].astype(str).astype("category")

    with _step("graph", timings, on_step), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not in adata.obs.*")
        props = [p for p in properties if p in adata.obs]
        train = cg.GraphTrainConfig(epochs=graph_epochs, seed=seed)
        gmodel = cg.tl.fit(adata, properties=props, train=train, progress=progress)

    groupbys = ["cellvq_code"] + ([label_key] if label_key else [])
    markers: dict[str, pd.DataFrame] = {}
    with _step("markers", timings, on_step):
        for g in groupbys:
            markers[g] = cg.markers(adata, groupby=g, n_top=top_markers)
        prop_imp = cg.property_importance(adata, groupby=label_key or "cellvq_code")

    subtypes: dict[str, tuple[pd.Series, pd.DataFrame]] = {}
    with _step("subtypes", timings, on_step):
        if label_key:
            counts = adata.obs[label_key].value_counts()
            chosen = [str(t) for t in subtype_types] if subtype_types else [t for t, n in counts.items() if n >= 100]
            if chosen:  # one call: every type's labels and names in obs["cellvq_graph_subtype"(_name)]
                groups = {str(t): str(t) for t in chosen}
                subtypes = cg.subtypes(adata, groups, groupby=label_key, seed=seed, key_added="cellvq_graph_subtype")
        inter = cg.intermediate_states(adata, groupby=label_key or "cellvq_code")

    with _step("gene_network", timings, on_step):
        net = cg.gene_network(adata, seed=seed)
        reg_edges = cg.regulatory_network(adata, regulatory) if regulatory is not None else None

    run_id = run_id or f"{dataset_id}-{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%S')}"
    with _step("tables", timings, on_step):
        tables = to_run_tables(
            adata, model, markers, subtypes, inter, net, prop_imp, run_id=run_id, dataset_id=dataset_id,
            dataset_name=dataset_name or dataset_id, label_key=label_key, properties=props,
            expresses_top_k=expresses_top_k, graph_epochs=graph_epochs, seed=seed, command=command,
            regulatory=reg_edges,
        )
    if db is not None:
        import graphdb

        with _step("store", timings, on_step), graphdb.open_store(str(db)) as store:
            try:
                store.write_run(tables)
            except Exception:
                discard_run(store, run_id)
                raise

    u = adata.uns["cellvq"]
    summary = {
        "cells": int(adata.n_obs),
        "genes": int(adata.n_vars),
        "codes_used": int(u["codes_used"]),
        "code_perplexity": round(float(u["code_perplexity"]), 2),
        "gene_match_rate": round(float(u["gene_match_rate"]), 4),
        "count_match_rate": round(float(u["count_match_rate"]), 4),
        "intermediate_cells": int(len(inter)),
        "gene_network_nodes": net.number_of_nodes(),
        "gene_network_edges": net.number_of_edges(),
        "gene_modules": len({d.get("module") for _, d in net.nodes(data=True)}),
        "subtyped_cell_types": sorted(subtypes),
    }
    if label_key:
        from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

        labels = adata.obs[label_key].astype(str)
        summary["code_ari"] = round(float(adjusted_rand_score(labels, adata.obs["cellvq_code"])), 4)
        summary["code_nmi"] = round(float(normalized_mutual_info_score(labels, adata.obs["cellvq_code"])), 4)
    from graphdb.errors import redact_target

    if hasattr(on_step, "done"):
        on_step.done()
    return PipelineResult(adata, gmodel, tables, markers, subtypes, inter, net, prop_imp, run_id,
                          redact_target(db) if db is not None else None, timings, summary)


def package_version() -> str:
    """The installed cellvq version (recorded on every Run node)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cellvq")
    except PackageNotFoundError:  # pragma: no cover - a source checkout that was never installed
        return "unknown"


def _provenance_command(command: str | None) -> str:
    """The command that made the run (default: this process's arguments), without any credentials."""
    import shlex
    import sys

    from graphdb.errors import redact_command

    if command is None:
        return shlex.join(redact_command([Path(sys.argv[0]).name, *sys.argv[1:]])) if sys.argv else ""
    return shlex.join(redact_command(shlex.split(command)))


def discard_run(store, run_id: str) -> None:
    """Remove what a failed write left (it stays invisible as ``writing`` if even that fails)."""
    try:
        store.delete_run(run_id)
    except Exception as exc:  # noqa: BLE001 - the write's own error is the one to report
        warnings.warn(f"could not remove the incomplete run {run_id}: {exc}; `cellvq runs recover` will", stacklevel=2)


def to_run_tables(
    adata, model, markers, subtypes, inter, net, prop_imp, *, run_id, dataset_id, dataset_name, label_key,
    properties, expresses_top_k=5, graph_epochs=100, seed=0, command=None, regulatory=None,
):
    """Map the read-outs onto ``graphdb.RunTables`` (camelCase tables of plain values).

    States carry the descriptions of :func:`cellvq_graph.describe_states` (subtypes also its one-line
    name); ``regulatory`` (a :func:`cellvq_graph.regulatory_network` table) becomes ``regulates`` with its
    evidence columns (:func:`regulates_table`).
    """
    import graphdb

    obs = adata.obs
    cells = pd.DataFrame({"cellId": obs_names(adata), "code": obs["cellvq_code"].astype(str).to_numpy()})
    if "nCount_RNA" in obs:
        cells["nCounts"] = obs["nCount_RNA"].to_numpy(dtype=float)

    # genes: every gene any table mentions, with Ensembl IDs from GENCODE v44 where known
    gene_set: set[str] = set(net.nodes)
    for df in markers.values():
        gene_set.update(df["gene"].astype(str))
    for _, df in subtypes.values():
        gene_set.update(df["gene"].astype(str))
    att = adata.layers.get("cellvq_graph_attention") if hasattr(adata.layers, "get") else None
    expresses = None
    if att is not None and expresses_top_k:
        import scipy.sparse as sp

        A = sp.csr_matrix(att)
        rows = []
        names = np.asarray(adata.var_names.astype(str))
        cell_ids = cells["cellId"].to_numpy()
        for i in range(A.shape[0]):
            lo, hi = A.indptr[i], A.indptr[i + 1]
            if hi == lo:
                continue
            top = np.argsort(-A.data[lo:hi])[:expresses_top_k]
            for j in top:
                rows.append((cell_ids[i], names[A.indices[lo + j]], float(A.data[lo + j])))
        expresses = pd.DataFrame(rows, columns=["cellId", "symbol", "attention"])
        gene_set.update(expresses["symbol"])
    genes = _gene_table(gene_set)

    states, cell_state, mk_rows, subtype_of = [], [], [], []
    codes = obs["cellvq_code"].astype(str).to_numpy()
    for c in sorted(set(codes)):
        states.append({"stateId": _state_id("code", c), "kind": "code", "name": c})
    cell_state.append(pd.DataFrame({"cellId": cells["cellId"], "stateId": [_state_id("code", c) for c in codes]}))
    if label_key:
        labels = obs[label_key].astype(str).to_numpy()
        for t in sorted(set(labels)):
            states.append({"stateId": _state_id("cellType", t), "kind": "cellType", "name": t})
        cell_state.append(pd.DataFrame({"cellId": cells["cellId"], "stateId": [_state_id("cellType", t) for t in labels]}))
    kind_of = {"cellvq_code": "code", label_key: "cellType"}
    for g, df in markers.items():
        kind = kind_of.get(g, "cluster")
        for r in df.itertuples(index=False):
            mk_rows.append({"stateId": _state_id(kind, str(r.state)), "symbol": str(r.gene), "score": float(r.score),
                            "rank": int(r.rank), "attention": float(r.attention), "logFc": float(r.logfc)})
    name_to_cell = dict(zip(obs_names(adata), cells["cellId"]))
    for parent, (labels_s, sub_mk) in subtypes.items():
        words = _subtype_words(adata, parent)
        for sub in sorted(set(labels_s.dropna().astype(str))):
            name, text = words.get(sub, (sub, None))
            states.append({"stateId": _state_id("subtype", sub), "kind": "subtype", "name": name, "description": text})
            subtype_of.append({"stateId": _state_id("subtype", sub), "parentStateId": _state_id("cellType", parent)})
        lab = labels_s.dropna().astype(str)
        cell_state.append(pd.DataFrame({"cellId": [name_to_cell[c] for c in lab.index],
                                        "stateId": [_state_id("subtype", s) for s in lab]}))
        for r in sub_mk.itertuples(index=False):
            mk_rows.append({"stateId": _state_id("subtype", str(r.state)), "symbol": str(r.gene), "score": float(r.score),
                            "rank": int(r.rank), "attention": float(r.attention), "logFc": float(r.logfc)})

    # bridges between the states of the grouping used for intermediate cells
    inter_kind = "cellType" if label_key else "code"
    bridges = []
    if len(inter):
        pairs = inter.assign(a=inter["state_a"].astype(str), b=inter["state_b"].astype(str))
        pairs[["a", "b"]] = np.sort(pairs[["a", "b"]].to_numpy(), axis=1)
        for (a, b), grp in pairs.groupby(["a", "b"]):
            bridges.append({"stateA": _state_id(inter_kind, a), "stateB": _state_id(inter_kind, b),
                            "score": float(grp["score"].mean()), "nCells": int(len(grp))})

    # properties present on the cells, and which states attend to them
    prop_rows, cell_prop = [], []
    for p in properties:
        vals = obs[p].astype(str).to_numpy()
        for v in sorted(set(vals)):
            prop_rows.append({"propertyId": f"{p}={v}", "kind": p, "value": v})
        cell_prop.append(pd.DataFrame({"cellId": cells["cellId"], "propertyId": [f"{p}={v}" for v in vals]}))
    assoc = []
    if len(prop_imp):
        for r in prop_imp.itertuples(index=False):
            assoc.append({"stateId": _state_id(inter_kind, str(r.state)),
                          "propertyId": f"{r.property_kind}={r.property_value}", "attention": float(r.attention)})

    co, reg = [], []
    for u, v, d in net.edges(data=True):
        is_reg = d.get("kind") == "regulates" and regulatory is None
        (reg if is_reg else co).append({"source": u, "target": v, "weight": float(d["weight"])})
    regulates = pd.DataFrame(reg, columns=["source", "target", "weight"])
    if regulatory is not None:
        regulates = regulates_table(regulatory)
        gene_set.update(regulates["source"])
        gene_set.update(regulates["target"])
        genes = _gene_table(gene_set)
    states = _describe(adata, markers, label_key, pd.DataFrame(states))

    u = adata.uns["cellvq"]
    return graphdb.RunTables(
        run={"runId": run_id, "model": str(u.get("model", "cellvq")), "checkpointHash": str(u.get("checkpoint_sha256", "")),
             "parameters": json.dumps({"graphEpochs": graph_epochs, "seed": seed, "labelKey": label_key,
                                       "properties": list(properties), "quantizer": u.get("quantizer")}),
             "command": _provenance_command(command), "packageVersion": package_version()},
        dataset={"datasetId": dataset_id, "name": dataset_name, "nCells": int(adata.n_obs)},
        cells=cells, genes=genes, states=states,
        properties=pd.DataFrame(prop_rows, columns=["propertyId", "kind", "value"]),
        cell_state=pd.concat(cell_state, ignore_index=True),
        cell_property=pd.concat(cell_prop, ignore_index=True) if cell_prop else None,
        markers=pd.DataFrame(mk_rows), co_expressed=pd.DataFrame(co, columns=["source", "target", "weight"]),
        regulates=regulates,
        subtype_of=pd.DataFrame(subtype_of, columns=["stateId", "parentStateId"]),
        bridges=pd.DataFrame(bridges, columns=["stateA", "stateB", "score", "nCells"]),
        associated_with=pd.DataFrame(assoc, columns=["stateId", "propertyId", "attention"]),
        expresses=expresses,
    )


#: ``REGULATES`` edges kept from :func:`cellvq_graph.regulatory_network` (the strongest, by ``rank``).
REGULATORY_TOP = 5000
#: cellvq_graph's regulatory-network columns -> the store's camelCase ``REGULATES`` properties.
REGULATES_COLUMNS = {
    "score": "weight", "rank": "rank", "tree_importance": "treeImportance", "tree_consensus": "treeConsensus",
    "attention": "attention", "perturbation_z": "perturbationZ", "perturbation_logfc": "perturbationLogFc",
    "spearman": "spearman", "n_evidence": "nEvidence",
}


def regulates_table(edges: pd.DataFrame, top: int = REGULATORY_TOP) -> pd.DataFrame:
    """The ``regulates`` table of a :func:`cellvq_graph.regulatory_network` edge table: its ``top``
    strongest edges, ``weight`` = the combined ``score``, every evidence column camelCased."""
    kept = edges.sort_values("rank").head(top)
    cols = {"source": "source", "target": "target", **REGULATES_COLUMNS}
    return kept[list(cols)].rename(columns=cols).astype({"source": str, "target": str}).reset_index(drop=True)


def _gene_table(symbols) -> pd.DataFrame:
    """Every gene a table mentions, with Ensembl IDs from GENCODE v44 where known."""
    from foundation.data import GeneVocab

    vocab = GeneVocab.build(sorted(symbols))
    return pd.DataFrame({"symbol": vocab.symbols, "ensemblId": [e or None for e in vocab.ensembl_ids]})


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

    kind_of = {"cellvq_code": "code", label_key: "cellType"}
    text = {}
    for groupby, mk in markers.items():
        if groupby not in kind_of or mk.empty:
            continue
        cfg = cg.DescribeConfig(reference_key=label_key)
        desc = cg.describe_states(adata, mk, groupby, cfg)
        text.update({_state_id(kind_of[groupby], str(s)): str(d) for s, d in zip(desc["state"], desc["description"])})
    out = states.copy()
    if "description" not in out:
        out["description"] = None
    out["description"] = out["description"].where(out["description"].notna(), out["stateId"].map(text))
    return out


def obs_names(adata) -> list[str]:
    return [str(x) for x in adata.obs_names]
