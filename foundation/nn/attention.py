"""Multi-head self-attention over gene tokens.

The default path calls ``torch.nn.functional.scaled_dot_product_attention`` (flash / memory-efficient
kernels on GPU, fused math on CPU). ``return_weights=True`` takes an explicit path that also returns the
attention probabilities, for interpretation. Both paths compute the same function.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class GeneSelfAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        self.n_heads = n_heads
        self.d_head = d_model // n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.dropout = dropout

    def forward(
        self, x: torch.Tensor, pad_mask: torch.Tensor | None = None, return_weights: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: (B, L, D); pad_mask: (B, L) bool, True at padding. Returns (B, L, D), weights (B, H, L, L)."""
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.n_heads, self.d_head).permute(2, 0, 3, 1, 4)
        attn_mask = None
        if pad_mask is not None:
            # boolean mask: True = may attend. Keys that are padding are excluded.
            attn_mask = (~pad_mask)[:, None, None, :]
        weights = None
        if return_weights:
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.d_head)
            if attn_mask is not None:
                scores = scores.masked_fill(~attn_mask, float("-inf"))
            weights = scores.softmax(dim=-1)
            y = weights @ v
        else:
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0
            )
        y = y.transpose(1, 2).reshape(b, n, d)
        return self.out(y), weights
