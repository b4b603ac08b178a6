"""The real datasets: shapes, labels, raw counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from foundation import datasets


def _assert_raw_counts(adata):
    X = adata.X
    assert sp.issparse(X) and X.format == "csr" and X.dtype == np.float32
    assert X.nnz > 0
    assert np.all(X.data >= 0)
    assert np.all(X.data == np.rint(X.data))


def test_pbmc3k_shape_and_labels(pbmc3k):
    assert pbmc3k.shape == (2638, 13714)
    _assert_raw_counts(pbmc3k)
    counts = pbmc3k.obs["cell_type"].value_counts()
    assert counts.to_dict() == {
        "Naive CD4 T": 697, "Memory CD4 T": 483, "CD14+ Mono": 480, "B": 344, "CD8 T": 271,
        "FCGR3A+ Mono": 162, "NK": 155, "DC": 32, "Platelet": 14,
    }
    # counts agree with the published library sizes
    np.testing.assert_allclose(np.asarray(pbmc3k.X.sum(axis=1)).ravel(), pbmc3k.obs["nCount_RNA"].to_numpy())
    assert "CD3E" in pbmc3k.var_names and "MS4A1" in pbmc3k.var_names


def test_pbmc68k_counts_rebuilt_exactly():
    import scanpy as sc

    adata = datasets.pbmc68k()
    assert adata.shape == (700, 765)
    _assert_raw_counts(adata)
    assert adata.obs["bulk_labels"].nunique() == 10
    assert adata.obs["bulk_labels"].value_counts()["CD14+ Monocyte"] == 129
    rec = adata.uns["counts_recovery"]
    assert rec["frac_within_tol"] >= 0.999

    # independent check of the integrality claim, on scanpy's own copy
    src = sc.datasets.pbmc68k_reduced()
    raw = sp.csr_matrix(src.raw.X, dtype=np.float64)
    est = sp.csr_matrix(sp.diags(src.obs["n_counts"].to_numpy() / 1e4) @ raw.expm1())
    frac = np.mean(np.abs(est.data - np.rint(est.data)) <= 0.05)
    assert frac >= 0.999
    assert rec["frac_within_tol"] == pytest.approx(frac)
    assert list(adata.var_names) == list(src.raw.var_names)
    # the rebuilt counts are the rounded estimate, and library sizes match obs['n_counts'] closely
    np.testing.assert_array_equal(adata.X.toarray(), np.rint(est.toarray()).astype(np.float32))
    lib = np.asarray(adata.X.sum(axis=1)).ravel()
    # raw.X holds only the 765 kept genes, so a cell's counts over them are at most its n_counts
    assert np.all(lib <= src.obs["n_counts"].to_numpy() + 0.5)


def test_kang_conditions():
    adata = datasets.kang_ifnb()
    assert adata.shape == (600, 249)
    _assert_raw_counts(adata)
    assert adata.obs["condition"].value_counts().to_dict() == {"ctrl": 300, "stim": 300}
    isg15 = adata[:, "ISG15"].X.toarray().ravel()
    stim = (adata.obs["condition"] == "stim").to_numpy()
    # interferon response: ISG15 mean 0.9 in control vs 57 stimulated (README)
    assert isg15[~stim].mean() < 2 and isg15[stim].mean() > 30


def test_shared_datasets():
    ct = datasets.celltypist_sample()
    assert ct.shape == (559, 32786)
    _assert_raw_counts(ct)
    pap = datasets.papalexi_crispr()
    assert pap.shape == (20729, 299)
    assert pap.obs["perturbation"].nunique() == 26
    pan = datasets.pancreas_mouse()
    assert pan.shape == (739, 7192)
    _assert_raw_counts(pan)
    assert pan.obs["clusters"].nunique() == 8
    assert sp.issparse(pan.layers["unspliced"])


def test_pretraining_corpus_lists_human_files():
    paths = datasets.pretraining_corpus()
    names = sorted(p.name for p in paths)
    assert names == sorted([
        "pbmc3k_counts.h5ad", "celltypist_sample_counts.h5ad", "kang_ifnb_pbmc_subset_counts.h5ad",
        "papalexi_thp1_crispr_counts.h5ad",
    ])
    assert all(p.exists() and p.parent == datasets.shared_data_dir() for p in paths)
    assert not any("pancreas" in p.name for p in paths)


def test_shared_data_dir_env_and_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("CELLVQ_SHARED_DATA", str(tmp_path))
    assert datasets.shared_data_dir() == tmp_path
    missing = tmp_path / "nope"
    monkeypatch.setenv("CELLVQ_SHARED_DATA", str(missing))
    with pytest.raises(FileNotFoundError, match="nope"):
        datasets.shared_data_dir()
    with pytest.raises(FileNotFoundError, match="CELLVQ_SHARED_DATA"):
        datasets.celltypist_sample()
    # the bundled datasets do not need the shared folder
    assert datasets.dataset_path("kang_ifnb").parent == Path(datasets.FILES_DIR)
