"""Network modules of CellVQ-Graph (pure torch / torch-geometric)."""

from .conv import HeteroGATv2Conv
from .hetero_gat import HeteroGAT, legacy_state_dict
from .inputs import GraphInputs, graph_inputs
from .net import BottleneckConfig, CellVQGraphNet

__all__ = [
    "HeteroGATv2Conv",
    "HeteroGAT",
    "CellVQGraphNet",
    "BottleneckConfig",
    "GraphInputs",
    "graph_inputs",
    "legacy_state_dict",
]
