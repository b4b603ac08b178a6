"""Multi-head self-attention over gene tokens.

Three paths compute the same function:

* padded (``forward``): ``torch.nn.functional.scaled_dot_product_attention`` over a (B, L, D) batch with a
  key-padding mask (flash / memory-efficient kernels on GPU, fused math on CPU). A batch without padding
  passes no mask, so the flash kernel can run.
* packed (``forward_packed``): the tokens of all cells lie back to back in one (T, D) tensor with
  cumulative offsets ``cu_seqlens`` (the layout of flash-attention's variable-length kernels). On a CUDA
  device in bf16/fp16 (Ampere or newer) it calls ``torch.nn.attention.varlen.varlen_attn`` (Flash Attention over variable
  lengths): no token of padding is computed, in attention or in the linear layers around it. Elsewhere it
  pads, runs SDPA with a mask and unpads, which gives the same numbers and is how the CPU tests check it.
* explicit (``return_weights=True``): softmax(QK^T / sqrt(d)) V written out, which also returns the
  attention probabilities, for interpretation.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

try:  # torch >= 2.9
    from torch.nn.attention.varlen import varlen_attn
except ImportError:  # pragma: no cover - older torch takes the padded fallback
    varlen_attn = None


@functools.lru_cache(maxsize=16)
def _flash_capable(device_index: int) -> bool:
    # Flash Attention needs an Ampere or newer GPU (compute capability 8.0+); a V100 or T4 takes the fallback
    return torch.cuda.get_device_capability(device_index) >= (8, 0)


def varlen_available(t: torch.Tensor) -> bool:
    """True when the variable-length flash kernel can take ``t``: CUDA on an Ampere-or-newer GPU, half
    precision, head dim <= 256 and a multiple of 8."""
    return (varlen_attn is not None and t.is_cuda and t.dtype in (torch.float16, torch.bfloat16)
            and t.shape[-1] <= 256 and t.shape[-1] % 8 == 0 and _flash_capable(t.device.index or 0))


def packed_positions(cu_seqlens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For packed tokens with offsets ``cu_seqlens`` (B+1,): each token's cell, its position within the
    cell, and the cells' lengths."""
    lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).long()
    cell = torch.repeat_interleave(torch.arange(len(lengths), device=cu_seqlens.device), lengths)
    pos = torch.arange(int(cu_seqlens[-1]), device=cu_seqlens.device) - cu_seqlens[:-1].long()[cell]
    return cell, pos, lengths


def padded_varlen_attention(q, k, v, cu_seqlens, max_len: int, dropout_p: float = 0.0) -> torch.Tensor:
    """Reference for packed attention: q, k, v (T, H, Dh) -> (T, H, Dh), by padding each cell to
    ``max_len``, masked SDPA, and unpadding."""
    cell, pos, lengths = packed_positions(cu_seqlens)
    b = len(lengths)
    h, dh = q.shape[1], q.shape[2]

    def pad(t):
        out = t.new_zeros(b, max_len, h, dh)
        out[cell, pos] = t
        return out.transpose(1, 2)  # (B, H, L, Dh)

    keep = torch.arange(max_len, device=q.device)[None, :] < lengths[:, None]
    y = F.scaled_dot_product_attention(pad(q), pad(k), pad(v), attn_mask=keep[:, None, None, :], dropout_p=dropout_p)
    return y.transpose(1, 2)[cell, pos]


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
        """x: (B, L, D); pad_mask: (B, L) bool, True at padding (None: no padding). Returns (B, L, D) and
        the weights (B, H, L, L) when asked."""
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

    def forward_packed(self, x: torch.Tensor, cu_seqlens: torch.Tensor, max_len: int) -> torch.Tensor:
        """x: (T, D), the tokens of B cells back to back; cu_seqlens: (B+1,) int32 offsets; max_len: the
        longest cell. Returns (T, D)."""
        t, d = x.shape
        qkv = self.qkv(x).view(t, 3, self.n_heads, self.d_head)
        q, k, v = (qkv[:, i].contiguous() for i in range(3))
        p = self.dropout if self.training else 0.0
        if p == 0.0 and varlen_available(q):
            y = varlen_attn(q, k, v, cu_seqlens, cu_seqlens, max_len, max_len)
        else:
            y = padded_varlen_attention(q, k, v, cu_seqlens, max_len, p)
        return self.out(y.reshape(t, d))
