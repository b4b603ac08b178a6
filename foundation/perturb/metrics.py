"""Per-perturbation metrics of a predicted vs observed shift."""

from __future__ import annotations

import numpy as np


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation; 0.0 when either side is constant (a constant prediction carries no ranking)."""
    a, b = a - a.mean(), b - b.mean()
    den = np.sqrt((a @ a) * (b @ b))
    return float(a @ b / den) if den > 0 else 0.0


def perturbation_metrics(pred: np.ndarray, obs: np.ndarray, de: np.ndarray) -> dict[str, float]:
    """pearson_all (all genes), pearson_de (top DE genes, "Pearson-delta"), mse_de, direction_de (share of
    DE genes whose predicted sign matches the observed one)."""
    return {
        "pearson_all": pearson(pred, obs),
        "pearson_de": pearson(pred[de], obs[de]),
        "mse_de": float(np.mean((pred[de] - obs[de]) ** 2)),
        "direction_de": float(np.mean(np.sign(pred[de]) == np.sign(obs[de]))),
    }
