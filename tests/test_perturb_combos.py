"""Combinations at high MOI: the additive baseline for target pairs of Gasperini 2019 K562 CRISPRi (real
data), and the pair-shift arithmetic on a synthetic design (math only)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import foundation
from foundation import datasets
from foundation.perturb import PerturbConfig
from foundation.perturb.combos import (
    ComboConfig,
    ComboInputs,
    combo_inputs,
    evaluate_combos,
    pair_counts,
    pair_observation,
)


@pytest.fixture(scope="module")
def gasperini_combos():
    g = ad.read_h5ad(datasets.shared_data_dir() / "perturbation" / "gasperini2019_k562_highmoi_sceptre.h5ad")
    inputs = combo_inputs(g, PerturbConfig(key="tss_targets", control="none", batch_key="batch"))
    return inputs, evaluate_combos(inputs, foundation.load_pretrained().gene_embedding(), ComboConfig())


def test_gasperini_pairs_are_counted_with_supersets(gasperini_combos):
    inputs, table = gasperini_combos
    counts = pair_counts(inputs)
    assert len(counts) == 45 and counts.is_monotonic_decreasing
    # every cell carrying both, with or without a third target (18 are labelled exactly "CITED2;LARP1")
    cols = [inputs.targets.index("CITED2"), inputs.targets.index("LARP1")]
    both = int((np.asarray(inputs.design[:, cols].sum(axis=1)).ravel() == 2).sum())
    assert both == counts["CITED2+LARP1"] > 18
    evaluated = table["perturbation"].unique()
    assert len(evaluated) == int((counts >= 10).sum()) >= 15, counts.head(20)
    assert table.groupby("perturbation")["n_cells"].first().min() >= 10


def test_additive_beats_no_change_and_noise(gasperini_combos):
    _, table = gasperini_combos
    summ = table.groupby("method")[["pearson_de", "mse_de"]].mean()
    assert summ.loc["no_change", "pearson_de"] == 0.0
    assert summ.loc["additive", "pearson_de"] > summ.loc["additive vs control draw", "pearson_de"] + 0.1, summ
    assert summ.loc["additive", "mse_de"] < summ.loc["no_change", "mse_de"], summ
    assert summ.loc["additive", "pearson_de"] > summ.loc["larger_single", "pearson_de"] - 0.05, summ


def test_pair_shift_arithmetic_on_a_synthetic_design():
    """Pair cells = A + B + interaction; some also carry C, whose fitted effect is removed. The singles are fitted
    without the pair's cells, so the interaction does not leak into them."""
    rng = np.random.default_rng(0)
    effects = rng.normal(size=(3, 5))
    inter = np.array([1.0, -1.0, 0.0, 0.5, 0.0])
    rows = [[1, 0, 0]] * 200 + [[0, 1, 0]] * 200 + [[0, 0, 1]] * 200 + [[1, 1, 0]] * 30 + [[1, 1, 1]] * 20 + [[0, 0, 0]] * 300
    design = np.array(rows, dtype=np.float32)
    pair = (design[:, 0] > 0) & (design[:, 1] > 0)
    y = design @ effects + np.outer(pair, inter) + rng.normal(scale=0.01, size=(len(design), 5))
    inputs = ComboInputs(pd.Index(list("vwxyz")), ["A", "B", "C"], y, sp.csc_matrix(design), design.sum(1) == 0)
    singles, observed, both = pair_observation(inputs, 0, 1, alpha=1e-3)
    assert both.sum() == 50
    np.testing.assert_allclose(singles, effects, atol=0.01)
    np.testing.assert_allclose(observed, effects[0] + effects[1] + inter, atol=0.01)
