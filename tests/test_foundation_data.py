"""foundation.data on real data: vocabulary, gene alignment, block iteration and the CountsStream."""

from __future__ import annotations

import logging
import shutil
import tracemalloc
import warnings

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from foundation import datasets
from foundation.data import (
    CountsStream,
    GeneVocab,
    align_genes,
    get_counts,
    iter_blocks,
    stream_collate,
    to_vocab_csr,
)
from foundation.errors import LowGeneMatchWarning


@pytest.fixture(scope="module")
def gencode():
    return GeneVocab.from_gencode()


@pytest.fixture(scope="module")
def half_vocab(pbmc3k):
    """A model vocabulary of every other pbmc3k gene, plus 50 GENCODE genes pbmc3k did not measure."""
    genes = list(pbmc3k.var_names[::2])
    present = set(pbmc3k.var_names)
    extra = [s for s in GeneVocab.from_gencode().symbols if s not in present and not s.startswith(("Y_", "U"))]
    extra = list(dict.fromkeys(extra))[:50]
    return GeneVocab.build(genes + extra), genes, extra


@pytest.fixture(scope="module")
def two_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    for name in ("pbmc3k", "kang_ifnb"):
        shutil.copy(datasets.dataset_path(name), d / datasets.dataset_path(name).name)
    return d


# ------------------------------------------------------------------------------------------- vocabulary
def test_gencode_vocab_lookup(gencode):
    assert len(gencode) == 62754
    i = gencode.index_of(["TP53"])[0]
    assert gencode.symbols[i] == "TP53" and gencode.ensembl_ids[i] == "ENSG00000141510"
    idx = gencode.index_of(["TP53", "ENSG00000141510", "ENSG00000141510.17", "tp53", "NOT_A_GENE", "ENSG00000000000"])
    assert idx.dtype == np.int64
    assert list(idx) == [i, i, i, -1, -1, -1]  # symbols are case-sensitive
    assert "TP53" in gencode and "ENSG00000141510.3" in gencode and "Trp53" not in gencode
    # a symbol with several Ensembl IDs: each ID finds its own row, the symbol finds the first
    rows = [k for k, s in enumerate(gencode.symbols) if s == "Y_RNA"]
    assert len(rows) > 100
    ids = [gencode.ensembl_ids[k] for k in rows[:3]]
    assert list(gencode.index_of(ids)) == rows[:3]
    assert gencode.index_of(["Y_RNA"])[0] == rows[0]


def test_vocab_build_and_json_roundtrip(tmp_path):
    v = GeneVocab.build(["CD3E", "MS4A1", "ENSG00000141510.17", "MY_CUSTOM_GENE"])
    assert v.symbols == ["CD3E", "MS4A1", "TP53", "MY_CUSTOM_GENE"]
    assert v.ensembl_ids[2] == "ENSG00000141510"
    assert v.ensembl_ids[0].startswith("ENSG") and v.ensembl_ids[3] == ""
    # an Ensembl ID maps through its GENCODE symbol even where the vocabulary stores the symbol only
    assert list(v.index_of(["ENSG00000141510", v.ensembl_ids[0], "cd3e"])) == [2, 0, -1]
    p = tmp_path / "vocab.json"
    v.to_json(p)
    w = GeneVocab.from_json(p)
    assert w == v and len(w) == 4 and w.ensembl_ids == v.ensembl_ids
    assert w != GeneVocab.build(["CD3E", "MS4A1"])
    with pytest.raises(ValueError, match="duplicated"):
        GeneVocab.build(["CD3E", "CD3E"])
    p.write_text('{"symbols": ["A"], "n_genes": 3}')
    with pytest.raises(ValueError, match="truncated"):
        GeneVocab.from_json(p)


# -------------------------------------------------------------------------------------------- alignment
def test_alignment_half_vocab(pbmc3k, half_vocab, caplog):
    vocab, genes, extra = half_vocab
    with caplog.at_level(logging.INFO, logger="foundation"):
        with pytest.warns(LowGeneMatchWarning, match="50.0% of genes"):
            al = align_genes(pbmc3k, vocab)
    assert any("genes matched" in r.getMessage() and "50.0%" in r.getMessage() for r in caplog.records)
    assert al.n_matched == len(genes) == 6857
    assert al.gene_match_rate == pytest.approx(len(genes) / pbmc3k.n_vars)
    # count match rate = share of all UMIs that fall on the matched genes
    X = pbmc3k.X
    expected = X[:, ::2].sum() / X.sum()
    assert al.count_match_rate == pytest.approx(expected, rel=1e-6)
    assert 0.3 < al.count_match_rate < 0.7
    # matched vars point at their own symbol; unmatched are -1
    assert list(al.var_index[::2]) == list(range(len(genes)))
    assert np.all(al.var_index[1::2] == -1)
    # genes of the vocabulary that pbmc3k did not measure are flagged, not zero-filled
    assert al.measured.shape == (len(vocab),)
    assert al.measured[: len(genes)].all()
    assert not al.measured[len(genes):].any() and len(extra) == 50
    assert al.unmatched_examples[0] == pbmc3k.var_names[1]


