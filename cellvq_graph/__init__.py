"""CellVQ-Graph: heterogeneous graph attention over cells, genes, properties and cell states.

Reads what the foundation model wrote into an AnnData (``obsm["X_cellvq"]``, ``obs["cellvq_code"]``,
``varm["cellvq_gene"]``; docs/CONTRACTS.md §1), builds a torch-geometric ``HeteroData`` of cell, gene,
property and state nodes (:func:`build_graph`), trains a GATv2-style heterogeneous attention network
self-supervised (:class:`CellVQGraph`), and reads out markers, property importance, subtypes,
intermediate states and gene networks from its attention (:mod:`cellvq_graph.interpret`), with captum
Integrated Gradients as a second explanation (:mod:`cellvq_graph.attribution`) and network export
(:mod:`cellvq_graph.export`). :mod:`cellvq_graph.networks` scores TF -> target edges from directional
evidence (GRNBoost2-like trees, gene-gene attention, knock-out response) and benchmarks them against a
TF-target reference; :mod:`cellvq_graph.states` names and describes states, subtypes and bridges. ``cellvq_graph.tl.fit(adata)`` runs build + train + annotate in one call.

Shipped resources: ``resources/human_tfs_lambert2018.txt`` (1,639 human TFs, Lambert et al., Cell 2018, via
pySCENIC) and ``resources/pbmc_canonical_markers.csv`` (curated PBMC markers with a literature source per row).
"""

from __future__ import annotations

from . import tl
from .attribution import attribution_agreement, integrated_gradients, plot_agreement
from .build import GraphIndex, build_graph
from .export import (
    export_network,
    read_cytoscape_json,
    read_edge_csv,
    read_graphml,
    read_sif,
    write_cytoscape_json,
    write_edge_csv,
    write_graphml,
    write_sif,
)
from .interpret import (
    code_gene_network,
    code_markers,
    gene_modules,
    gene_network,
    intermediate_states,
    load_canonical_markers,
    load_tf_list,
    marker_precision,
    markers,
    property_importance,
    read_table,
    subtypes,
)
from .model import AttentionReadout, CellVQGraph, CellVQGraphConfig
from .networks import (
    RegulatoryConfig,
    edges_to_networkx,
    grn_benchmark,
    load_tf_target_reference,
    perturbation_response,
    regulatory_network,
)
from .states import DescribeConfig, describe_bridges, describe_states

__all__ = [
    "AttentionReadout",
    "DescribeConfig",
    "RegulatoryConfig",
    "describe_bridges",
    "describe_states",
    "edges_to_networkx",
    "grn_benchmark",
    "load_tf_target_reference",
    "perturbation_response",
    "regulatory_network",
    "CellVQGraph",
    "CellVQGraphConfig",
    "GraphIndex",
    "attribution_agreement",
    "build_graph",
    "code_gene_network",
    "code_markers",
    "export_network",
    "gene_modules",
    "gene_network",
    "integrated_gradients",
    "intermediate_states",
    "load_canonical_markers",
    "load_tf_list",
    "marker_precision",
    "markers",
    "plot_agreement",
    "property_importance",
    "read_cytoscape_json",
    "read_edge_csv",
    "read_graphml",
    "read_sif",
    "read_table",
    "subtypes",
    "tl",
    "write_cytoscape_json",
    "write_edge_csv",
    "write_graphml",
    "write_sif",
]
