"""Zero-shot tasks on real data, with the scanpy PCA baseline as the representation.

Thresholds sit a little below the figures measured on this data (recorded next to each assert), so a
regression in any task fails the test.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from foundation import datasets, tasks

REP = "X_pca_baseline"


@pytest.fixture(scope="module")
def pbmc_pca(pbmc3k):
    adata = pbmc3k.copy()  # never write into the shared session fixture
    tasks.pca_baseline(adata)
    return adata


@pytest.fixture(scope="module")
def kang_pca():
    adata = datasets.kang_ifnb()
    tasks.pca_baseline(adata, n_comps=20)
    return adata


def test_pca_baseline_writes_only_obsm(pbmc3k, pbmc_pca):
    emb = pbmc_pca.obsm[REP]
    assert emb.shape == (2638, 50) and emb.dtype == np.float32
    assert np.isfinite(emb).all()
    # the counts were not touched (work happens on a copy)
    assert pbmc_pca.X.sum() == pbmc3k.X.sum() and pbmc_pca.var_names.equals(pbmc3k.var_names)
    assert set(pbmc_pca.obsm.keys()) == {REP}


def test_leiden_recovers_cell_types(pbmc_pca):
    res = tasks.best_leiden_scores(pbmc_pca, use_rep=REP, label_key="cell_type")
    table = res["per_resolution"]
    assert list(table["resolution"]) == [0.3, 0.5, 0.8, 1.0, 1.5]
    # measured: ARI 0.547 / 0.605 / 0.644 / 0.672 / 0.597, NMI 0.74-0.80 (8 clusters at 1.0)
    assert res["default"]["resolution"] == 1.0
    assert res["default"]["ari"] > 0.6 and res["default"]["nmi"] > 0.72
    assert res["oracle"]["ari"] == pytest.approx(table["ari"].max())
    assert res["oracle"]["ari"] >= res["default"]["ari"]
    assert (table["ari"] > 0.5).all()
    # more resolution -> more clusters
    assert table["n_clusters"].is_monotonic_increasing and table["n_clusters"].iloc[-1] > table["n_clusters"].iloc[0]
    assert pbmc_pca.obs["cellvq_leiden"].nunique() == res["default"]["n_clusters"]
    s = tasks.cluster_scores(pbmc_pca, "cell_type", "cellvq_leiden")
    assert s["ari"] == pytest.approx(res["default"]["ari"])
    # a shuffled clustering scores near zero: the metric can fail
    rng = np.random.default_rng(0)
    pbmc_pca.obs["_shuffled"] = rng.permutation(pbmc_pca.obs["cellvq_leiden"].to_numpy())
    assert abs(tasks.cluster_scores(pbmc_pca, "cell_type", "_shuffled")["ari"]) < 0.02
    del pbmc_pca.obs["_shuffled"]


def test_label_transfer_between_halves(pbmc_pca):
    rng = np.random.default_rng(0)
    ref_mask = rng.random(pbmc_pca.n_obs) < 0.5
    ref, query = pbmc_pca[ref_mask].copy(), pbmc_pca[~ref_mask].copy()
    out = tasks.transfer_labels(ref, query, "cell_type", use_rep=REP, method="knn", k=15)
    assert list(out.columns) == ["predicted", "confidence"] and out.index.equals(query.obs_names)
    assert ((out["confidence"] > 0) & (out["confidence"] <= 1)).all()
    assert "cell_type_cellvq_pred" in query.obs and "cell_type_cellvq_conf" in query.obs
    f1_knn = tasks.macro_f1(query.obs["cell_type"], query.obs["cell_type_cellvq_pred"])
    acc = np.mean(query.obs["cell_type"].astype(str).to_numpy() == out["predicted"].to_numpy())
    # measured: kNN macro-F1 0.889 (accuracy 0.853); logreg macro-F1 0.925
    assert f1_knn > 0.8 and acc > 0.8
    out_lr = tasks.transfer_labels(ref, query, "cell_type", use_rep=REP, method="logreg")
    assert tasks.macro_f1(query.obs["cell_type"], out_lr["predicted"]) > 0.85
    # confident predictions are more often right
    right = out["predicted"].to_numpy() == query.obs["cell_type"].astype(str).to_numpy()
    assert out["confidence"][right].mean() > out["confidence"][~right].mean()
    # transferring shuffled labels is no better than chance
    ref.obs["shuffled"] = rng.permutation(ref.obs["cell_type"].to_numpy())
    bad = tasks.transfer_labels(ref, query, "shuffled", use_rep=REP)
    assert tasks.macro_f1(query.obs["cell_type"], bad["predicted"]) < 0.3


def test_macro_f1_definition():
    assert tasks.macro_f1(["a", "a", "b", "b"], ["a", "a", "b", "b"]) == 1.0
    # class b: precision 1, recall 0.5 -> F1 2/3; class a: precision 2/3, recall 1 -> 0.8
    assert tasks.macro_f1(["a", "a", "b", "b"], ["a", "a", "a", "b"]) == pytest.approx((2 / 3 + 0.8) / 2)


def test_predict_property(pbmc_pca):
    res = tasks.predict_property(pbmc_pca, "cell_type", use_rep=REP, cv=5, seed=0)
    # measured: accuracy 0.919, macro-F1 0.929
    assert res["kind"] == "categorical" and res["n_classes"] == 9
    assert res["accuracy"] > 0.88 and res["macro_f1"] > 0.85
    assert len(res["per_fold"]) == 5 and all(f["accuracy"] > 0.85 for f in res["per_fold"])
    assert pbmc_pca.uns["cellvq_property"]["cell_type"]["accuracy"] == res["accuracy"]
    # numeric: library size from the embedding (measured r2 0.72, pearson 0.85)
    num = tasks.predict_property(pbmc_pca, "nCount_RNA", use_rep=REP)
    assert num["kind"] == "numeric" and num["r2"] > 0.5 and num["pearson"] > 0.75


def test_predict_property_refuses_useless_keys(pbmc_pca):
    a = pbmc_pca.copy()
    a.obs["constant"] = "x"
    a.obs["barcode"] = a.obs_names.astype(str)
    with pytest.raises(ValueError, match="single value"):
        tasks.predict_property(a, "constant", use_rep=REP)
    with pytest.raises(ValueError, match="one per cell"):
        tasks.predict_property(a, "barcode", use_rep=REP)
    with pytest.raises(KeyError, match="available columns"):
        tasks.predict_property(a, "no_such_column", use_rep=REP)
    with pytest.raises(KeyError, match="pca_baseline"):
        tasks.predict_property(a, "cell_type", use_rep="X_cellvq")


def test_perturbation_effects_kang(kang_pca):
    df = tasks.perturbation_effects(kang_pca, "condition", control="ctrl", use_rep=REP, n_perm=200, seed=0)
    assert list(df.index) == ["stim"]
    row = df.loc["stim"]
    # measured: p = 1/201 (no permutation reaches the observed energy distance), shift 4.8 PCs units
    assert row["pvalue"] < 0.05 and row["n_cells"] == 300 and row["n_control"] == 300
    assert row["shift"] > 2 and row["energy_distance"] > 0.5
    assert isinstance(kang_pca.uns["cellvq_perturbation"], pd.DataFrame)


def test_perturbation_negative_control(kang_pca):
    """A random split of control cells is not a perturbation: not significant."""
    a = kang_pca.copy()
    rng = np.random.default_rng(0)
    lab = a.obs["condition"].astype(str).to_numpy().copy()
    ctrl = np.flatnonzero(lab == "ctrl")
    lab[rng.permutation(ctrl)[:150]] = "ctrl_random_half"
    a.obs["split"] = lab
    df = tasks.perturbation_effects(a, "split", control="ctrl", use_rep=REP, n_perm=200, seed=0)
    # measured: random half p = 0.74, stim p = 0.005
    assert df.loc["ctrl_random_half", "pvalue"] > 0.05
    assert df.loc["stim", "pvalue"] < 0.05
    assert df.loc["stim", "energy_distance"] > 10 * abs(df.loc["ctrl_random_half", "energy_distance"])
    assert df.index[0] == "stim"  # sorted by effect size
    with pytest.raises(ValueError, match="control 'CTRL' is not a value"):
        tasks.perturbation_effects(a, "split", control="CTRL", use_rep=REP)
