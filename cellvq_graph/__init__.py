"""CellVQ-Graph: heterogeneous graph attention over cells, genes, properties and cell states.

Reads what the foundation model wrote into an AnnData (``obsm["X_cellvq"]``, ``obs["cellvq_code"]``,
``varm["cellvq_gene"]``; docs/CONTRACTS.md §1), builds a torch-geometric ``HeteroData`` of cell, gene,
property and state nodes (:func:`build_graph`), trains a GATv2-style heterogeneous attention network
self-supervised (:class:`CellVQGraph`, training parameters in :class:`GraphTrainConfig`), and reads
out from its attention: markers and property importance (:mod:`cellvq_graph.markers`), subtypes and
intermediate states with their names and descriptions (:mod:`cellvq_graph.states`), gene networks and
TF -> target edges scored from directional evidence (GRNBoost2-like trees, gene-gene attention,
knock-out response) with their benchmark against a TF-target reference (:mod:`cellvq_graph.networks`).
Every table is stored in the AnnData with its parameters (:mod:`cellvq_graph.tables`). Captum
Integrated Gradients give a second explanation (:mod:`cellvq_graph.attribution`); networks export to
GraphML, CSV, Cytoscape JSON (:mod:`cellvq_graph.export`). ``cellvq_graph.tl.fit(adata)`` runs build +
train + annotate in one call.

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
from .markers import code_markers, load_canonical_markers, marker_precision, markers, property_importance
from .model import AttentionReadout, CellVQGraph, CellVQGraphConfig
from .networks import (
    RegulatoryConfig,
    code_gene_network,
    edges_to_networkx,
    gene_modules,
    gene_network,
    grn_benchmark,
    load_tf_list,
    load_tf_target_reference,
    perturbation_response,
    regulatory_network,
)
from .readout import keep_torch_threads
from .states import DescribeConfig, describe_bridges, describe_states, intermediate_states, subtypes
from .tables import read_table, table_params
from .train import GraphTrainConfig

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
    "GraphTrainConfig",
    "attribution_agreement",
    "build_graph",
    "code_gene_network",
    "code_markers",
    "export_network",
    "gene_modules",
    "gene_network",
    "integrated_gradients",
    "keep_torch_threads",
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
    "table_params",
    "tl",
    "write_cytoscape_json",
    "write_edge_csv",
    "write_graphml",
    "write_sif",
]
