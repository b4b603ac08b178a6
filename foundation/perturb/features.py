"""Target-gene features: rows of a gene-embedding table (CellVQ, random of the same shape, or none)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def random_like(emb: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Gaussian gene embeddings with the shape, index and per-dimension scale of ``emb`` (ablation)."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.normal(size=emb.shape) * emb.to_numpy().std(axis=0), index=emb.index)


def unit_rows(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)


def target_features(emb: pd.DataFrame | None, targets: list[list[str]]) -> np.ndarray:
    """(P, d) mean embedding of each perturbation's targets, unit-normalised; zeros for targets outside the
    vocabulary (and a (P, 0) array when ``emb`` is None)."""
    if emb is None:
        return np.zeros((len(targets), 0))
    rows = []
    for ts in targets:
        known = [t for t in ts if t in emb.index]
        rows.append(emb.loc[known].to_numpy().mean(axis=0) if known else np.zeros(emb.shape[1]))
    return unit_rows(np.asarray(rows, dtype=np.float64))


def gene_similarity(emb: pd.DataFrame | None, targets: list[list[str]], genes: pd.Index, top: int = 10) -> np.ndarray:
    """(P, G) cosine similarity of each perturbation's targets to every measured gene, kept for the ``top``
    most similar genes (a target measured itself gets similarity 1). With ``emb`` None only the self term."""
    out = np.zeros((len(targets), len(genes)))
    pos = {g: j for j, g in enumerate(genes)}
    if emb is not None:
        g_emb = unit_rows(emb.reindex(genes).fillna(0.0).to_numpy(dtype=np.float64))
        sim = target_features(emb, targets) @ g_emb.T
        cut = -np.sort(-sim, axis=1)[:, min(top, sim.shape[1]) - 1: min(top, sim.shape[1])]
        out = np.where(sim >= cut, np.clip(sim, 0, None), 0.0)
    for i, ts in enumerate(targets):
        for t in ts:
            if t in pos:
                out[i, pos[t]] = 1.0
    return out
