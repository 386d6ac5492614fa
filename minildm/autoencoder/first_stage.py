"""The first stage as stage 2 sees it (LDM Sec. 3.1-3.2): images <-> scaled latents.

Stage 2 needs four things from any first stage (a KL or VQ autoencoder, or the identity of
pixel-space diffusion), the `FirstStage` protocol:

    encode_latent(x) -> z = scale_factor * E(x)      images (B, C, H, W) in [-1, 1] -> (B, c, H/f, W/f)
    decode_latent(z) -> D(z / scale_factor)          the inverse, back to images
    scale_factor                                     a 0-dim buffer: 1 / std of E(x) (App. G, "scale_by_std")
    downsampling_factor                              f = H / h

`Autoencoder` is what AutoencoderKL and VQModel share: Encoder -> 1x1 quant_conv -> latent ->
1x1 post_quant_conv -> Decoder, the scale factor, and the two scaled methods written once on top
of the unscaled `unscaled_latent(x)` and `decode(z)` each model defines.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from minildm.autoencoder.encoder_decoder import Decoder, Encoder

FIRST_STAGE_MEMBERS = ("encode_latent", "decode_latent", "scale_factor", "downsampling_factor")


@runtime_checkable
class FirstStage(Protocol):
    """What a first stage provides to latent diffusion (see the module docstring)."""

    scale_factor: torch.Tensor
    downsampling_factor: int

    def encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) in [-1, 1] -> scaled latents (B, c, H/f, W/f)."""

    def decode_latent(self, z: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> images (not clamped)."""


def check_first_stage(model: object) -> FirstStage:
    """`model` itself when it has every FirstStage member; TypeError naming the missing ones otherwise."""
    missing = [name for name in FIRST_STAGE_MEMBERS if not hasattr(model, name)]
    if missing:
        raise TypeError(f"a first stage needs {', '.join(FIRST_STAGE_MEMBERS)}; {type(model).__name__} lacks "
                        f"{', '.join(missing)} (use an AutoencoderKL / VQModel, or IdentityFirstStage for pixels)")
    return model


def latent_shape(image_shape: Sequence[int], ch_mult: Sequence[int], z_channels: int) -> tuple[int, int, int]:
    """The first stage's latent shape (z_channels, H/f, W/f) for images (C, H, W), with f = 2^(len(ch_mult) - 1).

    Each level after the first ends in a stride-2 Downsample (LDM Sec. 3.1: x in R^{HxWx3}
    -> z in R^{hxwxc}, h = H/f, w = W/f). The channel count of the image does not matter.
    """
    if len(image_shape) != 3:
        raise ValueError(f"image_shape must be (C, H, W), got {tuple(image_shape)}")
    if len(ch_mult) < 1 or z_channels < 1:
        raise ValueError(f"need at least one ch_mult level and z_channels >= 1, got ch_mult={tuple(ch_mult)}, "
                         f"z_channels={z_channels}")
    f = 2 ** (len(ch_mult) - 1)
    _, height, width = image_shape
    if height % f or width % f:
        raise ValueError(f"image size {height}x{width} is not divisible by the downsampling factor f={f} "
                         f"(ch_mult {tuple(ch_mult)})")
    return (z_channels, height // f, width // f)


class Autoencoder(nn.Module):
    """Encoder + 1x1 quant_conv, 1x1 post_quant_conv + Decoder, and the scaled latent interface of `FirstStage`.

    Subclasses define `unscaled_latent(x)` (what stage 2 diffuses, before scaling) and may extend
    `decode(z)`. `moments` is how many tensors of `embed_dim` channels quant_conv outputs per
    position: 2 for KL (mean, logvar), 1 for VQ.

    Names follow the CompVis first-stage configs (so their YAML maps one to one): `attn_resolutions` are
    PIXEL SIZES of feature maps (e.g. 16 = the level whose maps are 16 x 16; the UNet's
    `attention_resolutions` are downsampling rates instead), and `num_groups` is the GroupNorm group
    count (the UNet's `norm_num_groups`). A size that no level has raises ValueError.
    """

    def __init__(self, *, ch: int, ch_mult: Sequence[int], num_res_blocks: int, attn_resolutions: Sequence[int],
                 dropout: float, in_channels: int, out_ch: int, resolution: int, z_channels: int, embed_dim: int,
                 num_groups: int, scale_factor: float, moments: int):
        super().__init__()
        common = dict(ch=ch, ch_mult=tuple(ch_mult), num_res_blocks=num_res_blocks,
                      attn_resolutions=tuple(attn_resolutions), dropout=dropout, resolution=resolution,
                      z_channels=z_channels, num_groups=num_groups)
        self.encoder = Encoder(in_channels=in_channels, double_z=moments == 2, **common)
        self.decoder = Decoder(out_ch=out_ch, **common)
        self.quant_conv = nn.Conv2d(moments * z_channels, moments * embed_dim, kernel_size=1)
        self.post_quant_conv = nn.Conv2d(embed_dim, z_channels, kernel_size=1)
        self.embed_dim = embed_dim
        self.downsampling_factor = 2 ** (len(ch_mult) - 1)
        self.register_buffer("scale_factor", torch.tensor(float(scale_factor)))

    def unscaled_latent(self, x: torch.Tensor) -> torch.Tensor:
        """The latent E(x) (B, embed_dim, H/f, W/f) stage 2 diffuses, before scaling."""
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images (B, out_ch, H, W) from unscaled latents z (B, embed_dim, H/f, W/f)."""
        return self.decoder(self.post_quant_conv(z))  # (B, embed_dim, h, w) -> (B, z, h, w) -> (B, out_ch, H, W)

    def encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        """The latent stage 2 diffuses: scale_factor * E(x)."""
        return self.scale_factor * self.unscaled_latent(x)

    def decode_latent(self, z: torch.Tensor) -> torch.Tensor:
        """Inverse of `encode_latent`: images D(z / scale_factor)."""
        return self.decode(z / self.scale_factor)

    @property
    def last_layer(self) -> torch.Tensor:
        """The decoder's final conv weight (where the stage-1 loss measures its adaptive GAN weight)."""
        return self.decoder.last_layer
