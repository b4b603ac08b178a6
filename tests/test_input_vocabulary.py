"""Issue 11 item 1: the full GENCODE v44 vocabulary, untrained genes marked and reported (never used),
HTSeq summary rows dropped; count match on every human raw-count file of the shared data."""

import warnings

import anndata as ad
import numpy as np
import pytest

import foundation
from foundation.data import drop_counter_rows, full_vocabulary, gencode_table
from foundation.data.coverage import file_coverage
from foundation.datasets import shared_data_dir
from foundation.errors import UntrainedGenesWarning

ROOT = shared_data_dir()
MOUSE = ("pancreas_mouse_bastidas_ponce_counts.h5ad", "bastidas_ponce2019_mouse_pancreas_3696.h5ad")


@pytest.fixture(scope="module")
def model():
    return foundation.load_pretrained()


def test_full_vocabulary_is_gencode_with_untrained_mask(model):
    full, untrained = full_vocabulary(model.vocab)
    df = gencode_table()
    assert len(full) >= len(df) == 62_754
    assert len(set(full.ensembl_ids[: len(df)])) == len(df)  # one row per Ensembl ID, versions stripped
    assert (~untrained).sum() >= 0.95 * len(model.vocab) and untrained.sum() > 40_000
    dup = df[df["symbol"].duplicated(keep=False)].groupby("symbol")["ensembl_id"].apply(list).iloc[0]
    assert len({int(full.index_of([e])[0]) for e in dup}) == len(dup)  # duplicated symbol told apart by ID
    assert not untrained[int(full.index_of(["LYZ"])[0])]


def test_every_human_file_matches_95_percent_of_counts(model):
    rows = [file_coverage(p, model.vocab, ROOT) for p in sorted(ROOT.rglob("*.h5ad")) if p.name not in MOUSE]
    assert len(rows) >= 25
    low = {r["file"]: round(r["full_share"], 3) for r in rows if r["full_share"] < 0.95}
    assert not low, low
    darmanis = next(r for r in rows if "darmanis" in r["file"])
    assert darmanis["counter_share"] > 0.7  # the HTSeq rows held most of its counts


def test_htseq_rows_dropped_with_message():
    a = ad.read_h5ad(ROOT / "corpus" / "darmanis2015_brain.h5ad")
    with pytest.warns(UserWarning, match=r"HTSeq-count summary rows .*no_feature.*7\d\.\d% of the counts"):
        dropped = drop_counter_rows(a)
    assert {"no_feature", "ambiguous", "alignment_not_unique"} <= set(dropped)
    assert not any(n in a.var_names for n in dropped) and a.n_vars == 22_088 - len(dropped)


def test_untrained_genes_reported_and_not_used(model):
    a = ad.read_h5ad(ROOT / "corpus" / "moncada2020_pdac_card.h5ad")[:300].copy()
    with pytest.warns(UntrainedGenesWarning, match="untrained by this checkpoint"):
        model.embed(a, progress=False)
    u = a.var["cellvq_untrained"].to_numpy(bool)
    info = a.uns["cellvq_vocabulary"]
    assert u.sum() == info["n_untrained"] > 1000 and 0.05 < info["untrained_count_share"] < 0.5
    assert a.uns["cellvq"]["n_untrained_genes"] == u.sum() and not a.var["cellvq_in_vocab"][u].any()
    b = a[:, ~u].copy()  # the same cells without their untrained genes embed identically
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.embed(b, progress=False)
    np.testing.assert_allclose(b.obsm["X_cellvq"], a.obsm["X_cellvq"], atol=1e-5)
    assert b.uns["cellvq_vocabulary"]["n_untrained"] == 0
