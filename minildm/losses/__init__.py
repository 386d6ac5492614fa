"""minildm.losses: the stage-1 training loss (LDM Sec. 3.1): LPIPS, PatchGAN, and their combination."""

from minildm.losses.discriminator import NLayerDiscriminator
from minildm.losses.functional import adaptive_weight, hinge_d_loss, vanilla_d_loss
from minildm.losses.perceptual import FALLBACK_VARIANT, LPIPS, RandomFeatureDistance, find_backbone_weights
from minildm.losses.stage1 import Stage1Loss

__all__ = [
    "FALLBACK_VARIANT",
    "LPIPS",
    "NLayerDiscriminator",
    "RandomFeatureDistance",
    "Stage1Loss",
    "adaptive_weight",
    "find_backbone_weights",
    "hinge_d_loss",
    "vanilla_d_loss",
]
