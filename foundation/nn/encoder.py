"""Encoder over a cell's expressed genes.

Each token is one expressed gene: a learned gene-identity embedding plus an embedding of its
normalised expression value (``log1p(count / library * 1e4)`` through a small MLP). Pre-norm
transformer blocks attend only over the cell's expressed genes (padding masked). A learned CLS token is
prepended; the pooled cell embedding is its final state plus a direct read of the profile (the
expression-weighted mean of the input gene embeddings, a learned linear projection of the cell). Attention
weights returned by the explicit path include the CLS row/column at index 0.
"""

from __future__ import annotations

import torch
from torch import nn

from foundation.nn.attention import GeneSelfAttention


class TransformerBlock(nn.Module):
    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.attn = GeneSelfAttention(d_model, n_heads, dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model))
        self.drop = nn.Dropout(dropout)

    def forward(self, x, pad_mask=None, return_weights: bool = False):
        h, w = self.attn(self.norm1(x), pad_mask, return_weights)
        x = x + self.drop(h)
        x = x + self.drop(self.ff(self.norm2(x)))
        return x, w


class ValueEmbedding(nn.Module):
    """Continuous expression value -> d_model vector."""

    def __init__(self, d_model: int, hidden: int = 64):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(1, hidden), nn.GELU(), nn.Linear(hidden, d_model))

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return self.mlp(v.unsqueeze(-1))


class GeneExpressionEncoder(nn.Module):
    def __init__(self, n_genes: int, d_model: int, n_layers: int, n_heads: int, d_ff: int, dropout=0.0):
        super().__init__()
        self.n_genes = n_genes
        self.pad_id = n_genes
        self.gene_embedding = nn.Embedding(n_genes + 1, d_model, padding_idx=n_genes)
        # unit-scale identities: at std 0.02 the value embedding drowns the gene identity and every cell
        # pools to nearly the same vector (measured: mean cosine 0.9999 between cells)
        nn.init.normal_(self.gene_embedding.weight, std=1.0)
        with torch.no_grad():
            self.gene_embedding.weight[n_genes].zero_()
        self.value_embedding = ValueEmbedding(d_model)
        self.cls = nn.Parameter(torch.randn(1, 1, d_model))
        self.blocks = nn.ModuleList(
            [TransformerBlock(d_model, n_heads, d_ff, dropout) for _ in range(n_layers)]
        )
        self.norm = nn.LayerNorm(d_model)
        self.profile_norm = nn.LayerNorm(d_model)

    @torch.no_grad()
    def init_gene_embeddings(self, index: torch.Tensor, vectors: torch.Tensor, other_std: float = 0.1) -> None:
        """Data-driven start (see ``foundation.train.trainer.svd_gene_init``): the chosen genes get the given
        vectors, every other gene a small random vector so it adds little until training shapes it."""
        w = self.gene_embedding.weight
        w[: self.n_genes].normal_(0.0, other_std)
        w[index] = vectors.to(w)
        w[self.pad_id].zero_()

    def forward(
        self,
        gene_ids: torch.Tensor,
        values: torch.Tensor,
        pad_mask: torch.Tensor,
        return_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Returns pooled (B, D), token states (B, L, D) and per-layer attention weights (if asked)."""
        x = self.gene_embedding(gene_ids) + self.value_embedding(values)
        b = x.shape[0]
        x = torch.cat([self.cls.expand(b, -1, -1).to(x.dtype), x], dim=1)
        pad_mask = torch.cat([pad_mask.new_zeros(b, 1), pad_mask], dim=1)
        weights: list[torch.Tensor] = []
        for block in self.blocks:
            x, w = block(x, pad_mask, return_weights)
            if w is not None:
                weights.append(w)
        x = self.norm(x)
        # direct read of the profile: expression-weighted mean of the input gene embeddings, a learned
        # linear projection of the cell (PCA-like) that carries cell identity from the first step; the
        # transformer's CLS state adds what context between genes reveals
        w = values.masked_fill(pad_mask[:, 1:], 0.0).unsqueeze(-1)
        profile = (self.gene_embedding(gene_ids) * w).sum(1) / w.sum(1).clamp_min(1e-6)
        pooled = x[:, 0] + self.profile_norm(profile)
        return pooled, x[:, 1:], weights
