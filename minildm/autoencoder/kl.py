"""AutoencoderKL: the KL-regularised first stage of latent diffusion (LDM Sec. 3.1, App. G).

x (B, 3, H, W) --Encoder--> (B, 2z, H/f, W/f) --quant_conv (1x1)--> moments (B, 2*embed_dim, H/f, W/f)
  = (mean, logvar) of q(z|x); a sample z (B, embed_dim, H/f, W/f) --post_quant_conv (1x1)--> Decoder --> x_hat.

A tiny KL weight (1e-6 in every paper config) keeps the latent close to N(0, I) in
scale without forcing it to forget detail; the second stage divides the latents by
their standard deviation anyway (`scale_factor`, the paper's "scale_by_std";
0.18215 for Stable Diffusion v1).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from minildm.autoencoder.distributions import DiagonalGaussianDistribution
from minildm.autoencoder.encoder_decoder import Decoder, Encoder


class AutoencoderKL(nn.Module):
    """Encoder + diagonal-Gaussian posterior + Decoder; `encode`, `decode`, `forward`.

    `scale_factor` is a buffer (saved in the state dict): 1 / std of the latents, used by
    `encode_latent` / `decode_latent`, the interface stage 2 uses.
    """

    def __init__(
        self,
        *,
        ch: int = 128,
        ch_mult: Sequence[int] = (1, 2, 4, 4),
        num_res_blocks: int = 2,
        attn_resolutions: Sequence[int] = (),
        dropout: float = 0.0,
        in_channels: int = 3,
        out_ch: int = 3,
        resolution: int = 256,
        z_channels: int = 4,
        embed_dim: int = 4,
        num_groups: int = 32,
        scale_factor: float = 1.0,
    ):
        super().__init__()
        common = dict(ch=ch, ch_mult=tuple(ch_mult), num_res_blocks=num_res_blocks, attn_resolutions=tuple(attn_resolutions),
                      dropout=dropout, resolution=resolution, z_channels=z_channels, num_groups=num_groups)
        self.encoder = Encoder(in_channels=in_channels, double_z=True, **common)
        self.decoder = Decoder(out_ch=out_ch, **common)
        self.quant_conv = nn.Conv2d(2 * z_channels, 2 * embed_dim, kernel_size=1)
        self.post_quant_conv = nn.Conv2d(embed_dim, z_channels, kernel_size=1)
        self.embed_dim = embed_dim
        self.downsampling_factor = 2 ** (len(ch_mult) - 1)
        self.register_buffer("scale_factor", torch.tensor(float(scale_factor)))

    def encode(self, x: torch.Tensor) -> DiagonalGaussianDistribution:
        """q(z|x) for images x (B, C, H, W) in [-1, 1]; its mean is (B, embed_dim, H/f, W/f)."""
        moments = self.quant_conv(self.encoder(x))  # (B, 2*embed_dim, H/f, W/f)
        return DiagonalGaussianDistribution(moments)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images (B, out_ch, H, W) from latents z (B, embed_dim, H/f, W/f)."""
        return self.decoder(self.post_quant_conv(z))

    def forward(
        self, x: torch.Tensor, sample_posterior: bool = True, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, DiagonalGaussianDistribution]:
        """Reconstruct x through a posterior sample (or its mean): returns (x_hat, posterior)."""
        posterior = self.encode(x)
        z = posterior.sample(generator) if sample_posterior else posterior.mode()
        return self.decode(z), posterior

    def encode_latent(self, x: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        """The latent stage 2 diffuses: scale_factor * z with z the posterior mean (or a sample)."""
        posterior = self.encode(x)
        z = posterior.sample(generator) if sample else posterior.mode()
        return self.scale_factor * z

    def decode_latent(self, latent: torch.Tensor) -> torch.Tensor:
        """Inverse of `encode_latent`: images from scale_factor * z."""
        return self.decode(latent / self.scale_factor)

    @property
    def last_layer(self) -> torch.Tensor:
        """The decoder's final conv weight (where the stage-1 loss measures its adaptive GAN weight)."""
        return self.decoder.last_layer
