"""minildm.unet: the LDM denoiser eps_theta(z_t, t, y) (LDM Sec. 3.2-3.3), one idea per module.

    embeddings    timestep_embedding: t -> sinusoids
    resblock      ResBlock (time embedding added or scale-shift), Downsample, Upsample
    attention_layers  attention() written out, CrossAttention, ADM self-attention AttentionBlock
    transformer   GEGLU, BasicTransformerBlock, SpatialTransformer (cross-attention conditioning)
    model         UNetModel: the whole U with skip connections
    config        YAML architecture configs (sd-v1 and tiny ones)
"""

from minildm.unet.attention_layers import AttentionBlock, CrossAttention, attention
from minildm.unet.config import available_unet_configs, load_unet_config
from minildm.unet.embeddings import timestep_embedding
from minildm.unet.model import TimestepEmbedSequential, UNetModel
from minildm.unet.resblock import Downsample, ResBlock, Upsample
from minildm.unet.transformer import BasicTransformerBlock, FeedForward, GEGLU, SpatialTransformer

__all__ = [
    "AttentionBlock",
    "BasicTransformerBlock",
    "CrossAttention",
    "Downsample",
    "FeedForward",
    "GEGLU",
    "ResBlock",
    "SpatialTransformer",
    "TimestepEmbedSequential",
    "UNetModel",
    "Upsample",
    "attention",
    "available_unet_configs",
    "load_unet_config",
    "timestep_embedding",
]