def test_alignment_by_ensembl_ids(pbmc3k, half_vocab):
    """A dataset whose var_names are versioned Ensembl IDs aligns to a symbol vocabulary like its symbols."""
    vocab, _, _ = half_vocab
    gencode = GeneVocab.from_gencode()
    sym_idx = gencode.index_of(pbmc3k.var_names)
    gencode_ids = gencode.ensembl_ids
    ids = [f"{gencode_ids[i]}.5" if i >= 0 else name for i, name in zip(sym_idx, pbmc3k.var_names)]
    a = ad.AnnData(X=pbmc3k.X, obs=pbmc3k.obs[[]], var={"symbol": list(pbmc3k.var_names)})
    a.var_names = ids
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LowGeneMatchWarning)
        by_id = align_genes(a, vocab)
        by_sym = align_genes(pbmc3k, vocab)
        by_key = align_genes(a, vocab, var_key="symbol")
    ok = sym_idx >= 0
    np.testing.assert_array_equal(by_id.var_index[ok], by_sym.var_index[ok])
    assert by_id.n_by_ensembl > 5000
    np.testing.assert_array_equal(by_key.var_index, by_sym.var_index)


def test_to_vocab_csr_values(pbmc3k, half_vocab):
    vocab, genes, _ = half_vocab
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LowGeneMatchWarning)
        al = align_genes(pbmc3k, vocab)
    counts = get_counts(pbmc3k)
    V = to_vocab_csr(counts, al)
    assert V.shape == (pbmc3k.n_obs, len(vocab)) and V.dtype == np.float32
    rows = [0, 7, 1000, 2637]
    np.testing.assert_array_equal(V[rows][:, : len(genes)].toarray(), counts[rows][:, ::2].toarray())
    assert V[:, len(genes):].nnz == 0
    # two vars mapping to one vocabulary gene are summed
    two = to_vocab_csr(counts[:, :2], np.array([0, 0]), n_vocab=1)
    np.testing.assert_array_equal(two.toarray().ravel(), np.asarray(counts[:, :2].sum(axis=1)).ravel())


# ----------------------------------------------------------------------------------------- iter_blocks
def test_iter_blocks_backed_equals_in_memory(pbmc3k, gencode):
    path = datasets.dataset_path("pbmc3k")
    backed = ad.read_h5ad(path, backed="r")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LowGeneMatchWarning)
            mem_blocks = list(iter_blocks(pbmc3k, gencode, block_size=700))
            bk_blocks = list(iter_blocks(backed, gencode, block_size=700))
    finally:
        backed.file.close()
    assert [b.n_obs for b in mem_blocks] == [700, 700, 700, 538]
    assert [b.n_obs for b in bk_blocks] == [700, 700, 700, 538]
    M = sp.vstack([b.counts for b in mem_blocks], format="csr")
    B = sp.vstack([b.counts for b in bk_blocks], format="csr")
    assert M.shape == B.shape == (2638, 62754)
    assert M.nnz == B.nnz and M.sum() == B.sum()
    for r in (0, 1, 699, 700, 2637):
        np.testing.assert_array_equal(M[r].toarray(), B[r].toarray())
    assert (M != B).nnz == 0
    # the block keeps all the counts of matched genes (96% of UMIs for pbmc3k vs GENCODE v44)
    assert M.sum() / pbmc3k.X.sum() == pytest.approx(0.96, abs=0.01)
    names = [n for b in bk_blocks for n in b.obs_names]
    assert names == list(pbmc3k.obs_names)
    assert bk_blocks[0].measured.sum() == 11481
    assert str(path) in bk_blocks[0].source


# ----------------------------------------------------------------------------------------- CountsStream
def _collect(stream):
    seen = []
    for b in stream:
        seen.extend((b.source.split("/")[-1], int(i)) for i in b.obs_index)
    return seen


