"""The pretraining loop.

AdamW with linear warm-up and cosine decay, gradient clipping and accumulation, bf16 autocast on CUDA,
the soft-VQ temperature annealed geometrically from ``tau_start`` to ``tau_end``, a progress bar with
loss and code perplexity, seeded RNGs, atomic checkpoints at the end of each epoch and resume from one.
Data come from :class:`foundation.data.CountsStream` (many h5ad files, read in sparse row blocks).
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm.auto import tqdm

from foundation.config import TrainConfig
from foundation.nn.module import CellVQModule, LossOutput, LossWeights
from foundation.tokens import make_batch, random_panel, thin_counts, to_device
from foundation.train.distributed import DistInfo, all_reduce_mean


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def lr_lambda(warmup: int, total: int) -> Callable[[int], float]:
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))

    return f


@dataclass
class TrainResult:
    steps: int = 0
    cells_seen: int = 0
    seconds: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def cells_per_second(self) -> float:
        return self.cells_seen / max(self.seconds, 1e-9)


def cells_per_epoch(stream, max_cells_per_file: int | None = None,
                    holdout: set[tuple[str, str]] | None = None) -> int:
    """Training cells one epoch reads from ``stream``, counted the way :meth:`Trainer.fit` draws them: a
    file's held-out cells are dropped first, then the file gives at most ``max_cells_per_file`` of the rest
    (the cap counts training cells, as in :mod:`foundation.codes`). Held-out names that are not cells of
    a corpus file count for nothing. Empty cells, also skipped in training, are not read here."""
    from foundation.data.stream import open_h5ad_matrix

    by_file: dict[str, set[str]] = {}
    for file_name, obs_name in holdout or ():
        by_file.setdefault(file_name, set()).add(obs_name)
    total = 0
    for f in stream.files:
        held = by_file.get(Path(f.path).name)
        n = f.n_obs
        if held:
            h = open_h5ad_matrix(f.path)
            try:
                n -= len(held.intersection(h.obs_names))
            finally:
                h.close()
        total += n if max_cells_per_file is None else min(n, max_cells_per_file)
    return int(total)


@dataclass
class InitSample:
    """Cells for the data-driven starts: per file, raw counts (vocabulary coordinates) and the genes it
    measured."""

    counts: list  # csr (cells x n_vocab) per file
    measured: list  # bool (n_vocab,) per file


def init_sample(stream, holdout: set[tuple[str, str]] | None = None, max_cells: int = 8000,
                seed: int = 0) -> InitSample:
    """An even share of ``max_cells`` from every file of ``stream`` (random blocks, seeded), never a held-out
    or empty cell. Drawing the first blocks of the shuffled stream instead let the largest file fill the
    sample (the 20k-cell CRISPR screen against 2k PBMCs) and drew held-out cells into the start, so that
    the start, and held-out ARI after training (0.55-0.72 over seeds), hung on the seed's block order."""
    n_files = len(stream.files)
    quota = int(math.ceil(max_cells / max(1, n_files)))
    rng = np.random.default_rng(seed)
    out = InitSample([], [])
    for k in range(n_files):
        ids = rng.permutation(stream.file_blocks(k))
        parts, n = [], 0
        measured = None
        for b in ids:
            block = stream.read_block(int(b))
            keep = np.asarray(block.counts.sum(1)).ravel() > 0
            if holdout:
                src = Path(block.source).name
                keep &= np.array([(src, str(o)) not in holdout for o in block.obs_names], dtype=bool)
            parts.append(block.counts[keep][: quota - n])
            measured = block.measured
            n += parts[-1].shape[0]
            if n >= quota:
                break
        if n:
            out.counts.append(sp.vstack(parts).tocsr())
            out.measured.append(np.asarray(measured, dtype=bool))
    stream.close()
    if not out.counts:
        raise ValueError("no cells to start from: every cell is empty or held out")
    return out


