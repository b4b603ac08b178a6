"""The heterogeneous attention stack: one :class:`HeteroGATv2Conv` per relation and layer."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn.module_dict import ModuleDict

from .conv import HeteroGATv2Conv
from .inputs import GraphInputs

__all__ = ["HeteroGAT", "legacy_state_dict"]

EdgeType = tuple[str, str, str]


def legacy_state_dict(state: dict, edge_types: list[EdgeType]) -> dict:
    """Rename the keys of a checkpoint written before the convolutions were keyed by edge-type tuples.

    Those checkpoints named a relation's convolution ``convs.<layer>.<src>__<rel>__<dst>``; PyG's
    tuple-keyed :class:`~torch_geometric.nn.module_dict.ModuleDict` stores it as
    ``convs.<layer>.<src___rel___dst>``. Keys of other modules pass unchanged.
    """
    old_to_new = {"__".join(et): ModuleDict.to_internal_key(tuple(et)) for et in edge_types}
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            if part in old_to_new and i >= 2 and parts[i - 2] == "convs":
                parts[i] = old_to_new[part]
        out[".".join(parts)] = value
    return out


class HeteroGAT(nn.Module):
    """Per-relation GATv2 convolutions combined per destination node type.

    Inputs are projected to ``hidden`` channels per node type: feature-bearing types (``cell``: the
    foundation embedding; ``gene``: the foundation gene embedding) through ``LayerNorm -> Linear``, with a
    learned per-node embedding added for transductive types (genes), and types without features
    (properties, states) through a learned embedding only. Masked cells (self-supervised training and
    "identification" read-outs) get a learned mask token instead of their features, so the model has to
    recognise them from their genes.

    Each layer runs every relation's convolution, averages the messages arriving at a node type over its
    relations, and updates ``h <- LayerNorm(h + dropout(GELU(m)))``. Attention coefficients are returned per
    ``(relation, layer)`` as ``(edge_index, alpha [E, heads])``.
    """

    def __init__(
        self,
        node_dims: dict[str, int | None],
        num_nodes: dict[str, int],
        edge_types: list[EdgeType],
        edge_dims: dict[EdgeType, int | None],
        *,
        hidden: int = 64,
        heads: int = 4,
        num_layers: int = 2,
        dropout: float = 0.1,
        attn_dropout: float = 0.0,
        node_embedding: tuple[str, ...] = ("gene", "property", "state"),
    ) -> None:
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden={hidden} must be divisible by heads={heads}")
        self.node_types = list(node_dims)
        self.edge_types = [tuple(e) for e in edge_types]
        self.hidden, self.heads, self.num_layers, self.dropout = hidden, heads, num_layers, dropout
        self.proj = nn.ModuleDict()
        self.emb = nn.ModuleDict()
        for nt, dim in node_dims.items():
            if dim:
                self.proj[nt] = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden))
            if nt in node_embedding or not dim:
                self.emb[nt] = nn.Embedding(max(num_nodes[nt], 1), hidden)
                nn.init.normal_(self.emb[nt].weight, std=0.1)
        self.mask_token = nn.Parameter(torch.zeros(hidden))
        nn.init.normal_(self.mask_token, std=0.1)
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        for _ in range(num_layers):
            self.convs.append(
                ModuleDict(
                    {
                        et: HeteroGATv2Conv(
                            hidden,
                            hidden // heads,
                            heads=heads,
                            edge_dim=edge_dims.get(et),
                            dropout=attn_dropout,
                        )
                        for et in self.edge_types
                    }
                )
            )
            self.norms.append(nn.ModuleDict({nt: nn.LayerNorm(hidden) for nt in self.node_types}))

    def encode(self, inp: GraphInputs) -> dict[str, Tensor]:
        """Input projection per node type; masked cells get the mask token."""
        h = {}
        for nt in self.node_types:
            out = None
            if nt in self.proj and nt in inp.x_dict:
                out = self.proj[nt](inp.x_dict[nt])
            if nt in self.emb:
                e = self.emb[nt](inp.n_id[nt])
                out = e if out is None else out + e
            if out is None:
                out = torch.zeros(inp.num_nodes[nt], self.hidden)
            h[nt] = out
        cell_mask = inp.cell_mask
        if cell_mask is not None and cell_mask.any():
            h["cell"] = torch.where(cell_mask.unsqueeze(-1), self.mask_token.expand_as(h["cell"]), h["cell"])
        return h

    def forward(
        self, inp: GraphInputs, return_attention: bool = False, layers_out: list | None = None
    ) -> tuple[dict[str, Tensor], dict[tuple[EdgeType, int], tuple[Tensor, Tensor]]]:
        """Run all layers; returns final features per node type and, if asked, attention per (relation, layer).

        ``layers_out``, if a list, receives the feature dict after the input projection and after every layer.
        """
        edge_index_dict, edge_attr_dict = inp.edge_index, inp.edge_attr or {}
        h = self.encode(inp)
        if layers_out is not None:
            layers_out.append(h)
        attention: dict[tuple[EdgeType, int], tuple[Tensor, Tensor]] = {}
        for layer in range(self.num_layers):
            msgs: dict[str, list[Tensor]] = {}
            for et in self.edge_types:
                if et not in edge_index_dict:
                    continue
                src, _, dst = et
                conv = self.convs[layer][et]
                out, (ei, alpha) = conv(
                    (h[src], h[dst]),
                    edge_index_dict[et],
                    edge_attr_dict.get(et),
                    return_attention_weights=True,
                )
                msgs.setdefault(dst, []).append(out)
                if return_attention:
                    attention[(et, layer)] = (ei, alpha)
            new_h = {}
            for nt, hv in h.items():
                if nt in msgs:
                    m = torch.stack(msgs[nt]).mean(0)
                    hv = self.norms[layer][nt](hv + F.dropout(F.gelu(m), self.dropout, self.training))
                new_h[nt] = hv
            h = new_h
            if layers_out is not None:
                layers_out.append(h)
        return h, attention
