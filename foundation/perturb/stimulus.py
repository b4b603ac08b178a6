"""A stimulus per cell type (Kang 2018 IFN-beta PBMCs): predict the stimulated shift of a held-out cell type
from the other types' shifts and the held-out type's control cells only (leave-one-cell-type-out).

Methods, all fitted on the other cell types:
  ``no_change``; ``mean_shift`` (mean shift of the other types);
  ``linear[control expr]`` and ``cellvq[control emb]``: kernel ridge around the mean shift, the kernel the
  cosine of the types' control profiles (pseudobulk log-expression, or mean CellVQ embedding of the control
  cells), centred on the training types;
  ``zinb_decoder[mean latent]``: the other types' mean latent shift added to the held-out type's control
  code vectors and decoded (:mod:`foundation.perturb.decode`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from anndata import AnnData

from foundation.perturb.data import log_normalise
from foundation.perturb.decode import DecodeConfig, LatentDecoder, group_codes
from foundation.perturb.features import unit_rows
from foundation.perturb.metrics import perturbation_metrics
from foundation.perturb.models import CellVQPredictor

STIMULUS_METHODS = ("no_change", "mean_shift", "linear[control expr]", "cellvq[control emb]",
                    "zinb_decoder[mean latent]")


@dataclass
class StimulusConfig:
    condition_key: str = "condition"
    control: str = "CTRL"
    stimulus: str = "STIM"
    type_key: str = "cell_type"
    min_cells: int = 20          # cells per cell type in each condition (smaller types are dropped)
    min_expressed: float = 0.05  # genes kept: detected in at least this share of cells
    n_de: int = 20


@dataclass
class StimulusData:
    genes: pd.Index
    cell_types: list[str]
    shift: np.ndarray            # (T, G) stimulated minus control mean log-normalised expression
    control_profile: np.ndarray  # (T, G) control mean log-normalised expression
    de: np.ndarray = field(init=False)     # (T, n_de) top DE genes of each type


def _check(adata: AnnData, cfg: StimulusConfig) -> None:
    for key, flag in ((cfg.condition_key, "--condition-key"), (cfg.type_key, "--type-key")):
        if key not in adata.obs:
            raise KeyError(f"obs has no column {key!r} (columns: {list(adata.obs.columns)}); pass it with {flag}.")
    cond = set(adata.obs[cfg.condition_key].astype(str))
    for lab in (cfg.control, cfg.stimulus):
        if lab not in cond:
            raise ValueError(f"label {lab!r} not in obs[{cfg.condition_key!r}] (values {sorted(cond)[:8]}); "
                             "pass the control and stimulus labels (--control, --stimulus).")


def kept_types(adata: AnnData, cfg: StimulusConfig) -> list[str]:
    """Cell types with at least ``min_cells`` cells in both conditions."""
    tab = pd.crosstab(adata.obs[cfg.type_key].astype(str), adata.obs[cfg.condition_key].astype(str))
    keep = tab[(tab[cfg.control] >= cfg.min_cells) & (tab[cfg.stimulus] >= cfg.min_cells)].index
    if len(keep) < 3:
        raise ValueError(f"only {len(keep)} cell types have >= {cfg.min_cells} cells in both conditions; "
                         "leave-one-type-out needs 3 (lower --min-cells).")
    return list(keep)


def stimulus_shifts(adata: AnnData, cfg: StimulusConfig | None = None) -> StimulusData:
    """Per cell type: control profile and stimulated-minus-control shift over the detected genes."""
    cfg = cfg or StimulusConfig()
    _check(adata, cfg)
    types = kept_types(adata, cfg)
    expr = log_normalise(adata)
    detected = (expr > 0).mean(axis=0) >= cfg.min_expressed
    expr = expr[:, detected]
    ct = adata.obs[cfg.type_key].astype(str).to_numpy()
    cond = adata.obs[cfg.condition_key].astype(str).to_numpy()
    ctrl = np.stack([expr[(ct == t) & (cond == cfg.control)].mean(axis=0) for t in types]).astype(np.float64)
    stim = np.stack([expr[(ct == t) & (cond == cfg.stimulus)].mean(axis=0) for t in types]).astype(np.float64)
    data = StimulusData(pd.Index(adata.var_names[detected]), types, stim - ctrl, ctrl)
    data.de = np.argsort(-np.abs(data.shift), axis=1)[:, :cfg.n_de]
    return data


def type_groups(adata: AnnData, cfg: StimulusConfig) -> pd.Series:
    """Group label of each cell: ``<type>|<condition>``."""
    return adata.obs[cfg.type_key].astype(str) + "|" + adata.obs[cfg.condition_key].astype(str)


def kernel_predict(feats: np.ndarray, shifts: np.ndarray, train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Kernel ridge around the training mean shift; features centred on the training types, cosine kernel."""
    centre = feats[train].mean(axis=0)
    f = unit_rows(feats - centre)
    zeros = np.zeros_like(shifts)
    return CellVQPredictor().fit(f[train], shifts[train], zeros[train]).predict(f[test], zeros[test])


