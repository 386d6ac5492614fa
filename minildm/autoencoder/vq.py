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
from torch import nn

from minildm.autoencoder.encoder_decoder import Decoder, Encoder
from minildm.autoencoder.quantize import VectorQuantizer


class VQModel(nn.Module):
    """Encoder + VectorQuantizer (n_embed codes of size embed_dim) + Decoder; `encode`, `decode`, `forward`."""

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
        super().__init__()
        common = dict(ch=ch, ch_mult=tuple(ch_mult), num_res_blocks=num_res_blocks, attn_resolutions=tuple(attn_resolutions),
                      dropout=dropout, resolution=resolution, z_channels=z_channels, num_groups=num_groups)
        self.encoder = Encoder(in_channels=in_channels, double_z=False, **common)
        self.decoder = Decoder(out_ch=out_ch, **common)
        self.quant_conv = nn.Conv2d(z_channels, embed_dim, kernel_size=1)
        self.quantize = VectorQuantizer(n_embed, embed_dim, beta=beta, ema_decay=ema_decay, dead_code_threshold=dead_code_threshold)
        self.post_quant_conv = nn.Conv2d(embed_dim, z_channels, kernel_size=1)
        self.embed_dim = embed_dim
        self.quantize_in_decoder = quantize_in_decoder
        self.downsampling_factor = 2 ** (len(ch_mult) - 1)
        self.register_buffer("scale_factor", torch.tensor(float(scale_factor)))

    def encode_pre_quant(self, x: torch.Tensor) -> torch.Tensor:
        """The continuous latent h (B, embed_dim, H/f, W/f) before quantization."""
        return self.quant_conv(self.encoder(x))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latents for images x: quantized z_q, or the pre-quantization h when `quantize_in_decoder`."""
        h = self.encode_pre_quant(x)
        if self.quantize_in_decoder:
            return h
        return self.quantize(h)[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images (B, out_ch, H, W) from latents (quantized first when `quantize_in_decoder`)."""
        if self.quantize_in_decoder:
            z = self.quantize(z)[0]
        return self.decoder(self.post_quant_conv(z))

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Images from code indices (B, h, w)."""
        return self.decoder(self.post_quant_conv(self.quantize.get_codebook_entry(indices)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Reconstruct x through the codebook: returns (x_hat, quantization loss, quantizer info)."""
        z_q, vq_loss, info = self.quantize(self.encode_pre_quant(x))
        return self.decoder(self.post_quant_conv(z_q)), vq_loss, info

    def encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        """The latent stage 2 diffuses: scale_factor * encode(x)."""
        return self.scale_factor * self.encode(x)

    def decode_latent(self, latent: torch.Tensor) -> torch.Tensor:
        """Inverse of `encode_latent`."""
        return self.decode(latent / self.scale_factor)

    @property
    def last_layer(self) -> torch.Tensor:
        """The decoder's final conv weight (where the stage-1 loss measures its adaptive GAN weight)."""
        return self.decoder.last_layer
