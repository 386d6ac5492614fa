"""minildm.autoencoder: the first stage of latent diffusion (LDM Sec. 3.1): encoder/decoder, KL and VQ models."""

from minildm.autoencoder.blocks import AttnBlock, Downsample, ResnetBlock, Upsample
from minildm.autoencoder.distributions import DiagonalGaussianDistribution
from minildm.autoencoder.encoder_decoder import Decoder, Encoder
from minildm.autoencoder.kl import AutoencoderKL
from minildm.autoencoder.quantize import VectorQuantizer, nearest_code_indices, straight_through, vq_loss
from minildm.autoencoder.vq import VQModel

__all__ = [
    "AttnBlock",
    "AutoencoderKL",
    "Decoder",
    "DiagonalGaussianDistribution",
    "Downsample",
    "Encoder",
    "ResnetBlock",
    "Upsample",
    "VQModel",
    "VectorQuantizer",
    "nearest_code_indices",
    "straight_through",
    "vq_loss",
]
