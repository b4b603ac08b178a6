"""Zero-shot perturbation response: how far does each perturbation move cells in the embedding?"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from anndata import AnnData

from foundation.tasks.inputs import get_obs, get_rep

__all__ = ["perturbation_effects", "energy_distance_test"]

logger = logging.getLogger(__name__)


def _pairwise(Z: np.ndarray) -> np.ndarray:
    sq = np.einsum("ij,ij->i", Z, Z)
    D2 = sq[:, None] + sq[None, :] - 2.0 * (Z @ Z.T)
    np.maximum(D2, 0.0, out=D2)
    np.fill_diagonal(D2, 0.0)
    return np.sqrt(D2)


def _energy_stats(D: np.ndarray, rowsum: np.ndarray, total: float, M: np.ndarray) -> np.ndarray:
    """Energy distance for each column of the 0/1 mask matrix ``M`` (n x k) marking group A (rest = group B).

    E = 2 mean_{a,b} d(a,b) - mean_{a != a'} d(a,a') - mean_{b != b'} d(b,b').
    """
    n = D.shape[0]
    na = M.sum(axis=0)
    nb = n - na
    DM = D @ M
    s_aa = np.einsum("ik,ik->k", M, DM)
    s_ab = M.T @ rowsum - s_aa
    s_bb = total - 2.0 * s_ab - s_aa
    return 2.0 * s_ab / (na * nb) - s_aa / (na * (na - 1)) - s_bb / (nb * (nb - 1))


def energy_distance_test(A: np.ndarray, B: np.ndarray, n_perm: int = 200, seed: int = 0) -> tuple[float, float]:
    """Energy distance between the rows of ``A`` and ``B`` and its permutation p-value.

    The p-value is ``(1 + #{perm >= observed}) / (1 + n_perm)`` with group labels permuted over the pooled
    cells (exact under the null of exchangeable cells; the smallest attainable value is ``1/(1+n_perm)``).
    """
    if len(A) < 2 or len(B) < 2:
        raise ValueError("energy_distance_test needs at least 2 cells in each group")
    Z = np.vstack([A, B]).astype(np.float64)
    D = _pairwise(Z)
    rowsum = D.sum(axis=1)
    total = float(rowsum.sum())
    n, na = len(Z), len(A)
    obs_mask = np.zeros((n, 1))
    obs_mask[:na, 0] = 1.0
    e_obs = float(_energy_stats(D, rowsum, total, obs_mask)[0])
    rng = np.random.default_rng(seed)
    exceed = 0
    done = 0
    chunk = 100
    while done < n_perm:
        k = min(chunk, n_perm - done)
        M = np.zeros((n, k))
        for j in range(k):
            M[rng.permutation(n)[:na], j] = 1.0
        exceed += int((_energy_stats(D, rowsum, total, M) >= e_obs - 1e-12).sum())
        done += k
    return e_obs, (1.0 + exceed) / (1.0 + n_perm)


def _bh(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values."""
    p = np.asarray(p, dtype=float)
    n = len(p)
    if n == 0:
        return p
    order = np.argsort(p)
    ranked = p[order] * n / np.arange(1, n + 1)
    q = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(n)
    out[order] = np.minimum(q, 1.0)
    return out


def perturbation_effects(
    adata: AnnData,
    key: str,
    control: str,
    use_rep: str = "X_cellvq",
    n_perm: int = 200,
    seed: int = 0,
    max_cells: int = 500,
    min_cells: int = 5,
    key_added: str = "cellvq_perturbation",
) -> pd.DataFrame:
    """Per perturbation, how far and how significantly its cells moved away from control cells.

    For each value ``g != control`` of ``adata.obs[key]`` (with at least ``min_cells`` cells), on the
    embedding ``obsm[use_rep]``:

    - ``shift``: Euclidean distance between the perturbed and control centroids;
    - ``shift_rel``: ``shift`` divided by the median distance of control cells to their centroid;
    - ``energy_distance``: energy distance between the two cell sets (0 when identically distributed);
    - ``pvalue``: permutation test of the energy distance (``n_perm`` label permutations); ``padj``:
      Benjamini-Hochberg over perturbations;
    - ``n_cells`` / ``n_control``: cells used (each side is subsampled to ``max_cells`` with ``seed`` to bound
      the O(n^2) distance matrix).

    Returns a DataFrame indexed by perturbation, sorted by ``energy_distance`` (descending), also written
    to ``adata.uns[key_added]`` (with ``adata.uns[key_added + "_params"]``).
    """
    R = get_rep(adata, use_rep)
    lab = get_obs(adata, key).astype("object")
    values = pd.unique(lab.dropna())
    if control not in set(values):
        raise ValueError(
            f"control {control!r} is not a value of adata.obs[{key!r}] (values: {sorted(map(str, values))[:20]}); "
            "pass the label of the unperturbed cells as control=."
        )
    rng = np.random.default_rng(seed)
    ctrl_idx = np.flatnonzero((lab == control).to_numpy())
    if len(ctrl_idx) < min_cells:
        raise ValueError(f"only {len(ctrl_idx)} control cells ({control!r}); need at least {min_cells}.")
    if len(ctrl_idx) > max_cells:
        ctrl_idx = np.sort(rng.choice(ctrl_idx, max_cells, replace=False))
    C = R[ctrl_idx]
    c_mu = C.mean(axis=0)
    c_spread = float(np.median(np.linalg.norm(C - c_mu, axis=1)))
    rows = []
    skipped = []
    for g in values:
        if g == control:
            continue
        idx = np.flatnonzero((lab == g).to_numpy())
        if len(idx) < min_cells:
            skipped.append(str(g))
            continue
        if len(idx) > max_cells:
            idx = np.sort(rng.choice(idx, max_cells, replace=False))
        P = R[idx]
        shift = float(np.linalg.norm(P.mean(axis=0) - c_mu))
        e, p = energy_distance_test(P, C, n_perm=n_perm, seed=int(rng.integers(2**31)))
        rows.append({
            "perturbation": str(g), "n_cells": len(idx), "n_control": len(ctrl_idx), "shift": shift,
            "shift_rel": shift / c_spread if c_spread > 0 else np.nan, "energy_distance": e, "pvalue": p,
        })
    if skipped:
        logger.info("perturbation_effects: skipped %d perturbations with < %d cells: %s", len(skipped),
                    min_cells, skipped[:10])
    if not rows:
        raise ValueError(f"no perturbation in adata.obs[{key!r}] besides {control!r} has >= {min_cells} cells.")
    df = pd.DataFrame(rows).set_index("perturbation")
    df["padj"] = _bh(df["pvalue"].to_numpy())
    df = df.sort_values("energy_distance", ascending=False)
    adata.uns[key_added] = df
    adata.uns[f"{key_added}_params"] = {"key": key, "control": control, "use_rep": use_rep, "n_perm": n_perm,
                                        "seed": seed, "max_cells": max_cells}
    return df
