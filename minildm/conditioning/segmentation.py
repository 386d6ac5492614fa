"""Semantic synthesis by concat conditioning (LDM Sec. 4.3.2): a segmentation map joins z_t.

A map (B, H, W) of class ids (0 = background, 1 + class id, as the shapes dataset gives it) becomes a
one-hot image (B, K, H, W), K = classes + 1. The original brings it to the latent's size with a
`SpatialRescaler`: n_stages bilinear halvings, then a 1 x 1 convolution that maps the K channels to a few
learned ones; the result is concatenated to z_t:

    one_hot(seg)                       (B, K, H, W)
    -> bilinear x 1/2, n_stages times  (B, K, H/f, W/f),   f = 2^n_stages
    -> 1 x 1 conv                      (B, c_cond, h, w)
    eps_theta([z_t ; c], t)            in_channels = latent channels + c_cond

The map path is convolutional and the UNet's convolutions and self-attention work at any size, so a
model trained on 32 x 32 maps samples 64 x 64 or 128 x 128 images from a larger map (the paper samples
512 and 1024 px landscapes from a 256 px model).
The null condition (for guidance) is "no map": every one-hot channel zero.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from minildm.conditioning.concat import ConcatConditioner


def one_hot_segmentation(segmentation: torch.Tensor, num_channels: int) -> torch.Tensor:
    """(B, H, W) long in [0, num_channels) (or -1 = no map) -> (B, num_channels, H, W) float one-hot."""
    valid = segmentation >= 0
    one_hot = F.one_hot(segmentation.clamp_min(0), num_channels) * valid[..., None]  # (B, H, W, K)
    return one_hot.permute(0, 3, 1, 2).float()  # (B, H, W, K) -> (B, K, H, W)


class SpatialRescaler(nn.Module):
    """Resize a map by `multiplier` n_stages times (bilinear), then map its channels with a 1 x 1 convolution.

    (B, in_channels, H, W) -> (B, out_channels, H * multiplier^n_stages, W * multiplier^n_stages).
    bias: the 1 x 1 convolution's bias. The original's semantic-synthesis models use none (its default,
    bias=False); the course model keeps one (a learned offset of the map channels; both train the same way).
    """

    def __init__(self, n_stages: int = 2, in_channels: int = 19, out_channels: int = 3,
                 multiplier: float = 0.5, method: str = "bilinear", bias: bool = True):
        super().__init__()
        if method not in ("nearest", "bilinear", "bicubic", "area"):
            raise ValueError(f"unknown method {method!r}; valid: nearest, bilinear, bicubic, area")
        self.n_stages, self.multiplier, self.method = n_stages, multiplier, method
        self.channel_mapper = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) -> (B, out_channels, h, w)."""
        for _ in range(self.n_stages):
            x = F.interpolate(x, scale_factor=self.multiplier, mode=self.method)  # (B, K, H, W) -> (B, K, H/2, W/2)
        return self.channel_mapper(x)


class SegmentationConditioner(ConcatConditioner):
    """{"segmentation": (B, H, W) long} -> {"concat": (B, out_channels, H/f, W/f)}.

    Args:
        num_classes: object classes; the map holds 0 (background) .. num_classes.
        out_channels: channels of the rescaled map concatenated to z_t.
        n_stages: bilinear halvings of the SpatialRescaler; None = log2 of the first stage's f.
    """

    keys = ("segmentation",)

    def __init__(self, num_classes: int, out_channels: int = 3, n_stages: int | None = None):
        super().__init__()
        self.num_classes, self.n_stages = num_classes, n_stages
        self.concat_channels = out_channels
        self.rescaler = SpatialRescaler(n_stages or 0, num_classes + 1, out_channels)

    def bind(self, first_stage: nn.Module) -> None:
        """Hold the first stage and, unless n_stages was given, halve the map log2(f) times."""
        super().bind(first_stage)
        stages = round(math.log2(self.factor))
        if 2 ** stages != self.factor:
            raise ValueError(f"the SpatialRescaler halves the map, so f must be a power of 2, got {self.factor}")
        if self.n_stages is None:
            self.rescaler.n_stages = stages
        elif self.n_stages != stages:
            raise ValueError(f"n_stages = {self.n_stages} gives maps 2^{self.n_stages} times smaller, "
                             f"but the first stage's latents are f = {self.factor} times smaller")

    def prepare(self, cond: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Stack and check the maps: (B, H, W) integers in [0, num_classes] (-1 = no map)."""
        cond = super().prepare(cond)
        seg = cond["segmentation"]
        if seg.dim() != 3 or seg.is_floating_point():
            raise ValueError(f"segmentation must be (B, H, W) integer class maps, got {tuple(seg.shape)} {seg.dtype}")
        if seg.numel() and (seg.min() < -1 or seg.max() > self.num_classes):
            raise ValueError(f"segmentation values must lie in [0, {self.num_classes}] (0 = background, "
                             f"1 + class id), got [{seg.min().item()}, {seg.max().item()}]")
        return {"segmentation": seg.long()}

    def null_cond(self, cond: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """No map: -1 everywhere (an all-zero one-hot)."""
        return {"segmentation": torch.full_like(cond["segmentation"], -1)}

    def image_size(self, cond: Mapping[str, torch.Tensor]) -> tuple[int, int]:
        """The map's (H, W)."""
        return tuple(cond["segmentation"].shape[-2:])

    def forward(self, segmentation: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, H, W) -> one-hot (B, K, H, W) -> SpatialRescaler -> {"concat": (B, out_channels, H/f, W/f)}."""
        self.latent_size({"segmentation": segmentation})  # check f divides the map
        one_hot = one_hot_segmentation(segmentation, self.num_classes + 1)
        return {"concat": self.rescaler(one_hot.to(self.rescaler.channel_mapper.weight.dtype))}
