"""The main job: counts -> CellVQ embedding and codes -> CellVQ-Graph -> read-outs -> graph store.

``run(adata, db=...)`` composes the three packages and maps the graph read-outs onto
``graphdb.RunTables`` (this module is the only place where the packages meet). Every step is timed
and reported through an optional callback so that the CLI can show progress.
"""

from __future__ import annotations

import datetime as dt
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd

from cellvq.run_tables import (
    REGULATES_COLUMNS,
    REGULATORY_TOP,
    obs_names,
    package_version,
    regulates_table,
    to_run_tables,
)

__all__ = [
    "DEFAULT_PROPERTIES",
    "REGULATES_COLUMNS",
    "REGULATORY_TOP",
    "PipelineResult",
    "discard_run",
    "obs_names",
    "package_version",
    "regulates_table",
    "run",
    "to_run_tables",
]

DEFAULT_PROPERTIES = ("cell_type", "tissue", "disease", "age", "sex", "condition")


@dataclass
class PipelineResult:
    """What :func:`run` produced: the annotated AnnData, the read-outs, the store tables and the run's facts.

    ``label_key`` is the label column the run used (``None`` when it had none or it was absent);
    :attr:`umap` is the 2-D layout of the embedding, computed on first use and kept on the result (the
    AnnData is not touched).
    """

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
    label_key: str | None = None
    umap_seed: int = 0

    @cached_property
    def umap(self) -> np.ndarray:
        """UMAP ``(n_obs, 2)`` of ``adata.obsm["X_cellvq"]`` (:func:`cellvq.layout.embedding_umap`)."""
        from cellvq.layout import embedding_umap

        return embedding_umap(self.adata, seed=self.umap_seed)


def _step(name: str, timings: dict[str, float], on_step: Callable[[str], None] | None):
    class _T:
        def __enter__(self):
            if on_step:
                on_step(name)
            self.t = time.perf_counter()

        def __exit__(self, *exc):
            timings[name] = round(time.perf_counter() - self.t, 2)

    return _T()


#: Fewer cells than this and scrublet's simulated doublets say nothing: the run skips the doublet call.
MIN_DOUBLET_CELLS = 100


def score_doublets_or_skip(adata, layer: str | None) -> bool:
    """Scrublet on the raw counts (``obs["doublet_score"]``, ``obs["predicted_doublet"]``, see
    :mod:`cellvq_graph.doublets`), so that every bridge is reported beside the doublet call of its cells.
    ``False`` (with a warning) when the data have too few cells for it."""
    from cellvq_graph.doublets import DoubletConfig, score_doublets

    if adata.n_obs < MIN_DOUBLET_CELLS:
        warnings.warn(f"{adata.n_obs} cells: too few for scrublet (needs {MIN_DOUBLET_CELLS}); bridges are "
                      "stored without a doublet call", stacklevel=3)
        return False
    score_doublets(adata, DoubletConfig(layer=layer))
    return True


def bridge_doublet_table(adata, inter: pd.DataFrame) -> pd.DataFrame | None:
    """Per bridge (every pair of states with intermediate cells): doublet score, share called, enrichment
    over the data's share and its one-sided binomial p-value (:func:`cellvq_graph.doublets.bridge_doublets`)."""
    from cellvq_graph.doublets import DoubletConfig, bridge_doublets

    return bridge_doublets(adata, inter, DoubletConfig(min_bridge_cells=1)) if len(inter) else None


def doublet_summary(adata, inter: pd.DataFrame, scored: bool) -> dict[str, float]:
    """The run summary's doublet figures: share of all cells called doublets and of intermediate cells."""
    if not scored:
        return {}
    called = adata.obs["predicted_doublet"].astype(bool)
    inter_cells = called.reindex(inter["cell"].astype(str)) if len(inter) else called.iloc[:0]
    return {"doublet_share": round(float(called.mean()), 4),
            "intermediate_doublet_share": round(float(inter_cells.mean()), 4) if len(inter_cells) else 0.0}


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

    with _step("doublets", timings, on_step):
        scored = score_doublets_or_skip(adata, layer)

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
        bridge_dbl = bridge_doublet_table(adata, inter) if scored else None

    with _step("gene_network", timings, on_step):
        net = cg.gene_network(adata, seed=seed)
        reg_edges = cg.regulatory_network(adata, regulatory) if regulatory is not None else None

    run_id = run_id or f"{dataset_id}-{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%S')}"
    with _step("tables", timings, on_step):
        tables = to_run_tables(
            adata, model, markers, subtypes, inter, net, prop_imp, run_id=run_id, dataset_id=dataset_id,
            dataset_name=dataset_name or dataset_id, label_key=label_key, properties=props,
            expresses_top_k=expresses_top_k, graph_epochs=graph_epochs, seed=seed, command=command,
            regulatory=reg_edges, bridge_doublets=bridge_dbl,
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
        **doublet_summary(adata, inter, scored),
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
                          redact_target(db) if db is not None else None, timings, summary, label_key=label_key)


def discard_run(store, run_id: str) -> None:
    """Remove what a failed write left (it stays invisible as ``writing`` if even that fails)."""
    try:
        store.delete_run(run_id)
    except Exception as exc:  # noqa: BLE001 - the write's own error is the one to report
        warnings.warn(f"could not remove the incomplete run {run_id}: {exc}; `cellvq runs recover` will", stacklevel=2)