@torch.no_grad()
def gene_frequencies(sample: InitSample, n_genes: int) -> torch.Tensor:
    """Each gene's mean share of a cell's counts, among the files that measured it: the decoder starts at
    this corpus mean profile."""
    num = np.zeros(n_genes)
    den = np.zeros(n_genes)
    for c, measured in zip(sample.counts, sample.measured):
        lib = np.asarray(c.sum(1)).ravel()
        frac = c.multiply(1.0 / lib[:, None]).tocsr()
        num += np.asarray(frac.sum(0)).ravel()
        den += c.shape[0] * measured
    freq = np.where(den > 0, num / np.maximum(den, 1), 0.0)
    return torch.from_numpy(freq / max(freq.sum(), 1e-12)).float()


@torch.no_grad()
def svd_gene_init(sample: InitSample, n_genes: int, d: int, n_top: int = 2000, target_sum: float = 1e4,
                  seed: int = 0, include: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Data-driven start for the gene embeddings: truncated-SVD loadings of scaled log-normalised expression
    over the ``n_top`` most variable genes (PCA's recipe), with each file centred and scaled on its own.

    Variance is measured *within* files (averaged over the files that measured a gene), so the start
    describes how genes vary between cells of one experiment, not between experiments. Returns
    ``(gene_indices, vectors (n_sel, d))``. Random unit-scale embeddings hardly move in a CPU budget
    (measured: held-out ARI 0.05 after 10 epochs); this puts the encoder's profile path at a PCA-like
    start that training then refines. ``include``: gene indices added to the selection wherever they vary."""
    from sklearn.decomposition import TruncatedSVD

    logs, stats = [], []
    var_sum = np.zeros(n_genes)
    weight = np.zeros(n_genes)
    for c, measured in zip(sample.counts, sample.measured):
        c = c.astype(np.float64)
        lib = np.asarray(c.sum(1)).ravel()
        x = c.multiply(target_sum / lib[:, None]).tocsr()
        x.data = np.log1p(x.data)
        mean = np.asarray(x.mean(0)).ravel()
        var = np.asarray(x.multiply(x).mean(0)).ravel() - mean**2
        var[~measured] = 0.0
        var_sum += x.shape[0] * var
        weight += x.shape[0] * measured
        logs.append(x)
        stats.append((mean, var))
    score = np.where(weight > 0, var_sum / np.maximum(weight, 1), 0.0)
    top = np.argsort(-score)[: min(n_top, int((score > 0).sum()))]
    if include is not None:  # genes that must get a start too (e.g. those ``adapt`` just added), if they vary
        extra = np.setdiff1d(np.asarray(include, dtype=np.int64), top)
        top = np.concatenate([top, extra[score[extra] > 0]])
    blocks = []
    for x, (mean, var) in zip(logs, stats):
        sd = np.sqrt(var[top])
        z = (x[:, top].toarray() - mean[top]) / np.where(sd > 0, sd, 1.0)
        z[:, sd == 0] = 0.0  # a gene this file did not measure (or never saw vary) sits at its mean
        blocks.append(np.clip(z, -10, 10))
    Z = np.vstack(blocks)
    k = min(d, len(top) - 1, Z.shape[0] - 1)
    svd = TruncatedSVD(n_components=k, random_state=seed).fit(Z)
    vec = np.zeros((len(top), d))
    vec[:, :k] = svd.components_.T * np.sqrt(svd.singular_values_)[None, :]
    vec *= np.sqrt(d) / max(np.linalg.norm(vec, axis=1).mean(), 1e-8)
    return top, vec.astype(np.float32)


class Trainer:
    def __init__(self, module: CellVQModule, cfg: TrainConfig, dist_info: DistInfo | None = None):
        self.module = module
        self.cfg = cfg
        self.dist = dist_info or DistInfo()
        self.device = self.dist.device
        self.module.to(self.device)
        self.model: torch.nn.Module = module
        if self.dist.enabled:
            self.model = DDP(module, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        decay, no_decay = [], []
        for name, p in module.named_parameters():
            (no_decay if p.ndim < 2 or "embedding" in name else decay).append(p)
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=cfg.lr,
        )
        self.scheduler: torch.optim.lr_scheduler.LambdaLR | None = None
        self.step = 0
        self.epoch = 0
        self.total_steps = 1

    # -- temperature -------------------------------------------------------------------------
    def _tau(self) -> float:
        frac = min(1.0, self.step / max(1, self.total_steps))
        return self.cfg.tau_start * (self.cfg.tau_end / self.cfg.tau_start) ** frac

    def _autocast(self):
        if self.device.type == "cuda" and self.cfg.bf16:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def state(self) -> tuple[dict[str, torch.Tensor], dict]:
        from foundation.checkpoint import optimizer_to_tensors

        tensors, meta = optimizer_to_tensors(self.optimizer)
        meta.update(step=self.step, epoch=self.epoch, total_steps=self.total_steps,
                    scheduler=self.scheduler.state_dict() if self.scheduler else None)
        meta["scheduler"] = {k: v for k, v in (meta["scheduler"] or {}).items() if k != "lr_lambdas"}
        return tensors, meta

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        from foundation.checkpoint import optimizer_from_tensors

        optimizer_from_tensors(self.optimizer, {k: v.to(self.device) for k, v in tensors.items()}, meta)
        self.step, self.epoch, self.total_steps = meta["step"], meta["epoch"], meta["total_steps"]
        self._resume_scheduler = meta.get("scheduler")

    def fit(
        self,
        stream,
        n_cells_per_epoch: int,
        holdout: set[tuple[str, str]] | None = None,
        on_epoch_end: Callable[[int], None] | None = None,
        progress: bool = True,
    ) -> TrainResult:
        cfg = self.cfg
        seed_everything(cfg.seed + self.dist.rank)
        steps_per_epoch = max(1, math.ceil(n_cells_per_epoch / (cfg.batch_size * cfg.grad_accum * self.dist.world_size)))
        if self.step == 0:
            self.total_steps = steps_per_epoch * cfg.epochs
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(cfg.warmup_steps, self.total_steps))
        resume_sched = getattr(self, "_resume_scheduler", None)
        if resume_sched:
            self.scheduler.load_state_dict({**resume_sched, "lr_lambdas": [None, None]})
        rng = np.random.default_rng(cfg.seed + 7919 * self.dist.rank + self.epoch)
        result = TrainResult()
        t0 = time.perf_counter()
        quantizer = self.module.quantizer
        weights = LossWeights(cfg.commit_weight, cfg.diversity_weight, cfg.masked_weight, cfg.contrastive_weight,
                              cfg.contrastive_temperature)
        for epoch in range(self.epoch, cfg.epochs):
            self.epoch = epoch
            if hasattr(stream, "set_epoch"):
                stream.set_epoch(epoch)
            per_file: dict[str, int] = {}
            bar = tqdm(total=n_cells_per_epoch // self.dist.world_size, desc=f"pretrain epoch {epoch + 1}/{cfg.epochs}",
                       disable=not (progress and self.dist.is_main), unit="cell", leave=False)
            micro = 0
            for counts, measured in self._epoch_minibatches(stream, holdout, per_file, steps_per_epoch):
                batch = to_device(
                    make_batch(counts, measured, self.module.config.max_tokens, self.module.config.target_sum,
                               cfg.mask_ratio, rng),
                    self.device,
                )
                view2 = None
                if cfg.contrastive_weight > 0:
                    counts2, measured2 = thin_counts(counts, rng, cfg.thin_min), measured
                    if cfg.panel_prob > 0 and rng.random() < cfg.panel_prob:
                        counts2, measured2 = random_panel(counts2, measured, rng, cfg.panel_min_genes,
                                                          cfg.panel_max_genes, self.module.config.target_sum,
                                                          cfg.panel_cell_prob)
                    view2 = to_device(
                        make_batch(counts2, measured2, self.module.config.max_tokens,
                                   self.module.config.target_sum, cfg.mask_ratio, rng, with_targets=False),
                        self.device,
                    )
                if hasattr(quantizer, "tau"):
                    quantizer.tau.fill_(self._tau())
                sync = (micro + 1) % cfg.grad_accum == 0
                ctx = self.model.no_sync() if (self.dist.enabled and not sync) else contextlib.nullcontext()
                with ctx, self._autocast():
                    out = self.model(batch, weights, view2)
                    loss = out.loss / cfg.grad_accum
                loss.backward()
                micro += 1
                n = counts.shape[0]
                result.cells_seen += n
                bar.update(n)
                if sync:
                    torch.nn.utils.clip_grad_norm_(self.module.parameters(), cfg.grad_clip)
                    self.optimizer.step()
                    self.optimizer.zero_grad(set_to_none=True)
                    self.scheduler.step()
                    self.step += 1
                    if self.step % cfg.log_every == 0 or self.step == 1:
                        rec = {k: float(all_reduce_mean(getattr(out, k).detach().float(), self.dist)) for k in LossOutput.LOGGED}
                        rec.update(step=self.step, epoch=epoch, tau=self._tau(), lr=self.scheduler.get_last_lr()[0])
                        result.history.append(rec)
                        bar.set_postfix(loss=f"{rec['loss']:.3f}", ppl=f"{rec['perplexity']:.0f}", tau=f"{rec['tau']:.2f}")
            bar.close()
            self.epoch = epoch + 1
            if on_epoch_end is not None and self.dist.is_main:
                on_epoch_end(epoch)
        result.steps = self.step
        result.seconds = time.perf_counter() - t0
        return result

    def _epoch_minibatches(self, stream: Iterable, holdout, per_file: dict[str, int], steps_per_epoch: int):
        """One epoch's minibatches. Under DDP every rank must take the same number of steps, or the ranks that
        finish first wait forever in the others' collectives: each rank then yields exactly
        ``steps_per_epoch * grad_accum`` minibatches (the same number everywhere), starting its share of the
        data over if it runs short and stopping where it reaches the count. One process reads its data once."""
        if not self.dist.enabled:
            yield from self._minibatches(stream, holdout, per_file)
            return
        target = steps_per_epoch * self.cfg.grad_accum
        produced = 0
        while produced < target:
            before = produced
            for item in self._minibatches(stream, holdout, per_file):
                yield item
                produced += 1
                if produced == target:
                    return
            if produced == before:
                raise RuntimeError(
                    f"rank {self.dist.rank} of {self.dist.world_size} got no training cells: use fewer processes "
                    "or more data (every rank needs at least one batch of two cells)"
                )
            per_file.clear()  # a new pass over this rank's share; the per-file caps count afresh

    def _minibatches(self, stream: Iterable, holdout, per_file: dict[str, int]):
        cfg = self.cfg
        pool: list = []
        pooled = 0
        mix_rng = np.random.default_rng([cfg.seed, 104729, self.dist.rank, self.epoch])
        for block in stream:
            counts, measured = block.counts, block.measured
            keep = np.ones(counts.shape[0], dtype=bool)
            if holdout:
                src = Path(block.source).name
                keep &= np.array([(src, str(o)) not in holdout for o in block.obs_names], dtype=bool)
            libs = np.asarray(counts.sum(1)).ravel()
            keep &= libs > 0
            if cfg.max_cells_per_file is not None:
                seen = per_file.get(block.source, 0)
                room = max(0, cfg.max_cells_per_file // self.dist.world_size - seen)
                idx = np.flatnonzero(keep)[:room]
                keep = np.zeros_like(keep)
                keep[idx] = True
                per_file[block.source] = seen + int(keep.sum())
            if not keep.any():
                continue
            counts = counts[keep]
            if cfg.mix_cells > 0:
                pool.append((counts, measured))
                pooled += counts.shape[0]
                if pooled >= cfg.mix_cells:
                    yield from self._mixed(pool, mix_rng)
                    pool, pooled = [], 0
                continue
            for s in range(0, counts.shape[0], cfg.batch_size):
                part = counts[s : s + cfg.batch_size]
                if part.shape[0] >= 2:
                    yield part, measured
        if pool:
            yield from self._mixed(pool, mix_rng)

    def _mixed(self, pool: list, rng: np.random.Generator):
        """Minibatches drawn across the pooled blocks (several files), each row with its own file's
        ``measured`` mask (a (cells, genes) array when a batch spans files)."""
        counts = sp.vstack([c for c, _ in pool], format="csr")
        owner = np.repeat(np.arange(len(pool)), [c.shape[0] for c, _ in pool])
        masks = np.stack([np.asarray(m, dtype=bool) for _, m in pool])
        perm = rng.permutation(counts.shape[0])
        for s in range(0, len(perm), self.cfg.batch_size):
            rows = perm[s : s + self.cfg.batch_size]
            if len(rows) < 2:
                continue
            own = np.unique(owner[rows])
            measured = masks[own[0]] if len(own) == 1 else masks[owner[rows]]
            yield counts[rows], measured
