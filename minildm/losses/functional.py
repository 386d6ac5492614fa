"""Small stateless loss functions of the first stage (LDM Sec. 3.1, App. G): GAN losses and the adaptive weight.

Each is a graded exercise in the course, so each stands alone with a plain signature. The VAE's
`reparameterize` and `kl_divergence` live with the posterior they belong to, in
`minildm.autoencoder.distributions`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


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
