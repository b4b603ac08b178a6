"""Simple baselines, each ``fit(features, shifts)`` / ``predict(features)`` on (P, d) target features."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class NoChange:
    def fit(self, feats: np.ndarray, shifts: np.ndarray) -> NoChange:
        self.n_genes = shifts.shape[1]
        return self

    def predict(self, feats: np.ndarray) -> np.ndarray:
        return np.zeros((len(feats), self.n_genes))


@dataclass
class TrainMean:
    def fit(self, feats: np.ndarray, shifts: np.ndarray) -> TrainMean:
        self.mean = shifts.mean(axis=0)
        return self

    def predict(self, feats: np.ndarray) -> np.ndarray:
        return np.tile(self.mean, (len(feats), 1))


@dataclass
class LinearPCA:
    """Ahlmann-Eltze et al. 2025 style: ridge from target-gene embeddings to the scores of a PCA of the
    training shifts, mapped back to genes (plus the training mean)."""
    n_pcs: int = 10
    alpha: float = 1.0
    mean: np.ndarray = field(init=False, repr=False)

    def fit(self, feats: np.ndarray, shifts: np.ndarray) -> LinearPCA:
        self.mean = shifts.mean(axis=0)
        _, _, vt = np.linalg.svd(shifts - self.mean, full_matrices=False)
        self.pcs = vt[: min(self.n_pcs, len(vt))]
        scores = (shifts - self.mean) @ self.pcs.T
        self.w = np.linalg.solve(feats.T @ feats + self.alpha * np.eye(feats.shape[1]), feats.T @ scores)
        return self

    def predict(self, feats: np.ndarray) -> np.ndarray:
        return self.mean + feats @ self.w @ self.pcs


@dataclass
class KNN:
    """Mean shift of the k training perturbations whose target embeddings are most cosine-similar."""
    k: int = 3

    def fit(self, feats: np.ndarray, shifts: np.ndarray) -> KNN:
        self.feats, self.shifts = feats, shifts
        return self

    def predict(self, feats: np.ndarray) -> np.ndarray:
        sim = feats @ self.feats.T
        nn = np.argsort(-sim, axis=1)[:, : min(self.k, len(self.feats))]
        return self.shifts[nn].mean(axis=1)
