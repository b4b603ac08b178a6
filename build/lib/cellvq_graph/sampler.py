"""A pure-torch heterogeneous neighbour sampler for :class:`torch_geometric.loader.NeighborLoader`.

torch-geometric's own ``NeighborSampler`` calls compiled kernels from ``pyg-lib`` or ``torch-sparse``;
CellVQ installs neither (plain-pip, CPU-only). :class:`TorchNeighborSampler` subclasses it, keeps its CSC
conversion and output format, and replaces only ``_sample`` with vectorised torch code, so that the standard
``NeighborLoader(data, num_neighbors=..., input_nodes=("cell", ...), neighbor_sampler=...)`` works and
mini-batches stay bounded in size whatever the number of cells.

Sampling is "directional" (PyG's default) and per hop: every node added at the previous hop draws at most
``num_neighbors[edge_type][hop]`` incoming edges of each relation (``-1`` = all). Nodes with more incoming
edges than that draw that many edge positions uniformly with replacement, duplicates removed (so a node
gets between 1 and n distinct neighbours; for the degree ranges of this graph that is close to sampling
without replacement and needs O(n) work per node instead of O(degree)).
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor
from torch_geometric.loader import NeighborLoader
from torch_geometric.sampler import HeteroSamplerOutput, NeighborSampler

__all__ = ["TorchNeighborSampler", "make_loader"]


def _ranges(start: Tensor, length: Tensor) -> Tensor:
    """Concatenation of ``arange(s, s + l)`` for every (s, l)."""
    total = int(length.sum())
    if total == 0:
        return start.new_zeros(0)
    offsets = torch.repeat_interleave(start - torch.cumsum(length, 0) + length, length)
    return offsets + torch.arange(total, dtype=start.dtype)


class TorchNeighborSampler(NeighborSampler):
    """:class:`~torch_geometric.sampler.NeighborSampler` with a pure-torch heterogeneous ``_sample``."""

    def __init__(self, data, num_neighbors, **kwargs) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PyG warns that pyg-lib is missing; we do not need it
            super().__init__(data, num_neighbors, **kwargs)
        if not hasattr(self, "colptr_dict"):
            raise TypeError("TorchNeighborSampler supports in-memory HeteroData only")

    def _sample(self, seed, seed_time=None, **kwargs) -> HeteroSamplerOutput:  # type: ignore[override]
        if not isinstance(seed, dict):
            raise NotImplementedError("TorchNeighborSampler samples heterogeneous graphs only")
        if seed_time is not None:
            raise NotImplementedError("temporal sampling is not supported")
        glob2loc = {nt: torch.full((n,), -1, dtype=torch.long) for nt, n in self.num_nodes.items()}
        count = dict.fromkeys(self.num_nodes, 0)
        nodes: dict[str, list[Tensor]] = {nt: [] for nt in self.num_nodes}

        def add(nt: str, ids: Tensor) -> Tensor:
            ids = torch.unique(ids)
            new = ids[glob2loc[nt][ids] < 0]
            glob2loc[nt][new] = torch.arange(count[nt], count[nt] + new.numel())
            count[nt] += new.numel()
            nodes[nt].append(new)
            return new

        frontier = {nt: add(nt, s.long()) for nt, s in seed.items()}
        nums = self.num_neighbors.get_mapped_values(self.edge_types)
        rows: dict = {et: [] for et in self.edge_types}
        cols: dict = {et: [] for et in self.edge_types}
        eids: dict = {et: [] for et in self.edge_types}
        for hop in range(self.num_neighbors.num_hops):
            nxt: dict[str, list[Tensor]] = {}
            for et in self.edge_types:
                src, _, dst = et
                f = frontier.get(dst)
                rel = self.to_rel_type[et]
                per_hop = nums.get(rel, [])
                n = per_hop[hop] if hop < len(per_hop) else 0
                if f is None or f.numel() == 0 or n == 0:
                    continue
                colptr, row = self.colptr_dict[rel], self.row_dict[rel]
                start = colptr[f]
                deg = colptr[f + 1] - start
                if n < 0:
                    take_all = torch.ones_like(deg, dtype=torch.bool)
                else:
                    take_all = deg <= n
                e_all = _ranges(start[take_all], deg[take_all])
                d_all = torch.repeat_interleave(f[take_all], deg[take_all])
                big = ~take_all
                if big.any():
                    s_big, d_big, f_big = start[big], deg[big], f[big]
                    off = (torch.rand(f_big.numel(), n) * d_big.unsqueeze(1)).long()
                    # CSC ranges of distinct nodes do not overlap, so a global unique removes exactly the
                    # duplicates drawn by the same node; its owner is found back from the range starts.
                    e_big = torch.unique(s_big.unsqueeze(1) + off)
                    order = torch.argsort(s_big)
                    owner = torch.searchsorted(s_big[order], e_big, right=True) - 1
                    e = torch.cat([e_all, e_big])
                    d = torch.cat([d_all, f_big[order][owner]])
                else:
                    e, d = e_all, d_all
                if e.numel() == 0:
                    continue
                s_glob = row[e]
                nxt.setdefault(src, []).append(add(src, s_glob))
                rows[et].append(glob2loc[src][s_glob])
                cols[et].append(glob2loc[dst][d])
                eids[et].append(e)
            frontier = {nt: torch.cat(v) for nt, v in nxt.items()}
        empty = torch.zeros(0, dtype=torch.long)
        return HeteroSamplerOutput(
            node={nt: torch.cat(v) if v else empty for nt, v in nodes.items()},
            row={et: torch.cat(v) if v else empty for et, v in rows.items()},
            col={et: torch.cat(v) if v else empty for et, v in cols.items()},
            edge={et: torch.cat(v) if v else empty for et, v in eids.items()},
            batch=None,
        )


def make_loader(
    data, num_neighbors: dict, input_cells: Tensor, batch_size: int, shuffle: bool = True
) -> NeighborLoader:
    """A ``NeighborLoader`` over seed cells using :class:`TorchNeighborSampler`."""
    sampler = TorchNeighborSampler(data, num_neighbors=num_neighbors)
    return NeighborLoader(
        data,
        num_neighbors=num_neighbors,
        input_nodes=("cell", input_cells),
        batch_size=batch_size,
        shuffle=shuffle,
        neighbor_sampler=sampler,
    )
