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

from minildm.autoencoder.distributions import DiagonalGaussianDistribution
from minildm.autoencoder.first_stage import Autoencoder


class AutoencoderKL(Autoencoder):
    """Encoder + diagonal-Gaussian posterior + Decoder; `encode`, `decode`, `forward`.

    `scale_factor` is a buffer (saved in the state dict): 1 / std of the latents, used by
    `encode_latent` / `decode_latent`, the interface stage 2 uses (`FirstStage`).
    Parameter names follow the CompVis first-stage configs: see `Autoencoder`.
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
        super().__init__(ch=ch, ch_mult=ch_mult, num_res_blocks=num_res_blocks, attn_resolutions=attn_resolutions,
                         dropout=dropout, in_channels=in_channels, out_ch=out_ch, resolution=resolution,
                         z_channels=z_channels, embed_dim=embed_dim, num_groups=num_groups,
                         scale_factor=scale_factor, moments=2)

    def encode(self, x: torch.Tensor) -> DiagonalGaussianDistribution:
        """q(z|x) for images x (B, C, H, W) in [-1, 1]; its mean is (B, embed_dim, H/f, W/f)."""
        moments = self.quant_conv(self.encoder(x))  # (B, 2*embed_dim, H/f, W/f)
        return DiagonalGaussianDistribution(moments)

    def forward(
        self, x: torch.Tensor, sample_posterior: bool = True, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, DiagonalGaussianDistribution]:
        """Reconstruct x through a posterior sample (or its mean): returns (x_hat, posterior)."""
        posterior = self.encode(x)
        z = posterior.sample(generator) if sample_posterior else posterior.mode()
        return self.decode(z), posterior

    def unscaled_latent(self, x: torch.Tensor, sample: bool = False,
                        generator: torch.Generator | None = None) -> torch.Tensor:
        """z = the posterior mean (or a posterior sample), before scaling."""
        posterior = self.encode(x)
        return posterior.sample(generator) if sample else posterior.mode()

    def encode_latent(self, x: torch.Tensor, sample: bool = False,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """The latent stage 2 diffuses: scale_factor * z with z the posterior mean (or a sample)."""
        return self.scale_factor * self.unscaled_latent(x, sample, generator)
