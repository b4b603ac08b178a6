"""Observed perturbation effects: per-perturbation mean shift of log-normalised expression from control.

Low MOI (one perturbation per cell): pseudobulk mean of the perturbed cells minus the control mean.
High MOI (several targets per cell, e.g. Gasperini 2019 ``tss_targets`` = ``A;B``): per-target effects are
fitted jointly by ridge regression of (batch-centred) expression on the cell x target design matrix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData


@dataclass
class PerturbConfig:
    key: str = "perturbation"        # obs column naming the perturbation(s) of each cell
    control: str = "non-targeting"   # label of control cells
    sep: str = r"[+;]"               # separator of several targets in one label
    min_cells: int = 20              # perturbations with fewer cells are dropped
    n_de: int = 20                   # DE genes per perturbation (top by |shift|)
    layer: str | None = None         # counts layer (None: X)
    batch_key: str | None = None     # obs column of batches, centred on their own control cells
    joint: bool | None = None        # None: joint fit when any label holds several targets
    ridge_alpha: float = 10.0        # penalty of the joint fit


@dataclass
class PerturbData:
    genes: pd.Index                  # measured genes (columns of ``shift``)
    perturbations: list[str]         # one row of ``shift`` each
    targets: list[list[str]]         # target genes of each perturbation
    shift: np.ndarray                # (P, G) mean shift of log-normalised expression from control
    n_cells: np.ndarray              # (P,) cells carrying each perturbation
    de: np.ndarray = field(init=False)  # (P, n_de) indices of the top DE genes

    def top_de(self, n_de: int) -> None:
        self.de = np.argsort(-np.abs(self.shift), axis=1)[:, :n_de]

    def subset(self, idx: np.ndarray) -> PerturbData:
        out = PerturbData(self.genes, [self.perturbations[i] for i in idx], [self.targets[i] for i in idx],
                          self.shift[idx], self.n_cells[idx])
        out.de = self.de[idx]
        return out


def log_normalise(adata: AnnData, layer: str | None = None) -> np.ndarray:
    """log1p of counts scaled to 10,000 per cell, dense float32 (cells x genes)."""
    x = adata.layers[layer] if layer else adata.X
    x = sp.csr_matrix(x, dtype=np.float32)
    total = np.asarray(x.sum(axis=1)).ravel()
    if np.any(total <= 0):
        raise ValueError(f"{int((total <= 0).sum())} cells have no counts; filter them out (e.g. sc.pp.filter_cells(adata, min_counts=1)).")
    x = sp.diags(1e4 / total) @ x
    x.data = np.log1p(x.data)
    return x.toarray()


def perturbation_labels(adata: AnnData, cfg: PerturbConfig) -> pd.Series:
    if cfg.key not in adata.obs:
        raise KeyError(f"obs has no column {cfg.key!r} (columns: {list(adata.obs.columns)}); pass the column with --key.")
    lab = adata.obs[cfg.key].astype(str)
    if not (lab == cfg.control).any():
        raise ValueError(f"control label {cfg.control!r} not found in obs[{cfg.key!r}] "
                         f"(values include {sorted(lab.unique())[:8]}); pass the control label with --control.")
    return lab


def centred_expression(adata: AnnData, expr: np.ndarray, ctrl: np.ndarray, cfg: PerturbConfig) -> np.ndarray:
    if cfg.batch_key is None:
        return expr - expr[ctrl].mean(axis=0)
    batches = adata.obs[cfg.batch_key].astype(str).to_numpy()
    out = np.empty_like(expr)
    for b in np.unique(batches):
        m = batches == b
        if not (m & ctrl).any():
            raise ValueError(f"batch {b!r} of obs[{cfg.batch_key!r}] has no control cells; drop it or pass no batch key.")
        out[m] = expr[m] - expr[m & ctrl].mean(axis=0)
    return out


def target_design(lab: pd.Series, cfg: PerturbConfig) -> tuple[sp.csr_matrix, list[str]]:
    split = [[] if s == cfg.control else [t for t in re.split(cfg.sep, s) if t] for s in lab]
    names = sorted({t for ts in split for t in ts})
    col = {t: j for j, t in enumerate(names)}
    rows = [i for i, ts in enumerate(split) for _ in ts]
    cols = [col[t] for ts in split for t in ts]
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(split), len(names))), names


def joint_fit(y: np.ndarray, design: sp.csr_matrix, alpha: float) -> np.ndarray:
    """Ridge coefficients (targets x genes) of y on the binary cell x target design."""
    xtx = (design.T @ design).toarray() + alpha * np.eye(design.shape[1])
    return np.linalg.solve(xtx, np.asarray(design.T @ y))


def perturbation_shifts(adata: AnnData, cfg: PerturbConfig | None = None) -> PerturbData:
    """Observed per-perturbation shift from control (pseudobulk, or joint ridge fit at high MOI)."""
    cfg = cfg or PerturbConfig()
    lab = perturbation_labels(adata, cfg)
    ctrl = (lab == cfg.control).to_numpy()
    y = centred_expression(adata, log_normalise(adata, cfg.layer), ctrl, cfg)
    design, names = target_design(lab, cfg)
    n_cells = np.asarray(design.sum(axis=0)).ravel()
    joint = cfg.joint if cfg.joint is not None else bool((np.asarray(design.sum(axis=1)).ravel() > 1).any())
    if joint:
        shift = joint_fit(y, design, cfg.ridge_alpha)
    else:
        shift = np.stack([y[np.asarray(design[:, j].todense()).ravel() > 0].mean(axis=0) for j in range(len(names))])
    keep = n_cells >= cfg.min_cells
    if keep.sum() < 2:
        raise ValueError(f"only {int(keep.sum())} perturbations have >= {cfg.min_cells} cells; lower --min-cells.")
    names = [n for n, k in zip(names, keep) if k]
    data = PerturbData(pd.Index(adata.var_names), names, [[n] for n in names], shift[keep].astype(np.float64), n_cells[keep])
    data.top_de(cfg.n_de)
    return data


def check_min_cells(adata: AnnData, cfg: PerturbConfig) -> None:
    """Raise when a perturbation (a target, counted over every label that holds it) has fewer than
    ``cfg.min_cells`` cells, naming them (training refuses what ``perturbation_shifts`` would drop silently)."""
    lab = perturbation_labels(adata, cfg)
    design, names = target_design(lab, cfg)
    n_cells = np.asarray(design.sum(axis=0)).ravel()
    small = {n: int(c) for n, c in zip(names, n_cells) if c < cfg.min_cells}
    if small:
        shown = dict(list(small.items())[:8])
        raise ValueError(f"{len(small)} perturbation(s) have fewer than {cfg.min_cells} cells ({shown}); "
                         f"remove them from obs[{cfg.key!r}], or lower --min-cells (estimates from few cells are noisy).")
