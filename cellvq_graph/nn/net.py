"""CellVQGraphNet: the attention stack plus its self-supervised heads (pure torch)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from .conv import GeneAttentionPool
from .hetero_gat import EdgeType, HeteroGAT
from .inputs import GraphInputs

__all__ = ["CellVQGraphNet", "BottleneckConfig"]

POOL_RELATION = ("gene", "expressed_in", "cell")


@dataclass
class BottleneckConfig:
    """The attention bottleneck (:class:`~cellvq_graph.nn.conv.GeneAttentionPool`) and its loss weight.

    ``normaliser``: ``"sparsemax"`` (coefficients of unchosen genes exactly zero) or ``"softmax"``;
    ``heads``: attention heads of the pool; ``query``: ``"cell"`` (the cell's representation asks) or
    ``"shared"`` (one learned query: genes are weighed by what they tell, whatever the cell);
    ``weight``: weight of its state-prediction loss in training.
    """

    normaliser: str = "sparsemax"
    heads: int = 4
    query: str = "cell"
    weight: float = 1.0


class CellVQGraphNet(nn.Module):
    """:class:`HeteroGAT` with one classification head per categorical kind and a cell-gene decoder.

    * ``heads[kind]``: ``Linear(hidden, n_values)``; logits of a cell's state / property value.
    * ``decode(z_cell, z_gene)``: bilinear score ``(W z_cell) . z_gene`` of a cell expressing a gene.
    * with ``bottleneck``: ``pool`` (a :class:`GeneAttentionPool` over each cell's gene edges, queried by the
      cell's representation) and ``pool_heads[kind]`` that predict each kind from the pooled vector alone.
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
        bottleneck: BottleneckConfig | None = None,
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
        self.bottleneck = bottleneck
        if bottleneck is not None:
            edge_dim = edge_dims.get(POOL_RELATION)
            if not edge_dim:
                raise ValueError("the attention bottleneck needs expression attributes on gene->cell edges")
            self.pool = GeneAttentionPool(
                hidden,
                edge_dim,
                heads=bottleneck.heads,
                normaliser=bottleneck.normaliser,
                query=bottleneck.query,
            )
            self.pool_heads = nn.ModuleDict(
                {f"k{i}": nn.Linear(hidden, n) for i, n in enumerate(kinds.values())}
            )

    def head(self, kind: str) -> nn.Linear:
        return self.heads[f"k{self.kinds.index(kind)}"]

    def pool_head(self, kind: str) -> nn.Linear:
        return self.pool_heads[f"k{self.kinds.index(kind)}"]

    def classify(self, z_cell: Tensor) -> dict[str, Tensor]:
        return {k: self.head(k)(z_cell) for k in self.kinds}

    def decode(self, z_cell: Tensor, z_gene: Tensor) -> Tensor:
        return (self.edge_proj(z_cell) * z_gene).sum(-1)

    def pool_cells(
        self, h: dict[str, Tensor], edge_index: dict[EdgeType, Tensor], edge_attr: dict[EdgeType, Tensor]
    ) -> tuple[Tensor, Tensor]:
        """Bottleneck read-out: pooled cells ``[C, hidden]`` and attention ``[E, heads]`` on gene->cell edges."""
        return self.pool(h["gene"], h["cell"], edge_index[POOL_RELATION], edge_attr[POOL_RELATION])

    def forward(self, inp: GraphInputs, return_attention: bool = False, layers_out: list | None = None):
        """The encoder's final features per node type and attention per (relation, layer), see :class:`HeteroGAT`."""
        return self.encoder(inp, return_attention=return_attention, layers_out=layers_out)
