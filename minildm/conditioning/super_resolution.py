"""Super-resolution by concat conditioning (LDM Sec. 4.4, LDM-SR): the low-resolution image joins z_t.

The paper degrades images with bicubic 4x downsampling (following SR3) and conditions on the result by
concatenation. With a first stage of factor f = 4, a 4x smaller image already has the latent's size,
so it is concatenated as it is; for another f it is resized to the latent's size first:

    low_res = bicubic_down(x, 4) (+ noise in training)     (B, 3, H/4, W/4)
    c = low_res resized to h x w = H/f x W/f               (B, 3, h, w)
    eps_theta([z_t ; c], t)                                in_channels = latent channels + 3

Noise augmentation (optional, `noise_augment` > 0): in training the low-res input gets Gaussian noise of
a random strength in [0, noise_augment], so the model learns not to trust its input's fine grain
(a milder form of the paper's LDM-BSR degradations and of cascaded diffusion's noise conditioning).

Convention: low_res (B, 3, H/4, W/4) in [-1, 1]; images come back (B, 3, H, W): the output size follows
the low-res input.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from minildm.conditioning.concat import ConcatConditioner
from minildm.utils import rand, randn


def bicubic_downsample(image: torch.Tensor, scale: int = 4) -> torch.Tensor:
    """(B, C, H, W) in [-1, 1] -> (B, C, H/scale, W/scale): bicubic with antialiasing, clamped to [-1, 1]."""
    height, width = image.shape[-2:]
    if height % scale or width % scale:
        raise ValueError(f"image size {height} x {width} is not divisible by the scale {scale}")
    small = F.interpolate(image, size=(height // scale, width // scale), mode="bicubic", align_corners=False,
                          antialias=True)
    return small.clamp(-1, 1)


def bicubic_upsample(low_res: torch.Tensor, scale: int = 4) -> torch.Tensor:
    """(B, C, h, w) -> (B, C, h * scale, w * scale), bicubic, clamped: the classical baseline of SR."""
    return F.interpolate(low_res, scale_factor=scale, mode="bicubic", align_corners=False).clamp(-1, 1)


class LowResConditioner(ConcatConditioner):
    """{"low_res": (B, 3, H/scale, W/scale)} -> {"concat": (B, 3, H/f, W/f)}.

    Args:
        scale: the upscaling factor (4 in the paper's LDM-SR).
        channels: image channels of the low-res input.
        noise_augment: the largest noise std added to the low-res input in training (0 = none).
    """

    keys = ("low_res",)

    def __init__(self, scale: int = 4, channels: int = 3, noise_augment: float = 0.0):
        super().__init__()
        if scale < 1 or noise_augment < 0:
            raise ValueError(f"scale must be >= 1 and noise_augment >= 0, got {scale} and {noise_augment}")
        self.scale, self.channels, self.noise_augment = int(scale), channels, float(noise_augment)
        self.concat_channels = channels

    @property
    def dataset_keys(self) -> tuple[str, ...]:
        """Training reads the high-resolution images and degrades them itself."""
        return ("image",)

    def training_cond(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """Degrade the batch's images: bicubic down by `scale`, plus noise of a random std (noise augmentation)."""
        low_res = bicubic_downsample(batch["image"], self.scale)
        if self.noise_augment > 0:
            std = self.noise_augment * rand((low_res.shape[0], 1, 1, 1), device=low_res.device)
            low_res = low_res + std * randn(low_res.shape, device=low_res.device)
        return {"low_res": low_res}

    def prepare(self, cond: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Stack and check low_res (B, channels, h, w)."""
        cond = super().prepare(cond)
        low_res = cond["low_res"].float()
        if low_res.dim() != 4 or low_res.shape[1] != self.channels:
            raise ValueError(f"low_res must be (B, {self.channels}, h, w), got {tuple(low_res.shape)}")
        return {"low_res": low_res}

    def null_cond(self, cond: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """No image: zeros (mid-grey)."""
        return {"low_res": torch.zeros_like(cond["low_res"])}

    def image_size(self, cond: Mapping[str, torch.Tensor]) -> tuple[int, int]:
        """scale x the low-res size."""
        height, width = cond["low_res"].shape[-2:]
        return height * self.scale, width * self.scale

    def forward(self, low_res: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, 3, H/scale, W/scale) -> {"concat": (B, 3, H/f, W/f)}, resized (bicubic) only when scale != f."""
        size = self.latent_size({"low_res": low_res})
        if tuple(low_res.shape[-2:]) != size:
            low_res = F.interpolate(low_res, size=size, mode="bicubic", align_corners=False)
        return {"concat": low_res}