def test_stream_covers_each_cell_once_with_exact_counts(two_files, half_vocab, pbmc3k):
    vocab, _, _ = half_vocab
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LowGeneMatchWarning)
        stream = CountsStream(two_files, vocab, block_size=300, seed=1)
        kang = datasets.kang_ifnb()
        reference = {
            "pbmc3k_counts.h5ad": to_vocab_csr(get_counts(pbmc3k), align_genes(pbmc3k, vocab)),
            "kang_ifnb_pbmc_subset_counts.h5ad": to_vocab_csr(get_counts(kang), align_genes(kang, vocab)),
        }
    assert stream.n_cells == 2638 + 600
    assert stream.n_blocks == 9 + 2 and len(stream) == 11
    seen = []
    for block in stream:
        name = block.source.split("/")[-1]
        assert block.counts.shape == (block.n_obs, len(vocab))
        # rows (shuffled within the block) carry exactly the counts of the cells they name
        ref = reference[name][block.obs_index]
        assert (block.counts != ref).nnz == 0
        src_names = pbmc3k.obs_names if name.startswith("pbmc") else kang.obs_names
        assert block.obs_names == list(src_names[block.obs_index])
        seen.extend((name, int(i)) for i in block.obs_index)
    assert len(seen) == len(set(seen)) == 3238
    assert {i for n, i in seen if n.startswith("pbmc")} == set(range(2638))
    # rows within blocks were shuffled
    first = next(iter(stream))
    assert not np.all(np.diff(first.obs_index) == 1)


def test_stream_shards_and_seeds(two_files, half_vocab):
    vocab, _, _ = half_vocab
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LowGeneMatchWarning)
        r0 = CountsStream(two_files, vocab, block_size=200, seed=3, rank=0, world_size=2)
        r1 = CountsStream(two_files, vocab, block_size=200, seed=3, rank=1, world_size=2)
        other_seed = CountsStream(two_files, vocab, block_size=200, seed=4)
        same_seed = CountsStream(two_files, vocab, block_size=200, seed=3)
    s0, s1 = _collect(r0), _collect(r1)
    assert set(s0).isdisjoint(s1)
    assert len(s0) + len(s1) == 3238 and len(set(s0) | set(s1)) == 3238
    assert (len(r0), len(r1)) == (9, 8) and r0.n_blocks == 17  # 14 pbmc3k + 3 kang blocks, dealt in turn
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LowGeneMatchWarning)
        even = [CountsStream(two_files, vocab, block_size=200, seed=3, rank=r, world_size=2, even_shards=True)
                for r in (0, 1)]
    e0, e1 = (sum(1 for _ in st) for st in even)
    assert e0 == e1 == 8
    a, b = _collect(same_seed), _collect(same_seed)
    assert a == b  # reproducible
    c = _collect(other_seed)
    assert sorted(c) == sorted(a) and c != a
    same_seed.set_epoch(1)
    d = _collect(same_seed)
    assert sorted(d) == sorted(a) and d != a
    # without shuffling the stream is file order
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LowGeneMatchWarning)
        ordered = CountsStream(two_files, vocab, block_size=200, shuffle=False)
    e = _collect(ordered)
    assert e[:600] == [("kang_ifnb_pbmc_subset_counts.h5ad", i) for i in range(600)]  # sorted folder listing
    assert e[600:] == [("pbmc3k_counts.h5ad", i) for i in range(2638)]


def test_stream_dataloader_workers(two_files, half_vocab):
    import torch
    from torch.utils.data import DataLoader

    vocab, _, _ = half_vocab
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LowGeneMatchWarning)
        stream = CountsStream(two_files, vocab, block_size=400, seed=0)
    loader = DataLoader(stream, batch_size=None, num_workers=2, collate_fn=stream_collate)
    seen = []
    for block in loader:
        x, m = block.to_torch()
        assert x.shape == (block.n_obs, len(vocab)) and m.dtype == torch.bool
        assert float(x.sum()) == pytest.approx(block.counts.sum())
        seen.extend((block.source, int(i)) for i in block.obs_index)
    assert len(seen) == len(set(seen)) == 3238


def test_stream_memory_bounded(two_files, half_vocab, monkeypatch):
    """Iterating never densifies or loads a whole matrix: no large toarray, small peak allocation."""
    vocab, _, _ = half_vocab
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LowGeneMatchWarning)
        stream = CountsStream(two_files, vocab, block_size=64, seed=0)
    biggest = [0]
    for cls in (sp.csr_matrix, sp.csc_matrix, sp.coo_matrix):
        orig = cls.toarray

        def spy(self, *args, _orig=orig, **kwargs):
            biggest[0] = max(biggest[0], self.shape[0])
            return _orig(self, *args, **kwargs)

        monkeypatch.setattr(cls, "toarray", spy)
    full = ad.read_h5ad(datasets.dataset_path("pbmc3k"))
    full_bytes = full.X.data.nbytes + full.X.indices.nbytes  # the in-memory sparse matrix, ~18 MB
    del full
    tracemalloc.start()
    try:
        n = sum(b.n_obs for b in stream)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n == 3238
    assert biggest[0] <= 64
    assert peak < full_bytes / 3, f"peak {peak / 1e6:.1f} MB vs whole sparse matrix {full_bytes / 1e6:.1f} MB"
