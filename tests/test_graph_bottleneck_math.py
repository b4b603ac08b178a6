"""The attention bottleneck's math on small synthetic inputs: segment sparsemax and the gene pool."""

from __future__ import annotations

import torch

from cellvq_graph.nn.conv import GeneAttentionPool
from cellvq_graph.nn.sparsemax import segment_sparsemax


def _reference_sparsemax(z: torch.Tensor) -> torch.Tensor:
    """Sparsemax of one vector by its definition (Martins & Astudillo 2016, algorithm 1)."""
    zs, _ = torch.sort(z, descending=True)
    k = torch.arange(1, z.numel() + 1, dtype=z.dtype)
    cum = zs.cumsum(0)
    kz = int(((1 + k * zs) > cum).sum())
    tau = (cum[kz - 1] - 1) / kz
    return torch.clamp(z - tau, min=0)


def test_segment_sparsemax_matches_the_definition_per_segment_and_head():
    g = torch.Generator().manual_seed(0)
    index = torch.randint(6, (40,), generator=g)
    index[index == 5] = 4  # segment 5 empty
    score = torch.randn(40, 3, generator=g) * 2
    p = segment_sparsemax(score, index, 6)
    for s in range(5):
        sel = index == s
        for h in range(3):
            assert torch.allclose(p[sel, h], _reference_sparsemax(score[sel, h]), atol=1e-6)
    sums = torch.zeros(6, 3).index_add_(0, index, p)
    assert torch.allclose(sums[:5], torch.ones(5, 3), atol=1e-5)
    assert (p == 0).any(), "with scores of this spread some coefficients must be exactly zero"


def test_segment_sparsemax_gradient_is_the_sparsemax_jacobian():
    z = torch.tensor([[1.5], [1.0], [-2.0], [0.9]], requires_grad=True)
    index = torch.zeros(4, dtype=torch.long)
    p = segment_sparsemax(z, index, 1)
    support = (p.detach() > 0).squeeze(1)
    w = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    (p * w).sum().backward()
    # d(sum w p)/dz_j = w_j - mean_{support} w for j in support, 0 outside
    expect = torch.where(support, w.squeeze(1) - w.squeeze(1)[support].mean(), torch.zeros(4))
    assert torch.allclose(z.grad.squeeze(1), expect, atol=1e-6)


def test_gene_pool_values_ignore_the_cell_and_alpha_sums_to_one():
    torch.manual_seed(0)
    pool = GeneAttentionPool(8, 2, heads=2)
    ei = torch.tensor([[0, 1, 2, 1, 3], [0, 0, 0, 1, 1]])
    xg, xc, ea = torch.randn(4, 8), torch.randn(2, 8), torch.randn(5, 2)
    z, alpha = pool(xg, xc, ei, ea)
    assert z.shape == (2, 8) and alpha.shape == (5, 2)
    sums = torch.zeros(2, 2).index_add_(0, ei[1], alpha)
    assert torch.allclose(sums, torch.ones(2, 2), atol=1e-5)
    # the cell's features move attention, but a cell attending to a single gene gets that gene's value
    one = torch.tensor([[2], [0]])
    z1, a1 = pool(xg, xc[:1], one, ea[:1])
    z2, _ = pool(xg, torch.randn(1, 8), one, ea[:1])
    assert torch.allclose(a1, torch.ones(1, 2)) and torch.allclose(z1, z2, atol=1e-6)


def test_gene_pool_rejects_unknown_options_by_name():
    import pytest

    with pytest.raises(ValueError, match="normaliser"):
        GeneAttentionPool(8, 2, normaliser="entmax")
    with pytest.raises(ValueError, match="query"):
        GeneAttentionPool(8, 2, query="state")
