"""Network modules of CellVQ-Graph (pure torch / torch-geometric)."""

from .conv import HeteroGATv2Conv
from .hetero_gat import HeteroGAT, edge_key
from .net import CellVQGraphNet

__all__ = ["HeteroGATv2Conv", "HeteroGAT", "CellVQGraphNet", "edge_key"]
