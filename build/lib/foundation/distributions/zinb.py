"""Negative binomial and zero-inflated negative binomial (ZINB) in the mean/dispersion parametrisation.

For a count ``x`` with mean ``mu`` and inverse dispersion ``theta`` (``var = mu + mu**2 / theta``)::

    NB(x) = Gamma(x + theta) / (Gamma(theta) x!) * (theta / (theta + mu))**theta * (mu / (theta + mu))**x

ZINB mixes a point mass at zero with weight ``pi = sigmoid(zi_logits)``::

    P(0) = pi + (1 - pi) NB(0),      P(x > 0) = (1 - pi) NB(x)

All log-probabilities are computed in log space with ``softplus`` so that they stay finite for tiny
means and large dispersions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.distributions import Distribution, constraints

_EPS = 1e-8


def _nb_log_prob(x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    log_theta_mu = torch.log(theta + mu + _EPS)
    return (
        theta * (torch.log(theta + _EPS) - log_theta_mu)
        + x * (torch.log(mu + _EPS) - log_theta_mu)
        + torch.lgamma(x + theta)
        - torch.lgamma(theta)
        - torch.lgamma(x + 1.0)
    )


class NegativeBinomial(Distribution):
    """Negative binomial with mean ``mu`` and inverse dispersion ``theta``."""

    arg_constraints = {"mu": constraints.nonnegative, "theta": constraints.positive}
    support = constraints.nonnegative_integer

    def __init__(self, mu: torch.Tensor, theta: torch.Tensor, validate_args: bool | None = False):
        self.mu, self.theta = torch.broadcast_tensors(mu, theta)
        super().__init__(self.mu.shape, validate_args=validate_args)

    @property
    def mean(self) -> torch.Tensor:
        return self.mu

    @property
    def variance(self) -> torch.Tensor:
        return self.mu + self.mu.pow(2) / self.theta

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return _nb_log_prob(value, self.mu, self.theta)

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        with torch.no_grad():
            # Gamma-Poisson mixture: lambda ~ Gamma(theta, theta / mu)
            rate = self.theta / self.mu.clamp_min(_EPS)
            lam = torch.distributions.Gamma(self.theta, rate).sample(sample_shape)
            return torch.poisson(lam)


class ZeroInflatedNegativeBinomial(NegativeBinomial):
    """ZINB: NB mixed with extra zeros of probability ``sigmoid(zi_logits)``."""

    arg_constraints = {
        "mu": constraints.nonnegative,
        "theta": constraints.positive,
        "zi_logits": constraints.real,
    }

    def __init__(
        self,
        mu: torch.Tensor,
        theta: torch.Tensor,
        zi_logits: torch.Tensor,
        validate_args: bool | None = False,
    ):
        super().__init__(mu, theta, validate_args=validate_args)
        self.zi_logits = zi_logits.expand_as(self.mu)

    @property
    def zi_probs(self) -> torch.Tensor:
        return torch.sigmoid(self.zi_logits)

    @property
    def mean(self) -> torch.Tensor:
        return (1.0 - self.zi_probs) * self.mu

    @property
    def variance(self) -> torch.Tensor:
        pi = self.zi_probs
        return (1.0 - pi) * self.mu * (1.0 + self.mu * (pi + 1.0 / self.theta))

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        mu, theta, logits = self.mu, self.theta, self.zi_logits
        # log(1 - pi) = -softplus(logits); log(pi) = -softplus(-logits)
        nb = _nb_log_prob(value, mu, theta)
        log_nb_zero = theta * (torch.log(theta + _EPS) - torch.log(theta + mu + _EPS))
        zero_case = torch.logaddexp(-F.softplus(-logits), -F.softplus(logits) + log_nb_zero)
        nonzero_case = -F.softplus(logits) + nb
        return torch.where(value < 0.5, zero_case, nonzero_case)

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        with torch.no_grad():
            nb = super().sample(sample_shape)
            keep = torch.rand_like(nb) >= self.zi_probs.expand_as(nb)
            return nb * keep
