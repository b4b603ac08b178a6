"""Perturbation-effect prediction (issue 14 A) on real screens: Papalexi THP-1 KO and Gasperini K562 CRISPRi."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from typer.testing import CliRunner

import foundation
from foundation import datasets
from foundation.perturb import EvalConfig, PerturbConfig, evaluate, perturbation_shifts, summarize
from foundation.perturb.evaluate import fit_predict, folds, method_inputs
from foundation.perturb.metrics import perturbation_metrics


@pytest.fixture(scope="module")
def papalexi():
    return datasets.papalexi_crispr()


@pytest.fixture(scope="module")
def emb():
    return foundation.load_pretrained().gene_embedding()


@pytest.fixture(scope="module")
def papalexi_shifts(papalexi):
    return perturbation_shifts(papalexi)


def test_papalexi_held_out_beats_no_change(papalexi_shifts, emb):
    summ = summarize(evaluate(papalexi_shifts, emb, EvalConfig(n_folds=5, seed=0))).set_index("method")
    assert len(papalexi_shifts.perturbations) == 25
    assert summ.loc["no_change", "pearson_de"] == 0.0
    for m in ("linear[cellvq]", "cellvq_predictor[cellvq]", "train_mean"):
        assert summ.loc[m, "pearson_de"] > 0.2, summ
        assert summ.loc[m, "mse_de"] < summ.loc["no_change", "mse_de"], summ
    assert summ.loc["cellvq_predictor[cellvq]", "direction_de"] > 0.6


def _held_out_predictions(data, emb, name):
    inputs, preds = method_inputs(data, emb, EvalConfig()), np.zeros_like(data.shift)
    for test in folds(len(data.perturbations), 5, 0):
        train = np.setdiff1d(np.arange(len(data.perturbations)), test)
        preds[test] = fit_predict(name, inputs, train, test, data.shift)
    return preds


def _within_fold_shuffle(n):
    """Each held-out perturbation gets the prediction of another one of the same fold (same training set,
    so a prediction that ignores the perturbation scores exactly as before)."""
    order = np.arange(n)
    for test in folds(n, 5, 0):
        order[test] = np.roll(test, 1)
    return order


def test_shuffled_predictions_score_lower(papalexi_shifts, emb):
    d = papalexi_shifts

    def score(p):
        return np.mean([perturbation_metrics(p[i], d.shift[i], d.de[i])["pearson_de"] for i in range(len(p))])

    order = _within_fold_shuffle(len(d.perturbations))
    preds = _held_out_predictions(d, emb, "train_mean")
    assert score(preds) == pytest.approx(score(preds[order]))  # control: no perturbation-specific part
    preds = _held_out_predictions(d, emb, "cellvq_predictor[cellvq]")
    assert score(preds) > score(preds[order]) + 0.03


def test_held_out_knockout_ranks_own_target_low(papalexi_shifts, emb):
    d = papalexi_shifts
    preds = _held_out_predictions(d, emb, "cellvq_predictor[cellvq]")
    pos = {g: j for j, g in enumerate(d.genes)}
    ranks = [int(np.argsort(preds[i]).tolist().index(pos[p])) for i, p in enumerate(d.perturbations) if p in pos]
    assert len(ranks) >= 8
    assert np.mean(np.array(ranks) < 5) >= 0.75, ranks  # own target among the 5 most decreased genes


def test_gasperini_joint_fit_recovers_crispri_knockdown():
    g = ad.read_h5ad(datasets.shared_data_dir() / "perturbation" / "gasperini2019_k562_highmoi_sceptre.h5ad")
    d = perturbation_shifts(g, PerturbConfig(key="tss_targets", control="none", batch_key="batch"))
    pos = {x: j for j, x in enumerate(d.genes)}
    own = np.array([d.shift[i, pos[p]] for i, p in enumerate(d.perturbations) if p in pos])
    assert len(own) >= 8
    assert np.mean(own < 0) >= 0.8, own
    own_rank = [list(d.genes[d.de[i]]).index(p) if p in d.genes[d.de[i]] else 99 for i, p in enumerate(d.perturbations)]
    assert np.median(own_rank) <= 2, own_rank  # the target's own gene is among its strongest DE genes


def test_joint_fit_separates_co_occurring_targets():
    """Math: two targets often in the same cells; only A moves gene 0. Pseudobulk blames B, the joint fit not."""
    rng = np.random.default_rng(0)
    labels = np.array(["none"] * 400 + ["A;B"] * 300 + ["A"] * 100 + ["B"] * 100)
    lam = np.full((len(labels), 3), 20.0)
    lam[np.char.find(labels, "A") >= 0, 0] = 5.0
    a = ad.AnnData(sp.csr_matrix(rng.poisson(lam).astype(np.float32)), obs=pd.DataFrame({"t": labels}, index=[f"c{i}" for i in range(len(labels))]))
    a.var_names = ["g0", "g1", "g2"]
    joint = perturbation_shifts(a, PerturbConfig(key="t", control="none", n_de=2, ridge_alpha=1.0))
    bulk = perturbation_shifts(a, PerturbConfig(key="t", control="none", n_de=2, joint=False))
    b = joint.perturbations.index("B")
    assert abs(joint.shift[b, 0]) < 0.1 < abs(bulk.shift[b, 0])
    assert joint.shift[joint.perturbations.index("A"), 0] < -0.5


def test_bad_input_names_the_flag(papalexi):
    with pytest.raises(ValueError, match="--control"):
        perturbation_shifts(papalexi, PerturbConfig(control="ctrl"))
    with pytest.raises(KeyError, match="--key"):
        perturbation_shifts(papalexi, PerturbConfig(key="condition"))


def test_cli_perturb_evaluate(papalexi, tmp_path):
    from cellvq.cli import app

    keep = papalexi.obs["perturbation"].isin(["non-targeting", "STAT1", "JAK2", "IFNGR2", "IRF1", "SMAD4", "CD86"])
    path = tmp_path / "pap.h5ad"
    papalexi[keep.to_numpy()].copy().write_h5ad(path)
    out = tmp_path / "res.csv"
    r = CliRunner().invoke(app, ["perturb", "evaluate", str(path), "--key", "perturbation", "--control", "non-targeting",
                                 "--folds", "3", "--out", str(out)])
    assert r.exit_code == 0, r.output
    table = pd.read_csv(out)
    assert set(table["perturbation"]) == {"STAT1", "JAK2", "IFNGR2", "IRF1", "SMAD4", "CD86"}
    assert table["method"].nunique() == 9
    bad = CliRunner().invoke(app, ["perturb", "evaluate", str(path), "--control", "ctrl", "--out", str(out)])
    assert bad.exit_code != 0 and "--control" in bad.output
