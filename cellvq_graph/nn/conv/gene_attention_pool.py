"""Attention bottleneck: a cell's state read from a sparse attention over its measured genes."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch_geometric.nn import MessagePassing

from ..sparsemax import segment_normalise

__all__ = ["GeneAttentionPool"]


class GeneAttentionPool(MessagePassing):
    r"""Pool the genes of each cell through sparse attention; the pooled vector is all a state head sees.

    For a gene :math:`j` measured in cell :math:`i` with edge attribute :math:`e_{ij}` (expression, z-score):

    .. math::
        s_{ij}^{h} = \frac{(W_q^h x_i)^\top (W_k^h x_j + U_k^h e_{ij})}{\sqrt{d}}, \qquad
        \alpha_{ij}^{h} = \mathrm{sparsemax}_{j \in \mathcal{N}(i)}(s_{ij}^{h}), \qquad
        z_i = W_o \big[\textstyle\sum_j \alpha_{ij}^{h} (W_v^h x_j + U_v^h e_{ij})\big]_h .

    Values depend only on the gene and its expression in the cell, never on the cell's own representation,
    so the state heads on :math:`z_i` can only succeed if the attention picks genes whose identity and level
    tell the state apart: the attention has to carry the information (a bottleneck), and sparsemax sets
    the coefficients of unhelpful genes to exactly zero. ``normaliser="softmax"`` is the dense variant.

    ``query="shared"`` replaces :math:`W_q^h x_i` by one learned query per head, so the score of a gene
    depends only on the gene and its expression in the cell: the pool cannot look for genes it already
    knows the cell's state from, it has to weigh every cell's genes by how much they tell (a gene-voting
    read). ``query="cell"`` queries with the cell's representation.
    """

    def __init__(
        self,
        hidden: int,
        edge_dim: int,
        heads: int = 4,
        normaliser: str = "sparsemax",
        query: str = "cell",
        out: int | None = None,
    ) -> None:
        super().__init__(aggr="add", node_dim=0)
        if hidden % heads:
            raise ValueError(f"hidden={hidden} must be divisible by bottleneck heads={heads}")
        if normaliser not in ("sparsemax", "softmax"):
            raise ValueError(
                f"BottleneckConfig.normaliser must be 'sparsemax' or 'softmax', not {normaliser!r}"
            )
        if query not in ("cell", "shared"):
            raise ValueError(f"BottleneckConfig.query must be 'cell' or 'shared', not {query!r}")
        self.heads, self.dim, self.normaliser, self.query = heads, hidden // heads, normaliser, query
        self.lin_q = nn.Linear(hidden, hidden) if query == "cell" else None
        self.q = nn.Parameter(torch.randn(1, heads, hidden // heads) * 0.1) if query == "shared" else None
        self.lin_k = nn.Linear(hidden, hidden)
        self.lin_ke = nn.Linear(edge_dim, hidden, bias=False)
        self.lin_v = nn.Linear(hidden, hidden)
        self.lin_ve = nn.Linear(edge_dim, hidden, bias=False)
        self.lin_o = nn.Sequential(nn.Linear(hidden, out or hidden), nn.LayerNorm(out or hidden))

    def forward(
        self, x_gene: Tensor, x_cell: Tensor, edge_index: Tensor, edge_attr: Tensor
    ) -> tuple[Tensor, Tensor]:
        """``edge_index`` runs gene -> cell. Returns pooled cells ``[C, out]`` and ``alpha [E, heads]``."""
        H, D = self.heads, self.dim
        q = (
            self.lin_q(x_cell).view(-1, H, D)
            if self.lin_q is not None
            else self.q.expand(x_cell.size(0), H, D)
        )
        k = (self.lin_k(x_gene)[edge_index[0]] + self.lin_ke(edge_attr)).view(-1, H, D)
        v = (self.lin_v(x_gene)[edge_index[0]] + self.lin_ve(edge_attr)).view(-1, H, D)
        score = (q[edge_index[1]] * k).sum(-1) / math.sqrt(D)
        alpha = segment_normalise(score, edge_index[1], x_cell.size(0), self.normaliser)
        pooled = self.propagate(edge_index, v=v, alpha=alpha, size=(x_gene.size(0), x_cell.size(0)))
        return self.lin_o(pooled.reshape(-1, H * D)), alpha

    def message(self, v: Tensor, alpha: Tensor) -> Tensor:
        return v * alpha.unsqueeze(-1)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(heads={self.heads}, dim={self.dim}, normaliser={self.normaliser!r}, query={self.query!r})"
