"""LatentDiffusion: a frozen first stage + a denoising UNet + a conditioner + a noise schedule.

The paper's model (LDM Sec. 3.2-3.3, Eq. 2 and 3): images x are encoded once,
z = scale_factor * E(x); a UNet eps_theta(z_t, t, tau(y)) learns to predict the noise
added by the forward process; samples are drawn in latent space and decoded, x~ = D(z / scale_factor)
(the first stage stores and applies scale_factor: `encode_latent` / `decode_latent`).

    L_LDM = E_{E(x), y, eps ~ N(0, I), t} || eps - eps_theta(z_t, t, tau_theta(y)) ||^2      (Eq. 3)

`latent_diffusion_loss` computes it for given t, noise and labels; `training_step` draws them.

Concat conditioning (inpainting, super-resolution, semantic maps; see minildm.conditioning.concat)
feeds a spatial map c to the UNet beside z_t, eps_theta([z_t ; c], t): the UNet's in_channels are the
latent channels plus the map's, and the sampled images take the map's size.

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
from torch.utils.data import Dataset, default_collate

from minildm.autoencoder import FirstStage, check_first_stage
from minildm.conditioning import ClassConditioner, build_conditioner
from minildm.diffusion import NoiseSchedule, cfg_model, diffusion_loss, q_sample, sample as run_sampler
from minildm.unet import UNetModel

LDM_SCHEDULE = {"name": "scaled_linear", "num_timesteps": 1000, "beta_start": 0.0015, "beta_end": 0.0195}
"""The paper's LDM noise schedule (LDM App. E / CompVis configs: `linear_start: 0.0015, linear_end: 0.0195`,
CompVis "linear" = diffusers "scaled_linear"). Stable Diffusion uses scaled_linear 0.00085 .. 0.012,
the default of `NoiseSchedule.from_name("scaled_linear")`; pass `schedule=` to choose it."""


class IdentityFirstStage(nn.Module):
    """The "autoencoder" of pixel-space diffusion: latents are the (scaled) images themselves (f = 1).

    It implements `minildm.autoencoder.FirstStage` like the autoencoders do: encode_latent(x) =
    scale_factor * x and decode_latent(z) = z / scale_factor (scale 1 unless set).
    """

    downsampling_factor = 1

    def __init__(self, scale_factor: float = 1.0):
        super().__init__()
        self.register_buffer("scale_factor", torch.tensor(float(scale_factor)))

    def encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) -> scale_factor * images."""
        return self.scale_factor * x

    def decode_latent(self, z: torch.Tensor) -> torch.Tensor:
        """Scaled images -> images."""
        return z / self.scale_factor


def as_first_stage(model: nn.Module | None) -> FirstStage:
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
    # trainables (autoencoder + loss + discriminator) -> the autoencoder, checked against the FirstStage protocol
    return check_first_stage(getattr(model, "autoencoder", model))


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


def latent_diffusion_loss(model: LatentDiffusion, z0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor,
                          labels: torch.Tensor | Mapping[str, Any] | None = None,
                          drop_mask: torch.Tensor | None = None) -> torch.Tensor:
    """L_LDM (LDM Eq. 2, with tau_theta(y) Eq. 3) of a LatentDiffusion `model` for given t, noise and labels.

    z0: scaled latents (B, c, h, w); t: timesteps (B,); noise: (B, c, h, w); labels: the condition,
    class labels (B,), a cond dict ({"caption": ...}, see `LatentDiffusion.sample`) or None; drop_mask:
    (B,) bool, True where the condition becomes the null condition (classifier-free guidance training). z_t = q_sample(z0, t, noise); the loss compares the UNet's output on
    (z_t, t, tau(labels)) with its target (eps for the paper) through `diffusion_loss`, with the
    model's objective and weighting. `LatentDiffusion.training_step` is this function at random
    t, noise and dropout.
    """
    z_t = q_sample(z0, t, noise, model.schedule)  # (B, c, h, w)
    cond = model.prepare_cond(labels)
    if cond is not None and drop_mask is not None:
        cond = model.conditioner.where_null(cond, drop_mask)
    output = model.model_output(z_t, t, model.condition(cond))
    return diffusion_loss(output, z0, noise, t, model.schedule, objective=model.objective,
                          weighting=model.loss_weighting, gamma=model.min_snr_gamma)


