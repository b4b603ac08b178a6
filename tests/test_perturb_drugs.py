"""Drugs (issue 14 B) and `cellvq perturb train|predict` (C, interface) on real data: GDSC SMILES, Morgan
fingerprints, the molecular graph network, bulk ln IC50 prediction against the per-drug mean, the
trametinib cells, and the bad-input errors of the CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from foundation import datasets
from foundation.perturb.gdsc import gdsc_drug_table
from foundation.perturb.molecules import (
    MoleculeGNN,
    molecular_graphs,
    morgan_fingerprints,
    parse_smiles,
    tanimoto,
)


@pytest.fixture(scope="module")
def drug_table():
    return gdsc_drug_table(list(datasets.gdsc().obsm["gdsc_ln_ic50"].columns))


def _by_name(table, name):
    return table.loc[table["name"] == name, "smiles"].iloc[0]


def test_gdsc_drugs_map_to_smiles(drug_table):
    mapped = drug_table.dropna(subset=["smiles"])
    # 238 of the 266 GDSC ids are in the GDSC drug list; all 238 CIDs are in the 223-drug SMILES file
    assert len(drug_table) == 266 and len(mapped) == 238 and mapped["pubchem_cid"].nunique() == 223
    assert (mapped["smiles_source"] == "deepcdr_cid").all()
    assert drug_table.loc["GDSC:1372", "name"] == "Trametinib" and drug_table.loc["GDSC:1007@", "name"] == "Docetaxel"
    # the two SMILES sources agree on every compound they share (59; first InChIKey block = skeleton)
    from rdkit import Chem

    from foundation.perturb.gdsc import read_smiles_sources

    deepcdr, tgsa, _ = read_smiles_sources(datasets.shared_data_dir() / "gdsc")
    shared = sorted(set(deepcdr.index) & set(tgsa.index))
    key = lambda s: Chem.MolToInchiKey(Chem.MolFromSmiles(s)).split("-")[0]  # noqa: E731
    assert len(shared) == 59 and all(key(deepcdr[c]) == key(tgsa[c]) for c in shared)


def test_fingerprints_of_gdsc_smiles(drug_table):
    mapped = drug_table.dropna(subset=["smiles"])
    fp = morgan_fingerprints(mapped["smiles"].tolist(), names=mapped.index.tolist())
    assert fp.shape == (238, 1024) and fp.dtype == np.uint8 and (fp.sum(axis=1) > 0).all()
    # one compound under two GDSC ids (Olaparib 1017 / 1495) gets one fingerprint
    pos = {d: i for i, d in enumerate(mapped.index)}
    assert (fp[pos["GDSC:1017"]] == fp[pos["GDSC:1495"]]).all()
    # chemistry: the two anilinoquinazoline EGFR inhibitors are closer to each other than to cisplatin;
    # the MEK inhibitors PD0325901 and selumetinib (both benzhydroxamate / benzimidazole diarylamines) too
    names = ["Gefitinib", "Erlotinib", "Cisplatin", "PD0325901", "Selumetinib"]
    sim = tanimoto(*(2 * [morgan_fingerprints([_by_name(drug_table, n) for n in names])]))
    assert np.allclose(np.diag(sim), 1.0)
    assert sim[0, 1] > 0.3 > sim[0, 2] and sim[3, 4] > sim[3, 2] + 0.2


def test_molecule_gnn_embeds_real_molecules(drug_table):
    from torch_geometric.data import Batch

    smiles = [_by_name(drug_table, n) for n in ("Trametinib", "Cisplatin", "Docetaxel")]
    graphs = molecular_graphs(smiles)
    assert graphs[0].x.shape[1] == 9 and graphs[0].num_nodes == 37  # trametinib C26H23FIN5O4: 26 C + F + I + 5 N + 4 O
    torch.manual_seed(0)
    out = MoleculeGNN()(Batch.from_data_list(graphs))
    assert out.shape == (3, 64) and torch.isfinite(out).all()
    assert torch.cdist(out, out)[np.triu_indices(3, 1)].min() > 1e-3  # different molecules, different vectors


def test_unparseable_smiles_named():
    with pytest.raises(ValueError, match=r"RDKit cannot parse .*'broken': 'C1CC\('.*--smiles"):
        parse_smiles(["CCO", "C1CC("], names=["ethanol", "broken"])
    with pytest.raises(ValueError, match="cannot parse"):
        morgan_fingerprints([""], names=["empty"])


# ----------------------------------------------------------------------------------------- bulk GDSC
@pytest.fixture(scope="module")
def bulk():
    import foundation
    from foundation.perturb.bulk import gdsc_bulk

    return gdsc_bulk(foundation.load_pretrained().gene_embedding())


def _fold(bulk, split, methods, epochs=6):
    from foundation.perturb.bulk import BulkConfig, fit_predict, pair_metrics, split_folds

    test_idx = split_folds(bulk.pairs, split, 5, 0)[0]
    test, train = bulk.pairs.iloc[test_idx], bulk.pairs.drop(index=bulk.pairs.index[test_idx])
    cfg = BulkConfig(epochs=epochs, progress=False)
    return {m: pair_metrics(test, fit_predict(bulk, m, train, test, split, cfg), 10) for m in methods}


def test_gdsc_pairs_and_splits(bulk):
    from foundation.perturb.bulk import split_folds

    p = bulk.pairs
    assert len(p) == 110_459 and p["line"].nunique() == 568 and p["compound"].nunique() == 223
    assert {k: v.shape[1] for k, v in bulk.line_features.items()} == {"expr": 706, "pca": 64, "cellvq": 64, "random": 64}
    assert bulk.fingerprints.shape == (238, 1024) and len(bulk.graphs) == 238
    for split, col in (("unseen_lines", "line"), ("unseen_drugs", "compound")):
        folds = split_folds(p, split, 5, 0)
        assert sum(map(len, folds)) == len(p)
        held = [set(p[col].iloc[f]) for f in folds]
        assert all(not (held[i] & held[j]) for i in range(5) for j in range(i + 1, 5))  # whole groups held out


def test_gdsc_random_split_beats_per_drug_mean(bulk):
    r = _fold(bulk, "random", ["drug_mean", "drug_mean+line_mean", "ridge[expr+fp]", "mlp[expr+fp]"])
    print("\nGDSC random split, fold 0:", {m: {k: round(v, 3) for k, v in d.items()} for m, d in r.items()})
    # measured fold 0: drug mean 0.855 overall / 0 per drug; ridge 0.887 / 0.527; mlp 0.908 / 0.603
    assert 0.8 < r["drug_mean"]["pearson"] < 0.9 and r["drug_mean"]["median_drug_pearson"] == 0.0
    for m in ("ridge[expr+fp]", "mlp[expr+fp]"):
        assert r[m]["pearson"] > r["drug_mean"]["pearson"] + 0.02
        assert r[m]["median_drug_pearson"] > 0.45 and r[m]["rmse"] < r["drug_mean"]["rmse"] - 0.1
    # the additive drug mean + line mean (measured 0.890 / 0.531) is as good as the ridge (itself additive);
    # only the MLP, which can model line x drug interactions, ranks lines per drug better (measured 0.603)
    assert r["ridge[expr+fp]"]["median_drug_pearson"] < r["drug_mean+line_mean"]["median_drug_pearson"] + 0.03
    assert r["mlp[expr+fp]"]["median_drug_pearson"] > r["drug_mean+line_mean"]["median_drug_pearson"] + 0.03


def test_gdsc_unseen_drugs_fingerprints_vs_baselines(bulk):
    r = _fold(bulk, "unseen_drugs", ["drug_mean", "drug_mean+line_mean", "ridge[expr+fp]", "ridge[cellvq+fp]"])
    print("\nGDSC unseen drugs, fold 0:", {m: {k: round(v, 3) for k, v in d.items()} for m, d in r.items()})
    # an unseen drug has no mean: the baseline is constant (Pearson 0); fingerprints + expression rank the
    # pairs (measured 0.293 overall, 0.532 median per drug) ...
    assert r["drug_mean"]["pearson"] == 0.0 and r["drug_mean"]["n_drugs"] >= 40
    assert r["ridge[expr+fp]"]["pearson"] > 0.2 and r["ridge[expr+fp]"]["median_drug_pearson"] > 0.45
    # ... about as well as the line's mean sensitivity alone (measured 0.301 / 0.540): the fingerprints add
    # no potency information for a new compound here, and CellVQ features rank lines worse (measured 0.369)
    assert abs(r["ridge[expr+fp]"]["median_drug_pearson"] - r["drug_mean+line_mean"]["median_drug_pearson"]) < 0.05
    assert r["ridge[cellvq+fp]"]["median_drug_pearson"] < r["ridge[expr+fp]"]["median_drug_pearson"]


# ------------------------------------------------------------------------------- single-cell drug data
def test_trametinib_cells_cannot_give_a_shift(tmp_path):
    """678 trametinib-treated cells, one compound, no control, no dose: no shift is observable and no
    compound can be held out; training says so and writes nothing."""
    import anndata as ad

    from cellvq.cli import app

    path = datasets.shared_data_dir() / "perturbation" / "berginski_trametinib_cells.h5ad"
    obs = ad.read_h5ad(path, backed="r").obs
    assert obs["perturbation"].unique().tolist() == ["trametinib"] and len(obs) == 678
    smiles = tmp_path / "smiles.csv"
    pd.DataFrame({"compound": ["trametinib"], "smiles": [_trametinib_smiles()]}).to_csv(smiles, index=False)
    res = CliRunner().invoke(app, ["perturb", "train", str(path), "--kind", "drug", "--key", "perturbation",
                                   "--control", "DMSO", "--smiles", str(smiles), "--out", str(tmp_path / "m")])
    assert res.exit_code == 1
    assert "control label 'DMSO' not found" in res.output and "--control" in res.output and "trametinib" in res.output
    assert not (tmp_path / "m").exists() and [p.name for p in tmp_path.iterdir()] == ["smiles.csv"]


def _trametinib_smiles():
    return gdsc_drug_table(["GDSC:1372"]).loc["GDSC:1372", "smiles"]


# ------------------------------------------------------------------------------- cellvq perturb train|predict
@pytest.fixture(scope="module")
def papalexi_minus_cmtm6(tmp_path_factory):
    """Papalexi with the CMTM6 knock-out cells removed (to predict it as an unseen target)."""
    a = datasets.papalexi_crispr()
    path = tmp_path_factory.mktemp("pap") / "papalexi_no_cmtm6.h5ad"
    a[a.obs["perturbation"] != "CMTM6"].copy().write_h5ad(path)
    return path, a


def test_cli_train_predict_unseen_knockout(papalexi_minus_cmtm6, tmp_path):
    from cellvq.cli import app
    from foundation.perturb import perturbation_shifts
    from foundation.perturb.predictor import TABLE_COLUMNS

    path, full = papalexi_minus_cmtm6
    model = tmp_path / "model"
    res = CliRunner().invoke(app, ["perturb", "train", str(path), "--out", str(model)])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in model.iterdir()) == ["config.json", "observed.csv", "predictor.safetensors"]
    observed = pd.read_csv(model / "observed.csv")
    assert list(observed.columns) == TABLE_COLUMNS and observed["perturbation"].nunique() == 24
    assert not observed["predicted"].any() and "CMTM6" not in set(observed["perturbation"])
    out = tmp_path / "pred.csv"
    res = CliRunner().invoke(app, ["perturb", "predict", str(model), "--perturbations", "CMTM6,STAT1+JAK2",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    pred = pd.read_csv(out)
    assert list(pred.columns) == TABLE_COLUMNS and pred["predicted"].all() and len(pred) == 2 * 299
    cm = pred[pred["perturbation"] == "CMTM6"].set_index("gene")
    assert (cm["rank"].sort_values().to_numpy() == np.arange(1, 300)).all()
    # the unseen knock-out lowers its own gene, among its most changed genes
    assert cm.loc["CMTM6", "delta"] < 0 and cm.loc["CMTM6", "rank"] <= 5
    # and the prediction correlates with what the held-out cells show
    obs = perturbation_shifts(full)
    i = obs.perturbations.index("CMTM6")
    from foundation.perturb.metrics import pearson

    r = pearson(cm.loc[obs.genes, "delta"].to_numpy(), obs.shift[i])
    assert r > 0.2, r
    # --top keeps the k largest per perturbation
    res = CliRunner().invoke(app, ["perturb", "predict", str(model), "--perturbations", "CMTM6", "--top", "20",
                                   "--out", str(out)])
    assert res.exit_code == 0 and len(pd.read_csv(out)) == 20


def test_cli_bad_input_errors(papalexi_minus_cmtm6, tmp_path):
    import anndata as ad

    from cellvq.cli import app

    path, _ = papalexi_minus_cmtm6
    run = lambda *a: CliRunner().invoke(app, ["perturb", *a])  # noqa: E731
    res = run("train", str(path), "--control", "NT", "--out", str(tmp_path / "m1"))
    assert res.exit_code == 1 and "control label 'NT' not found" in res.output and "--control" in res.output
    res = run("train", str(path), "--min-cells", "100", "--out", str(tmp_path / "m2"))  # SPI1 has 48 cells
    assert res.exit_code == 1 and "fewer than 100 cells" in res.output and "SPI1" in res.output
    assert "--min-cells" in res.output
    bad = tmp_path / "bad_smiles.csv"
    pd.DataFrame({"compound": ["x", "y"], "smiles": ["CCO", "C1CC(N"]}).to_csv(bad, index=False)
    res = run("train", str(path), "--kind", "drug", "--smiles", str(bad), "--out", str(tmp_path / "m3"))
    assert res.exit_code == 1 and "RDKit cannot parse" in res.output and "'y'" in res.output and "--smiles" in res.output
    assert not any(p.name.startswith(("m1", "m2", "m3", ".m")) for p in tmp_path.iterdir())
    # a target outside the vocabulary at predict time; nothing written
    model = tmp_path / "model"
    assert run("train", str(path), "--embedding", "none", "--out", str(model)).exit_code == 0
    res = run("predict", str(model), "--perturbations", "NOTAGENE1", "--out", str(tmp_path / "p.csv"))
    assert res.exit_code == 1 and "NOTAGENE1" in res.output and "vocabulary" in res.output
    assert not (tmp_path / "p.csv").exists()
    # ... and at training time, with the CellVQ vocabulary
    a = ad.read_h5ad(path)
    a.obs["perturbation"] = a.obs["perturbation"].astype(str).replace({"SPI1": "NOTAGENE1"})
    a.write_h5ad(tmp_path / "renamed.h5ad")
    res = run("train", str(tmp_path / "renamed.h5ad"), "--out", str(tmp_path / "m4"))
    assert res.exit_code == 1 and "['NOTAGENE1']" in res.output and "vocabulary" in res.output
    assert not (tmp_path / "m4").exists()


def test_cli_drug_kind_round_trip(papalexi_minus_cmtm6, drug_table, tmp_path):
    """Plumbing of `--kind drug` (no real multi-compound single-cell set with a control exists offline):
    Papalexi cells whose knock-out labels are renamed to GDSC compounds. The model reads the fingerprints
    and, for a training compound, predicts a shift that follows that group's observed shift."""
    import anndata as ad

    from cellvq.cli import app

    path, _ = papalexi_minus_cmtm6
    a = ad.read_h5ad(path)
    names = ["Trametinib", "Selumetinib", "Gefitinib", "Erlotinib", "Cisplatin", "Docetaxel"]
    groups = ["IFNGR1", "IFNGR2", "JAK2", "STAT1", "IRF1", "ATF2"]
    keep = a.obs["perturbation"].isin(groups + ["non-targeting"]).to_numpy()
    a = a[keep].copy()
    a.obs["compound"] = a.obs["perturbation"].astype(str).replace(dict(zip(groups, names)))
    a.write_h5ad(tmp_path / "renamed.h5ad")
    smiles = tmp_path / "smiles.csv"
    pd.DataFrame({"compound": names, "smiles": [_by_name(drug_table, n) for n in names]}).to_csv(smiles, index=False)
    model = tmp_path / "dmodel"
    res = CliRunner().invoke(app, ["perturb", "train", str(tmp_path / "renamed.h5ad"), "--kind", "drug", "--key",
                                   "compound", "--control", "non-targeting", "--smiles", str(smiles), "--out", str(model)])
    assert res.exit_code == 0, res.output
    observed = pd.read_csv(model / "observed.csv")
    assert sorted(observed["perturbation"].unique()) == sorted(names)
    res = CliRunner().invoke(app, ["perturb", "predict", str(model), "--smiles", str(smiles), "--out", str(tmp_path / "p.csv")])
    assert res.exit_code == 0, res.output
    pred = pd.read_csv(tmp_path / "p.csv")
    assert pred["predicted"].all() and pred["perturbation"].nunique() == 6
    o = observed[observed.perturbation == "Trametinib"].set_index("gene")["delta"]
    p = pred[pred.perturbation == "Trametinib"].set_index("gene")["delta"].loc[o.index]
    assert np.corrcoef(o, p)[0, 1] > 0.5
    # a drug model needs --smiles at predict time
    res = CliRunner().invoke(app, ["perturb", "predict", str(model), "--perturbations", "X", "--out", str(tmp_path / "q.csv")])
    assert res.exit_code == 1 and "--smiles" in res.output and not (tmp_path / "q.csv").exists()


