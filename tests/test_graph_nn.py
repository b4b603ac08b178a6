"""CellVQ-Graph building blocks: the GATv2 layer (math on small synthetic graphs), the pure-torch
neighbour sampler and graph-construction errors (on the real PBMC 3k counts)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cellvq_graph.build import CELL_GENE, GENE_CELL, build_graph
from cellvq_graph.nn import HeteroGATv2Conv
from cellvq_graph.sampler import make_loader


def _bipartite(n_src=7, n_dst=5, n_edges=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    ei = torch.stack(
        [torch.randint(n_src, (n_edges,), generator=g), torch.randint(n_dst, (n_edges,), generator=g)]
    )
    return (
        ei,
        torch.randn(n_src, 6, generator=g),
        torch.randn(n_dst, 4, generator=g),
        torch.randn(n_edges, 2, generator=g),
    )


def test_gatv2_attention_is_a_softmax_per_destination():
    torch.manual_seed(0)
    ei, xs, xd, ea = _bipartite()
    conv = HeteroGATv2Conv((6, 4), 8, heads=3, edge_dim=2)
    out, (ei_out, alpha) = conv((xs, xd), ei, ea, return_attention_weights=True)
    assert out.shape == (5, 24)
    assert torch.equal(ei_out, ei)
    assert alpha.shape == (ei.size(1), 3)
    sums = torch.zeros(5, 3).index_add_(0, ei[1], alpha)
    has_in = torch.bincount(ei[1], minlength=5) > 0
    assert torch.allclose(sums[has_in], torch.ones_like(sums[has_in]), atol=1e-5)
    assert torch.all(out[~has_in] == conv.bias)  # no incoming edge: bias only


def test_gatv2_output_matches_manual_computation():
    torch.manual_seed(1)
    ei, xs, xd, ea = _bipartite(n_edges=12)
    conv = HeteroGATv2Conv((6, 4), 5, heads=2, edge_dim=2, concat=False)
    out, (_, alpha) = conv((xs, xd), ei, ea, return_attention_weights=True)
    H, C = 2, 5
    s = conv.lin_src(xs).view(-1, H, C)
    d = conv.lin_dst(xd).view(-1, H, C)
    e = conv.lin_edge(ea).view(-1, H, C)
    logits = (torch.nn.functional.leaky_relu(s[ei[0]] + d[ei[1]] + e, 0.2) * conv.att).sum(-1)
    expect = torch.zeros(5, H, C)
    for i in range(5):
        m = ei[1] == i
        if m.any():
            a = torch.softmax(logits[m], dim=0)
            assert torch.allclose(a, alpha[m], atol=1e-5)
            expect[i] = (a.unsqueeze(-1) * (s[ei[0][m]] + e[m])).sum(0)
    assert torch.allclose(out, expect.mean(1) + conv.bias, atol=1e-5)


def test_gatv2_gradients_reach_edge_attributes_and_require_them():
    ei, xs, xd, ea = _bipartite()
    conv = HeteroGATv2Conv((6, 4), 4, heads=2, edge_dim=2)
    ea = ea.clone().requires_grad_(True)
    conv((xs, xd), ei, ea).sum().backward()
    assert ea.grad is not None and ea.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="edge_attr"):
        conv((xs, xd), ei)


@pytest.fixture(scope="module")
def small_pbmc(pbmc3k):
    """Real PBMC 3k counts with a PCA stand-in for the foundation embedding (for graph mechanics only)."""
    from sklearn.decomposition import TruncatedSVD

    a = pbmc3k[:600].copy()
    X = a.X.astype(np.float32)
    svd = TruncatedSVD(16, random_state=0).fit(X)
    a.obsm["X_cellvq"] = svd.transform(X).astype(np.float32)
    a.varm["cellvq_gene"] = svd.components_.T.astype(np.float32)
    a.var["cellvq_in_vocab"] = np.asarray(X.sum(0)).ravel() > 0
    a.obs["cellvq_code"] = (a.obs["seurat_clusters"].astype(str) + "-0").astype("category")
    return a


def test_build_graph_errors_and_warnings(small_pbmc, pbmc3k):
    with pytest.raises(KeyError, match="CellVQ.embed"):
        build_graph(pbmc3k[:50].copy(), properties=("cell_type",))
    bad = small_pbmc.copy()
    bad.obs["barcode"] = bad.obs_names.astype(str)
    with pytest.raises(ValueError, match="barcode.*ID column"):
        build_graph(bad, properties=("cell_type", "barcode"))
    with pytest.warns(UserWarning, match=r"\['tissue', 'sex'\]"):
        data = build_graph(
            small_pbmc, properties=("cell_type", "tissue", "sex", "percent.mt"), n_genes=300, top_k=20
        )
    gi = data.graph_index
    assert gi.property_kinds == ["cell_type", "percent.mt"]
    assert len(gi.bins["percent.mt"]) >= 3  # numeric property binned into quantile bins
    assert all(v.startswith("[") for v in gi.categories["percent.mt"])
    # every cell has exactly one value per property kind, and reverse edges mirror forward edges
    assert data["cell", "has", "property"].edge_index.size(1) == 2 * small_pbmc.n_obs
    for fwd, rev in [(CELL_GENE, GENE_CELL), (("cell", "in", "state"), ("state", "contains", "cell"))]:
        assert torch.equal(data[fwd].edge_index, data[rev].edge_index.flip(0))
    deg = torch.bincount(data[CELL_GENE].edge_index[0], minlength=small_pbmc.n_obs)
    assert int(deg.max()) == 20
    # the kept genes are each cell's most expressed graph genes
    cell = 3
    genes = data[CELL_GENE].edge_index[1][data[CELL_GENE].edge_index[0] == cell]
    pos = small_pbmc.var_names.get_indexer([gi.genes[i] for i in range(len(gi.genes))])
    row = np.asarray(small_pbmc.X[cell].todense()).ravel()[pos]
    assert row[genes.numpy()].min() >= np.sort(row)[-20]


def test_neighbor_loader_minibatches_are_real_bounded_subgraphs(small_pbmc):
    data = build_graph(small_pbmc, properties=("cell_type",), n_genes=300, top_k=20)
    nn = {et: ([-1, 0] if et[2] == "cell" else [0, 5]) for et in data.edge_types}
    loader = make_loader(data, nn, torch.arange(small_pbmc.n_obs), batch_size=64, shuffle=False)
    batch = next(iter(loader))
    assert batch["cell"].batch_size == 64
    seeds = batch["cell"].n_id[:64]
    assert torch.equal(seeds, torch.arange(64))
    full = data[GENE_CELL].edge_index
    full_keys = set((full[0] * 10**6 + full[1]).tolist())
    ei = batch[GENE_CELL].edge_index
    keys = batch["gene"].n_id[ei[0]] * 10**6 + batch["cell"].n_id[ei[1]]
    assert set(keys.tolist()) <= full_keys
    # hop 0 takes all genes of every seed cell
    assert int((ei[1] < 64).sum()) == int(torch.isin(full[1], seeds).sum())
    # edge attributes follow their edges
    idx = {k: i for i, k in enumerate((full[0] * 10**6 + full[1]).tolist())}
    rows = torch.tensor([idx[k] for k in keys.tolist()])
    assert torch.equal(batch[GENE_CELL].edge_attr, data[GENE_CELL].edge_attr[rows])
    # hop 1: at most 5 cells into each gene
    cg = batch[CELL_GENE].edge_index
    if cg.numel():
        assert int(torch.bincount(cg[1]).max()) <= 5
