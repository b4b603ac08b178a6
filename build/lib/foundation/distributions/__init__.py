"""Count likelihoods as ``torch.distributions.Distribution`` subclasses."""

from foundation.distributions.zinb import NegativeBinomial, ZeroInflatedNegativeBinomial

__all__ = ["NegativeBinomial", "ZeroInflatedNegativeBinomial"]
