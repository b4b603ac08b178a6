"""CellVQ predictor: kernel ridge over CellVQ gene embeddings of the targets, plus a propagation term that
spreads a target's own effect to the genes closest to it in CellVQ gene-embedding space."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class CellVQPredictor:
    """shift(p) = train mean + K(p, train) (K + alpha I)^-1 (Y - mean) + beta * S(p, genes).

    ``K`` is the cosine kernel of target-gene embeddings; ``S`` (from :func:`features.gene_similarity`) is
    the similarity of the targets to each measured gene (1 on a measured target itself); ``beta`` is the
    least-squares coefficient of the residuals on ``S`` over the training perturbations."""
    alpha: float = 1.0
    mean: np.ndarray = field(init=False, repr=False)

    def fit(self, feats: np.ndarray, shifts: np.ndarray, sim: np.ndarray) -> CellVQPredictor:
        self.mean = shifts.mean(axis=0)
        resid = shifts - self.mean
        s = sim.ravel()
        self.beta = float(s @ resid.ravel() / (s @ s)) if s @ s > 0 else 0.0
        self.feats = feats
        resid = resid - self.beta * sim
        k = feats @ feats.T if feats.shape[1] else np.zeros((len(feats), len(feats)))
        self.dual = np.linalg.solve(k + self.alpha * np.eye(len(k)), resid)
        return self

    def predict(self, feats: np.ndarray, sim: np.ndarray) -> np.ndarray:
        k = feats @ self.feats.T if feats.shape[1] else np.zeros((len(feats), len(self.feats)))
        return self.mean + k @ self.dual + self.beta * sim