class StimulusInputs:
    """What the CellVQ methods read: mean control embeddings, control code vectors and latent shifts per type."""

    def __init__(self, model, adata: AnnData, data: StimulusData, cfg: StimulusConfig, dcfg: DecodeConfig):
        codes = group_codes(model, adata, type_groups(adata, cfg), None, dcfg)
        ctrl = [codes[f"{t}|{cfg.control}"] for t in data.cell_types]
        stim = [codes[f"{t}|{cfg.stimulus}"] for t in data.cell_types]
        self.latent_shift = np.stack([s[0].mean(axis=0) - c[0].mean(axis=0) for s, c in zip(stim, ctrl)])
        self.control_zq = [c[0] for c in ctrl]                         # per type: control code vectors
        self.control_emb = np.stack([c[1].mean(axis=0) for c in ctrl])  # per type: mean control embedding
        self.decoder = LatentDecoder(model, data.genes, dcfg)


def predict_type(name: str, data: StimulusData, inputs: StimulusInputs | None, train: np.ndarray,
                 i: int) -> np.ndarray:
    """Method ``name``'s predicted shift of cell type ``i`` from the types ``train``."""
    if name == "no_change":
        return np.zeros(len(data.genes))
    if name == "mean_shift":
        return data.shift[train].mean(axis=0)
    if name == "linear[control expr]":
        return kernel_predict(data.control_profile, data.shift, train, np.array([i]))[0]
    if name == "cellvq[control emb]":
        return kernel_predict(inputs.control_emb, data.shift, train, np.array([i]))[0]
    if name == "zinb_decoder[mean latent]":
        d = inputs.latent_shift[train].mean(axis=0, keepdims=True)
        return inputs.decoder.expression_shift(inputs.control_zq[i], d)[0]
    raise ValueError(f"unknown stimulus method {name!r}; choose from {list(STIMULUS_METHODS)}.")


def evaluate_stimulus(data: StimulusData, inputs: StimulusInputs | None, methods=STIMULUS_METHODS,
                      dataset: str = "kang2018_ifnb") -> pd.DataFrame:
    """Leave-one-cell-type-out: one row per method x held-out type, the metrics of :func:`evaluate`."""
    rows = []
    for i, t in enumerate(data.cell_types):
        train = np.setdiff1d(np.arange(len(data.cell_types)), [i])
        for name in methods:
            t0 = time.perf_counter()
            pred = predict_type(name, data, inputs, train, i)
            rows.append({"dataset": dataset, "method": name, "fold": i, "perturbation": t,
                         **perturbation_metrics(pred, data.shift[i], data.de[i]),
                         "seconds": time.perf_counter() - t0})
    return pd.DataFrame(rows)
