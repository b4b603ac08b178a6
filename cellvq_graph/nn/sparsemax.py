"""Softmax and sparsemax normalised over the incoming edges of each destination node."""

from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.utils import softmax, to_dense_batch

__all__ = ["segment_sparsemax", "segment_normalise"]


def segment_sparsemax(score: Tensor, index: Tensor, num_segments: int) -> Tensor:
    r"""Sparsemax (Martins & Astudillo, ICML 2016) of ``score [E, H]`` over the edges sharing ``index``.

    Per segment and column: :math:`p = \max(z - \tau, 0)` with :math:`\tau` chosen so that :math:`\sum p = 1`;
    coefficients below the threshold are exactly zero, so a node has to choose among its neighbours. The
    gradient is the exact sparsemax Jacobian (the support is piecewise constant).
    """
    if score.numel() == 0:
        return score
    perm = torch.argsort(index, stable=True)
    fill = float(score.detach().min()) - 1e3
    dense, present = to_dense_batch(score[perm], index[perm], fill_value=fill, batch_size=num_segments)
    z_sorted, _ = torch.sort(dense, dim=1, descending=True)  # [N, D, H]
    k = torch.arange(1, dense.size(1) + 1, device=score.device, dtype=score.dtype).view(1, -1, 1)
    cum = z_sorted.cumsum(dim=1)
    support = (1 + k * z_sorted) > cum
    k_max = support.sum(dim=1, keepdim=True).clamp_min(1)  # [N, 1, H]
    tau = (cum.gather(1, k_max - 1) - 1) / k_max.to(score.dtype)
    p_dense = torch.clamp(dense - tau, min=0)
    out = torch.empty_like(score)
    out[perm] = p_dense[present]
    return out


def segment_normalise(score: Tensor, index: Tensor, num_segments: int, kind: str) -> Tensor:
    """``"sparsemax"`` or ``"softmax"`` of ``score`` over each destination's incoming edges."""
    if kind == "sparsemax":
        return segment_sparsemax(score, index, num_segments)
    if kind == "softmax":
        return softmax(score, index, num_nodes=num_segments)
    raise ValueError(f"attention normaliser must be 'sparsemax' or 'softmax', not {kind!r}")
