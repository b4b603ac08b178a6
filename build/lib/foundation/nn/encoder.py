"""Encoder over a cell's expressed genes.

Each token is one expressed gene: a learned gene-identity embedding plus an embedding of its
normalised expression value (``log1p(count / library * 1e4)`` through a small MLP). Pre-norm
transformer blocks attend only over the cell's expressed genes (padding masked). A learned CLS token is
prepended; the pooled cell embedding is its final state plus a direct read of the profile (the
expression-weighted mean of the input gene embeddings, a learned linear projection of the cell). Attention
weights returned by the explicit path include the CLS row/column at index 0.

``attention`` chooses how a batch of cells of different lengths is computed: ``"padded"`` (a (B, L, D)
batch with a padding mask), ``"packed"`` (the cells' tokens back to back, variable-length flash attention on
a GPU in bf16/fp16; see :mod:`foundation.nn.attention`) or ``"auto"`` (packed on CUDA, padded elsewhere).
All three give the same embedding up to rounding.
"""

from __future__ import annotations

import torch
from torch import nn

from foundation.nn.attention import GeneSelfAttention

ATTENTION_IMPLS = ("auto", "padded", "packed")


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

    def forward_packed(self, x, cu_seqlens, max_len: int):
        x = x + self.drop(self.attn.forward_packed(self.norm1(x), cu_seqlens, max_len))
        return x + self.drop(self.ff(self.norm2(x)))


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
        self.attention = "auto"  # runtime choice, not part of the weights; see the module docstring

    def use_packed(self, device: torch.device, return_weights: bool) -> bool:
        if self.attention not in ATTENTION_IMPLS:
            raise ValueError(f"attention={self.attention!r}: use one of {ATTENTION_IMPLS}")
        if return_weights or self.attention == "padded":
            return False
        return self.attention == "packed" or device.type == "cuda"

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
        b = gene_ids.shape[0]
        weights: list[torch.Tensor] = []
        if self.use_packed(gene_ids.device, return_weights):
            cls_state, tokens = self._forward_packed(gene_ids, values, pad_mask)
        else:
            x = self.gene_embedding(gene_ids) + self.value_embedding(values)
            x = torch.cat([self.cls.expand(b, -1, -1).to(x.dtype), x], dim=1)
            full_mask = torch.cat([pad_mask.new_zeros(b, 1), pad_mask], dim=1)
            # no padding in the batch: no mask, so that the flash kernel may run
            attn_mask = full_mask if (return_weights or bool(pad_mask.any())) else None
            for block in self.blocks:
                x, w = block(x, attn_mask, return_weights)
                if w is not None:
                    weights.append(w)
            x = self.norm(x)
            cls_state, tokens = x[:, 0], x[:, 1:]
        # direct read of the profile: expression-weighted mean of the input gene embeddings, a learned
        # linear projection of the cell (PCA-like) that carries cell identity from the first step; the
        # transformer's CLS state adds what context between genes reveals
        w = values.masked_fill(pad_mask, 0.0).unsqueeze(-1)
        profile = (self.gene_embedding(gene_ids) * w).sum(1) / w.sum(1).clamp_min(1e-6)
        pooled = cls_state + self.profile_norm(profile)
        return pooled, tokens, weights

    def _forward_packed(self, gene_ids, values, pad_mask):
        """The transformer over packed tokens: each cell's CLS then its genes, cells back to back."""
        b, n = gene_ids.shape
        valid = ~pad_mask
        tok = self.gene_embedding(gene_ids[valid]) + self.value_embedding(values[valid])  # (T_genes, D)
        lengths = valid.sum(1) + 1  # + CLS
        cu = torch.zeros(b + 1, dtype=torch.int32, device=gene_ids.device)
        cu[1:] = lengths.cumsum(0)
        max_len = int(lengths.max())
        is_cls = torch.zeros(tok.shape[0] + b, dtype=torch.bool, device=gene_ids.device)  # sizes known: no sync
        is_cls[cu[:-1].long()] = True
        x = tok.new_empty(is_cls.shape[0], tok.shape[1])
        x[is_cls] = self.cls[0, 0].to(tok.dtype)
        x[~is_cls] = tok
        for block in self.blocks:
            x = block.forward_packed(x, cu, max_len)
        x = self.norm(x)
        tokens = x.new_zeros(b, n, x.shape[1])
        tokens[valid] = x[~is_cls]
        return x[is_cls], tokens
