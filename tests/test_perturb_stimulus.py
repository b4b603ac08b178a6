"""Stimulus per cell type (Kang 2018 IFN-beta) and the ZINB-decoder route (Papalexi), on real data."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest

import foundation
from foundation import datasets
from foundation.perturb import EvalConfig, perturbation_shifts, summarize
from foundation.perturb.decode import DecodeConfig, LatentDecoder, latent_groups
from foundation.perturb.evaluate import evaluate_decoder
from foundation.perturb.stimulus import (
    StimulusConfig,
    StimulusInputs,
    evaluate_stimulus,
    predict_type,
    stimulus_shifts,
)

ISGS = {"ISG15", "IFI6", "IFIT1", "IFIT2", "IFIT3", "MX1", "ISG20", "LY6E", "RSAD2", "OAS1", "IRF7", "IFITM3",
        "IFI44L", "CXCL10"}


@pytest.fixture(scope="module")
def model():
    return foundation.load_pretrained()


@pytest.fixture(scope="module")
def kang(model):
    adata = ad.read_h5ad(datasets.shared_data_dir() / "corpus" / "kang2018_ifnb2800_celltypes.h5ad")
    cfg = StimulusConfig()
    data = stimulus_shifts(adata, cfg)
    return data, StimulusInputs(model, adata, data, cfg, DecodeConfig(max_cells=200))


def test_held_out_monocytes_get_the_interferon_response(kang):
    data, inputs = kang
    i = data.cell_types.index("CD14 Mono")
    train = np.setdiff1d(np.arange(len(data.cell_types)), [i])
    pred = predict_type("cellvq[control emb]", data, inputs, train, i)
    top_up = set(data.genes[np.argsort(-pred)[:20]])
    assert len(top_up & ISGS) >= 6, top_up
    table = evaluate_stimulus(data, inputs).set_index(["perturbation", "method"])
    mono = table.loc["CD14 Mono"]
    assert mono.loc["cellvq[control emb]", "pearson_de"] > mono.loc["mean_shift", "pearson_de"] + 0.1, mono
    assert mono.loc["cellvq[control emb]", "mse_de"] < mono.loc["no_change", "mse_de"] / 5, mono


def test_control_cells_improve_on_the_mean_shift(kang):
    summ = summarize(evaluate_stimulus(*kang)).set_index("method")
    for m in ("linear[control expr]", "cellvq[control emb]"):
        assert summ.loc[m, "pearson_de"] > summ.loc["mean_shift", "pearson_de"], summ
    assert summ.loc["no_change", "pearson_de"] == 0.0
    assert summ.loc["zinb_decoder[mean latent]", "direction_de"] > 0.8, summ  # decoded ISGs go up


def test_bad_stimulus_labels_name_the_flag():
    adata = ad.read_h5ad(datasets.shared_data_dir() / "corpus" / "kang2018_ifnb2800_celltypes.h5ad")
    with pytest.raises(ValueError, match="--control"):
        stimulus_shifts(adata, StimulusConfig(control="ctrl"))
    with pytest.raises(KeyError, match="--type-key"):
        stimulus_shifts(adata, StimulusConfig(type_key="celltype"))


def test_decoder_route_on_papalexi_beats_no_change(model):
    adata = datasets.papalexi_crispr()
    data = perturbation_shifts(adata)
    lat = latent_groups(model, adata, adata.obs["perturbation"], "non-targeting", data.perturbations, DecodeConfig())
    assert lat.shift.shape == (25, model.config.d_model)
    summ = summarize(evaluate_decoder(data, lat, LatentDecoder(model, data.genes), model.gene_embedding(),
                                      EvalConfig(n_folds=5, seed=0))).set_index("method")
    no_change_mse = np.mean([np.mean(data.shift[i, data.de[i]] ** 2) for i in range(len(data.perturbations))])
    for m in ("zinb_decoder[cellvq]", "zinb_decoder[observed latent]"):
        assert summ.loc[m, "pearson_de"] > 0.05, summ
        assert summ.loc[m, "mse_de"] < no_change_mse, summ
