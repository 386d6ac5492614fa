"""LatentDiffusion: a frozen first stage + a denoising UNet + a conditioner + a noise schedule.

The paper's model (LDM Sec. 3.2-3.3, Eq. 2 and 3): images x are encoded once,
z = scale_factor * E(x); a UNet eps_theta(z_t, t, tau(y)) learns to predict the noise
added by the forward process; samples are drawn in latent space and decoded, x~ = D(z / scale_factor)
(the first stage stores and applies scale_factor: `encode_latent` / `decode_latent`).

    L_LDM = E_{E(x), y, eps ~ N(0, I), t} || eps - eps_theta(z_t, t, tau_theta(y)) ||^2      (Eq. 3)

Pixel-space diffusion is the same class with `first_stage=None` (an identity first stage),
so the course compares pixels and latents through one code path.

Classifier-free guidance (Ho & Salimans, 2022): training replaces the condition by a
"null" condition with probability `cond_drop_prob` (the original CompVis code has no
condition dropout); sampling mixes conditional and unconditional predictions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn
from torch.utils.data import Dataset

from minildm.conditioning import ClassConditioner
from minildm.diffusion import NoiseSchedule, cfg_model, diffusion_loss, q_sample, sample as run_sampler
from minildm.unet import UNetModel

CONDITIONER_TYPES = ("class",)


class IdentityFirstStage(nn.Module):
    """The "autoencoder" of pixel-space diffusion: latents are the images themselves (f = 1)."""

    downsampling_factor = 1

    def __init__(self):
        super().__init__()
        self.register_buffer("scale_factor", torch.tensor(1.0))

    def encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def decode_latent(self, z: torch.Tensor) -> torch.Tensor:
        return z


def as_first_stage(model: nn.Module | None) -> nn.Module:
    """The first stage LatentDiffusion uses for `model`: None -> identity (pixel space), a trainable -> its autoencoder.

    Where a first stage comes from (a course checkpoint name, a run folder, a config) is decided
    before the LatentDiffusion is built: `minildm.pretrained.build_model` resolves a config's
    `first_stage:` with `minildm.pretrained.resolve`, so this module never loads anything.
    """
    if model is None:
        return IdentityFirstStage()
    if not isinstance(model, nn.Module):
        raise TypeError(f"first_stage must be an nn.Module (an autoencoder) or None, got {type(model).__name__}; "
                        "load one by name or folder with minildm.pretrained.resolve")
    model = getattr(model, "autoencoder", model)  # trainables (autoencoder + loss + discriminator) -> the autoencoder
    for name in ("encode_latent", "decode_latent", "scale_factor"):
        if not hasattr(model, name):
            raise TypeError(f"a first stage needs `{name}`; {type(model).__name__} has none "
                            "(use an AutoencoderKL / VQModel checkpoint)")
    return model


class LatentDataset(Dataset):
    """Latents encoded once by a frozen first stage, with the items' other keys (e.g. "label").

    Stage 1 is frozen during stage 2, so encoding every image once up front gives the same
    training signal as encoding each batch on the fly, without paying the encoder at every step.
    """

    def __init__(self, latents: torch.Tensor, extras: dict[str, torch.Tensor]):
        self.latents, self.extras = latents, extras

    def __len__(self) -> int:
        return self.latents.shape[0]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"latent": self.latents[index], **{k: v[index] for k, v in self.extras.items()}}

    def get_batch(self, indices: list[int]) -> dict[str, torch.Tensor]:
        """The collated batch of `indices` in one indexing operation (what the trainer's loader uses)."""
        index = torch.as_tensor(indices, device=self.latents.device)
        return {"latent": self.latents[index], **{k: v[index] for k, v in self.extras.items()}}

    def to(self, device: str | torch.device) -> LatentDataset:
        """Move the latents and extras to `device` (a GPU then trains without host-to-device copies)."""
        self.latents = self.latents.to(device)
        self.extras = {k: v.to(device) for k, v in self.extras.items()}
        return self


def build_conditioner(spec: Mapping[str, Any] | None) -> nn.Module | None:
    """{"type": "class", "num_classes": N, "embed_dim": D, "mode": "crossattn" | "adm"} -> conditioner."""
    if spec is None:
        return None
    spec = dict(spec)
    kind = spec.pop("type", None)
    if kind == "class":
        return ClassConditioner(**spec)
    raise ValueError(f"unknown conditioner type {kind!r}; valid types: {', '.join(CONDITIONER_TYPES)}")


class LatentDiffusion(nn.Module):
    """The LDM of Rombach et al. (2022): diffusion in the latent space of a frozen autoencoder.

    Args:
        unet: keyword arguments of `UNetModel` (in_channels must equal the latent channels).
        first_stage: the frozen autoencoder (see `as_first_stage`; None = pixel-space diffusion). In a config,
            a course checkpoint name, a run folder or {"target", "params"}, loaded by minildm.pretrained.build_model.
        conditioner: see `build_conditioner` (None = unconditional).
        image_size: size of the images in pixels; latents are image_size / f.
        schedule: {"name", "num_timesteps", "beta_start", "beta_end"} of `NoiseSchedule.from_name`.
        objective: what the UNet predicts: "eps" (the paper), "x0" or "v".
        loss_weighting: "uniform" (the paper) or "min_snr" (Hang et al., 2023) with `min_snr_gamma`.
        cond_drop_prob: probability of replacing the condition by the null condition (CFG training).
        scale_factor: latent scale; None keeps the first stage's stored value (1/std of its latents).
        sampler, sample_steps, guidance_scale: defaults of `sample` and of the trainer's sample grids.
    """

    def __init__(
        self,
        unet: dict[str, Any],
        first_stage: nn.Module | None = None,
        conditioner: dict[str, Any] | None = None,
        image_size: int = 32,
        schedule: dict[str, Any] | None = None,
        objective: str = "eps",
        loss_weighting: str = "uniform",
        min_snr_gamma: float = 5.0,
        cond_drop_prob: float = 0.1,
        scale_factor: float | None = None,
        sampler: str = "dpmpp_2m",
        sample_steps: int = 20,
        guidance_scale: float = 3.0,
    ):
        super().__init__()
        self.first_stage = as_first_stage(first_stage).eval().requires_grad_(False)
        self.conditioner = build_conditioner(conditioner)
        self.unet = UNetModel(**unet)
        if isinstance(self.conditioner, ClassConditioner) and self.conditioner.mode == "adm" \
                and unet.get("num_classes") != self.conditioner.num_classes + 1:
            raise ValueError(f"class conditioning in 'adm' mode needs unet.num_classes = "
                             f"{self.conditioner.num_classes + 1} (the classes + one null class for guidance), "
                             f"got {unet.get('num_classes')}")
        schedule = {"name": "scaled_linear", "num_timesteps": 1000, "beta_start": 0.0015, "beta_end": 0.0195,
                    **(schedule or {})}
        self.schedule = NoiseSchedule.from_name(**schedule)
        self.objective = objective
        self.loss_weighting = loss_weighting
        self.min_snr_gamma = min_snr_gamma
        self.cond_drop_prob = cond_drop_prob
        self.image_size = image_size
        self.sampler, self.sample_steps, self.guidance_scale = sampler, sample_steps, guidance_scale
        if scale_factor is not None:  # override the first stage's stored 1/std of its latents
            self.first_stage.scale_factor.fill_(float(scale_factor))
        f = self.first_stage.downsampling_factor
        if image_size % f:
            raise ValueError(f"image_size {image_size} is not divisible by the first stage's factor f = {f}")
        self.latent_shape = (self.unet.in_channels, image_size // f, image_size // f)

    def train(self, mode: bool = True) -> LatentDiffusion:
        """The first stage stays frozen in eval mode whatever the trainer asks."""
        super().train(mode)
        self.first_stage.eval()
        return self

    def optimizer_groups(self) -> dict[str, list[nn.Parameter]]:
        """Only the UNet and the conditioner learn; the first stage is frozen."""
        params = list(self.unet.parameters())
        if self.conditioner is not None:
            params += list(self.conditioner.parameters())
        return {"model": params}

    # --- stage 1 <-> latent space -------------------------------------------------------
    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) in [-1, 1] -> scaled latents (B, c, H/f, W/f) with unit-ish variance.

        The first stage applies its own `scale_factor` (1/std of its latents, LDM App. G "scale_by_std").
        """
        return self.first_stage.encode_latent(x)

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> images in [-1, 1] (clamped)."""
        return self.first_stage.decode_latent(z).clamp(-1, 1)

    @torch.no_grad()
    def encode_dataset(self, dataset: Dataset, num_items: int | None = None, batch_size: int = 256,
                       keys: tuple[str, ...] = ("label",)) -> LatentDataset:
        """Encode the first `num_items` images of `dataset` once (see `LatentDataset`)."""
        from tqdm.auto import tqdm

        n = len(dataset) if num_items is None else min(num_items, len(dataset))
        device = next(self.unet.parameters()).device
        latents, extras = [], {k: [] for k in keys}
        for start in tqdm(range(0, n, batch_size), desc="encoding latents", leave=False):
            items = [dataset[i] for i in range(start, min(start + batch_size, n))]
            latents.append(self.encode(torch.stack([it["image"] for it in items]).to(device)).cpu())
            for k in keys:
                extras[k].append(torch.as_tensor([it[k] for it in items]))
        return LatentDataset(torch.cat(latents), {k: torch.cat(v) for k, v in extras.items()})

    # --- the network and its conditioning ---------------------------------------------------
    def condition(self, batch_value: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """The conditioner's UNet keyword arguments for a batch of conditions ({} when unconditional)."""
        if self.conditioner is None or batch_value is None:
            return {}
        return self.conditioner(batch_value)

    def model_output(self, z_t: torch.Tensor, t: torch.Tensor, cond: dict[str, torch.Tensor]) -> torch.Tensor:
        """eps_theta(z_t, t, tau(y)) (or x0 / v, following `objective`)."""
        return self.unet(z_t, t, **cond)

    def training_step(self, batch: dict[str, torch.Tensor], group: str, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        """One Monte-Carlo sample of Eq. 3 per image (the trainer contract)."""
        z0 = batch["latent"] if "latent" in batch else self.encode(batch["image"])
        t = torch.randint(0, self.schedule.num_timesteps, (z0.shape[0],), device=z0.device)
        noise = torch.randn_like(z0)
        z_t = q_sample(z0, t, noise, self.schedule)
        labels = None
        if self.conditioner is not None:
            labels = self.conditioner.drop(batch[self.conditioner.batch_key], self.cond_drop_prob)
        output = self.model_output(z_t, t, self.condition(labels))
        loss = diffusion_loss(output, z0, noise, t, self.schedule, objective=self.objective,
                              weighting=self.loss_weighting, gamma=self.min_snr_gamma)
        return loss, {"loss": loss.detach()}

    # --- sampling ---------------------------------------------------------------------------
    def denoiser_fn(self, labels: torch.Tensor | None = None, guidance_scale: float | None = None,
                    guidance_rescale: float = 0.0):
        """model_fn(z_t, t) for `minildm.diffusion.sample`, with classifier-free guidance when scale != 1."""
        scale = self.guidance_scale if guidance_scale is None else guidance_scale
        if self.conditioner is None or labels is None:
            return lambda z, t: self.model_output(z, t, {})
        cond = self.condition(labels)
        if scale == 1.0:
            return lambda z, t: self.model_output(z, t, cond)
        uncond = self.condition(self.conditioner.null_input(labels))
        return cfg_model(self.model_output, cond, uncond, scale, rescale=guidance_rescale)

    @torch.no_grad()
    def sample(
        self,
        n: int | None = None,
        labels: torch.Tensor | None = None,
        sampler: str | None = None,
        steps: int | None = None,
        guidance_scale: float | None = None,
        guidance_rescale: float = 0.0,
        generator: torch.Generator | None = None,
        decode: bool = True,
        progress: bool = True,
        **sampler_options: Any,
    ) -> torch.Tensor:
        """Draw images (B, C, H, W) in [-1, 1]: `n` unconditional ones or one per entry of `labels`."""
        if labels is None and n is None:
            raise ValueError("give the number of samples `n` or the `labels` to sample")
        device = next(self.unet.parameters()).device
        if labels is not None:
            labels = torch.as_tensor(labels, device=device).long()
            n = labels.shape[0]
        model_fn = self.denoiser_fn(labels, guidance_scale, guidance_rescale)
        z = run_sampler(model_fn, (n, *self.latent_shape), sampler or self.sampler, steps or self.sample_steps,
                        schedule=self.schedule, objective=self.objective, generator=generator, device=device,
                        disable=not progress, **sampler_options)
        return self.decode(z) if decode else z

    def sample_images(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """The trainer's periodic sample grid: classes 0, 1, 2, ... in turn when class-conditional."""
        labels = None
        if isinstance(self.conditioner, ClassConditioner):
            labels = torch.arange(n) % self.conditioner.num_classes
        return self.sample(n=n, labels=labels, generator=generator, progress=False)
