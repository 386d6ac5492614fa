"""Small stateless loss functions of the first stage (LDM Sec. 3.1, App. G).

Each is a graded exercise in the course, so each stands alone with a plain signature.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from minildm.utils import randn


def reparameterize(mean: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """z = mean + exp(logvar / 2) * eps with eps ~ N(0, I) (Kingma & Welling, 2014): a sample that keeps gradients."""
    eps = randn(mean.shape, generator, device=mean.device, dtype=mean.dtype)
    return mean + torch.exp(0.5 * logvar) * eps


def kl_divergence(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) = 0.5 * sum(mean^2 + var - 1 - logvar), summed per sample -> (B,)."""
    per_element = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar)
    return per_element.flatten(1).sum(dim=1)


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """Hinge discriminator loss: 0.5 * (mean(relu(1 - D(x))) + mean(relu(1 + D(x_hat))))."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def vanilla_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """Non-saturating GAN discriminator loss: 0.5 * (mean(softplus(-D(x))) + mean(softplus(D(x_hat))))."""
    return 0.5 * (F.softplus(-logits_real).mean() + F.softplus(logits_fake).mean())


def adaptive_weight(
    nll_loss: torch.Tensor,
    g_loss: torch.Tensor,
    last_layer: torch.Tensor,
    disc_weight: float = 1.0,
    eps: float = 1e-4,
    max_weight: float = 1e4,
) -> torch.Tensor:
    """Balance the GAN term against the reconstruction term (Esser et al., 2021, Eq. 7).

    lambda = ||grad_L(nll)|| / (||grad_L(g)|| + eps), clamped to [0, max_weight], times
    `disc_weight`, where L is the decoder's last layer. Returned detached: it is a weight,
    not something to differentiate through.
    """
    nll_grads = torch.autograd.grad(nll_loss, last_layer, retain_graph=True)[0]
    g_grads = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    weight = torch.norm(nll_grads) / (torch.norm(g_grads) + eps)
    return torch.clamp(weight, 0.0, max_weight).detach() * disc_weight
