"""Trainable wrappers that teach the first stage with the stage-1 loss (LDM Sec. 3.1, App. G).

`KLAutoencoderTrainable` and `VQAutoencoderTrainable` implement the minildm trainer
protocol: `training_step(batch, group, step)`, `optimizer_groups()`, `sample_images(n)`,
`on_fit_start(trainer)` and `on_fit_end(trainer)`. They hold the model under `.autoencoder`
and a `Stage1Loss` under `.loss`; configs give both as plain dicts:

    model:
      target: autoencoder_kl
      params:
        autoencoder: {ch: 64, ch_mult: [1, 2, 4], z_channels: 3, embed_dim: 3, resolution: 32, ...}
        loss: {kl_weight: 1.0e-6, perceptual_weight: 0.0, disc_weight: 0.0}

With a discriminator there are two optimizer groups, "autoencoder" (encoder, decoder,
1x1 convs, codebook, the loss's logvar) and "disc", stepped in that order every step;
otherwise just "autoencoder".

After training, `update_scale_factor(dataloader)` (called by `on_fit_end`) stores
1 / std of the latents in the model's `scale_factor` buffer, which stage 2 uses to
give its diffusion model unit-variance inputs (the paper's "scale_by_std").
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from minildm.autoencoder.kl import AutoencoderKL
from minildm.autoencoder.vq import VQModel
from minildm.losses.stage1 import Stage1Loss

NUM_FIXED_IMAGES = 16


def _images(batch: dict[str, torch.Tensor] | torch.Tensor) -> torch.Tensor:
    """The image tensor (B, C, H, W) of a dataset batch (a dict with "image", or the tensor itself)."""
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, dict) and "image" in batch:
        return batch["image"]
    raise ValueError(f"expected a batch dict with an 'image' entry or an image tensor, got {type(batch).__name__}")


def _build(cls: type, params: dict[str, Any] | None, what: str) -> Any:
    """cls(**params) with a clear error naming unknown keys and the accepted ones."""
    params = dict(params or {})
    accepted = [name for name in inspect.signature(cls.__init__).parameters if name != "self"]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(f"unknown {what} option(s) {unknown}; accepted: {accepted}")
    return cls(**params)


@torch.no_grad()
def estimate_scale_factor(model: nn.Module, dataloader: Iterable, num_batches: int = 50) -> float:
    """1 / std of the first-stage latents over up to `num_batches` batches (not just one).

    The latents are what `model.encode_latent` returns divided by the current scale
    factor (posterior means for KL models). The std is taken over all latent elements,
    accumulated in float64 as running sums.
    """
    if num_batches < 1:
        raise ValueError(f"num_batches must be >= 1, got {num_batches}")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, total_sq, count = 0.0, 0.0, 0
    for i, batch in enumerate(dataloader):
        if i >= num_batches:
            break
        z = (model.encode_latent(_images(batch).to(device)) / model.scale_factor).double()
        total += z.sum().item()
        total_sq += z.pow(2).sum().item()
        count += z.numel()
    model.train(was_training)
    if count < 2:
        raise ValueError("estimate_scale_factor got an empty dataloader")
    variance = (total_sq - total * total / count) / (count - 1)
    return float(1.0 / max(variance, 1e-12) ** 0.5)


class _AutoencoderTrainable(nn.Module):
    """Shared protocol code; subclasses define `_generator_step`."""

    autoencoder: AutoencoderKL | VQModel

    def __init__(self, autoencoder: AutoencoderKL | VQModel, loss: Stage1Loss, num_scale_batches: int):
        super().__init__()
        self.autoencoder = autoencoder
        self.loss = loss
        self.num_scale_batches = num_scale_batches
        self._fixed_images: torch.Tensor | None = None
        self._cached_reconstruction: tuple[int, torch.Tensor, torch.Tensor] | None = None

    # the model interface, delegated so that stage 2 can use a trained checkpoint directly
    def encode(self, x: torch.Tensor) -> Any:
        """`autoencoder.encode(x)`."""
        return self.autoencoder.encode(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """`autoencoder.decode(z)`."""
        return self.autoencoder.decode(z)

    def encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        """`autoencoder.encode_latent(x)`: scale_factor * latent, what stage 2 diffuses."""
        return self.autoencoder.encode_latent(x)

    def decode_latent(self, latent: torch.Tensor) -> torch.Tensor:
        """`autoencoder.decode_latent(latent)`."""
        return self.autoencoder.decode_latent(latent)

    @property
    def scale_factor(self) -> torch.Tensor:
        """The autoencoder's latent scale factor buffer."""
        return self.autoencoder.scale_factor

    def optimizer_groups(self) -> dict[str, list[nn.Parameter]]:
        """"autoencoder" (model + learned logvar) and, with a GAN, "disc" (the discriminator)."""
        groups = {"autoencoder": [p for p in self.autoencoder.parameters() if p.requires_grad]}
        if self.loss.logvar.requires_grad:
            groups["autoencoder"].append(self.loss.logvar)
        if self.loss.discriminator is not None:
            groups["disc"] = list(self.loss.discriminator.parameters())
        return groups

    def training_step(self, batch: dict[str, torch.Tensor], group: str, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss for optimizer group `group` ("autoencoder" or "disc") at optimizer step `step`."""
        x = _images(batch)
        if self._fixed_images is None:
            self._fixed_images = x[:NUM_FIXED_IMAGES].detach().clone()
        if group == "autoencoder":
            x_hat, loss, logs = self._generator_step(x, step)
            # the discriminator step of the same optimizer step reuses this reconstruction
            self._cached_reconstruction = (step, x, x_hat.detach())
            return loss, logs
        if group == "disc" and self.loss.discriminator is not None:
            cached = self._cached_reconstruction
            if cached is not None and cached[0] == step and cached[1] is x:
                x_hat = cached[2]
            else:
                with torch.no_grad():
                    x_hat = self._reconstruct(x)
            self._cached_reconstruction = None
            return self.loss.discriminator_loss(x, x_hat, step=step)
        raise ValueError(f"unknown optimizer group {group!r}; this model has {list(self.optimizer_groups())}")

    def _generator_step(self, x: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def _reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def sample_images(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor | None:
        """A fixed batch and its reconstructions: n//2 originals, then their n//2 reconstructions, in [-1, 1].

        The fixed batch is the first training batch seen (or the first dataset items, see
        `on_fit_start`); returns None before any data has been seen. `generator` is unused
        (reconstructions use the posterior mean).
        """
        if self._fixed_images is None:
            return None
        k = max(1, min(n // 2, self._fixed_images.shape[0]))
        device = next(self.autoencoder.parameters()).device
        x = self._fixed_images[:k].to(device)
        was_training = self.training
        self.eval()
        reconstruction = self._reconstruct(x).clamp(-1.0, 1.0)
        self.train(was_training)
        return torch.cat([x, reconstruction])

    def on_fit_start(self, trainer: Any) -> None:
        """Take the fixed sample batch from the first items of `trainer.dataset` when there is one."""
        dataset = getattr(trainer, "dataset", None)
        if dataset is not None and self._fixed_images is None and len(dataset) > 0:
            items = [dataset[i] for i in range(min(NUM_FIXED_IMAGES, len(dataset)))]
            self._fixed_images = torch.stack([_images(item) for item in items])

    def on_fit_end(self, trainer: Any) -> None:
        """After training: estimate and store the latent scale factor from `trainer.train_dataloader`."""
        dataloader = getattr(trainer, "train_dataloader", None)
        if dataloader is not None:
            self.update_scale_factor(dataloader, self.num_scale_batches)

    def update_scale_factor(self, dataloader: Iterable, num_batches: int = 50) -> float:
        """Set `autoencoder.scale_factor` to 1 / std of the latents over `num_batches` batches; returns it."""
        self.autoencoder.scale_factor.fill_(1.0)
        value = estimate_scale_factor(self.autoencoder, dataloader, num_batches)
        self.autoencoder.scale_factor.fill_(value)
        return value


class KLAutoencoderTrainable(_AutoencoderTrainable):
    """AutoencoderKL trained with reconstruction + perceptual + KL (+ PatchGAN) losses.

    Args:
        autoencoder: keyword arguments of `AutoencoderKL`.
        loss: keyword arguments of `Stage1Loss` (defaults: sum reduction, KL weight 1e-6).
        sample_posterior: decode a posterior sample (True, the paper) or its mean during training.
        num_scale_batches: batches used by `on_fit_end` to estimate the scale factor.
    """

    def __init__(
        self,
        autoencoder: dict[str, Any] | None = None,
        loss: dict[str, Any] | None = None,
        sample_posterior: bool = True,
        num_scale_batches: int = 50,
    ):
        super().__init__(_build(AutoencoderKL, autoencoder, "autoencoder"), _build(Stage1Loss, loss, "loss"), num_scale_batches)
        self.sample_posterior = sample_posterior

    def forward(self, x: torch.Tensor, sample_posterior: bool = True) -> tuple[torch.Tensor, Any]:
        """`autoencoder(x)`: (x_hat, posterior)."""
        return self.autoencoder(x, sample_posterior=sample_posterior)

    def _reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.autoencoder(x, sample_posterior=False)[0]

    def _generator_step(self, x: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        x_hat, posterior = self.autoencoder(x, sample_posterior=self.sample_posterior)
        loss, logs = self.loss.generator_loss(x, x_hat, step=step, last_layer=self.autoencoder.last_layer, kl=posterior.kl())
        return x_hat, loss, logs


class VQAutoencoderTrainable(_AutoencoderTrainable):
    """VQModel trained with reconstruction + perceptual + codebook/commitment (+ PatchGAN) losses.

    Args:
        autoencoder: keyword arguments of `VQModel`.
        loss: keyword arguments of `Stage1Loss`; defaults here follow the original VQ loss
            (mean reduction, no learned logvar) unless given.
        num_scale_batches: batches used by `on_fit_end` to estimate the scale factor.
    """

    def __init__(
        self,
        autoencoder: dict[str, Any] | None = None,
        loss: dict[str, Any] | None = None,
        num_scale_batches: int = 50,
    ):
        loss_params = {"reduction": "mean", "learn_logvar": False, **(loss or {})}
        super().__init__(_build(VQModel, autoencoder, "autoencoder"), _build(Stage1Loss, loss_params, "loss"), num_scale_batches)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """`autoencoder(x)`: (x_hat, quantization loss, quantizer info)."""
        return self.autoencoder(x)

    def _reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.autoencoder(x)[0]

    def _generator_step(self, x: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        x_hat, vq_loss, info = self.autoencoder(x)
        loss, logs = self.loss.generator_loss(x, x_hat, step=step, last_layer=self.autoencoder.last_layer, codebook_loss=vq_loss)
        logs.update(perplexity=info["perplexity"].detach(), codebook_usage=info["usage"].detach(),
                    commitment_loss=info["commitment_loss"].detach())
        return x_hat, loss, logs
