"""minildm.autoencoder: the first stage of latent diffusion (LDM Sec. 3.1): encoder/decoder, KL and VQ models."""

from minildm.autoencoder.blocks import AttnBlock, Downsample, ResnetBlock, Upsample
from minildm.autoencoder.distributions import DiagonalGaussianDistribution, kl_divergence, reparameterize
from minildm.autoencoder.encoder_decoder import Decoder, Encoder
from minildm.autoencoder.first_stage import Autoencoder, FirstStage, check_first_stage, latent_shape
from minildm.autoencoder.kl import AutoencoderKL
from minildm.autoencoder.quantize import (VectorQuantizer, codebook_perplexity, codebook_usage, nearest_code_indices,
                                          straight_through, vq_loss)
from minildm.autoencoder.vq import VQModel

__all__ = [
    "AttnBlock",
    "Autoencoder",
    "AutoencoderKL",
    "Decoder",
    "DiagonalGaussianDistribution",
    "Downsample",
    "Encoder",
    "FirstStage",
    "ResnetBlock",
    "Upsample",
    "VQModel",
    "VectorQuantizer",
    "check_first_stage",
    "codebook_perplexity",
    "codebook_usage",
    "kl_divergence",
    "latent_shape",
    "nearest_code_indices",
    "reparameterize",
    "straight_through",
    "vq_loss",
]
