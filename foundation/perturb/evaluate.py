"""Leave-perturbation-out evaluation: seeded grouped folds over perturbations, every method in one run."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from foundation.perturb import baselines
from foundation.perturb.data import PerturbData
from foundation.perturb.features import gene_similarity, random_like, target_features
from foundation.perturb.metrics import perturbation_metrics
from foundation.perturb.models import CellVQPredictor

# method name -> (model class, embedding source)
METHODS = {
    "no_change": (baselines.NoChange, "none"),
    "train_mean": (baselines.TrainMean, "none"),
    "linear[cellvq]": (baselines.LinearPCA, "cellvq"),
    "linear[random]": (baselines.LinearPCA, "random"),
    "knn[cellvq]": (baselines.KNN, "cellvq"),
    "knn[random]": (baselines.KNN, "random"),
    "cellvq_predictor[cellvq]": (CellVQPredictor, "cellvq"),
    "cellvq_predictor[random]": (CellVQPredictor, "random"),
    "cellvq_predictor[none]": (CellVQPredictor, "none"),
}


@dataclass
class EvalConfig:
    n_folds: int = 5
    seed: int = 0
    methods: tuple[str, ...] = tuple(METHODS)
    sim_top: int = 10   # genes a target's effect is propagated to


def folds(n: int, n_folds: int, seed: int) -> list[np.ndarray]:
    """Seeded split of perturbation indices into ``n_folds`` held-out groups."""
    if n_folds < 2 or n_folds > n:
        raise ValueError(f"n_folds={n_folds} must lie in [2, {n}] (the number of perturbations); pass --folds.")
    return np.array_split(np.random.default_rng(seed).permutation(n), n_folds)


def method_inputs(data: PerturbData, emb: pd.DataFrame | None, cfg: EvalConfig) -> dict[str, tuple]:
    """Per embedding source (cellvq, random, none): target features and target-gene similarity."""
    tables = {"cellvq": emb, "random": None if emb is None else random_like(emb, cfg.seed), "none": None}
    return {src: (target_features(t, data.targets), gene_similarity(t, data.targets, data.genes, cfg.sim_top))
            for src, t in tables.items()}


def fit_predict(name: str, inputs: dict, train: np.ndarray, test: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Fit method ``name`` on the ``train`` perturbations and predict the shifts of ``test``."""
    cls, src = METHODS[name]
    feats, sim = inputs[src]
    if cls is CellVQPredictor:
        return cls().fit(feats[train], shifts[train], sim[train]).predict(feats[test], sim[test])
    return cls().fit(feats[train], shifts[train]).predict(feats[test])


def evaluate(data: PerturbData, emb: pd.DataFrame | None, cfg: EvalConfig | None = None,
             dataset: str = "data") -> pd.DataFrame:
    """Tidy table: one row per dataset x method x fold x held-out perturbation, with the four metrics and
    the method's fit+predict seconds for that fold."""
    cfg = cfg or EvalConfig()
    unknown = [m for m in cfg.methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {list(METHODS)} (--methods).")
    needs_emb = [m for m in cfg.methods if METHODS[m][1] != "none"]
    if emb is None and needs_emb:
        raise ValueError(f"methods {needs_emb} need gene embeddings; pass a model or drop them.")
    inputs, rows = method_inputs(data, emb, cfg), []
    for k, test in enumerate(folds(len(data.perturbations), cfg.n_folds, cfg.seed)):
        train = np.setdiff1d(np.arange(len(data.perturbations)), test)
        for name in cfg.methods:
            t0 = time.perf_counter()
            pred = fit_predict(name, inputs, train, test, data.shift)
            secs = time.perf_counter() - t0
            for i, p in zip(test, pred):
                rows.append({"dataset": dataset, "method": name, "fold": k, "perturbation": data.perturbations[i],
                             **perturbation_metrics(p, data.shift[i], data.de[i]), "seconds": secs})
    return pd.DataFrame(rows)


#: decoder-route methods (:func:`evaluate_decoder`): the latent shift predicted from the targets' CellVQ
#: gene embeddings (kernel ridge), and the observed latent shift (an oracle: the most the decoder can give)
DECODER_METHODS = ("zinb_decoder[cellvq]", "zinb_decoder[observed latent]")


def evaluate_decoder(data: PerturbData, latent, decoder, emb: pd.DataFrame, cfg: EvalConfig | None = None,
                     dataset: str = "data") -> pd.DataFrame:
    """Rows like :func:`evaluate` for the ZINB-decoder route (``foundation.perturb.decode``): per fold, fit
    a kernel ridge from target-gene embeddings to the training perturbations' latent shifts, predict the
    held-out ones and decode them over the control cells; beside it, decode the observed latent shift."""
    cfg = cfg or EvalConfig()
    if list(latent.groups) != list(data.perturbations):
        raise ValueError("latent groups must follow data.perturbations; build them with groups=data.perturbations.")
    feats, rows = target_features(emb, data.targets), []
    no_sim = np.zeros_like(latent.shift)
    for k, test in enumerate(folds(len(data.perturbations), cfg.n_folds, cfg.seed)):
        train = np.setdiff1d(np.arange(len(data.perturbations)), test)
        for name in DECODER_METHODS:
            t0 = time.perf_counter()
            if name == DECODER_METHODS[0]:
                z = CellVQPredictor().fit(feats[train], latent.shift[train], no_sim[train]).predict(feats[test], no_sim[test])
            else:
                z = latent.shift[test]
            pred = decoder.expression_shift(latent.control_zq, z)
            secs = time.perf_counter() - t0
            for i, p in zip(test, pred):
                rows.append({"dataset": dataset, "method": name, "fold": k, "perturbation": data.perturbations[i],
                             **perturbation_metrics(p, data.shift[i], data.de[i]), "seconds": secs})
    return pd.DataFrame(rows)


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Mean of each metric over held-out perturbations, per dataset and method."""
    cols = ["pearson_all", "pearson_de", "mse_de", "direction_de"]
    return table.groupby(["dataset", "method"], sort=False)[cols].mean().reset_index()
