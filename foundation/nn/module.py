"""CellVQModule: encoder -> projection -> SCD quantiser -> ZINB decoder (pure torch)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from foundation.config import CellVQConfig
from foundation.nn.decoder import ZINBDecoder
from foundation.nn.encoder import GeneExpressionEncoder
from foundation.nn.quantize import EMAVectorQuantizer, NoQuantizer, SoftConditionalVQ
from foundation.tokens import Batch


@dataclass
class ModuleOutput:
    z: torch.Tensor  # L2-normalised cell embedding before quantisation
    z_q: torch.Tensor
    codes: torch.Tensor
    q_loss: torch.Tensor
    perplexity: torch.Tensor
    attention: list[torch.Tensor]


@dataclass(frozen=True)
class LossWeights:
    """Weights of the pretraining terms: ``commit`` and ``diversity`` of the quantiser, ``masked`` of the
    reconstruction of hidden tokens, ``contrastive`` of the cross-view InfoNCE at ``temperature``."""

    commit: float = 0.25
    diversity: float = 0.1
    masked: float = 1.0
    contrastive: float = 0.0
    temperature: float = 0.1


@dataclass
class LossOutput:
    """``loss`` to back-propagate; the others detached, for logging: per-cell ZINB ``nll`` (per 1,000
    genes), ``masked_nll`` of hidden tokens, quantiser ``q_loss``, ``contrastive``, code ``perplexity``,
    and each cell's ``codes``."""

    loss: torch.Tensor
    nll: torch.Tensor
    masked_nll: torch.Tensor
    q_loss: torch.Tensor
    contrastive: torch.Tensor
    perplexity: torch.Tensor
    codes: torch.Tensor

    LOGGED = ("loss", "nll", "masked_nll", "q_loss", "contrastive", "perplexity")


class CellVQModule(nn.Module):
    def __init__(self, config: CellVQConfig):
        super().__init__()
        if config.n_genes <= 0:
            raise ValueError("config.n_genes must be set from the vocabulary")
        self.config = config
        c = config
        self.encoder = GeneExpressionEncoder(c.n_genes, c.d_model, c.n_layers, c.n_heads, c.d_ff, c.dropout)
        # BatchNorm removes the component every cell shares (the pooled vector of a fresh transformer is
        # almost constant: cosine 0.9997 between cells measured), leaving cell-to-cell differences at unit scale
        self.proj = nn.Sequential(
            nn.Linear(c.d_model, c.d_model), nn.BatchNorm1d(c.d_model), nn.GELU(), nn.Linear(c.d_model, c.d_model)
        )
        if c.quantizer == "soft_conditional":
            self.quantizer: nn.Module = SoftConditionalVQ(c.d_model, c.code_bits, c.code_hidden)
        elif c.quantizer == "ema":
            self.quantizer = EMAVectorQuantizer(c.d_model, c.n_codes_ema)
        elif c.quantizer == "none":
            self.quantizer = NoQuantizer()
        else:
            raise ValueError(f"unknown quantizer {c.quantizer!r}: use 'soft_conditional', 'ema' or 'none'")
        self.decoder = ZINBDecoder(c.d_model, c.d_model, c.n_genes, c.d_decoder)

    def gene_embeddings(self) -> torch.Tensor:
        return self.encoder.gene_embedding.weight[: self.config.n_genes]

    def cell_embedding(self, gene_ids, values, pad_mask, return_weights=False):
        """The L2-normalised cell embedding before quantisation, and the attention weights (if asked)."""
        pooled, _, attn = self.encoder(gene_ids, values, pad_mask, return_weights)
        return F.normalize(self.proj(pooled), dim=-1), attn

    def encode(self, gene_ids, values, pad_mask, commit_weight=0.25, diversity_weight=0.1, return_weights=False):
        z, attn = self.cell_embedding(gene_ids, values, pad_mask, return_weights)
        q = self.quantizer(z, commit_weight=commit_weight, diversity_weight=diversity_weight)
        return ModuleOutput(z, q.z_q, q.codes, q.loss, q.perplexity, attn)

    def loss(self, batch: Batch, weights: LossWeights | None = None, view2: Batch | None = None) -> LossOutput:
        """Pretraining losses for a batch made by :func:`foundation.tokens.make_batch` (with targets).

        ``view2``: the same cells seen again (counts thinned, other genes masked; see
        :func:`foundation.tokens.thin_counts`). Its embedding must pick out its own cell among the batch
        (symmetric InfoNCE on cosine similarity / ``weights.temperature``), which ties cells measured at
        different depths and gene coverage to one place in the embedding.
        """
        if batch.counts is None:
            raise ValueError("the batch has no targets: make it with make_batch(..., with_targets=True)")
        weights = weights if weights is not None else LossWeights()
        out = self.encode(batch.gene_ids, batch.values, batch.pad_mask, weights.commit, weights.diversity)
        dist = self.decoder(out.z_q, self.gene_embeddings(), batch.library, batch.measured)
        measured = batch.measured.expand_as(batch.counts)
        logp = dist.log_prob(batch.counts)
        logp = torch.where(measured, logp, torch.zeros_like(logp))
        # per-cell sum over measured genes (scVI's convention), in units of 1,000 genes so the scale does not
        # depend on the dataset; a per-gene mean drowns the signal of 10k+ genes under the masked term
        nll = -(logp.sum(-1) / 1000.0).mean()
        masked_nll = nll.new_zeros(())
        if batch.masked is not None and batch.masked.any():
            masked_nll = -(logp * batch.masked).sum() / batch.masked.sum()
        total = nll + weights.masked * masked_nll + out.q_loss
        contrastive = nll.new_zeros(())
        if view2 is not None and weights.contrastive > 0:
            z2, _ = self.cell_embedding(view2.gene_ids, view2.values, view2.pad_mask)
            contrastive = info_nce(out.z, z2, weights.temperature)
            total = total + weights.contrastive * contrastive
        return LossOutput(total, nll.detach(), masked_nll.detach(), out.q_loss.detach(), contrastive.detach(),
                          out.perplexity.detach(), out.codes.detach())

    def forward(self, batch: Batch, weights: LossWeights | None = None, view2: Batch | None = None
                ) -> LossOutput:
        """:meth:`loss`. DistributedDataParallel synchronises gradients only for calls made through
        ``forward`` (``ddp(batch, ...)``), so the trainer calls the wrapper; everything else calls ``loss``."""
        return self.loss(batch, weights, view2)


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Symmetric InfoNCE between two views (rows of ``a`` and ``b`` are the same cells, L2-normalised):
    each row must find its partner among the batch. Zero when every cell is its own nearest match."""
    logits = (a.float() @ b.float().t()) / temperature
    target = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))
