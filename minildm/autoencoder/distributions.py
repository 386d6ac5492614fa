"""The KL autoencoder's posterior q(z|x) = N(mean, diag(exp(logvar))) (LDM Sec. 3.1; Kingma & Welling, 2014).

    reparameterize                  z = mean + exp(logvar / 2) * eps: a sample that keeps gradients
    kl_divergence                   KL(q(z|x) || N(0, I)) in closed form, per sample
    DiagonalGaussianDistribution    the encoder's moments as a distribution (sample, mode, kl, nll)
"""

from __future__ import annotations

import math

import torch

from minildm.utils import randn


def reparameterize(mean: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """z = mean + exp(logvar / 2) * eps with eps ~ N(0, I) (Kingma & Welling, 2014): a sample that keeps gradients."""
    eps = randn(mean.shape, generator, device=mean.device, dtype=mean.dtype)
    return mean + torch.exp(0.5 * logvar) * eps


def kl_divergence(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) = 0.5 * sum(mean^2 + var - 1 - logvar), summed per sample -> (B,)."""
    per_element = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar)
    return per_element.flatten(1).sum(dim=1)


class DiagonalGaussianDistribution:
    """A diagonal Gaussian built from the encoder's (B, 2*C, h, w) moments: first C channels mean, last C logvar.

    logvar is clamped to [-30, 20] as in the original code, so exp(logvar) never under- or overflows.
    """

    def __init__(self, parameters: torch.Tensor):
        if parameters.dim() < 2 or parameters.shape[1] % 2 != 0:
            raise ValueError(f"expected moments of shape (B, 2*C, ...) with an even channel count, got {tuple(parameters.shape)}")
        self.parameters = parameters
        self.mean, logvar = torch.chunk(parameters, 2, dim=1)  # (B, 2C, h, w) -> 2 x (B, C, h, w)
        self.logvar = torch.clamp(logvar, -30.0, 20.0)
        self.std = torch.exp(0.5 * self.logvar)
        self.var = torch.exp(self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """A reparameterised sample z = mean + std * eps (differentiable in mean and logvar)."""
        return reparameterize(self.mean, self.logvar, generator=generator)

    def mode(self) -> torch.Tensor:
        """The most likely latent: the mean."""
        return self.mean

    def kl(self) -> torch.Tensor:
        """KL(q(z|x) || N(0, I)) per sample, shape (B,)."""
        return kl_divergence(self.mean, self.logvar)

    def nll(self, sample: torch.Tensor) -> torch.Tensor:
        """-log q(sample | x) per sample, shape (B,)."""
        per_element = 0.5 * (math.log(2.0 * math.pi) + self.logvar + (sample - self.mean).pow(2) / self.var)
        return per_element.flatten(1).sum(dim=1)
