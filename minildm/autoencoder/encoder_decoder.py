"""The convolutional encoder E and decoder D of the first stage (LDM Sec. 3.1, App. G).

E maps an image x of shape (B, in_channels, H, W) to a latent of shape
(B, z, H/f, W/f) with downsampling factor f = 2^(len(ch_mult) - 1); D maps it back.
Level i works at width ch * ch_mult[i]; attention is added at the pixel resolutions
listed in `attn_resolutions` (measured against `resolution`, the training image size)
and always in the middle block (resnet -> attention -> resnet).

Attribute names mirror the original CompVis code (encoder.down[i].block[j],
.attn[j], .downsample; mid.block_1 / attn_1 / block_2; norm_out; conv_out;
decoder.up[i] with up[0] the full-resolution level).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from minildm.autoencoder.blocks import AttnBlock, Downsample, Normalize, ResnetBlock, Upsample


def _mid_block(channels: int, dropout: float, num_groups: int) -> nn.Module:
    """The bottleneck: ResnetBlock -> single-head self-attention -> ResnetBlock."""
    mid = nn.Module()
    mid.block_1 = ResnetBlock(channels, channels, dropout, num_groups)
    mid.attn_1 = AttnBlock(channels, num_groups)
    mid.block_2 = ResnetBlock(channels, channels, dropout, num_groups)
    return mid


def _check_config(ch: int, ch_mult: Sequence[int], num_res_blocks: int, resolution: int,
                  attn_resolutions: Sequence[int] = ()) -> None:
    if ch <= 0 or num_res_blocks < 0 or len(ch_mult) == 0 or any(m <= 0 for m in ch_mult):
        raise ValueError(
            f"need ch > 0, num_res_blocks >= 0 and a non-empty ch_mult of positive ints; "
            f"got ch={ch}, num_res_blocks={num_res_blocks}, ch_mult={tuple(ch_mult)}"
        )
    factor = 2 ** (len(ch_mult) - 1)
    if resolution % factor != 0:
        raise ValueError(f"resolution {resolution} is not divisible by the downsampling factor {factor} of ch_mult={tuple(ch_mult)}")
    sizes = [resolution // 2**level for level in range(len(ch_mult))]
    bad = [r for r in attn_resolutions if r not in sizes]
    if bad:
        raise ValueError(f"attn_resolutions {bad} are not feature-map sizes of this autoencoder; valid sizes: {sizes} "
                         f"(attn_resolutions are pixel sizes measured against resolution={resolution}, unlike the "
                         f"UNet's attention_resolutions, which are downsampling rates)")


class Encoder(nn.Module):
    """x (B, in_channels, H, W) -> h (B, 2*z_channels if double_z else z_channels, H/f, W/f)."""

    def __init__(
        self,
        *,
        ch: int = 128,
        ch_mult: Sequence[int] = (1, 2, 4, 4),
        num_res_blocks: int = 2,
        attn_resolutions: Sequence[int] = (),
        dropout: float = 0.0,
        in_channels: int = 3,
        resolution: int = 256,
        z_channels: int = 4,
        double_z: bool = True,
        num_groups: int = 32,
    ):
        super().__init__()
        _check_config(ch, ch_mult, num_res_blocks, resolution, attn_resolutions)
        self.num_resolutions = len(ch_mult)
        self.num_res_blocks = num_res_blocks
        self.conv_in = nn.Conv2d(in_channels, ch, kernel_size=3, stride=1, padding=1)

        in_ch_mult = (1, *ch_mult)
        current_res = resolution
        self.down = nn.ModuleList()
        for level in range(self.num_resolutions):
            block_in, block_out = ch * in_ch_mult[level], ch * ch_mult[level]
            down = nn.Module()
            down.block = nn.ModuleList()
            down.attn = nn.ModuleList()
            for _ in range(num_res_blocks):
                down.block.append(ResnetBlock(block_in, block_out, dropout, num_groups))
                block_in = block_out
                if current_res in attn_resolutions:
                    down.attn.append(AttnBlock(block_in, num_groups))
            if level != self.num_resolutions - 1:
                down.downsample = Downsample(block_in)
                current_res //= 2
            self.down.append(down)

        self.mid = _mid_block(block_in, dropout, num_groups)
        self.norm_out = Normalize(block_in, num_groups)
        self.conv_out = nn.Conv2d(block_in, 2 * z_channels if double_z else z_channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)  # (B, in_channels, H, W) -> (B, ch, H, W)
        for level, down in enumerate(self.down):
            for i, block in enumerate(down.block):
                h = block(h)
                if len(down.attn) > 0:
                    h = down.attn[i](h)
            if level != self.num_resolutions - 1:
                h = down.downsample(h)  # (B, C, H, W) -> (B, C, H/2, W/2)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        return self.conv_out(F.silu(self.norm_out(h)))  # -> (B, (2x) z_channels, H/f, W/f)


class Decoder(nn.Module):
    """z (B, z_channels, H/f, W/f) -> x_hat (B, out_ch, H, W); num_res_blocks + 1 resblocks per level."""

    def __init__(
        self,
        *,
        ch: int = 128,
        out_ch: int = 3,
        ch_mult: Sequence[int] = (1, 2, 4, 4),
        num_res_blocks: int = 2,
        attn_resolutions: Sequence[int] = (),
        dropout: float = 0.0,
        resolution: int = 256,
        z_channels: int = 4,
        num_groups: int = 32,
    ):
        super().__init__()
        _check_config(ch, ch_mult, num_res_blocks, resolution, attn_resolutions)
        self.num_resolutions = len(ch_mult)
        self.num_res_blocks = num_res_blocks
        block_in = ch * ch_mult[-1]
        current_res = resolution // 2 ** (self.num_resolutions - 1)
        self.conv_in = nn.Conv2d(z_channels, block_in, kernel_size=3, stride=1, padding=1)
        self.mid = _mid_block(block_in, dropout, num_groups)

        # Built from the lowest resolution up, but stored so that up[0] is full resolution (original layout).
        levels: list[nn.Module] = []
        for level in reversed(range(self.num_resolutions)):
            block_out = ch * ch_mult[level]
            up = nn.Module()
            up.block = nn.ModuleList()
            up.attn = nn.ModuleList()
            for _ in range(num_res_blocks + 1):
                up.block.append(ResnetBlock(block_in, block_out, dropout, num_groups))
                block_in = block_out
                if current_res in attn_resolutions:
                    up.attn.append(AttnBlock(block_in, num_groups))
            if level != 0:
                up.upsample = Upsample(block_in)
                current_res *= 2
            levels.insert(0, up)
        self.up = nn.ModuleList(levels)

        self.norm_out = Normalize(block_in, num_groups)
        self.conv_out = nn.Conv2d(block_in, out_ch, kernel_size=3, stride=1, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(z)  # (B, z_channels, h, w) -> (B, ch * ch_mult[-1], h, w)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        for level in reversed(range(self.num_resolutions)):
            up = self.up[level]
            for i, block in enumerate(up.block):
                h = block(h)
                if len(up.attn) > 0:
                    h = up.attn[i](h)
            if level != 0:
                h = up.upsample(h)  # (B, C, h, w) -> (B, C, 2h, 2w)
        return self.conv_out(F.silu(self.norm_out(h)))  # -> (B, out_ch, H, W)

    @property
    def last_layer(self) -> torch.Tensor:
        """Weight of the final conv: the layer the adaptive GAN weight is measured at."""
        return self.conv_out.weight
