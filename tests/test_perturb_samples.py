"""Cell-level samples from the ZINB decoder (issue 14 A, "where the decoder allows, cell-level samples"),
on the Papalexi THP-1 knock-out screen."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import foundation
from foundation import datasets
from foundation.perturb import perturbation_shifts
from foundation.perturb.data import log_normalise
from foundation.perturb.evaluate import EvalConfig, fit_predict, method_inputs
from foundation.perturb.predictor import shift_table
from foundation.perturb.samples import PerturbationSampler, SampleConfig, shifted_mean

CONTROL = "non-targeting"


@pytest.fixture(scope="module")
def papalexi():
    return datasets.papalexi_crispr()


@pytest.fixture(scope="module")
def shifts(papalexi):
    return perturbation_shifts(papalexi)


@pytest.fixture(scope="module")
def sampler(papalexi):
    ctrl = papalexi[(papalexi.obs["perturbation"] == CONTROL).to_numpy()]
    return PerturbationSampler(foundation.load_pretrained(), ctrl, SampleConfig(n_cells=300, seed=0))


def wide(data, names, genes):
    rows = data.shift[[data.perturbations.index(n) for n in names]]
    return pd.DataFrame(rows, index=names, columns=data.genes).reindex(columns=genes).fillna(0.0)


def test_shifted_mean_moves_log1p_by_the_shift():
    m, s = np.array([0.0, 0.5, 3.0, 40.0]), np.array([0.7, -0.2, -1.0, 0.3])
    assert np.allclose(np.log1p(shifted_mean(m[1:], s[1:])) - np.log1p(m[1:]), s[1:])
    assert shifted_mean(np.array([0.1]), np.array([-5.0]))[0] == 0.0


def test_simulated_controls_look_like_observed_controls(papalexi, sampler):
    sim = sampler.sample(pd.DataFrame(columns=papalexi.var_names, dtype=float))
    x = sim.X.toarray()
    assert np.array_equal(x, np.round(x)) and x.min() >= 0
    obs = log_normalise(papalexi[(papalexi.obs["perturbation"] == CONTROL).to_numpy()])
    lx = log_normalise(sim)
    assert np.corrcoef(lx.mean(0), obs.mean(0))[0, 1] > 0.9
    assert abs((lx == 0).mean() - (obs == 0).mean()) < 0.05
    # each simulated cell keeps the depth of the control cell it was decoded from
    assert np.corrcoef(x.sum(1), sampler.library)[0, 1] > 0.8
    assert 0.6 < np.median(x.sum(1) / sampler.library) < 1.3


def test_held_out_knockout_samples_follow_the_prediction(papalexi, shifts, sampler):
    """STAT1 is predicted from the other 24 knock-outs; its sampled cells lose STAT1 and move like the
    observed STAT1 cells."""
    held = shifts.perturbations.index("STAT1")
    train = np.setdiff1d(np.arange(len(shifts.perturbations)), [held])
    emb = foundation.load_pretrained().gene_embedding()
    inputs = method_inputs(shifts, emb, EvalConfig())
    pred = fit_predict("cellvq_predictor[cellvq]", inputs, train, np.array([held]), shifts.shift)[0]
    table = pd.DataFrame([pred], index=["STAT1"], columns=shifts.genes).reindex(columns=papalexi.var_names).fillna(0.0)
    sim = sampler.sample(table)
    lx, lab = log_normalise(sim), sim.obs["perturbation"].to_numpy()
    sampled_shift = lx[lab == "STAT1"].mean(0) - lx[lab == "simulated control"].mean(0)
    g = list(papalexi.var_names).index("STAT1")
    p = pred[list(shifts.genes).index("STAT1")]
    assert p < -0.3 and sampled_shift[g] < 0.5 * p
    de = np.argsort(-np.abs(table.loc["STAT1"].to_numpy()))[:20]
    assert np.corrcoef(sampled_shift[de], table.loc["STAT1"].to_numpy()[de])[0, 1] > 0.7  # 0.83 here
    observed = wide(shifts, ["STAT1"], papalexi.var_names).loc["STAT1"].to_numpy()
    obs_de = np.argsort(-np.abs(observed))[:20]
    assert np.corrcoef(sampled_shift[obs_de], observed[obs_de])[0, 1] > 0.5  # 0.85 here


def test_same_seed_same_cells(papalexi, shifts):
    ctrl = papalexi[(papalexi.obs["perturbation"] == CONTROL).to_numpy()]
    model = foundation.load_pretrained()
    table = wide(shifts, ["IRF1"], papalexi.var_names)
    a, b = (PerturbationSampler(model, ctrl, SampleConfig(n_cells=50, seed=3)).sample(table) for _ in range(2))
    assert (a.X != b.X).nnz == 0
    c = PerturbationSampler(model, ctrl, SampleConfig(n_cells=50, seed=4)).sample(table)
    assert (a.X != c.X).nnz > 0


@pytest.fixture(scope="module")
def screen_files(papalexi, shifts, tmp_path_factory):
    d = tmp_path_factory.mktemp("samples")
    keep = np.flatnonzero(papalexi.obs["perturbation"].isin([CONTROL, "IRF1"]).to_numpy())[::3]
    papalexi[keep].copy().write_h5ad(d / "screen.h5ad")
    shift_table(["IRF1", "STAT1"], shifts.genes, shifts.shift[[shifts.perturbations.index("IRF1"),
                shifts.perturbations.index("STAT1")]], predicted=False).to_csv(d / "observed.csv", index=False)
    return d


def test_cli_perturb_sample(screen_files):
    from cellvq.cli import app

    out = screen_files / "sim.h5ad"
    res = CliRunner().invoke(app, ["perturb", "sample", str(screen_files / "observed.csv"), "--control-data",
                                   str(screen_files / "screen.h5ad"), "--out", str(out), "--cells", "40"])
    assert res.exit_code == 0, res.output
    sim = ad.read_h5ad(out)
    assert sim.obs["perturbation"].value_counts().to_dict() == {"simulated control": 40, "IRF1": 40, "STAT1": 40}
    meta = sim.uns["cellvq_perturb_samples"]
    assert sim.var["decoded"].all() and meta["n_cells"] == 40 and len(meta["checkpoint_sha256"]) == 64
    lx, lab = log_normalise(sim), sim.obs["perturbation"].to_numpy()
    g = list(sim.var_names).index("STAT1")
    assert lx[lab == "STAT1", g].mean() < lx[lab == "simulated control", g].mean()


@pytest.mark.parametrize("args, needle", [
    (["--control", "ctrl"], "--control"),
    (["--key", "guide"], "--key"),
])
def test_cli_sample_bad_input_names_the_flag(screen_files, args, needle):
    from cellvq.cli import app

    out = screen_files / "bad.h5ad"
    res = CliRunner().invoke(app, ["perturb", "sample", str(screen_files / "observed.csv"), "--control-data",
                                   str(screen_files / "screen.h5ad"), "--out", str(out), *args])
    assert res.exit_code != 0 and needle in res.output, res.output
    assert not out.exists()


def test_cli_sample_unknown_gene(screen_files):
    from cellvq.cli import app

    bad = screen_files / "alien.csv"
    pd.DataFrame({"perturbation": ["X"], "gene": ["NOT_A_GENE"], "delta": [1.0]}).to_csv(bad, index=False)
    out = screen_files / "alien.h5ad"
    res = CliRunner().invoke(app, ["perturb", "sample", str(bad), "--control-data", str(screen_files / "screen.h5ad"),
                                   "--out", str(out)])
    assert res.exit_code != 0 and "NOT_A_GENE" in res.output and "not measured" in res.output, res.output
    assert not out.exists()
