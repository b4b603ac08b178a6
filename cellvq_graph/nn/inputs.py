"""GraphInputs: the one object the network's ``forward`` takes (tensors of a full or sampled HeteroData)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

__all__ = ["GraphInputs", "graph_inputs"]


@dataclass
class GraphInputs:
    """Node features, node ids, edges and edge attributes per type, plus the cells to mask.

    ``n_id`` are the nodes' global ids (for the learned per-node embeddings of a sampled subgraph);
    ``e_id`` the edges' positions in the full graph (read-outs write attention back there);
    ``cell_mask`` marks cells whose foundation embedding is replaced by the mask token (``None``: none).
    """

    x_dict: dict[str, Tensor]
    n_id: dict[str, Tensor]
    num_nodes: dict[str, int]
    edge_index: dict[tuple, Tensor]
    edge_attr: dict[tuple, Tensor]
    e_id: dict[tuple, Tensor] | None = None
    cell_mask: Tensor | None = None

    def replace_edges(self, et: tuple, keep: Tensor) -> None:
        """Keep only the edges ``keep`` (bool mask or index) of relation ``et``, in place."""
        self.edge_index[et] = self.edge_index[et][:, keep]
        if et in self.edge_attr:
            self.edge_attr[et] = self.edge_attr[et][keep]
        if self.e_id is not None and et in self.e_id:
            self.e_id[et] = self.e_id[et][keep]


def graph_inputs(g: HeteroData, cell_mask: Tensor | None = None) -> GraphInputs:
    """The :class:`GraphInputs` of a full graph or of a NeighborLoader mini-batch."""
    x_dict, n_id, num_nodes = {}, {}, {}
    for nt in g.node_types:
        store = g[nt]
        num_nodes[nt] = int(store.num_nodes)
        if "x" in store:
            x_dict[nt] = store.x
        n_id[nt] = store.n_id if "n_id" in store else torch.arange(num_nodes[nt])
    ei, ea, eid = {}, {}, {}
    for et in g.edge_types:
        store = g[et]
        ei[et] = store.edge_index
        if "edge_attr" in store and store.edge_attr is not None:
            ea[et] = store.edge_attr
        eid[et] = store.e_id if "e_id" in store else torch.arange(store.edge_index.size(1))
    return GraphInputs(x_dict, n_id, num_nodes, ei, ea, eid, cell_mask)
