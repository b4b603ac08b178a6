"""Cell-level samples of a perturbation from the ZINB decoder (``cellvq perturb sample``).

A shift table says how the mean log-normalised expression of every gene moves from control. To turn it
into cells, control cells are embedded, and the decoder gives each one its ZINB (``mu``, ``theta``,
``pi``) at the cell's own library size. For a gene with shift ``s`` the cell's normalised mean ``m``
(= ``mu * target_sum / library``) becomes ``m' = max((1 + m) * exp(s) - 1, 0)``, so that
``log1p(m') - log1p(m) = s`` wherever ``m'`` stays above zero: the plug-in version of the table's own
definition. Counts are drawn from the ZINB with the new mean; ``pi`` and ``theta`` are the cell's own.
The same cells decoded without a shift are returned as simulated controls, so that a user compares
samples with samples (the decoder's own error cancels) as well as with the observed cells.

Genes outside the model's vocabulary cannot be decoded: their counts are the control cell's observed
counts, scaled by the same rule and Poisson-resampled, and ``var["decoded"]`` is False for them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from anndata import AnnData


@dataclass
class SampleConfig:
    n_cells: int = 200          # cells sampled per perturbation (control cells drawn with a seed)
    seed: int = 0
    target_sum: float = 1e4     # the log-normalisation the shift table uses
    batch_size: int = 256


def shifted_mean(mean_norm: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Normalised means moved so that log1p moves by ``shift``: ``max((1 + m) e^s - 1, 0)``."""
    return np.maximum((1.0 + mean_norm) * np.exp(shift) - 1.0, 0.0)


def check_shifts(shifts: pd.DataFrame, genes: pd.Index) -> pd.DataFrame:
    """(perturbation x gene) frame of deltas from a long shift table; genes not in ``genes`` are an error."""
    need = {"perturbation", "gene", "delta"}
    if not need <= set(shifts.columns):
        raise ValueError(f"the shift table lacks columns {sorted(need - set(shifts.columns))}; pass a table "
                         "written by `cellvq perturb predict` or `train` (perturbation,gene,delta,...).")
    wide = shifts.pivot_table(index="perturbation", columns="gene", values="delta", aggfunc="mean")
    unknown = wide.columns.difference(genes)
    if len(unknown):
        raise ValueError(f"{len(unknown)} genes of the shift table (e.g. {list(unknown[:5])}) are not measured "
                         "in the control cells; pass control cells of the same screen.")
    return wide.reindex(columns=genes).fillna(0.0)


class PerturbationSampler:
    """Draw perturbed and control cells for shift rows, from the decoder of ``model`` at ``control`` cells."""

    def __init__(self, model, control: AnnData, cfg: SampleConfig | None = None):
        self.model, self.cfg = model, cfg or SampleConfig()
        self.rng = np.random.default_rng(self.cfg.seed)
        pick = self.rng.choice(control.n_obs, size=self.cfg.n_cells, replace=control.n_obs < self.cfg.n_cells)
        cells = control[np.sort(pick)].copy()
        counts = sp.csr_matrix(cells.X, dtype=np.float64)
        self.library = np.asarray(counts.sum(axis=1)).ravel()
        if np.any(self.library <= 0):
            raise ValueError("some control cells have no counts; filter them out (sc.pp.filter_cells(adata, min_counts=1)).")
        self.counts, self.cells, self.genes = counts.toarray(), cells.obs_names, control.var_names
        model.embed(cells, progress=False)
        self.zq = cells.obsm["X_cellvq_q"].astype(np.float32)
        pos = model.vocab.index_of(list(self.genes))
        self.known, self.vocab_pos = pos >= 0, pos[pos >= 0]
        if not self.known.any():
            raise ValueError("none of the control cells' genes is in the model's vocabulary; pass a model that "
                             "knows them with --model (or `cellvq adapt` one on these cells).")
        self.mu, self.theta, self.zi = self.decode()

    @torch.no_grad()
    def decode(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """ZINB parameters (cells x known genes) of the sampled control cells at their own library sizes."""
        module = self.model.module.eval()
        dev = next(module.parameters()).device
        measured = torch.zeros(len(self.model.vocab), dtype=torch.bool, device=dev)
        cols = torch.as_tensor(self.vocab_pos, device=dev)
        measured[cols] = True
        gene_emb = module.gene_embeddings()
        parts = []
        for s in range(0, len(self.zq), self.cfg.batch_size):
            z = torch.as_tensor(self.zq[s: s + self.cfg.batch_size], device=dev)
            lib = torch.as_tensor(self.library[s: s + self.cfg.batch_size], dtype=torch.float32, device=dev)
            d = module.decoder(z, gene_emb, lib, measured)
            parts.append([t[:, cols].double().cpu().numpy() for t in (d.mu, d.theta, d.zi_logits)])
        return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))

    def draw(self, shift: np.ndarray) -> np.ndarray:
        """Counts (cells x genes) for one shift row over ``self.genes`` (zeros: simulated controls)."""
        scale = self.library[:, None] / self.cfg.target_sum
        out = np.empty_like(self.counts)
        s_known = shift[self.known]
        mu = shifted_mean(self.mu / scale, s_known[None, :]) * scale
        zinb_nb = self.rng.gamma(self.theta, mu / self.theta) if mu.size else mu
        keep = self.rng.random(mu.shape) >= 1.0 / (1.0 + np.exp(-self.zi))
        out[:, self.known] = self.rng.poisson(zinb_nb) * keep
        if (~self.known).any():
            obs = self.counts[:, ~self.known]
            out[:, ~self.known] = self.rng.poisson(shifted_mean(obs / scale, shift[~self.known][None, :]) * scale)
        return out

    def sample(self, shifts: pd.DataFrame, control_label: str = "simulated control") -> AnnData:
        """AnnData of raw counts: ``n_cells`` simulated controls, then ``n_cells`` per row of ``shifts``
        (perturbation x gene, over ``self.genes``); ``obs`` perturbation / source_cell, ``var`` decoded."""
        rows = [(control_label, np.zeros(len(self.genes)))] + [(p, shifts.loc[p].to_numpy(float)) for p in shifts.index]
        blocks = [sp.csr_matrix(self.draw(s).astype(np.float32)) for _, s in rows]
        obs = pd.DataFrame({"perturbation": np.repeat([r[0] for r in rows], len(self.cells)),
                            "source_cell": np.tile(np.asarray(self.cells), len(rows))})
        obs.index = [f"sample{i}" for i in range(len(obs))]
        adata = AnnData(sp.vstack(blocks).tocsr(), obs=obs, var=pd.DataFrame(index=self.genes))
        adata.var["decoded"] = self.known
        adata.uns["cellvq_perturb_samples"] = {**asdict(self.cfg), "control_label": control_label,
                                               "model": self.model.metadata.get("name", "cellvq"),
                                               "checkpoint_sha256": self.model.metadata.get("checkpoint_sha256", "")}
        return adata
