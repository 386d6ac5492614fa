"""The UNet's convolutional pieces: a ResBlock that sees the time embedding, and resampling.

ResBlock (ADM, Dhariwal & Nichol 2021, App. A; used unchanged by LDM):

    h = conv(SiLU(GroupNorm(x)))                        in_layers
    h = h + Linear(SiLU(emb))                           emb_layers, broadcast over H, W
        or, with use_scale_shift_norm (ADM's "AdaGN"):
    h = GroupNorm(h) * (1 + scale) + shift              (scale, shift) = Linear(SiLU(emb))
    h = conv(Dropout(SiLU(GroupNorm(h))))               out_layers; the conv is zero-initialised
    return skip(x) + h                                  skip = identity or 1x1 conv

The zero-initialised last conv makes every ResBlock start as the identity (on its skip
path), which keeps a deep UNet trainable from the first step. Layer names and indices
(in_layers.0/2, emb_layers.1, out_layers.0/3, skip_connection) match the original code so
Stable Diffusion checkpoints load without renames.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint


class ResBlock(nn.Module):
    """(B, C_in, H, W), time embedding (B, emb_channels) -> (B, C_out, H, W) (module docstring)."""

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        out_channels: int | None = None,
        dropout: float = 0.0,
        use_scale_shift_norm: bool = False,
        norm_num_groups: int = 32,
        use_checkpoint: bool = False,
    ):
        super().__init__()
        out_channels = channels if out_channels is None else out_channels
        self.use_scale_shift_norm = use_scale_shift_norm
        self.use_checkpoint = use_checkpoint
        self.in_layers = nn.Sequential(
            nn.GroupNorm(norm_num_groups, channels),
            nn.SiLU(),
            nn.Conv2d(channels, out_channels, 3, padding=1),
        )
        self.emb_layers = nn.Sequential(
            nn.SiLU(),
            nn.Linear(emb_channels, 2 * out_channels if use_scale_shift_norm else out_channels),
        )
        self.out_layers = nn.Sequential(
            nn.GroupNorm(norm_num_groups, out_channels),
            nn.SiLU(),
            nn.Dropout(dropout),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
        )
        nn.init.zeros_(self.out_layers[3].weight)
        nn.init.zeros_(self.out_layers[3].bias)
        if out_channels == channels:
            self.skip_connection: nn.Module = nn.Identity()
        else:
            self.skip_connection = nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W), (B, emb_channels) -> (B, C_out, H, W); recomputed in backward when use_checkpoint."""
        if self.use_checkpoint and self.training and torch.is_grad_enabled():
            return torch.utils.checkpoint.checkpoint(self._forward, x, emb, use_reentrant=False)
        return self._forward(x, emb)

    def _forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x)  # (B, C_in, H, W) -> (B, C_out, H, W)
        emb_out = self.emb_layers(emb)[:, :, None, None]  # (B, emb) -> (B, C_out or 2 C_out, 1, 1)
        if self.use_scale_shift_norm:
            norm, rest = self.out_layers[0], self.out_layers[1:]
            scale, shift = emb_out.chunk(2, dim=1)  # each (B, C_out, 1, 1)
            h = rest(norm(h) * (1 + scale) + shift)
        else:
            h = self.out_layers(h + emb_out)
        return self.skip_connection(x) + h


class Downsample(nn.Module):
    """Halve H and W with a 3x3 stride-2 conv: (B, C, H, W) -> (B, C, H/2, W/2). Stored as `op` (original name)."""

    def __init__(self, channels: int):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, ceil(H/2), ceil(W/2))."""
        return self.op(x)


class Upsample(nn.Module):
    """Double H and W: nearest-neighbour x2 then a 3x3 conv, (B, C, H, W) -> (B, C, 2H, 2W)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, 2H, 2W)."""
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
