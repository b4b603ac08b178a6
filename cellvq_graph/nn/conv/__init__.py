"""Message-passing layers of CellVQ-Graph (one layer per file)."""

from .gene_attention_pool import GeneAttentionPool
from .hetero_gatv2_conv import HeteroGATv2Conv

__all__ = ["HeteroGATv2Conv", "GeneAttentionPool"]
