"""The stage-1 training loss: reconstruction + perceptual + regulariser + adversarial (LDM Sec. 3.1, App. G).

Generator (autoencoder) side, for images x and reconstructions x_hat:

    rec   = |x - x_hat| + perceptual_weight * LPIPS(x, x_hat)          (per pixel)
    nll   = rec / exp(logvar) + logvar                                 (learned scalar logvar)
    g     = -mean(D(x_hat))                                            (PatchGAN logits)
    lam   = adaptive_weight(nll, g, last decoder layer) * disc_weight  (Esser et al. 2021, Eq. 7)
    loss  = nll + kl_weight * KL  [or codebook_weight * VQ loss] + disc_factor * lam * g

Discriminator side: hinge (default) or vanilla loss on D(x) and D(sg[x_hat]).
GAN terms are switched off (disc_factor = 0) before step `disc_start`.

Reduction: "sum" sums nll and KL over pixels/latents and averages over the batch (the
original KL autoencoder code; with it the paper's KL weight 1e-6 means what it says);
"mean" averages over everything (the original VQ code). The KL term is always
summed over latent elements and averaged over the batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from minildm.losses.discriminator import NLayerDiscriminator
from minildm.losses.functional import adaptive_weight, hinge_d_loss, vanilla_d_loss
from minildm.losses.perceptual import LPIPS

D_LOSSES = {"hinge": hinge_d_loss, "vanilla": vanilla_d_loss}
REDUCTIONS = ("sum", "mean")


@contextlib.contextmanager
def _frozen(module: nn.Module) -> Iterator[None]:
    """Evaluate `module` in eval mode without recording gradients for its weights (inputs still get them)."""
    was_training = module.training
    flags = [p.requires_grad for p in module.parameters()]
    module.eval()
    module.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(module.parameters(), flags):
            p.requires_grad_(flag)
        module.train(was_training)


class Stage1Loss(nn.Module):
    """LPIPS-with-discriminator loss for KL and VQ autoencoders; `generator_loss` and `discriminator_loss`.

    With disc_weight = 0 no discriminator is built and the loss is rec/nll + regulariser only.
    The perceptual network is fixed, so it is kept out of the state dict and the optimizer.
    """

    def __init__(
        self,
        *,
        perceptual_weight: float = 1.0,
        perceptual_net: str = "alex",
        lpips_backbone: str | None = None,
        kl_weight: float = 1e-6,
        codebook_weight: float = 1.0,
        learn_logvar: bool = True,
        logvar_init: float = 0.0,
        reduction: str = "sum",
        disc_weight: float = 0.5,
        disc_start: int = 50001,
        disc_factor: float = 1.0,
        disc_loss: str = "hinge",
        disc_in_channels: int = 3,
        disc_ndf: int = 64,
        disc_num_layers: int = 3,
    ):
        super().__init__()
        if disc_loss not in D_LOSSES:
            raise ValueError(f"unknown disc_loss {disc_loss!r}; accepted: {sorted(D_LOSSES)}")
        if reduction not in REDUCTIONS:
            raise ValueError(f"unknown reduction {reduction!r}; accepted: {list(REDUCTIONS)}")
        self.perceptual_weight, self.kl_weight, self.codebook_weight = perceptual_weight, kl_weight, codebook_weight
        self.reduction = reduction
        self.disc_weight, self.disc_start, self.disc_factor = disc_weight, disc_start, disc_factor
        self.disc_loss_name = disc_loss
        self.logvar = nn.Parameter(torch.tensor(float(logvar_init)), requires_grad=learn_logvar)
        self._perceptual = [LPIPS(perceptual_net, backbone_path=lpips_backbone)] if perceptual_weight > 0 else []
        self.discriminator = (
            NLayerDiscriminator(disc_in_channels, disc_ndf, disc_num_layers) if self.uses_gan else None
        )

    @property
    def uses_gan(self) -> bool:
        """Whether the adversarial terms exist at all (disc_weight > 0 and disc_factor > 0)."""
        return self.disc_weight > 0 and self.disc_factor > 0

    @property
    def perceptual(self) -> LPIPS | None:
        """The fixed LPIPS network (or None when perceptual_weight = 0); see `.variant`."""
        return self._perceptual[0] if self._perceptual else None

    def gan_active(self, step: int) -> bool:
        """GAN terms are on from `disc_start` onwards."""
        return self.uses_gan and step >= self.disc_start

    def _reduce(self, per_element: torch.Tensor) -> torch.Tensor:
        if self.reduction == "sum":
            return per_element.sum() / per_element.shape[0]
        return per_element.mean()

    def generator_loss(
        self,
        x: torch.Tensor,
        x_hat: torch.Tensor,
        *,
        step: int,
        last_layer: torch.Tensor | None = None,
        kl: torch.Tensor | None = None,
        codebook_loss: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The autoencoder's loss and its logged terms. `kl` is per-sample (B,), `codebook_loss` a scalar."""
        rec = (x - x_hat).abs()  # (B, C, H, W)
        logs: dict[str, torch.Tensor | float] = {"l1_loss": rec.mean().detach()}
        if self.perceptual is not None:
            lpips_model = self.perceptual.to(x.device)
            p_loss = lpips_model(x.contiguous(), x_hat.contiguous())  # (B, 1, 1, 1)
            rec = rec + self.perceptual_weight * p_loss
            logs["perceptual_loss"] = p_loss.mean().detach()
        nll = rec / torch.exp(self.logvar) + self.logvar
        nll_loss = self._reduce(nll)
        loss = nll_loss
        logs.update(rec_loss=rec.mean().detach(), nll_loss=nll_loss.detach(), logvar=self.logvar.detach())
        if kl is not None:
            kl_loss = kl.sum() / kl.shape[0]  # summed over latent elements, averaged over the batch (both reductions)
            loss = loss + self.kl_weight * kl_loss
            logs["kl_loss"] = kl_loss.detach()
        if codebook_loss is not None:
            loss = loss + self.codebook_weight * codebook_loss.mean()
            logs["codebook_loss"] = codebook_loss.mean().detach()

        if self.gan_active(step):
            with _frozen(self.discriminator):
                g_loss = -self.discriminator(x_hat.contiguous()).mean()
            if last_layer is not None and torch.is_grad_enabled() and last_layer.requires_grad:
                d_weight = adaptive_weight(nll_loss, g_loss, last_layer, self.disc_weight)
            else:  # evaluation: no gradients to balance
                d_weight = torch.zeros((), device=x.device)
            loss = loss + self.disc_factor * d_weight * g_loss
            logs.update(g_loss=g_loss.detach(), d_weight=d_weight.detach(), disc_factor=self.disc_factor)
        else:
            logs.update(g_loss=0.0, d_weight=0.0, disc_factor=0.0)
        logs["loss"] = loss.detach()
        return loss, logs

    def discriminator_loss(self, x: torch.Tensor, x_hat: torch.Tensor, *, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        """The discriminator's loss on real x and detached reconstructions x_hat (0 with no gradient work before disc_start)."""
        if self.discriminator is None:
            raise RuntimeError("this Stage1Loss has no discriminator (disc_weight or disc_factor is 0)")
        if not self.gan_active(step):
            # Zero, but still attached to the discriminator so an optimizer step on it is a valid no-op.
            zero = sum(p.sum() for p in self.discriminator.parameters()) * 0.0
            return zero, {"disc_loss": 0.0, "logits_real": 0.0, "logits_fake": 0.0}
        logits_real = self.discriminator(x.contiguous().detach())
        logits_fake = self.discriminator(x_hat.contiguous().detach())
        d_loss = self.disc_factor * D_LOSSES[self.disc_loss_name](logits_real, logits_fake)
        logs = {"disc_loss": d_loss.detach(), "logits_real": logits_real.mean().detach(), "logits_fake": logits_fake.mean().detach()}
        return d_loss, logs
