"""Message-passing layers of CellVQ-Graph (one layer per file)."""

from .hetero_gatv2_conv import HeteroGATv2Conv

__all__ = ["HeteroGATv2Conv"]
