"""Cells kept out of pretraining, for honest zero-shot figures.

A holdout file is a TSV with columns ``file`` (an h5ad file name, no folder) and ``obs_name``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd


def make_holdout(adata, file_name: str, fraction: float = 0.3, stratify: str | None = None, seed: int = 0) -> pd.DataFrame:
    """Pick ``fraction`` of the cells (stratified by ``obs[stratify]`` when given), reproducibly."""
    rng = np.random.default_rng(seed)
    groups = adata.obs[stratify].astype(str).to_numpy() if stratify else np.zeros(adata.n_obs, dtype=object)
    picked: list[int] = []
    for g in sorted(set(groups)):
        idx = np.flatnonzero(groups == g)
        k = int(round(fraction * len(idx)))
        picked.extend(rng.choice(idx, size=k, replace=False).tolist())
    picked.sort()
    return pd.DataFrame({"file": file_name, "obs_name": adata.obs_names[picked].astype(str)})


def write_holdout(df: pd.DataFrame, path: str | os.PathLike) -> None:
    df.to_csv(path, sep="\t", index=False)


def read_holdout(path: str | os.PathLike) -> pd.DataFrame:
    df = pd.read_csv(path, sep="\t", dtype=str)
    missing = {"file", "obs_name"} - set(df.columns)
    if missing:
        raise ValueError(f"holdout file {path} lacks columns {sorted(missing)}; expected a TSV with 'file' and 'obs_name'")
    return df


def holdout_set(df: pd.DataFrame) -> set[tuple[str, str]]:
    return {(Path(f).name, o) for f, o in zip(df["file"], df["obs_name"])}