class LatentDiffusion(nn.Module):
    """The LDM of Rombach et al. (2022): diffusion in the latent space of a frozen autoencoder.

    Args:
        unet: keyword arguments of `UNetModel` (out_channels = the latent channels; in_channels = those plus the
            conditioner's concat_channels), or a built UNetModel
            (a loader that fills it with released weights builds it on the meta device first).
        first_stage: the frozen autoencoder (see `as_first_stage`; None = pixel-space diffusion). In a config,
            a course checkpoint name, a run folder or {"target", "params"}, loaded by minildm.pretrained.build_model.
        conditioner: see `minildm.conditioning.build_conditioner` (None = unconditional).
        image_size: size of the images in pixels; latents are image_size / f.
        schedule: {"name", "num_timesteps", "beta_start", "beta_end"} of `NoiseSchedule.from_name`; keys not
            given come from LDM_SCHEDULE (the paper's LDMs: scaled_linear 0.0015 .. 0.0195, T = 1000).
        objective: what the UNet predicts: "eps" (the paper), "x0" or "v".
        loss_weighting: "uniform" (the paper) or "min_snr" (Hang et al., 2023) with `min_snr_gamma`.
        cond_drop_prob: probability of replacing the condition by the null condition (CFG training).
        scale_factor: latent scale; None keeps the first stage's stored value (1/std of its latents).
        sampler, sample_steps, guidance_scale: defaults of `sample` and of the trainer's sample grids.
        sampler_options: default keyword options of `minildm.diffusion.sample` (e.g. Stable Diffusion's
            {"spacing": "leading", "steps_offset": 1}); options given to `sample` take precedence.
    """

    def __init__(
        self,
        unet: dict[str, Any] | UNetModel,
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
        sampler_options: dict[str, Any] | None = None,
    ):
        super().__init__()
        self.first_stage = as_first_stage(first_stage).eval().requires_grad_(False)
        self.conditioner = build_conditioner(conditioner)
        self.unet = unet if isinstance(unet, UNetModel) else UNetModel(**unet)
        if isinstance(self.conditioner, ClassConditioner) and self.conditioner.mode == "adm" \
                and self.unet.num_classes != self.conditioner.num_classes + 1:
            raise ValueError(f"class conditioning in 'adm' mode needs unet.num_classes = "
                             f"{self.conditioner.num_classes + 1} (the classes + one null class for guidance), "
                             f"got {self.unet.num_classes}")
        with torch.device("cpu"):  # a float64 table, even when the networks are built on the meta device
            self.schedule = NoiseSchedule.from_name(**{**LDM_SCHEDULE, **(schedule or {})})
        self.objective = objective
        self.loss_weighting = loss_weighting
        self.min_snr_gamma = min_snr_gamma
        self.cond_drop_prob = cond_drop_prob
        self.image_size = image_size
        self.sampler, self.sample_steps, self.guidance_scale = sampler, sample_steps, guidance_scale
        self.sampler_options = dict(sampler_options or {})
        self._grid_cond: dict[str, Any] | None = None  # the trainer's sample-grid conditions, see on_fit_start
        if scale_factor is not None:  # override the first stage's stored 1/std of its latents
            self.first_stage.scale_factor.fill_(float(scale_factor))
        f = self.first_stage.downsampling_factor
        if image_size % f:
            raise ValueError(f"image_size {image_size} is not divisible by the first stage's factor f = {f}")
        concat = 0
        if self.conditioner is not None:
            self.conditioner.bind(self.first_stage)
            concat = self.conditioner.concat_channels
        if self.unet.in_channels != self.unet.out_channels + concat:
            raise ValueError(f"the UNet's in_channels must be the latent channels (out_channels = "
                             f"{self.unet.out_channels}) plus the conditioner's concatenated channels ({concat}): "
                             f"{self.unet.out_channels + concat}, got {self.unet.in_channels}")
        self.latent_shape = (self.unet.out_channels, image_size // f, image_size // f)

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

    def fsdp_modules(self) -> list[nn.Module]:
        """What `train.fsdp` shards over processes: the UNet, a block at a time (the trainer protocol).

        The frozen first stage and the conditioner stay whole on every process (a trained conditioner's
        gradients are averaged as in plain data parallelism)."""
        return [self.unet]

    # --- stage 1 <-> latent space -------------------------------------------------------
    @torch.no_grad()
    def encode(self, x: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        """Images (B, C, H, W) in [-1, 1] -> scaled latents (B, c, H/f, W/f) with unit-ish variance.

        The first stage applies its own `scale_factor` (1/std of its latents, LDM App. G "scale_by_std").
        With `batch_size`, the images go through the encoder that many at a time. The images are
        moved to the model's device; the latents stay there.
        """
        x = x.to(self.first_stage.scale_factor.device)
        if batch_size is None:
            return self.first_stage.encode_latent(x)
        return torch.cat([self.first_stage.encode_latent(chunk) for chunk in x.split(batch_size)])

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> images in [-1, 1] (clamped), in z's dtype (the decoder runs in its own)."""
        return self.first_stage.decode_latent(z.to(self.first_stage.scale_factor.dtype)).to(z.dtype).clamp(-1, 1)

    @torch.no_grad()
    def encode_dataset(self, dataset: Dataset, num_items: int | None = None, batch_size: int = 256,
                       keys: tuple[str, ...] | None = None) -> LatentDataset:
        """Encode the first `num_items` images of `dataset` once (see `LatentDataset`), `batch_size` at a time.

        The items' condition keys (default: what the conditioner reads from the dataset, e.g. "label",
        "caption", or "image" for a concat conditioner) are kept beside the latents, prepared by the
        conditioner once where it reads exactly them (captions become token ids).
        """
        from tqdm.auto import tqdm

        if keys is None:
            keys = self.conditioner.dataset_keys if self.conditioner is not None else ()
        n = len(dataset) if num_items is None else min(num_items, len(dataset))
        latents, extras = [], {k: [] for k in keys}
        for start in tqdm(range(0, n, batch_size), desc="encoding latents", leave=False):
            items = [dataset[i] for i in range(start, min(start + batch_size, n))]
            latents.append(self.encode(torch.stack([item["image"] for item in items])).cpu())
            raw = {k: [item[k] for item in items] for k in keys}
            prepared = self.conditioner.prepare(raw) if self.conditioner is not None and \
                set(self.conditioner.keys) <= set(keys) else {}
            for k in keys:
                extras[k].append(prepared[k] if k in prepared else torch.stack([torch.as_tensor(v) for v in raw[k]]))
        return LatentDataset(torch.cat(latents), {k: torch.cat(v) for k, v in extras.items()})

    # --- the network and its conditioning ---------------------------------------------------
    def prepare_cond(self, cond: torch.Tensor | Mapping[str, Any] | None) -> dict[str, torch.Tensor] | None:
        """A condition as the conditioner reads it, on the model's device: raw values -> tensors.

        `cond` is a dict keyed by dataset item keys ({"label": (B,)}, {"caption": [B strings]},
        {"boxes": (B, N, 4), "box_labels": (B, N)}, {"image", "mask"}, {"low_res"}, {"segmentation"}),
        a tensor (shorthand for the conditioner's one key, e.g. class labels) or None (unconditional).
        """
        if self.conditioner is None or cond is None:
            return None
        if not isinstance(cond, Mapping):
            if len(self.conditioner.keys) != 1:
                raise ValueError(f"this model's conditioner reads {', '.join(self.conditioner.keys)}: "
                                 f"pass a dict cond={{...}} with these keys")
            cond = {self.conditioner.keys[0]: cond}
        device = next(self.unet.parameters()).device
        return {k: v.to(device) for k, v in self.conditioner.prepare(cond).items()}

    def condition(self, cond: torch.Tensor | Mapping[str, Any] | None) -> dict[str, torch.Tensor]:
        """The conditioner's UNet keyword arguments (tau_theta(y)) for a batch of conditions ({} when unconditional).

        `cond`: see `prepare_cond` (a dict of dataset item keys, or class labels as shorthand).
        """
        cond = self.prepare_cond(cond)
        if cond is None:
            return {}
        return self.conditioner.encode(cond)

    def model_output(self, z_t: torch.Tensor, t: torch.Tensor, cond: dict[str, torch.Tensor]) -> torch.Tensor:
        """eps_theta(z_t, t, tau(y)) (or x0 / v, following `objective`), in z_t's dtype.

        A "concat" map in `cond` (concat conditioning) joins z_t along the channels: eps_theta([z_t ; c], t).
        The UNet runs in its own dtype: after `ldm.to(torch.float16)` (half-precision inference) the
        inputs are cast to float16 and the output back, so samplers keep their state in float32.
        """
        cond = dict(cond)
        concat = cond.pop("concat", None)
        x = z_t if concat is None else torch.cat([z_t, concat.to(z_t.dtype)], dim=1)  # (B, c_lat + c_cond, h, w)
        dtype = next(self.unet.parameters()).dtype
        if dtype == z_t.dtype:
            return self.unet(x, t, **cond)
        cond = {k: v.to(dtype) if v.is_floating_point() else v for k, v in cond.items()}
        return self.unet(x.to(dtype), t, **cond).to(z_t.dtype)

    def training_step(self, batch: dict[str, torch.Tensor], group: str, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        """One Monte-Carlo sample of Eq. 2 / 3 per image (the trainer contract): `latent_diffusion_loss`
        at random t ~ U{0, T-1}, noise ~ N(0, I), and labels dropped to the null class with
        probability `cond_drop_prob` (classifier-free guidance training). The batch carries the
        condition under the dataset's item keys, the same keys as `sample(cond=...)`."""
        z0 = batch["latent"] if "latent" in batch else self.encode(batch["image"])
        t = torch.randint(0, self.schedule.num_timesteps, (z0.shape[0],), device=z0.device)
        noise = torch.randn_like(z0)
        cond = None
        if self.conditioner is not None:  # e.g. {"label"}, or {"image", "mask"} with a mask drawn for this step
            cond = self.prepare_cond(self.conditioner.training_cond(batch))
            cond = self.conditioner.drop_cond(cond, self.cond_drop_prob)
        loss = latent_diffusion_loss(self, z0, t, noise, cond)
        return loss, {"loss": loss.detach()}

    # --- sampling ---------------------------------------------------------------------------
    def prediction_fn(self, cond: torch.Tensor | Mapping[str, Any] | None = None, guidance_scale: float | None = None,
                      guidance_rescale: float = 0.0):
        """The network's prediction model_fn(z_t, t) -> eps (or x0 / v, following `objective`) for
        `minildm.diffusion.sample`, with classifier-free guidance when scale != 1. (Not a denoiser
        D(x, sigma) in the sense of minildm.diffusion.denoiser: the sampler converts it.)
        `cond`: see `prepare_cond`; the unconditional half uses the conditioner's null condition."""
        scale = self.guidance_scale if guidance_scale is None else guidance_scale
        cond = self.prepare_cond(cond)
        if cond is None:
            return lambda z, t: self.model_output(z, t, {})
        context = self.conditioner.encode(cond)  # tau_theta(y), computed once for all steps
        if scale == 1.0:
            return lambda z, t: self.model_output(z, t, context)
        null_context = self.conditioner.encode(self.conditioner.null_cond(cond))
        return cfg_model(self.model_output, context, null_context, scale, guidance_rescale=guidance_rescale)

    @torch.no_grad()
    def sample(
        self,
        n: int | None = None,
        labels: torch.Tensor | None = None,
        cond: Mapping[str, Any] | None = None,
        sampler: str | None = None,
        steps: int | None = None,
        guidance_scale: float | None = None,
        guidance_rescale: float = 0.0,
        generator: torch.Generator | None = None,
        decode: bool = True,
        progress: bool = True,
        **sampler_options: Any,
    ) -> torch.Tensor:
        """Draw images (B, C, H, W) in [-1, 1]: `n` unconditional ones, or one per item of the condition.

        cond: the condition, keyed like the dataset's items: {"label": (B,)}, {"caption": [B strings]},
        {"boxes": (B, N, 4) xyxy in [0, 1], "box_labels": (B, N), -1 = no object}, and the spatial ones:
        {"image": (B, 3, H, W), "mask": (B, 1, H, W), 1 = to fill}, {"low_res": (B, 3, H/4, W/4)},
        {"segmentation": (B, H, W) long}, whose size sets the output's (a model trained at 32 px samples
        64 or 128 px from a larger map). `labels=` is shorthand for cond={"label": labels}. Guidance mixes
        in the conditioner's null condition.
        """
        if labels is not None:
            if cond is not None:
                raise ValueError("give the condition once: cond={...} or its shorthand labels=, not both")
            cond = {"label": labels}
        if cond is None and n is None:
            raise ValueError("give the number of samples `n` or the condition `cond` (or `labels`) to sample")
        device = next(self.unet.parameters()).device
        prepared = self.prepare_cond(cond)
        if prepared is not None:
            batch = next(iter(prepared.values())).shape[0]
            if n is not None and n != batch:
                raise ValueError(f"n = {n} does not match the condition's batch of {batch}")
            n = batch
        elif cond is not None:
            raise ValueError("this model is unconditional: sample it with n=, without cond or labels")
        elif self.conditioner is not None:
            keys = ", ".join(self.conditioner.keys)
            raise ValueError(f"this model is conditioned on {keys}: pass cond={{...}} with these keys, one entry per "
                             f"image" + (" (or labels=[...])" if isinstance(self.conditioner, ClassConditioner) else ""))
        latent_shape = self.latent_shape
        size = self.conditioner.image_size(prepared) if prepared is not None else None
        if size is not None:  # a spatial condition sets the size: (H, W) -> (c, H / f, W / f)
            latent_shape = (latent_shape[0], *self.conditioner.latent_size(prepared))
        model_fn = self.prediction_fn(prepared, guidance_scale, guidance_rescale)
        z = run_sampler(model_fn, (n, *latent_shape), sampler or self.sampler, steps or self.sample_steps,
                        schedule=self.schedule, objective=self.objective, generator=generator, device=device,
                        progress=progress, **{**self.sampler_options, **sampler_options})
        if not decode:
            return z
        images = self.decode(z)
        return self.conditioner.postprocess(images, prepared) if prepared is not None else images

    def on_fit_start(self, trainer: Any) -> None:
        """Keep the conditions of the first training items for the trainer's sample grids, when the
        condition is not a class label (captions, layouts, and the inputs of concat conditioners:
        low-resolution images, segmentation maps, images with holes drawn as in training)."""
        dataset = getattr(trainer, "dataset", None)
        if not trainer.config.sample_every or self.conditioner is None or \
                isinstance(self.conditioner, ClassConditioner) or dataset is None or len(dataset) == 0:
            return  # no grids, or grids that need no items
        items = [dataset[i] for i in range(min(trainer.config.num_samples, len(dataset)))]
        with torch.random.fork_rng():  # masks drawn for the grid leave the training's random stream alone
            torch.manual_seed(trainer.config.seed)
            self._grid_cond = dict(self.conditioner.training_cond(default_collate(items)))

    def sample_images(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor | None:
        """The trainer's periodic sample grid: classes 0, 1, 2, ... in turn when class-conditional; the
        conditions of the first training items for other conditioners (see `on_fit_start`); None
        when a conditioned model has no such items."""
        if isinstance(self.conditioner, ClassConditioner):
            labels = torch.arange(n) % self.conditioner.num_classes
            return self.sample(n=n, labels=labels, generator=generator, progress=False)
        if self.conditioner is None:
            return self.sample(n=n, generator=generator, progress=False)
        if self._grid_cond is None:
            return None
        cond = {k: v[:n] for k, v in self._grid_cond.items()}
        return self.sample(cond=cond, generator=generator, progress=False)
