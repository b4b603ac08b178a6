"""Hierarchical cell codes (issue 11 item 6): the shipped coarse level over the SCD codebook.

Real data: pbmc3k cells held out of pretraining and Zheng 2017 FACS-sorted PBMCs (another experiment,
never trained on). The number of coarse codes was chosen on Kang 2018 (ctrl vs stim), not on these.
"""

from __future__ import annotations

import json
import logging

import anndata as ad
import numpy as np
import pytest

import foundation
from foundation import codes
from foundation.checkpoint import sha256_file
from foundation.datasets import shared_data_dir
from foundation.holdout import read_holdout
from foundation.model import pretrained_path

# FACS-sorted Zheng populations and pbmc3k types on the lineages both resolve
LINEAGE = {"nk": "NK", "bcells": "B", "memoryt": "T", "regulatoryt": "T", "thelper": "T", "cytotoxict": "T",
           "monocytes": "Mono", "naivet": "T", "naivecytotoxic": "T", "Naive CD4 T": "T", "Memory CD4 T": "T",
           "CD8 T": "T", "B": "B", "CD14+ Mono": "Mono", "FCGR3A+ Mono": "Mono", "NK": "NK", "DC": "DC",
           "Platelet": "Platelet"}


@pytest.fixture(scope="module")
def heldout_pbmc(pbmc3k_embedded):
    names = set(read_holdout(pretrained_path().parent / "pbmc3k_holdout.tsv")["obs_name"])
    return pbmc3k_embedded[pbmc3k_embedded.obs_names.isin(names)].copy()


def test_every_fine_code_lies_in_one_coarse_code(heldout_pbmc):
    obs = heldout_pbmc.obs
    assert obs.groupby("cellvq_code_id", observed=True)["cellvq_code_coarse"].nunique().max() == 1
    parts = obs["cellvq_code_hier"].astype(str).str.split("-", expand=True).astype(int)
    assert (parts[0].to_numpy() == obs["cellvq_code_coarse"].to_numpy()).all()
    assert (parts[1].to_numpy() == obs["cellvq_code_id"].to_numpy()).all()
    coarse = foundation.load_pretrained().coarse
    assert coarse.assignment.shape == (4096,) and set(np.unique(coarse.assignment)) == set(range(coarse.n_coarse))
    assert heldout_pbmc.uns["cellvq"]["n_coarse"] == coarse.n_coarse


def test_coarse_codes_mark_cell_types_on_held_out_cells(heldout_pbmc):
    obs = heldout_pbmc.obs
    coarse_nmi = codes.nmi(obs["cell_type"], obs["cellvq_code_coarse"])
    assert coarse_nmi >= 0.6  # issue 11 goal; measured 0.627 (16 coarse codes, chosen on Kang 2018)
    # far fewer groups than fine codes, and not one group per cell
    assert obs["cellvq_code_coarse"].nunique() <= 16 < obs["cellvq_code_id"].nunique()


def test_coarse_codes_agree_across_experiments(heldout_pbmc):
    model = foundation.load_pretrained()
    zheng = ad.read_h5ad(shared_data_dir() / "corpus" / "mudan_zheng_sorted_pbmc.h5ad")
    model.embed(zheng, progress=False)
    a, b = heldout_pbmc.obs, zheng.obs
    ag = codes.code_agreement(a["cellvq_code_coarse"], a["cell_type"].map(LINEAGE),
                              b["cellvq_code_coarse"], b["cell_type"].map(LINEAGE))
    assert ag["ratio"] >= 2.0  # issue 11 goal; measured 8.8x (same-label 0.39 vs other-label 0.04)
    assert ag["same"] > 0.25


def test_code_agreement_math():
    labels = np.repeat(["a", "b", "c"], 20)
    perfect = codes.code_agreement(labels, labels, labels, labels)
    assert perfect["same"] == 1.0 and perfect["other"] == 0.0 and perfect["ratio"] == np.inf
    rng = np.random.default_rng(0)
    shuffled = codes.code_agreement(rng.integers(0, 3, 3000), np.repeat(labels, 50),
                                    rng.integers(0, 3, 3000), np.repeat(labels, 50))
    assert 0.9 < shuffled["ratio"] < 1.1  # codes that ignore labels agree equally with any label


def test_shipped_coarse_level_records_how_it_was_built():
    folder = pretrained_path()
    meta = json.loads((folder / codes.META).read_text())
    assert meta["checkpoint_sha256"] == sha256_file(folder / "model.safetensors")
    assert meta["command"].startswith("python -m foundation.codes")
    assert meta["tuning"]["file"].startswith("corpus/kang2018_")  # tuned on a training-overlap set, not held-out
    assert meta["usage_files"] == ["celltypist_sample_counts.h5ad", "kang_ifnb_pbmc_subset_counts.h5ad",
                                   "papalexi_thp1_crispr_counts.h5ad", "pbmc3k_counts.h5ad"]
    assert meta["held_out_cells_excluded"] == 791


def test_coarse_level_survives_save_and_refuses_other_weights(tmp_path, caplog):
    model = foundation.load_pretrained()
    model.save(tmp_path / "m")
    again = foundation.CellVQ.load(tmp_path / "m")
    assert (again.coarse.assignment == model.coarse.assignment).all()
    meta = json.loads((tmp_path / "m" / codes.META).read_text())
    meta["checkpoint_sha256"] = "0" * 64
    (tmp_path / "m" / codes.META).write_text(json.dumps(meta))
    with caplog.at_level(logging.WARNING, logger="foundation"):
        assert foundation.CellVQ.load(tmp_path / "m").coarse is None
    assert "python -m foundation.codes" in caplog.text


def test_fit_refuses_more_coarse_codes_than_used_fine_codes():
    usage = np.zeros(64)
    usage[:3] = 5
    with pytest.raises(ValueError, match="--n-coarse"):
        codes.fit_coarse(np.random.default_rng(0).normal(size=(64, 8)), usage, codes.CoarseCodeConfig(n_coarse=4))
