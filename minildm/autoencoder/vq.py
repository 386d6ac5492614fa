"""VQModel: the vector-quantised first stage of latent diffusion (LDM Sec. 3.1, App. G).

x (B, 3, H, W) --Encoder--> (B, z, H/f, W/f) --quant_conv (1x1)--> h (B, embed_dim, H/f, W/f)
  --VectorQuantizer--> z_q --post_quant_conv (1x1)--> Decoder --> x_hat.

The paper notes that the quantization layer can be "absorbed into the decoder": the
diffusion model then works on the continuous pre-quantization latent h, and decoding
quantizes first. `quantize_in_decoder=True` selects that behaviour for `encode`/`decode`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from minildm.autoencoder.first_stage import Autoencoder
from minildm.autoencoder.quantize import VectorQuantizer


class VQModel(Autoencoder):
    """Encoder + VectorQuantizer (n_embed codes of size embed_dim) + Decoder; `encode`, `decode`, `forward`.

    Parameter names follow the CompVis first-stage configs: see `Autoencoder`.
    """

    def __init__(
        self,
        *,
        ch: int = 128,
        ch_mult: Sequence[int] = (1, 2, 4),
        num_res_blocks: int = 2,
        attn_resolutions: Sequence[int] = (),
        dropout: float = 0.0,
        in_channels: int = 3,
        out_ch: int = 3,
        resolution: int = 256,
        z_channels: int = 3,
        embed_dim: int = 3,
        n_embed: int = 8192,
        beta: float = 0.25,
        quantize_in_decoder: bool = False,
        ema_decay: float = 0.0,
        dead_code_threshold: float = 0.0,
        num_groups: int = 32,
        scale_factor: float = 1.0,
    ):
        super().__init__(ch=ch, ch_mult=ch_mult, num_res_blocks=num_res_blocks, attn_resolutions=attn_resolutions,
                         dropout=dropout, in_channels=in_channels, out_ch=out_ch, resolution=resolution,
                         z_channels=z_channels, embed_dim=embed_dim, num_groups=num_groups,
                         scale_factor=scale_factor, moments=1)
        self.quantize = VectorQuantizer(n_embed, embed_dim, beta=beta, ema_decay=ema_decay, dead_code_threshold=dead_code_threshold)
        self.quantize_in_decoder = quantize_in_decoder

    def encode_pre_quant(self, x: torch.Tensor) -> torch.Tensor:
        """The continuous latent h (B, embed_dim, H/f, W/f) before quantization."""
        return self.quant_conv(self.encoder(x))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latents for images x: quantized z_q, or the pre-quantization h when `quantize_in_decoder`."""
        h = self.encode_pre_quant(x)
        if self.quantize_in_decoder:
            return h
        return self.quantize(h)[0]

    def unscaled_latent(self, x: torch.Tensor) -> torch.Tensor:
        """`encode(x)`: what stage 2 diffuses, before scaling."""
        return self.encode(x)

    def code_indices(self, x: torch.Tensor) -> torch.Tensor:
        """The code index (B, H/f, W/f) each latent position of images x is quantized to."""
        return self.quantize(self.encode_pre_quant(x))[2]["indices"]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images (B, out_ch, H, W) from latents (quantized first when `quantize_in_decoder`)."""
        if self.quantize_in_decoder:
            z = self.quantize(z)[0]
        return super().decode(z)

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Images from code indices (B, h, w)."""
        return super().decode(self.quantize.get_codebook_entry(indices))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Reconstruct x through the codebook: returns (x_hat, quantization loss, quantizer info)."""
        z_q, vq_loss, info = self.quantize(self.encode_pre_quant(x))
        return super().decode(z_q), vq_loss, info
