"""PatchGAN discriminator (Isola et al., 2017, pix2pix), the adversarial half of the stage-1 loss (LDM Sec. 3.1).

It classifies overlapping patches rather than whole images: a stack of 4x4 convs,
widths ndf -> 2ndf -> 4ndf -> 8ndf -> 1 for n_layers = 3 (64 -> 128 -> 256 -> 512 -> 1),
LeakyReLU(0.2), BatchNorm everywhere except after the first conv. Output: one logit per
patch, (B, 1, h, w).
"""

from __future__ import annotations

import torch
from torch import nn


def init_weights(module: nn.Module) -> None:
    """pix2pix init: conv weights ~ N(0, 0.02); BatchNorm weights ~ N(1, 0.02), biases 0."""
    if isinstance(module, nn.Conv2d):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class NLayerDiscriminator(nn.Module):
    """PatchGAN: images (B, in_channels, H, W) -> patch logits (B, 1, h, w)."""

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, kernel_size=4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1  # the last hidden conv keeps the resolution
            layers += [
                nn.Conv2d(ndf * prev, ndf * mult, kernel_size=4, stride=stride, padding=1, bias=False),  # BN has the bias
                nn.BatchNorm2d(ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
        layers.append(nn.Conv2d(ndf * mult, 1, kernel_size=4, stride=1, padding=1))
        self.main = nn.Sequential(*layers)
        self.apply(init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)
