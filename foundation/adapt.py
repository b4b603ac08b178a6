"""Continual, self-supervised pretraining of a CellVQ checkpoint on a user's own counts (``adapt``).

The model keeps its vocabulary and architecture and goes on minimising its pretraining objective (masked
ZINB reconstruction, cross-view contrast, SCD commitment) on the new cells only, at a lower learning rate
and at the parent's final quantiser temperature. The new checkpoint records its parent (name and
sha256), the data it saw and the command that made it (``metadata["adapted_from"]``, ``["adapt"]``).

No labels are read: ``adapt`` may be run on the very cells that are later clustered or annotated, as
scGPT's "continual pretraining" is.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from foundation.grow import GrowConfig, grow_vocabulary

log = logging.getLogger("foundation")


@dataclass
class AdaptConfig:
    """How ``adapt`` trains. The rest of the objective comes from the parent's ``train_config``."""

    epochs: int = 4
    lr: float = 1e-3  # the parent's peak was 3e-4; 1e-4 moved Moncada ARI 0.03 -> 0.21, 1e-3 -> 0.32
    batch_size: int = 64
    warmup_steps: int = 20
    max_cells: int | None = 20_000  # a random subset (seeded) when the data hold more cells
    min_cells: int = 200  # fewer cells are refused: too few to adapt on without overfitting
    seed: int = 0
    layer: str | None = None
    var_key: str | None = None
    min_match: float = 0.2
    block_size: int = 512
    # genes the parent barely shaped (embedding norm below ``weak_norm``) that vary in the new data start
    # from the new data's SVD loadings, mapped into the parent's embedding space through the genes both
    # know (ridge least squares); "none" keeps every parent embedding as it is
    gene_init: str = "svd"
    weak_norm: float = 2.0
    n_top_genes: int = 2000
    # untrained GENCODE genes of the data added to the vocabulary and learnt (foundation.grow)
    grow: GrowConfig = field(default_factory=GrowConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class AnnDataBlocks:
    """The cells of one AnnData as :class:`~foundation.data.CountsBlock`s, reshuffled every epoch (seeded).

    Enough of a :class:`~foundation.data.CountsStream` for :class:`~foundation.train.trainer.Trainer`."""

    def __init__(self, blocks: list, seed: int = 0):
        import scipy.sparse as sp

        self.counts = sp.vstack([b.counts for b in blocks], format="csr")
        self.measured = blocks[0].measured
        self.source = blocks[0].source
        self.obs_names = [n for b in blocks for n in b.obs_names]
        self.block_size = max(1, blocks[0].n_obs)
        self.seed = seed
        self.epoch = 0

    @property
    def n_cells(self) -> int:
        return self.counts.shape[0]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator:
        from foundation.data import CountsBlock

        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n_cells)
        for s in range(0, self.n_cells, self.block_size):
            rows = order[s : s + self.block_size]
            yield CountsBlock(self.counts[rows], self.measured, self.source,
                              [self.obs_names[i] for i in rows], rows.astype(np.int64))


def data_fingerprint(adata) -> dict[str, Any]:
    """What identifies the adaptation data without storing it: shape, file, sha256 of the cell and gene names."""
    h_obs = hashlib.sha256("\n".join(map(str, adata.obs_names)).encode()).hexdigest()
    h_var = hashlib.sha256("\n".join(map(str, adata.var_names)).encode()).hexdigest()
    src = adata.filename if getattr(adata, "isbacked", False) else adata.uns.get("cellvq_source_file")
    return {"n_cells": int(adata.n_obs), "n_genes": int(adata.n_vars), "file": str(src) if src else None,
            "obs_names_sha256": h_obs, "var_names_sha256": h_var}


def check_adapt_input(adata, cfg: AdaptConfig) -> None:
    """Refuse data ``adapt`` cannot learn from, before any training (raw counts, enough cells)."""
    from foundation.data import check_unique_genes, get_counts

    if adata.n_obs < cfg.min_cells:
        raise ValueError(
            f"adapt needs at least {cfg.min_cells} cells, got {adata.n_obs}: with fewer the model overfits them. "
            "Use the zero-shot model (`cellvq embed`), or pool more cells of the same experiment."
        )
    check_unique_genes(adata, var_key=cfg.var_key)
    get_counts(adata, cfg.layer)  # raises with the fix when the data are not raw counts


def subsample(adata, cfg: AdaptConfig):
    if cfg.max_cells is None or adata.n_obs <= cfg.max_cells:
        return adata
    rows = np.sort(np.random.default_rng(cfg.seed).choice(adata.n_obs, cfg.max_cells, replace=False))
    return adata[rows].to_memory() if getattr(adata, "isbacked", False) else adata[rows]


def adapt_train_config(parent_train: dict[str, Any] | None, cfg: AdaptConfig):
    """The parent's objective at ``adapt``'s schedule: lower learning rate, a short warm-up, the quantiser
    held at the parent's final temperature (its codes stay readable), no per-file caps."""
    from foundation.config import TrainConfig

    base = TrainConfig.from_dict(parent_train) if parent_train else TrainConfig()
    return dataclasses.replace(
        base, epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size, warmup_steps=cfg.warmup_steps,
        seed=cfg.seed, tau_start=base.tau_end, max_cells_per_file=None, mix_cells=0, block_size=cfg.block_size,
    )