def test_cli_evaluate_figure_of_held_out_predictions(tmp_path):
    """`cellvq perturb evaluate --figure`: the plotted predictions are the held-out ones the metrics use."""
    import foundation
    from cellvq.cli import app
    from foundation.perturb import perturbation_shifts
    from foundation.perturb.metrics import perturbation_metrics
    from foundation.perturb.plot import held_out_predictions

    pap = tmp_path / "papalexi.h5ad"
    datasets.papalexi_crispr().write_h5ad(pap)
    fig, csv = tmp_path / "fig" / "held_out.png", tmp_path / "metrics.csv"
    res = CliRunner().invoke(app, ["perturb", "evaluate", str(pap), "--out", str(csv), "--figure", str(fig)])
    assert res.exit_code == 0, res.output
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and fig.stat().st_size > 20_000
    table = pd.read_csv(csv)
    data = perturbation_shifts(datasets.papalexi_crispr())
    preds = held_out_predictions(data, foundation.load_pretrained().gene_embedding(), "cellvq_predictor[cellvq]")
    row = table[(table.method == "cellvq_predictor[cellvq]") & (table.perturbation == "IFNGR2")].iloc[0]
    i = data.perturbations.index("IFNGR2")
    assert perturbation_metrics(preds[i], data.shift[i], data.de[i])["pearson_de"] == pytest.approx(row.pearson_de)
