"""Inputs of the zero-shot tasks: a representation (obsm key or X) and an obs column, errors naming the fix."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData

from foundation.errors import MissingKeyError


def get_rep(adata: AnnData, use_rep: str) -> np.ndarray:
    """``adata.obsm[use_rep]`` as a dense float array, with a clear error if it is missing or not finite."""
    if use_rep == "X":
        import scipy.sparse as sp

        X = adata.X
        return np.asarray(X.toarray() if sp.issparse(X) else X, dtype=np.float64)
    if use_rep not in adata.obsm:
        avail = sorted(adata.obsm.keys())
        fix = ("embed the data first (CellVQ.embed(adata) writes obsm['X_cellvq']) or compute a baseline with "
               "foundation.tasks.pca_baseline(adata)")
        raise MissingKeyError(
            f"representation {use_rep!r} not found in adata.obsm (available: {avail or 'none'}); {fix}, or pass "
            "use_rep= naming an existing key."
        )
    R = np.asarray(adata.obsm[use_rep], dtype=np.float64)
    if R.ndim != 2:
        raise ValueError(f"adata.obsm[{use_rep!r}] must be 2-D (cells x dims), got shape {R.shape}")
    if not np.isfinite(R).all():
        raise ValueError(
            f"adata.obsm[{use_rep!r}] contains NaN/inf in {int((~np.isfinite(R).all(axis=1)).sum())} cells; "
            "recompute the embedding (or drop those cells) before running tasks on it."
        )
    return R


def get_obs(adata: AnnData, key: str) -> pd.Series:
    """``adata.obs[key]`` with a clear error listing the available columns."""
    if key not in adata.obs.columns:
        raise MissingKeyError(
            f"{key!r} not found in adata.obs; available columns: {list(adata.obs.columns) or 'none'}. "
            "Pass one of them."
        )
    return adata.obs[key]
