"""The ZINB-decoder route: a perturbation as a shift of the CellVQ cell embedding, mapped back to expression.

Cells are embedded once (``X_cellvq_q``, the code vector the decoder reads). A group's latent shift is the
mean code vector of its cells minus that of the control cells. A predicted latent shift ``d`` turns into an
expression shift through the decoder: mean over control cells of ``log1p(target_sum * share(z + d))`` minus
the same at ``z`` (``share`` = the decoder's ZINB mean per unit library, over the measured genes), so the
decoder's own bias cancels. Genes outside the model's vocabulary get a predicted shift of 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from anndata import AnnData


@dataclass
class DecodeConfig:
    max_cells: int = 150       # cells embedded per group (seeded subsample; controls get 4x)
    seed: int = 0
    target_sum: float = 1e4    # library of the decoded profile (the log-normalisation of the observed shifts)
    batch_size: int = 512


@dataclass
class LatentGroups:
    """Code vectors of control cells and the latent shift of every group (same order as ``groups``)."""
    groups: list[str]
    control_zq: np.ndarray     # (n_control, d)
    shift: np.ndarray          # (P, d) mean code vector of the group minus that of the controls


def subsample(labels: pd.Series, control: str, cfg: DecodeConfig) -> np.ndarray:
    """Positions of at most ``max_cells`` cells per label (4x for the control label), seeded, sorted."""
    rng = np.random.default_rng(cfg.seed)
    keep = []
    for lab, pos in pd.Series(np.arange(len(labels)), index=labels.to_numpy()).groupby(level=0):
        cap = cfg.max_cells * (4 if lab == control else 1)
        keep.append(rng.choice(pos.to_numpy(), size=min(cap, len(pos)), replace=False))
    return np.sort(np.concatenate(keep))


def group_codes(model, adata: AnnData, labels: pd.Series, control: str | None,
                cfg: DecodeConfig | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Embed a seeded subsample of ``adata`` (raw counts): label -> (code vectors ``X_cellvq_q``, embeddings
    ``X_cellvq``) of its sampled cells."""
    cfg = cfg or DecodeConfig()
    labels = pd.Series(np.asarray(labels, dtype=str))
    idx = subsample(labels, control, cfg)
    sub = adata[idx].copy()
    model.embed(sub, progress=False)
    zq, z, lab = sub.obsm["X_cellvq_q"].astype(np.float64), sub.obsm["X_cellvq"].astype(np.float64), labels.to_numpy()[idx]
    return {g: (zq[lab == g], z[lab == g]) for g in np.unique(lab)}


def latent_groups(model, adata: AnnData, labels: pd.Series, control: str, groups: list[str],
                  cfg: DecodeConfig | None = None) -> LatentGroups:
    """Per-group latent shifts from the control cells (a seeded subsample of ``adata`` embedded once)."""
    codes = group_codes(model, adata, labels, control, cfg)
    missing = [g for g in [control, *groups] if g not in codes]
    if missing:
        raise ValueError(f"groups {missing[:8]} have no cells under that label; check the perturbation labels.")
    ctrl = codes[control][0]
    shift = np.stack([codes[g][0].mean(axis=0) - ctrl.mean(axis=0) for g in groups])
    return LatentGroups(list(groups), ctrl, shift)


class LatentDecoder:
    """Decode latent shifts of a fixed set of cells into expression shifts of ``genes``."""

    def __init__(self, model, genes: pd.Index, cfg: DecodeConfig | None = None):
        self.model, self.cfg = model, cfg or DecodeConfig()
        self.genes = pd.Index(genes)
        pos = model.vocab.index_of(list(self.genes))
        self.known = pos >= 0
        if not self.known.any():
            raise ValueError("none of the measured genes is in the model's vocabulary; the decoder cannot "
                             "speak about them (pass a model trained on these genes with --model).")
        self.vocab_pos = pos[self.known]
        self.measured = torch.zeros(len(model.vocab), dtype=torch.bool)
        self.measured[torch.as_tensor(self.vocab_pos)] = True

    @torch.no_grad()
    def log_profile(self, zq: np.ndarray) -> np.ndarray:
        """(G_known,) mean over the rows of ``zq`` of log1p(target_sum * decoded share) of the known genes."""
        module = self.model.module.eval()
        dev = next(module.parameters()).device
        gene_emb = module.gene_embeddings()
        total = np.zeros(len(self.vocab_pos))
        for s in range(0, len(zq), self.cfg.batch_size):
            z = torch.as_tensor(zq[s: s + self.cfg.batch_size], dtype=torch.float32, device=dev)
            lib = torch.full((len(z),), self.cfg.target_sum, device=dev)
            mu = module.decoder(z, gene_emb, lib, self.measured.to(dev)).mean
            total += torch.log1p(mu[:, torch.as_tensor(self.vocab_pos, device=dev)]).sum(0).double().cpu().numpy()
        return total / len(zq)

    def expression_shift(self, control_zq: np.ndarray, latent_shift: np.ndarray) -> np.ndarray:
        """(P, G) decoded expression shift of each latent shift row applied to the control cells."""
        base = self.log_profile(control_zq)
        out = np.zeros((len(latent_shift), len(self.genes)))
        for i, d in enumerate(latent_shift):
            out[i, self.known] = self.log_profile(control_zq + d) - base
        return out
