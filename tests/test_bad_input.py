"""Every bad input gets a clear error that names the problem and the fix (real pbmc3k, broken on purpose)."""

from __future__ import annotations

import os
import shutil
import warnings

import numpy as np
import pytest
import scanpy as sc
import scipy.sparse as sp

from foundation import datasets
from foundation.data import (
    CountsStream,
    GeneVocab,
    align_genes,
    check_nonempty_cells,
    check_unique_genes,
    get_counts,
    iter_blocks,
    read_h5ad,
    validate_anndata,
)
from foundation.errors import (
    CorruptFileError,
    CountsValidationError,
    DuplicateGenesError,
    EmptyCellsError,
    LowGeneMatchWarning,
    VocabularyMismatchError,
)


@pytest.fixture(scope="module")
def vocab():
    return GeneVocab.from_gencode()


def test_good_input_passes(pbmc3k):
    counts = validate_anndata(pbmc3k)
    assert counts.shape == pbmc3k.shape and counts.dtype == np.float32 and counts.format == "csr"
    assert counts.sum() == pbmc3k.X.sum()
    dense = pbmc3k[:100].copy()
    dense.X = dense.X.toarray().astype(np.int64)  # dense integer input is converted
    out = get_counts(dense)
    assert sp.isspmatrix_csr(out) and out.dtype == np.float32 and out.sum() == dense.X.sum()


def test_log_normalised(pbmc3k):
    a = pbmc3k.copy()
    a.layers["counts"] = a.X.copy()
    sc.pp.normalize_total(a, target_sum=1e4)
    sc.pp.log1p(a)
    with pytest.raises(CountsValidationError, match="log-normalised") as e:
        get_counts(a)
    msg = str(e.value)
    assert "layer='counts'" in msg and "max " in msg and "raw UMI counts" in msg
    assert "available layers: ['counts']" in msg
    # and the fix works
    assert get_counts(a, layer="counts").sum() == pbmc3k.X.sum()


def test_normalised_without_log(pbmc3k):
    a = pbmc3k.copy()
    sc.pp.normalize_total(a, target_sum=1e4)
    with pytest.raises(CountsValidationError, match="normalised to a fixed total per cell") as e:
        get_counts(a)
    assert "10000" in str(e.value) and "normalize_total" in str(e.value)


def test_nan(pbmc3k):
    a = pbmc3k.copy()
    row = 1234
    a.X.data[a.X.indptr[row] + 3] = np.nan
    with pytest.raises(CountsValidationError, match="1 NaN") as e:
        get_counts(a)
    assert a.obs_names[row] in str(e.value) and "finite" in str(e.value)


def test_inf_in_backed_file(pbmc3k, tmp_path):
    a = pbmc3k[:300].copy()
    a.X.data[-1] = np.inf
    p = tmp_path / "inf.h5ad"
    a.write_h5ad(p)
    backed = read_h5ad(p, backed="r")
    try:
        with pytest.raises(CountsValidationError, match="1 infinite"):
            get_counts(backed)
    finally:
        backed.file.close()
    with pytest.raises(CountsValidationError, match="inf.h5ad"):
        CountsStream([p], GeneVocab.from_gencode())


def test_negative_values(pbmc3k):
    a = pbmc3k.copy()
    a.X.data[500] = -3
    with pytest.raises(CountsValidationError, match=r"1 negative value\(s\) \(min -3\)") as e:
        get_counts(a)
    assert "counts cannot be negative" in str(e.value)


def test_scaled(pbmc3k):
    a = pbmc3k[:, :2000].copy()
    a.X = a.X.toarray()
    sc.pp.normalize_total(a)
    sc.pp.log1p(a)
    sc.pp.scale(a, max_value=10)
    with pytest.raises(CountsValidationError, match="scaled / z-scored") as e:
        get_counts(a)
    assert "sc.pp.scale" in str(e.value) and "layer='counts'" in str(e.value)


def test_duplicate_genes(pbmc3k):
    a = pbmc3k[:, :500].copy()
    names = list(a.var_names)
    names[10] = names[20] = names[30] = "CD3E"
    a.var_names = names
    with pytest.raises(DuplicateGenesError, match="'CD3E' x3") as e:
        check_unique_genes(a)
    assert "var_names_make_unique()" in str(e.value)
    with pytest.raises(DuplicateGenesError):
        validate_anndata(a)


def test_cells_with_no_counts(pbmc3k):
    a = pbmc3k[:400].copy()
    X = a.X.tolil()
    X[[3, 50, 51], :] = 0
    a.X = X.tocsr()
    a.X.eliminate_zeros()
    with pytest.raises(EmptyCellsError, match="3 of 400 cells have zero total counts") as e:
        check_nonempty_cells(a)
    assert "sc.pp.filter_cells(adata, min_counts=1)" in str(e.value)
    assert a.obs_names[3] in str(e.value)
    with pytest.raises(EmptyCellsError):
        validate_anndata(a)


