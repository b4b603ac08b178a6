"""`cellvq perturb stimulus` on the real Kang 2018 IFN-beta PBMCs: held-out CD14 monocytes get the interferon
response, the shift tables go into LadybugDB through `cellvq perturb store`, and bad labels name their flag."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from cellvq.cli import app
from foundation import datasets
from graphdb import open_store

KANG = datasets.shared_data_dir() / "corpus" / "kang2018_ifnb2800_celltypes.h5ad"
ISGS = {"ISG15", "IFI6", "IFIT1", "IFIT2", "IFIT3", "MX1", "ISG20", "LY6E", "RSAD2", "OAS1", "IRF7", "IFITM3",
        "IFI44L", "CXCL10"}
MONO = "CD14 Mono|STIM"


@pytest.fixture(scope="module")
def stim_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("stim")
    r = CliRunner().invoke(app, ["perturb", "stimulus", str(KANG), "--key", "condition", "--control", "CTRL",
                                 "--stimulus", "STIM", "--type-key", "cell_type", "--held-out", "CD14 Mono",
                                 "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "1 held-out cell types with linear[control expr]" in r.output
    return out


def test_held_out_monocytes_get_interferon_genes(stim_dir):
    pred = pd.read_csv(stim_dir / "predicted.csv")
    assert set(pred["perturbation"]) == {MONO} and pred["predicted"].all()
    up = pred.sort_values("delta", ascending=False)["gene"].head(20)
    assert len(set(up) & ISGS) >= 10, list(up)
    observed = pd.read_csv(stim_dir / "observed.csv")
    assert observed["perturbation"].nunique() == 10 and not observed["predicted"].any()
    m = pd.read_csv(stim_dir / "metrics.csv").set_index("method")
    assert m.loc["linear[control expr]", "pearson_de"] > m.loc["mean_shift", "pearson_de"] + 0.1, m
    assert m.loc["linear[control expr]", "mse_de"] < m.loc["no_change", "mse_de"] / 5, m


def test_stimulus_tables_store_and_read_back(stim_dir, tmp_path):
    db = tmp_path / "stim.lbug"
    r = CliRunner().invoke(app, ["perturb", "store", str(stim_dir / "observed.csv"), str(stim_dir / "predicted.csv"),
                                 "--db", str(db), "--dataset", "kang2018", "--kind", "stimulus", "--run-id", "kang-stim"])
    assert r.exit_code == 0, r.output
    with open_store(db, read_only=True) as store:
        eff = store.perturbation_effects(MONO, top=10, run_id="kang-stim")
    assert set(eff["kind"]) == {"stimulus"} and set(eff["predicted"]) == {False, True}
    for flag in (False, True):
        assert len(set(eff[eff["predicted"] == flag]["symbol"]) & ISGS) >= 5, eff


@pytest.mark.parametrize("args, flag", [
    (["--control", "ctrl"], "--control"),
    (["--stimulus", "IFNB"], "--stimulus"),
    (["--key", "stim"], "--key"),
    (["--type-key", "celltype"], "--type-key"),
    (["--held-out", "Platelets"], "--held-out"),
    (["--method", "gears"], "--method"),
])
def test_bad_labels_name_the_flag(tmp_path, args, flag):
    r = CliRunner().invoke(app, ["perturb", "stimulus", str(KANG), "--out", str(tmp_path / "o"), *args])
    assert r.exit_code != 0 and flag in r.output, r.output
    assert not (tmp_path / "o").exists()