def adapt(model, adata, cfg: AdaptConfig | None = None, out: str | os.PathLike | None = None,
          command: str | None = None, progress: bool = True):
    """A new :class:`~foundation.CellVQ` continually pretrained on ``adata`` (raw counts); ``model`` is not
    changed. With ``out`` the checkpoint is written there (atomically: nothing half-written on failure)."""
    from foundation.data import iter_blocks
    from foundation.train.trainer import Trainer, seed_everything

    cfg = cfg or AdaptConfig()
    if cfg.epochs < 1:
        raise ValueError(f"adapt needs at least 1 epoch, got {cfg.epochs} (--epochs)")
    check_adapt_input(adata, cfg)
    data = subsample(adata, cfg)
    child, added = grow_vocabulary(model, data, cfg.grow, layer=cfg.layer, var_key=cfg.var_key, seed=cfg.seed)
    blocks = list(iter_blocks(data, child.vocab, cfg.block_size, layer=cfg.layer, var_key=cfg.var_key,
                              min_match=cfg.min_match))
    stream = AnnDataBlocks(blocks, seed=cfg.seed)
    seed_everything(cfg.seed)
    grown = np.arange(len(model.vocab), len(child.vocab))
    n_new = init_weak_genes(child, stream, cfg, grown) if cfg.gene_init == "svd" else 0
    train = adapt_train_config(model.metadata.get("train_config"), cfg)
    trainer = Trainer(child.module, train)
    result = trainer.fit(stream, stream.n_cells, progress=progress)
    child.module.eval()
    if model.coarse is not None:  # keep the coarse centroids; the moved fine codes go to their nearest
        child.coarse = model.coarse.reassign(child.codebook())
    child.metadata = provenance(model, adata, cfg, train, result, command)
    child.metadata["adapt"]["n_genes_initialised"] = n_new
    child.metadata["adapt"]["genes_added"] = added.symbols
    child.history = result.history
    if out is not None:
        from foundation.checkpoint import sha256_file

        child.save(out)
        child.metadata["checkpoint_sha256"] = sha256_file(Path(out) / "model.safetensors")
        child.metadata["checkpoint_path"] = str(out)
    return child


def init_weak_genes(model, stream: AnnDataBlocks, cfg: AdaptConfig, grown: np.ndarray | None = None) -> int:
    """Give the genes that vary in the new data but that the parent barely shaped (and the ``grown`` ones it
    never had) a data-driven start in the parent's embedding space; return how many. The map from the new
    data's SVD loadings to the parent's space is fitted (ridge) on the variable genes the parent does know;
    with fewer than ``d_model`` of them nothing is changed (there is nothing to align through)."""
    import torch

    from foundation.train.trainer import InitSample, svd_gene_init

    if cfg.gene_init not in ("svd", "none"):
        raise ValueError(f"gene_init={cfg.gene_init!r}: use 'svd' or 'none'")
    sample = InitSample([stream.counts], [np.asarray(stream.measured, dtype=bool)])
    d = model.config.d_model
    top, vec = svd_gene_init(sample, len(model.vocab), d, n_top=cfg.n_top_genes, seed=cfg.seed, include=grown)
    weight = model.module.encoder.gene_embedding.weight
    parent = weight.detach()[torch.from_numpy(top)].double().cpu().numpy()
    known = (np.linalg.norm(parent, axis=1) >= cfg.weak_norm) & ~np.isin(top, grown if grown is not None else [])
    if known.sum() < d:
        return 0
    A, B = vec[known].astype(np.float64), parent[known]
    lam = 1e-2 * np.trace(A.T @ A) / d
    W = np.linalg.solve(A.T @ A + lam * np.eye(d), A.T @ B)
    new = vec[~known].astype(np.float64) @ W
    with torch.no_grad():
        weight[torch.from_numpy(top[~known])] = torch.from_numpy(new).to(weight)
    return int((~known).sum())


def provenance(parent, adata, cfg: AdaptConfig, train, result, command: str | None) -> dict[str, Any]:
    meta = {k: v for k, v in parent.metadata.items() if k not in ("checkpoint_sha256", "checkpoint_path")}
    parent_name = parent.metadata.get("name", "cellvq")
    meta.update(
        name=f"{parent_name}-adapted",
        adapted_from={"name": parent_name, "checkpoint_sha256": parent.metadata.get("checkpoint_sha256", ""),
                      "checkpoint_path": parent.metadata.get("checkpoint_path", "")},
        adapt={"data": data_fingerprint(adata), "config": cfg.to_dict(), "train_config": train.to_dict(),
               "steps": result.steps, "seconds": round(result.seconds, 1),
               "final_history": result.history[-1] if result.history else {},
               "command": command or "foundation.CellVQ.adapt (Python API)"},
    )
    return meta
