"""ZINB decoder conditioned on the quantised cell embedding and the gene embeddings.

For cell embedding ``z_q`` and gene ``g`` with (encoder) gene embedding ``e_g``::

    h        = MLP(z_q)                               (d_decoder)
    logit_g  = h . W_mu e_g + b_g                     mean logits
    mu_g     = library * softmax_{g in measured}(logit_g)
    pi_g     = sigmoid(h' . W_pi e_g + c_g)           dropout (zero-inflation) probability
    theta_g  = exp(log_theta_g)                       gene-wise inverse dispersion

Sharing the gene embeddings between encoder and decoder makes them describe how genes co-vary across
cells, which is what ``varm["cellvq_gene"]`` exposes. The softmax runs over the genes the dataset
measured only: unmeasured genes are missing, never zeros.
"""

from __future__ import annotations

import torch
from torch import nn

from foundation.distributions import ZeroInflatedNegativeBinomial


class ZINBDecoder(nn.Module):
    def __init__(self, d_latent: int, d_gene: int, n_genes: int, d_decoder: int = 64):
        super().__init__()
        self.hidden = nn.Sequential(nn.Linear(d_latent, d_decoder * 2), nn.GELU(), nn.Linear(d_decoder * 2, 2 * d_decoder))
        # gene embeddings are small at init (std 0.02, fit for the encoder's input); normalise them so the
        # decoder's dot products are O(1) from the first step
        self.gene_norm = nn.LayerNorm(d_gene)
        self.gene_mu = nn.Linear(d_gene, d_decoder, bias=False)
        self.gene_pi = nn.Linear(d_gene, d_decoder, bias=False)
        # cell-specific terms start small: the model first predicts the corpus's mean profile (see
        # init_from_frequencies) and learns deviations from it
        nn.init.normal_(self.gene_mu.weight, std=0.01)
        nn.init.normal_(self.gene_pi.weight, std=0.01)
        self.bias_mu = nn.Parameter(torch.zeros(n_genes))
        self.bias_pi = nn.Parameter(torch.full((n_genes,), -2.0))
        self.log_theta = nn.Parameter(torch.zeros(n_genes))
        self.d_decoder = d_decoder

    @torch.no_grad()
    def init_from_frequencies(self, freq: torch.Tensor) -> None:
        """Set the mean-logit biases to log mean gene frequencies (share of a cell's counts)."""
        self.bias_mu.copy_(torch.log(freq.to(self.bias_mu) + 1e-7))

    def forward(
        self,
        z_q: torch.Tensor,
        gene_emb: torch.Tensor,
        library: torch.Tensor,
        measured: torch.Tensor | None = None,
    ) -> ZeroInflatedNegativeBinomial:
        """z_q (B, D); gene_emb (G, d_gene); library (B,); measured (G,) or (B, G) bool."""
        h_mu, h_pi = self.hidden(z_q).split(self.d_decoder, dim=-1)
        gene_emb = self.gene_norm(gene_emb)
        logits = h_mu @ self.gene_mu(gene_emb).t() + self.bias_mu
        if measured is not None:
            logits = logits.masked_fill(~measured, float("-inf"))
        scale = torch.softmax(logits.float(), dim=-1)
        mu = scale * library.float().unsqueeze(-1)
        zi = (h_pi @ self.gene_pi(gene_emb).t() + self.bias_pi).float()
        theta = self.log_theta.float().clamp(-6, 10).exp().expand_as(mu)
        return ZeroInflatedNegativeBinomial(mu, theta, zi)
