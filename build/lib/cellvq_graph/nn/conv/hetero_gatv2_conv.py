"""GATv2-style attention for one relation of a heterogeneous graph."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import MessagePassing
from torch_geometric.utils import softmax

__all__ = ["HeteroGATv2Conv"]


class HeteroGATv2Conv(MessagePassing):
    r"""Multi-head GATv2 attention over the edges of one (source, relation, destination) type.

    For an edge :math:`j \to i` with attribute :math:`e_{ij}` (Brody et al., ICLR 2022, "How attentive are
    graph attention networks?", with edge features as in TransformerConv):

    .. math::
        s_{ij}^{h} = a^{h\top} \mathrm{LeakyReLU}(W_s^h x_j + W_d^h x_i + W_e^h e_{ij}), \qquad
        \alpha_{ij}^{h} = \mathrm{softmax}_{j \in \mathcal{N}(i)}(s_{ij}^{h}), \qquad
        x_i'^{h} = \sum_j \alpha_{ij}^{h} (W_s^h x_j + W_e^h e_{ij}).

    The softmax runs over the incoming edges of each destination node of *this relation*, so the
    coefficients of a cell over its expressed genes sum to one per head. Edge features also enter the
    value, so an edge attribute such as expression level changes both where the node looks and what it
    receives (that is what integrated gradients w.r.t. expression measure).

    Parameters
    ----------
    in_channels
        ``int`` or ``(source, destination)`` feature sizes.
    out_channels
        Channels per head.
    heads
        Attention heads; outputs are concatenated (``concat=True``) or averaged.
    edge_dim
        Size of the edge attribute, or ``None`` for relations without one.
    """

    def __init__(
        self,
        in_channels: int | tuple[int, int],
        out_channels: int,
        heads: int = 4,
        edge_dim: int | None = None,
        concat: bool = True,
        negative_slope: float = 0.2,
        dropout: float = 0.0,
        bias: bool = True,
    ) -> None:
        super().__init__(aggr="add", node_dim=0)
        src_in, dst_in = (in_channels, in_channels) if isinstance(in_channels, int) else in_channels
        self.in_channels = (src_in, dst_in)
        self.out_channels = out_channels
        self.heads = heads
        self.concat = concat
        self.negative_slope = negative_slope
        self.dropout = dropout
        self.edge_dim = edge_dim
        self.lin_src = nn.Linear(src_in, heads * out_channels)
        self.lin_dst = nn.Linear(dst_in, heads * out_channels)
        self.lin_edge = nn.Linear(edge_dim, heads * out_channels, bias=False) if edge_dim else None
        self.att = nn.Parameter(torch.empty(1, heads, out_channels))
        self.bias = (
            nn.Parameter(torch.zeros(heads * out_channels if concat else out_channels)) if bias else None
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        nn.init.xavier_uniform_(self.lin_src.weight)
        nn.init.zeros_(self.lin_src.bias)
        nn.init.xavier_uniform_(self.lin_dst.weight)
        nn.init.zeros_(self.lin_dst.bias)
        if self.lin_edge is not None:
            nn.init.xavier_uniform_(self.lin_edge.weight)
        nn.init.xavier_uniform_(self.att)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(
        self,
        x: Tensor | tuple[Tensor, Tensor],
        edge_index: Tensor,
        edge_attr: Tensor | None = None,
        return_attention_weights: bool = False,
    ) -> Tensor | tuple[Tensor, tuple[Tensor, Tensor]]:
        """Return the new destination features, and ``(edge_index, alpha [E, heads])`` when asked."""
        x_src, x_dst = (x, x) if isinstance(x, Tensor) else x
        H, C = self.heads, self.out_channels
        xs = self.lin_src(x_src).view(-1, H, C)
        xd = self.lin_dst(x_dst).view(-1, H, C)
        e = None
        if self.lin_edge is not None:
            if edge_attr is None:
                raise ValueError("this relation was built with edge features; pass edge_attr")
            e = self.lin_edge(edge_attr.view(edge_attr.size(0), -1)).view(-1, H, C)
        alpha = self.edge_updater(edge_index, x=(xs, xd), e=e, size=(xs.size(0), xd.size(0)))
        alpha_drop = F.dropout(alpha, p=self.dropout, training=self.training)
        out = self.propagate(edge_index, x=(xs, xd), alpha=alpha_drop, e=e, size=(xs.size(0), xd.size(0)))
        out = out.reshape(-1, H * C) if self.concat else out.mean(dim=1)
        if self.bias is not None:
            out = out + self.bias
        if return_attention_weights:
            return out, (edge_index, alpha)
        return out

    def edge_update(
        self,
        x_j: Tensor,
        x_i: Tensor,
        e: Tensor | None,
        index: Tensor,
        ptr: Tensor | None,
        dim_size: int | None,
    ) -> Tensor:
        z = x_j + x_i
        if e is not None:
            z = z + e
        z = F.leaky_relu(z, self.negative_slope)
        score = (z * self.att).sum(dim=-1)
        return softmax(score, index, ptr, dim_size)

    def message(self, x_j: Tensor, alpha: Tensor, e: Tensor | None) -> Tensor:
        v = x_j if e is None else x_j + e
        return v * alpha.unsqueeze(-1)

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}({self.in_channels}, {self.out_channels}, heads={self.heads}, "
            f"edge_dim={self.edge_dim})"
        )
