"""Combinations at high MOI (Gasperini 2019 K562 CRISPRi): predict the shift of cells carrying two targets
from single-target effects, against the pair's observed shift.

For each target pair carried together by at least ``min_cells`` cells, the single-target effects are fitted
jointly (ridge on the cell x target design, :func:`foundation.perturb.data.joint_fit`) on every cell *except*
that pair's cells; the pair's observed shift is the mean over its cells of the batch-centred expression minus
the fitted effects of any further targets those cells carry. Methods:
  ``no_change``; ``larger_single`` (the single shift with the larger norm); ``additive`` (sum of the two
  single shifts); ``cellvq_predictor[cellvq|none]`` (:class:`PerturbPredictor` fitted on the single shifts,
  asked for ``A+B``); ``additive vs control draw`` (null: the additive prediction scored against the mean of
  as many random control cells, averaged over ``null_draws`` draws: what noise alone gives).
Metrics as :func:`perturbation_metrics` over the pair's top DE genes, plus ``pearson_de_off`` over the top DE
genes other than the two targets themselves (what is left once the CRISPRi knock-downs are set aside).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from foundation.perturb.data import (
    PerturbConfig,
    PerturbData,
    centred_expression,
    joint_fit,
    log_normalise,
    perturbation_labels,
    target_design,
)
from foundation.perturb.metrics import pearson, perturbation_metrics
from foundation.perturb.predictor import PerturbPredictor, PredictorConfig

COMBO_METHODS = ("no_change", "larger_single", "additive", "cellvq_predictor[cellvq]", "cellvq_predictor[none]",
                 "additive vs control draw")


@dataclass
class ComboConfig:
    min_cells: int = 10      # cells carrying both targets of a pair
    n_de: int = 20
    seed: int = 0            # the control-cell draws of the null
    null_draws: int = 10     # random control-cell sets per pair (metrics averaged)


@dataclass
class ComboInputs:
    genes: pd.Index
    targets: list[str]
    y: np.ndarray            # (cells, G) batch-centred log-normalised expression
    design: sp.csc_matrix    # (cells, T) binary
    control: np.ndarray      # (cells,) bool


def combo_inputs(adata: AnnData, cfg: PerturbConfig) -> ComboInputs:
    lab = perturbation_labels(adata, cfg)
    ctrl = (lab == cfg.control).to_numpy()
    y = centred_expression(adata, log_normalise(adata, cfg.layer), ctrl, cfg)
    design, names = target_design(lab, cfg)
    return ComboInputs(pd.Index(adata.var_names), names, y, design.tocsc(), ctrl)


def pair_counts(inputs: ComboInputs) -> pd.Series:
    """Cells carrying both targets of each pair (any further targets allowed), largest first."""
    co = (inputs.design.T @ inputs.design).toarray()
    t = inputs.targets
    counts = {f"{t[a]}+{t[b]}": int(co[a, b]) for a, b in combinations(range(len(t)), 2)}
    return pd.Series(counts, dtype=int).sort_values(ascending=False, kind="stable")


def pair_observation(inputs: ComboInputs, a: int, b: int, alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(singles (T, G) fitted without the pair's cells, observed pair shift (G,), pair cell mask)."""
    d = inputs.design
    both = (d[:, a].toarray().ravel() > 0) & (d[:, b].toarray().ravel() > 0)
    rest = np.flatnonzero(~both)
    singles = joint_fit(inputs.y[rest], d[rest], alpha)
    others = np.setdiff1d(np.arange(d.shape[1]), [a, b])
    resid = inputs.y[both] - d[both][:, others] @ singles[others]
    return singles, np.asarray(resid).mean(axis=0), both


def predictor_shift(inputs: ComboInputs, singles: np.ndarray, pair: str, embedding: pd.DataFrame | None,
                    source: str) -> np.ndarray:
    """The CellVQ predictor fitted on the single shifts, asked for the combination ``pair`` ("A+B")."""
    data = PerturbData(inputs.genes, list(inputs.targets), [[t] for t in inputs.targets], singles,
                       np.ones(len(inputs.targets)))
    return PerturbPredictor(PredictorConfig(embedding=source), inputs.genes, embedding).fit(data).predict([pair])[0]


def pair_predictions(inputs: ComboInputs, singles: np.ndarray, a: int, b: int,
                     embedding: pd.DataFrame | None) -> dict[str, np.ndarray]:
    pair = f"{inputs.targets[a]}+{inputs.targets[b]}"
    big = a if np.linalg.norm(singles[a]) >= np.linalg.norm(singles[b]) else b
    return {"no_change": np.zeros(len(inputs.genes)), "larger_single": singles[big],
            "additive": singles[a] + singles[b],
            "cellvq_predictor[cellvq]": predictor_shift(inputs, singles, pair, embedding, "cellvq"),
            "cellvq_predictor[none]": predictor_shift(inputs, singles, pair, None, "none")}


def _score(pred: np.ndarray, obs: np.ndarray, own: list[int], n_de: int) -> dict[str, float]:
    order = np.argsort(-np.abs(obs), kind="stable")
    off = [g for g in order if g not in own][:n_de]
    return {**perturbation_metrics(pred, obs, order[:n_de]), "pearson_de_off": pearson(pred[off], obs[off])}


def evaluate_combos(inputs: ComboInputs, embedding: pd.DataFrame | None, cfg: ComboConfig | None = None,
                    alpha: float = 10.0, dataset: str = "") -> pd.DataFrame:
    """One row per pair with >= ``cfg.min_cells`` cells x method: metrics against the observed pair shift."""
    cfg = cfg or ComboConfig()
    counts = pair_counts(inputs)
    rng = np.random.default_rng(cfg.seed)
    pos = {g: j for j, g in enumerate(inputs.genes)}
    rows = []
    for pair, n in counts[counts >= cfg.min_cells].items():
        ta, tb = pair.split("+")
        a, b = inputs.targets.index(ta), inputs.targets.index(tb)
        singles, obs, _ = pair_observation(inputs, a, b, alpha)
        own = [pos[t] for t in (ta, tb) if t in pos]
        preds = pair_predictions(inputs, singles, a, b, embedding)
        for name, pred in preds.items():
            rows.append({"dataset": dataset, "method": name, "perturbation": pair, "n_cells": n,
                         **_score(pred, obs, own, cfg.n_de)})
        draws = [inputs.y[rng.choice(np.flatnonzero(inputs.control), size=n, replace=False)].mean(axis=0)
                 for _ in range(cfg.null_draws)]
        null = pd.DataFrame([_score(preds["additive"], d, own, cfg.n_de) for d in draws]).mean()
        rows.append({"dataset": dataset, "method": "additive vs control draw", "perturbation": pair, "n_cells": n,
                     **null.to_dict()})
    if not rows:
        raise ValueError(f"no target pair is carried by >= {cfg.min_cells} cells (largest: {counts.head(3).to_dict()}); "
                         "lower min_cells.")
    return pd.DataFrame(rows)
