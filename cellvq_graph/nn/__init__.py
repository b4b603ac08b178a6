"""Network modules of CellVQ-Graph (pure torch / torch-geometric)."""

from .conv import HeteroGATv2Conv
from .hetero_gat import HeteroGAT, edge_key
from .net import BottleneckConfig, CellVQGraphNet

__all__ = ["HeteroGATv2Conv", "HeteroGAT", "CellVQGraphNet", "BottleneckConfig", "edge_key"]
