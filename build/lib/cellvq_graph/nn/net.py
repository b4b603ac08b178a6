"""CellVQGraphNet: the attention stack plus its self-supervised heads (pure torch)."""

from __future__ import annotations

from torch import Tensor, nn

from .hetero_gat import EdgeType, HeteroGAT

__all__ = ["CellVQGraphNet"]


class CellVQGraphNet(nn.Module):
    """:class:`HeteroGAT` with one classification head per categorical kind and a cell-gene decoder.

    * ``heads[kind]``: ``Linear(hidden, n_values)``; logits of a cell's state / property value.
    * ``decode(z_cell, z_gene)``: bilinear score ``(W z_cell) . z_gene`` of a cell expressing a gene.
    """

    def __init__(
        self,
        node_dims: dict[str, int | None],
        num_nodes: dict[str, int],
        edge_types: list[EdgeType],
        edge_dims: dict[EdgeType, int | None],
        kinds: dict[str, int],
        *,
        hidden: int = 64,
        heads: int = 4,
        num_layers: int = 2,
        dropout: float = 0.1,
        attn_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.encoder = HeteroGAT(
            node_dims,
            num_nodes,
            edge_types,
            edge_dims,
            hidden=hidden,
            heads=heads,
            num_layers=num_layers,
            dropout=dropout,
            attn_dropout=attn_dropout,
        )
        self.kinds = list(kinds)
        self.heads = nn.ModuleDict({f"k{i}": nn.Linear(hidden, n) for i, n in enumerate(kinds.values())})
        self.edge_proj = nn.Linear(hidden, hidden, bias=False)

    def head(self, kind: str) -> nn.Linear:
        return self.heads[f"k{self.kinds.index(kind)}"]

    def classify(self, z_cell: Tensor) -> dict[str, Tensor]:
        return {k: self.head(k)(z_cell) for k in self.kinds}

    def decode(self, z_cell: Tensor, z_gene: Tensor) -> Tensor:
        return (self.edge_proj(z_cell) * z_gene).sum(-1)

    def forward(self, *args, **kwargs):
        return self.encoder(*args, **kwargs)
