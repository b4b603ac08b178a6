"""User-facing CellVQ model (scvi-tools style: pure-torch module + training loop + this class).

>>> import foundation
>>> model = foundation.load_pretrained()              # shipped checkpoint, offline
>>> model.embed(adata)                                # writes obsm/obs/varm keys (docs/CONTRACTS.md)
>>> model = foundation.CellVQ.pretrain(["a.h5ad", "folder/"], out="runs/my_model")
>>> model.save("runs/my_model"); foundation.CellVQ.load("runs/my_model")
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from foundation.checkpoint import read_checkpoint, read_train_state, sha256_file, write_checkpoint
from foundation.config import CellVQConfig, TrainConfig
from foundation.errors import CheckpointError
from foundation.nn.module import CellVQModule
from foundation.nn.quantize import code_to_str
from foundation.tokens import make_batch, to_device

log = logging.getLogger("foundation")

PRETRAINED_NAME = "cellvq-tiny-human"


def build_vocab_from_files(paths: Sequence[Path], min_cells: int = 3, max_genes: int | None = None, block: int = 4096):
    """A vocabulary of the genes detected in >= ``min_cells`` cells of at least one file.

    Genes are ranked by their highest detection rate in any file (so that a gene measured in one small
    dataset is not outranked by a large panel) and capped at ``max_genes``. Read in sparse row blocks.
    """
    import anndata as ad

    from foundation.data import GeneVocab, get_counts

    best: dict[str, float] = {}
    for p in paths:
        a = ad.read_h5ad(p, backed="r")
        names = a.var_names.astype(str)
        det = np.zeros(a.n_vars, dtype=np.int64)
        for s in range(0, a.n_obs, block):
            chunk = get_counts(a[s : s + block].to_memory())
            det += np.diff(chunk.tocsc().indptr)
        if getattr(a, "file", None) is not None:
            a.file.close()
        rate = det / max(1, a.n_obs)
        for g, d, r in zip(names, det, rate):
            if d >= min_cells and r > best.get(g, -1.0):
                best[g] = float(r)
    genes = sorted(best, key=lambda g: (-best[g], g))
    if max_genes is not None:
        genes = genes[:max_genes]
    return GeneVocab.build(sorted(genes))


class CellVQ:
    """A CellVQ foundation model: encoder + SCD quantiser + ZINB decoder, with its gene vocabulary."""

    def __init__(self, module: CellVQModule, vocab, metadata: dict[str, Any] | None = None):
        self.module = module
        self.vocab = vocab
        self.metadata = dict(metadata or {})
        self.coarse = None  # foundation.codes.CoarseCodebook: the coarse level of the cell codes, if any

    # ------------------------------------------------------------------ construction / io
    @classmethod
    def from_config(cls, config: CellVQConfig, vocab) -> CellVQ:
        config.n_genes = len(vocab)
        return cls(CellVQModule(config), vocab)

    @property
    def config(self) -> CellVQConfig:
        return self.module.config

    def save(self, path: str | os.PathLike, train_state=None) -> Path:
        meta = {"model": self.metadata.get("name", "cellvq"), "config": self.config.to_dict(), "metadata": self.metadata}
        out = write_checkpoint(path, self.module.state_dict(), meta, self.vocab.to_dict(), train_state)
        if self.coarse is not None:  # the coarse level follows the weights it was fitted on
            self.coarse.meta["checkpoint_sha256"] = sha256_file(out / "model.safetensors")
            self.coarse.save(out)
        return out

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | None = None) -> CellVQ:
        from foundation.data import GeneVocab

        state, meta, vocab_json = read_checkpoint(path)
        try:
            config = CellVQConfig.from_dict(meta["config"])
            vocab = GeneVocab.from_dict(vocab_json)
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"checkpoint {path}: config.json/vocab.json do not describe a CellVQ model ({exc}).") from exc
        if config.n_genes != len(vocab):
            raise CheckpointError(
                f"checkpoint {path}: config says {config.n_genes} genes but vocab.json holds {len(vocab)}; "
                "the files come from different models."
            )
        module = CellVQModule(config)
        expected = module.state_dict()
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
        if missing or unexpected or wrong:
            raise CheckpointError(
                f"checkpoint {path} does not match its config: missing {missing[:5]}, unexpected {unexpected[:5]}, "
                f"wrong shapes {wrong[:5]}. The weights belong to another model or version."
            )
        module.load_state_dict(state, strict=True)
        module.eval()
        if device:
            module.to(device)
        model = cls(module, vocab, meta.get("metadata", {}))
        model.metadata["checkpoint_sha256"] = sha256_file(Path(path) / "model.safetensors")
        model.metadata["checkpoint_path"] = str(path)
        model.coarse = load_coarse(path, model)
        return model

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.module.parameters())

    # ------------------------------------------------------------------ pretraining
    @classmethod
    def pretrain(
        cls,
        data: str | os.PathLike | Iterable[str | os.PathLike],
        config: CellVQConfig | None = None,
        train: TrainConfig | None = None,
        out: str | os.PathLike | None = None,
        vocab=None,
        max_genes: int | None = None,
        holdout: set[tuple[str, str]] | None = None,
        device: str | None = None,
        resume: str | os.PathLike | None = None,
        progress: bool = True,
        name: str = "cellvq",
        keep_train_state: bool = True,
    ) -> CellVQ:
        """Pretrain on h5ad files (or folders of them) of raw counts.

        ``holdout``: ``{(file_name, obs_name), ...}`` cells never seen in training (zero-shot evaluation).
        ``resume``: a checkpoint folder written by an earlier run with ``out``; training continues from
        its optimizer state and step (kept in the folder unless ``keep_train_state=False``). Under ``torchrun`` each rank reads its own share of row blocks.
        """
        from foundation.data import CountsStream
        from foundation.train import distributed
        from foundation.train.trainer import Trainer, cells_per_epoch, seed_everything

        train = train or TrainConfig()
        info = distributed.setup(device)
        from foundation.data.stream import resolve_paths

        paths = resolve_paths(data)
        seed_everything(train.seed)
        if resume is not None:
            model = cls.load(resume)
            config = model.config
        else:
            if vocab is None:
                vocab = build_vocab_from_files(paths, max_genes=max_genes)
                log.info("built a vocabulary of %d genes from %d files", len(vocab), len(paths))
            model = cls.from_config(config or CellVQConfig.tiny(), vocab)
        stream = CountsStream(paths, model.vocab, block_size=train.block_size, shuffle=True, seed=train.seed,
                              rank=info.rank, world_size=info.world_size)
        n_cells = cells_per_epoch(stream, train.max_cells_per_file, holdout)  # held-out cells first, then the cap
        if resume is None:
            from foundation.train.trainer import gene_frequencies, init_sample, svd_gene_init

            sample = init_sample(stream, holdout, seed=train.seed)  # held-out cells never shape the start
            model.module.decoder.init_from_frequencies(gene_frequencies(sample, len(model.vocab)))
            top, vec = svd_gene_init(sample, len(model.vocab), model.config.d_model, seed=train.seed)
            model.module.encoder.init_gene_embeddings(torch.from_numpy(top), torch.from_numpy(vec))
        trainer = Trainer(model.module, train, info)
        if resume is not None:
            ts = read_train_state(resume)
            if ts is not None:
                trainer.load_state(*ts)
        model.metadata.update(
            name=name,
            train_config=train.to_dict(),
            corpus=[p.name for p in paths],
            n_holdout_cells=len(holdout or ()),
        )

        def on_epoch_end(epoch: int) -> None:
            if out is not None:
                model.metadata["epochs_done"] = epoch + 1
                model.save(out, train_state=trainer.state())

        result = trainer.fit(stream, n_cells, holdout=holdout, on_epoch_end=on_epoch_end, progress=progress)
        model.metadata.update(steps=result.steps, train_seconds=round(result.seconds, 1),
                              train_cells_per_second=round(result.cells_per_second, 1),
                              final_history=result.history[-1] if result.history else {})
        model.history = result.history
        if out is not None and info.is_main:
            model.save(out, train_state=trainer.state() if keep_train_state else None)
            model.metadata["checkpoint_sha256"] = sha256_file(Path(out) / "model.safetensors")
        model.module.eval()
        distributed.teardown(info)
        return model

    def adapt(self, adata, config=None, out: str | os.PathLike | None = None, *, command: str | None = None,
              progress: bool = True, **overrides) -> CellVQ:
        """A copy of this model continually pretrained (self-supervised) on ``adata``'s raw counts.

        ``config``: a :class:`foundation.adapt.AdaptConfig`; keyword ``overrides`` replace its fields
        (``model.adapt(adata, epochs=2)``). ``out``: write the new checkpoint there. This model is unchanged.
        The new model's ``metadata["adapted_from"]`` names this checkpoint (sha256) and ``["adapt"]`` the data,
        the settings and ``command``; its vocabulary also holds the data's widely detected genes this model
        never saw (``metadata["adapt"]["genes_added"]``; ``grow=GrowConfig(max_new_genes=0)`` keeps the
        vocabulary). See :mod:`foundation.adapt` and :mod:`foundation.grow`."""
        import dataclasses

        from foundation.adapt import AdaptConfig, adapt

        cfg = dataclasses.replace(config or AdaptConfig(), **overrides)
        return adapt(self, adata, cfg, out=out, command=command, progress=progress)

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def embed(
        self,
        adata,
        batch_size: int = 256,
        layer: str | None = None,
        var_key: str | None = None,
        denoised: bool = False,
        min_match: float = 0.2,
        progress: bool = True,
        return_attention: bool = False,
        sort_by_length: bool = True,
        bf16: bool = True,
        chunk_rows: int = 8192,
    ):
        """Embed every cell of ``adata`` (raw counts in ``X`` or ``layer``) and write the keys of
        docs/CONTRACTS.md section 1. Nothing is written unless every cell was embedded.

        ``adata`` may be backed (``anndata.read_h5ad(path, backed="r")``): its counts are then streamed in
        blocks of ``chunk_rows`` cells, in two passes (validation, library sizes and count match rate, then
        embedding), and never held whole in memory; only the outputs (cells x ``d_model``) are. The
        embedding equals that of the same cells in memory.
        ``sort_by_length``: batch cells of similar numbers of expressed genes together (length bucketing),
        so that little of a batch is padding; results are written back in the original cell order.
        ``bf16``: on a CUDA device, run the encoder under bf16 autocast, which also lets the packed
        variable-length flash attention run (see :mod:`foundation.nn.attention`); ignored on CPU."""
        from foundation.data import align_genes, check_nonempty_cells, check_unique_genes, to_vocab_csr
        from foundation.data.coverage import annotate_coverage
        from foundation.data.validate import (
            get_counts,
            get_matrix,
            is_backed_matrix,
            iter_row_chunks,
            scan_counts,
        )

        if chunk_rows < 1 or batch_size < 1:
            raise ValueError(f"batch_size ({batch_size}) and chunk_rows ({chunk_rows}) must be at least 1")
        check_unique_genes(adata, var_key=var_key)
        X = get_matrix(adata, layer)
        if is_backed_matrix(X):  # stream: never hold the whole matrix
            scan = scan_counts(adata, layer, chunk_rows=chunk_rows)
            libs, col_sums = scan.library, scan.col_sums

            def blocks():
                return iter_row_chunks(X, chunk_rows)
        else:
            counts = get_counts(adata, layer)
            libs = np.asarray(counts.sum(1), dtype=np.float64).ravel()
            col_sums = np.asarray(counts.sum(0), dtype=np.float64).ravel()

            def blocks():
                return iter(((0, counts),))
        alignment = align_genes(adata, self.vocab, layer=layer, var_key=var_key, min_match=min_match,
                                col_sums=col_sums)
        check_nonempty_cells(adata, layer, library=libs)
        module = self.module.eval()
        dev = self.device
        n = adata.n_obs
        d = self.config.d_model
        z = np.zeros((n, d), np.float32)
        zq = np.zeros((n, d), np.float32)
        codes = np.zeros(n, np.int64)
        den = np.zeros((n, adata.n_vars), np.float32) if denoised else None
        matched_vars = np.flatnonzero(alignment.var_index >= 0)
        measured = alignment.measured
        autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if (bf16 and dev.type == "cuda")
                    else contextlib.nullcontext())
        t0 = time.perf_counter()
        with tqdm(total=n, desc="CellVQ embed", unit="cell", disable=not progress, leave=False) as bar:
            for offset, block in blocks():
                vc = to_vocab_csr(block, alignment, len(self.vocab))
                lengths = np.diff(vc.indptr)
                order = np.argsort(lengths, kind="stable") if sort_by_length else np.arange(vc.shape[0])
                for s in range(0, vc.shape[0], batch_size):
                    local = order[s : s + batch_size]
                    idx = offset + local
                    batch = to_device(make_batch(vc[local], measured, self.config.max_tokens,
                                                 self.config.target_sum, with_targets=False), dev)
                    with autocast:
                        out = module.encode(batch.gene_ids, batch.values, batch.pad_mask)
                    z[idx] = out.z.float().cpu().numpy()
                    zq[idx] = out.z_q.float().cpu().numpy()
                    codes[idx] = out.codes.cpu().numpy()
                    if den is not None:
                        dist = module.decoder(out.z_q, module.gene_embeddings(), batch.library, batch.measured)
                        den[np.ix_(idx, matched_vars)] = (
                            dist.mean.float().cpu().numpy()[:, alignment.var_index[matched_vars]])
                    bar.update(len(local))
        seconds = time.perf_counter() - t0
        gene_emb = self.module.gene_embeddings().detach().float().cpu().numpy()
        varm = np.zeros((adata.n_vars, gene_emb.shape[1]), np.float32)
        varm[matched_vars] = gene_emb[alignment.var_index[matched_vars]]
        n_codes = self.config.n_codes
        labels = np.array([code_to_str(int(k), n_codes) for k in codes], dtype=object)
        coarse = self.coarse.coarse_of(codes) if self.coarse is not None else None
        counts_per_code = np.bincount(codes, minlength=n_codes)
        p = counts_per_code[counts_per_code > 0] / n
        # all computed: now write (no half-done AnnData)
        adata.obsm["X_cellvq"] = z
        adata.obsm["X_cellvq_q"] = zq
        adata.obs["cellvq_code"] = pd.Categorical(labels)
        adata.obs["cellvq_code_id"] = codes
        if coarse is not None:
            adata.obs["cellvq_code_coarse"] = coarse
            adata.obs["cellvq_code_hier"] = pd.Categorical(self.coarse.labels(codes))
        adata.varm["cellvq_gene"] = varm
        adata.var["cellvq_in_vocab"] = alignment.var_index >= 0
        coverage = annotate_coverage(adata, self.vocab, col_sums, var_key=var_key, trained=alignment.var_index >= 0)
        if den is not None:
            adata.layers["cellvq_denoised"] = den
        adata.uns["cellvq"] = {
            "model": self.metadata.get("name", "cellvq"),
            "checkpoint_sha256": self.metadata.get("checkpoint_sha256", ""),
            "quantizer": self.config.quantizer,
            "n_codes": int(n_codes),
            "gene_match_rate": float(alignment.gene_match_rate),
            "n_measured_genes": int(alignment.measured.sum()),
            "count_match_rate": float(alignment.count_match_rate),
            "n_untrained_genes": coverage.n_untrained,
            "untrained_count_share": coverage.untrained_count_share,
            "gencode_count_share": coverage.full_count_share,
            "codes_used": int((counts_per_code > 0).sum()),
            "code_perplexity": float(np.exp(-(p * np.log(p)).sum())),
            "cells_per_second": float(n / max(seconds, 1e-9)),
            "n_coarse": int(self.coarse.n_coarse) if coarse is not None else 0,
            "coarse_codes_used": int(len(np.unique(coarse))) if coarse is not None else 0,
        }
        return adata

    def gene_embedding(self) -> pd.DataFrame:
        """Gene embeddings of the whole vocabulary as a DataFrame indexed by symbol."""
        emb = self.module.gene_embeddings().detach().float().cpu().numpy()
        return pd.DataFrame(emb, index=pd.Index(self.vocab.symbols, name="symbol"))

    def codebook(self) -> np.ndarray:
        return self.module.quantizer.codebook().detach().float().cpu().numpy()

    def __repr__(self) -> str:
        c = self.config
        return (f"CellVQ(genes={c.n_genes}, d_model={c.d_model}, layers={c.n_layers}, quantizer={c.quantizer}, "
                f"codes={c.n_codes}, params={self.n_parameters():,})")


def load_coarse(path: str | os.PathLike, model: CellVQ):
    """The coarse code level shipped in checkpoint folder ``path`` (None when absent, or fitted on other
    weights: then a warning says how to rebuild it)."""
    from foundation.codes import CoarseCodebook

    coarse = CoarseCodebook.load(path)
    if coarse is None:
        return None
    fitted_on = coarse.meta.get("checkpoint_sha256")
    if coarse.n_codes != model.config.n_codes or fitted_on not in (None, model.metadata["checkpoint_sha256"]):
        log.warning("checkpoint %s: coarse_codes.safetensors was fitted on other weights; coarse codes are not "
                    "written. Rebuild them with `python -m foundation.codes --checkpoint %s --tune`.", path, path)
        return None
    return coarse


def pretrained_path(name: str = PRETRAINED_NAME) -> Path:
    return Path(str(resources.files("foundation") / "pretrained" / name))


def pretrained_names() -> list[str]:
    """The checkpoints shipped in ``foundation/pretrained`` (``load_pretrained(name=...)`` takes any of them)."""
    root = pretrained_path().parent
    return sorted(p.name for p in root.iterdir() if (p / "config.json").is_file()) if root.is_dir() else []


def load_pretrained(device: str | None = None, name: str = PRETRAINED_NAME) -> CellVQ:
    """A checkpoint shipped in the repository: by default the tiny model every figure uses; ``name`` picks
    another of :func:`pretrained_names` (see README: how each was pretrained)."""
    path = pretrained_path(name)
    if name != PRETRAINED_NAME and not path.is_dir():
        raise CheckpointError(f"no shipped checkpoint named {name!r}: use one of {pretrained_names()}, "
                              "or CellVQ.load(folder) for a checkpoint of your own.")
    if not path.is_dir():
        raise CheckpointError(
            f"the shipped checkpoint is missing at {path}; reinstall cellvq or re-create it with "
            "`make pretrain` (see README)."
        )
    return CellVQ.load(path, device=device)


