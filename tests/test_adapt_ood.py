"""`adapt` (continual self-supervised pretraining) and the out-of-distribution score, on real data.

Moncada 2020 (pancreatic tumour, inDrop, 20 labelled cell types) is outside the shipped checkpoint's
corpus (blood); the held-out pbmc3k cells are inside its tissue but were never trained on.
"""

from __future__ import annotations

import json
import warnings

import anndata as ad
import numpy as np
import pytest
from typer.testing import CliRunner

import foundation
from foundation import ood
from foundation.datasets import shared_data_dir
from foundation.holdout import read_holdout


@pytest.fixture(scope="module")
def moncada():
    path = shared_data_dir() / "corpus" / "moncada2020_pdac_card.h5ad"
    return ad.read_h5ad(path)


@pytest.fixture(scope="module")
def pbmc_heldout(pbmc3k):
    ho = read_holdout(foundation.model.pretrained_path().parent / "pbmc3k_holdout.tsv")
    return pbmc3k[pbmc3k.obs_names.isin(ho["obs_name"])].copy()


@pytest.fixture(scope="module")
def shipped():
    return foundation.load_pretrained()


def leiden_ari(adata) -> float:
    return foundation.tasks.best_leiden_scores(adata, use_rep="X_cellvq", label_key="cell_type")["default"]["ari"]


def test_ood_ranks_a_pancreas_tumour_above_heldout_pbmcs(shipped, moncada, pbmc_heldout):
    blood, tumour = pbmc_heldout.copy(), moncada.copy()
    shipped.embed(blood, progress=False)
    shipped.embed(tumour, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ood.OutOfDistributionWarning)
        s_blood = ood.score(shipped, blood)  # in range: no warning
    with pytest.warns(ood.OutOfDistributionWarning, match="cellvq adapt"):
        s_tumour = ood.score(shipped, tumour)
    assert s_blood["calibrated"] and not s_blood["far"]
    assert s_tumour["far"]
    assert s_tumour["median_score"] > s_blood["median_score"] + 0.15
    assert s_tumour["share_above_q99"] > 0.5 > 0.1 > s_blood["share_above_q99"]
    # per cell: tumour cells rank above held-out blood cells far more often than not
    a, b = tumour.obs["cellvq_ood"].to_numpy(), blood.obs["cellvq_ood"].to_numpy()
    assert np.mean(a[:, None] > b[None, :]) > 0.8
    assert tumour.uns["cellvq_ood"] == s_tumour


def test_adapt_raises_clustering_ari_and_records_provenance(shipped, moncada, tmp_path):
    from cellvq.cli import app

    zero = moncada.copy()
    shipped.embed(zero, progress=False)
    ari_zero = leiden_ari(zero)
    src = tmp_path / "moncada.h5ad"
    moncada.write_h5ad(src)
    out_dir = tmp_path / "adapted"
    res = CliRunner().invoke(app, ["adapt", str(src), "--out", str(out_dir), "--epochs", "3",
                                   "--max-cells", "1200"])
    assert res.exit_code == 0, res.output
    model = foundation.CellVQ.load(out_dir)
    adapted = moncada.copy()
    model.embed(adapted, progress=False)
    ari_adapted = leiden_ari(adapted)
    assert ari_adapted > ari_zero + 0.1, (ari_zero, ari_adapted)
    meta = json.loads((out_dir / "config.json").read_text())["metadata"]
    assert meta["adapted_from"]["checkpoint_sha256"] == shipped.metadata["checkpoint_sha256"]
    assert meta["adapt"]["data"]["n_cells"] == moncada.n_obs and meta["adapt"]["data"]["file"] == str(src)
    assert meta["adapt"]["command"].startswith(f"cellvq adapt {src} --out {out_dir} --epochs 3")
    assert meta["adapt"]["n_genes_initialised"] > 100
    # its own OOD reference: the data it adapted to are now in range
    s = ood.score(model, adapted, warn=False)
    assert s["calibrated"] and not s["far"], s


def test_adapt_refuses_bad_input_and_writes_nothing(moncada, tmp_path):
    from cellvq.cli import app

    runner = CliRunner()
    logged = moncada[:400].copy()
    logged.X = np.log1p(logged.X.toarray() / logged.X.sum(1).A * 1e4)
    cases = {
        "log.h5ad": (logged, [], "raw counts"),
        "few.h5ad": (moncada[:50].copy(), [], "at least 200 cells"),
        "wrongckpt.h5ad": (moncada[:400].copy(), ["--model", str(tmp_path)], "checkpoint"),
    }
    for name, (a, extra, msg) in cases.items():
        a.write_h5ad(tmp_path / name)
        out_dir = tmp_path / f"out_{name}"
        res = runner.invoke(app, ["adapt", str(tmp_path / name), "--out", str(out_dir), *extra])
        assert res.exit_code != 0
        assert msg in res.output.replace("\n", " "), res.output
        assert not out_dir.exists()


def test_run_adapt_uses_and_records_the_adapted_checkpoint(moncada, tmp_path):
    import graphdb
    from cellvq.cli import app
    from foundation.checkpoint import sha256_file

    src = tmp_path / "pdac.h5ad"
    moncada[np.random.default_rng(0).choice(moncada.n_obs, 500, replace=False)].copy().write_h5ad(src)
    db, model_out = tmp_path / "db", tmp_path / "pdac_model"
    res = CliRunner().invoke(app, ["run", str(src), "--db", str(db), "--graph-epochs", "3", "--adapt",
                                   "--adapt-epochs", "1", "--adapt-out", str(model_out)])
    assert res.exit_code == 0, res.output
    sha = sha256_file(model_out / "model.safetensors")
    meta = json.loads((model_out / "config.json").read_text())["metadata"]
    assert meta["adapted_from"]["name"] == "cellvq-tiny-human" and meta["adapt"]["data"]["file"] == str(src)
    with graphdb.open_store(str(db), read_only=True) as store:
        runs = store.list_runs(complete_only=True)
    assert len(runs) == 1 and runs["checkpointHash"].iloc[0] == sha
    assert "--adapt" in runs["command"].iloc[0]
