"""Single-Cell Discretization (SCD): quantisers that turn a cell embedding into a discrete cell code.

Two quantisers with one interface (``forward(z) -> QuantizerOutput``):

``SoftConditionalVQ`` — the SCD design of the CellVQ paper: a *binary* codebook of ``2**bits`` codes.
Code ``k`` is the bit vector of ``k`` written as ±1; an MLP generates its vector from those bits, so the
codebook never holds free parameters per code and every code, used or not, moves with training (no dead
codes by construction). Cells and code vectors are L2-normalised (spherical), and a cell is assigned
softly, ``p = softmax(cos(z, c_k) / tau)``, with the temperature ``tau`` annealed during training so
the assignment hardens; at inference the code is the arg-max and the quantised vector the code's vector.

``EMAVectorQuantizer`` — a plain hard VQ-VAE quantiser: free codebook updated by exponential moving
averages of assigned encodings, commitment loss, straight-through gradients, dead codes re-seeded from
the current batch's encodings. Under torch.distributed the EMA statistics are summed over all ranks
before each update and re-seeded codes come from rank 0, so every rank keeps one identical codebook
learnt from the whole global batch (DDP would otherwise keep rank 0's buffers and drop the others').

Both report code-usage perplexity ``exp(H(mean one-hot assignment))``.

The readable code ID splits the index into a high and a low part, ``"{k // base}-{k % base}"`` with
``base = 2**ceil(bits / 2)``, so that with 12 bits a cell code reads like ``"17-42"``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


@dataclass
class QuantizerOutput:
    z_q: torch.Tensor  # quantised embedding fed to the decoder (B, D)
    codes: torch.Tensor  # hard code index (B,)
    loss: torch.Tensor  # quantiser loss (scalar)
    perplexity: torch.Tensor  # code usage perplexity in this batch (scalar)
    probs: torch.Tensor | None = None  # soft assignment (B, K) where defined


def code_base(n_codes: int) -> int:
    bits = max(1, math.ceil(math.log2(max(n_codes, 2))))
    return 2 ** math.ceil(bits / 2)


def code_to_str(k: int, n_codes: int) -> str:
    base = code_base(n_codes)
    return f"{k // base}-{k % base}"


def usage_perplexity(codes: torch.Tensor, n_codes: int) -> torch.Tensor:
    counts = torch.bincount(codes.reshape(-1), minlength=n_codes).float()
    p = counts / counts.sum().clamp_min(1.0)
    return torch.exp(-(p * torch.log(p + 1e-10)).sum())


class SoftConditionalVQ(nn.Module):
    def __init__(self, d: int, bits: int = 12, hidden: int = 128):
        super().__init__()
        self.bits = bits
        self.n_codes = 2**bits
        k = torch.arange(self.n_codes)
        bit_matrix = ((k[:, None] >> torch.arange(bits - 1, -1, -1)[None, :]) & 1).float() * 2 - 1
        self.register_buffer("code_bits", bit_matrix, persistent=False)
        # code vector = linear map of the ±1 bits (hypercube corners: well spread from the start)
        # + an MLP of the bits (lets codes bend away from a linear layout as training proceeds)
        self.linear = nn.Linear(bits, d, bias=False)
        nn.init.orthogonal_(self.linear.weight)
        self.generator = nn.Sequential(
            nn.Linear(bits, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, d)
        )
        nn.init.zeros_(self.generator[-1].weight)
        nn.init.zeros_(self.generator[-1].bias)
        self.register_buffer("tau", torch.tensor(1.0))

    def codebook(self) -> torch.Tensor:
        """All code vectors, L2-normalised (n_codes, d)."""
        return F.normalize(self.linear(self.code_bits) + self.generator(self.code_bits), dim=-1)

    def forward(self, z: torch.Tensor, commit_weight: float = 0.25, diversity_weight: float = 0.1):
        zn = F.normalize(z, dim=-1)
        cb = self.codebook().to(zn.dtype)
        sims = zn @ cb.t()  # cosine similarities (B, K)
        codes = sims.argmax(-1)
        hard = cb[codes]
        if self.training:
            probs = torch.softmax(sims / self.tau, dim=-1)
            soft = probs @ cb
            # straight-through (VQ-VAE): the decoder sees the (soft, hardening) code vector, the encoder
            # receives the decoder's gradient as if unquantised; the codebook follows the cells through
            # its own loss. Without it a collapsed assignment starves the encoder of gradient.
            z_q = soft.detach() + (zn - zn.detach())
            codebook_loss = (1 - (zn.detach() * soft).sum(-1)).mean() + (1 - (zn.detach() * hard).sum(-1)).mean()
            commit = (1 - (zn * hard.detach()).sum(-1)).mean()
            # code usage: each bit of the code should be on for about half of the cells of a batch
            bit_on = probs @ (self.code_bits > 0).to(probs.dtype)  # P(bit_j = 1) per cell (B, bits)
            q_on = bit_on.mean(0).clamp(1e-6, 1 - 1e-6)
            bit_entropy = -(q_on * q_on.log() + (1 - q_on) * (1 - q_on).log()) / math.log(2)
            # and the batch should spread over many codes (entropy of the mean assignment, normalised by
            # the largest value a batch can reach)
            mean_p = probs.mean(0)
            usage = -(mean_p * torch.log(mean_p + 1e-10)).sum() / math.log(min(z.shape[0], self.n_codes))
            diversity = (1 - bit_entropy.mean()) + (1 - usage.clamp(max=1.0))
            loss = codebook_loss + commit_weight * commit + diversity_weight * diversity
        else:
            probs = None
            z_q = hard
            loss = zn.new_zeros(())
        return QuantizerOutput(z_q, codes, loss, usage_perplexity(codes, self.n_codes), probs)


class EMAVectorQuantizer(nn.Module):
    def __init__(self, d: int, n_codes: int = 512, decay: float = 0.99, dead_threshold: float = 1e-3):
        super().__init__()
        self.n_codes = n_codes
        self.decay = decay
        self.dead_threshold = dead_threshold
        init = F.normalize(torch.randn(n_codes, d), dim=-1)
        self.register_buffer("embedding", init.clone())
        self.register_buffer("cluster_size", torch.ones(n_codes) / n_codes)
        self.register_buffer("embed_sum", init.clone() / n_codes)

    def codebook(self) -> torch.Tensor:
        return self.embedding

    def forward(self, z: torch.Tensor, commit_weight: float = 0.25, diversity_weight: float = 0.0):
        zn = F.normalize(z, dim=-1)
        cb = self.embedding.to(zn.dtype)
        codes = (zn @ cb.t()).argmax(-1)
        hard = cb[codes]
        if self.training:
            with torch.no_grad():
                onehot = F.one_hot(codes, self.n_codes).to(zn.dtype)
                counts, sums = onehot.sum(0).float(), (onehot.t() @ zn).float()
                if _distributed():  # the global batch's statistics, identical on every rank
                    dist.all_reduce(counts)
                    dist.all_reduce(sums)
                self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
                self.embed_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
                n = self.cluster_size.sum()
                smoothed = (self.cluster_size + 1e-5) / (n + self.n_codes * 1e-5) * n
                self.embedding.copy_(F.normalize(self.embed_sum / smoothed[:, None], dim=-1))
                self._reseed_dead(zn.float())
            commit = (1 - (zn * hard.detach()).sum(-1)).mean()
            loss = commit_weight * commit
            z_q = zn + (hard - zn).detach()  # straight-through
        else:
            loss = zn.new_zeros(())
            z_q = hard
        return QuantizerOutput(z_q, codes, loss, usage_perplexity(codes, self.n_codes), None)

    @torch.no_grad()
    def _reseed_dead(self, zn: torch.Tensor) -> int:
        dead = (self.cluster_size / self.cluster_size.sum()) < (self.dead_threshold / self.n_codes)
        n_dead = int(dead.sum())
        if n_dead:
            pick = torch.randint(0, zn.shape[0], (n_dead,), device=zn.device)
            fresh = F.normalize(zn[pick] + 0.01 * torch.randn_like(zn[pick]), dim=-1)
            self.embedding[dead] = fresh
            self.embed_sum[dead] = fresh * self.cluster_size.mean()
            self.cluster_size[dead] = self.cluster_size.mean()
            if _distributed():  # ranks agree on which codes are dead; rank 0's fresh vectors win
                for buf in (self.embedding, self.embed_sum, self.cluster_size):
                    dist.broadcast(buf, src=0)
        return n_dead


class NoQuantizer(nn.Module):
    """Ablation: no discretisation (the decoder sees the continuous embedding). Codes are all 0."""

    n_codes = 1

    def codebook(self) -> torch.Tensor:
        return torch.zeros(1, 1)

    def forward(self, z: torch.Tensor, commit_weight: float = 0.0, diversity_weight: float = 0.0):
        codes = torch.zeros(z.shape[0], dtype=torch.long, device=z.device)
        return QuantizerOutput(F.normalize(z, dim=-1), codes, z.new_zeros(()), z.new_ones(()), None)
