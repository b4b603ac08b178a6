"""CellVQ predictor: kernel ridge over CellVQ gene embeddings of the targets, plus a propagation term that
spreads a target's own effect to the genes closest to it in CellVQ gene-embedding space."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def loo_alpha(k: np.ndarray, resid: np.ndarray, alphas: tuple[float, ...]) -> float:
    """Kernel-ridge penalty with the smallest closed-form leave-one-out error on the training perturbations."""
    best, best_err = alphas[0], np.inf
    for a in alphas:
        h = k @ np.linalg.inv(k + a * np.eye(len(k)))
        err = np.mean(((resid - h @ resid) / (1.0 - np.diag(h))[:, None]) ** 2)
        if err < best_err:
            best, best_err = a, err
    return best


@dataclass
class CellVQPredictor:
    """shift(p) = train mean + K(p, train) (K + alpha I)^-1 (Y - mean - beta S) + beta * S(p, genes).

    ``K`` is the cosine kernel of target-gene embeddings; ``S`` (from :func:`features.gene_similarity`) is
    the similarity of the targets to each measured gene (1 on a measured target itself); ``beta`` is the
    least-squares coefficient of the residuals on ``S`` over the training perturbations; ``alpha`` is chosen
    from ``alphas`` by leave-one-out over the training perturbations only."""
    alphas: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0)
    mean: np.ndarray = field(init=False, repr=False)

    def fit(self, feats: np.ndarray, shifts: np.ndarray, sim: np.ndarray) -> CellVQPredictor:
        self.mean = shifts.mean(axis=0)
        resid = shifts - self.mean
        s = sim.ravel()
        self.beta = float(s @ resid.ravel() / (s @ s)) if s @ s > 0 else 0.0
        self.feats = feats
        resid = resid - self.beta * sim
        k = feats @ feats.T if feats.shape[1] else np.zeros((len(feats), len(feats)))
        self.alpha = loo_alpha(k, resid, self.alphas)
        self.dual = np.linalg.solve(k + self.alpha * np.eye(len(k)), resid)
        return self

    def predict(self, feats: np.ndarray, sim: np.ndarray) -> np.ndarray:
        k = feats @ self.feats.T if feats.shape[1] else np.zeros((len(feats), len(self.feats)))
        return self.mean + k @ self.dual + self.beta * sim