def test_no_vocabulary_overlap(pbmc3k, vocab):
    a = pbmc3k[:200].copy()
    a.var_names = [f"gene_{i}" for i in range(a.n_vars)]
    with pytest.raises(VocabularyMismatchError, match=r"gene match rate 0.0%") as e:
        align_genes(a, vocab)
    msg = str(e.value)
    assert "count match rate 0.0%" in msg and "gene_0" in msg and "var_key" in msg and "Ensembl" in msg
    with pytest.raises(VocabularyMismatchError):
        list(iter_blocks(a, vocab))


def test_low_overlap_below_floor(pbmc3k, vocab):
    a = pbmc3k[:200].copy()
    names = list(a.var_names)
    keep = len(names) // 10  # 10% of genes keep their symbol
    a.var_names = names[:keep] + [f"gene_{i}" for i in range(len(names) - keep)]
    with pytest.raises(VocabularyMismatchError, match=r"gene match rate [0-9.]+%.*floor is 20%"):
        align_genes(a, vocab)
    # a lower floor lets it through with a warning
    with pytest.warns(LowGeneMatchWarning):
        al = align_genes(a, vocab, min_match=0.05)
    assert 0.05 < al.gene_match_rate < 0.11


def test_mouse_genes_get_species_hint(vocab):
    a = datasets.pancreas_mouse()
    with pytest.raises(VocabularyMismatchError, match="mouse symbols"):
        align_genes(a, vocab)


def test_corrupt_file(tmp_path, vocab):
    p = tmp_path / "broken.h5ad"
    p.write_bytes(np.random.default_rng(0).bytes(8192))
    with pytest.raises(CorruptFileError, match="broken.h5ad") as e:
        read_h5ad(p)
    assert str(p) in str(e.value) and "write_h5ad" in str(e.value)
    folder = tmp_path / "corpus"
    folder.mkdir()
    shutil.copy(datasets.dataset_path("kang_ifnb"), folder / "kang.h5ad")
    shutil.copy(p, folder / "zz_broken.h5ad")
    with pytest.raises(CorruptFileError, match="zz_broken.h5ad"):
        CountsStream(folder, vocab)


def test_truncated_file(tmp_path, vocab):
    src = datasets.dataset_path("kang_ifnb")
    p = tmp_path / "truncated.h5ad"
    p.write_bytes(src.read_bytes()[: os.path.getsize(src) // 2])
    with pytest.raises(CorruptFileError, match="truncated.h5ad"):
        read_h5ad(p)
    with pytest.raises(CorruptFileError, match="truncated.h5ad"):
        CountsStream([p], vocab)


def test_missing_layer(pbmc3k, vocab):
    a = pbmc3k[:100].copy()
    a.layers["spliced"] = a.X.copy()
    with pytest.raises(KeyError) as e:
        get_counts(a, layer="counts")
    msg = str(e.value)
    assert "layer 'counts' not found" in msg and "['spliced']" in msg and "layer=None" in msg
    with pytest.raises(KeyError, match="available layers"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LowGeneMatchWarning)
            list(iter_blocks(a, vocab, layer="counts"))


def test_missing_file_and_var_key(pbmc3k, vocab, tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.h5ad"):
        CountsStream([tmp_path / "nothing.h5ad"], vocab)
    with pytest.raises(KeyError, match="var_key 'gene_ids' not found"):
        align_genes(pbmc3k, vocab, var_key="gene_ids")


def test_stream_file_with_log_normalised_x(pbmc3k, vocab, tmp_path):
    """A corpus file holding log-normalised X: the stream names the file and the layer fix works."""
    import pickle

    a = pbmc3k[:300].copy()
    a.layers["counts"] = a.X.copy()
    sc.pp.normalize_total(a, target_sum=1e4)
    sc.pp.log1p(a)
    p = tmp_path / "lognorm.h5ad"
    a.write_h5ad(p)
    with pytest.raises(CountsValidationError, match="looks log-normalised") as e:
        CountsStream([p], vocab)
    assert "lognorm.h5ad" in str(e.value) and "['counts']" in str(e.value)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LowGeneMatchWarning)
        stream = CountsStream([p], vocab, layer="counts", block_size=128)
    total = sum(b.counts.sum() for b in pickle.loads(pickle.dumps(stream)))  # picklable for spawned workers
    assert total == pytest.approx(a.layers["counts"][:, vocab.index_of(a.var_names) >= 0].sum())
    with pytest.raises(KeyError, match="layer 'raw' not found"):
        CountsStream([p], vocab, layer="raw")
