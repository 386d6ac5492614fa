"""Conditioning: turn a label, caption, layout or image into UNet inputs (LDM Sec. 3.3).

    base.py              the Conditioner interface: dataset item keys in, UNet keyword arguments out
    class_embedder.py    "label" -> one context token (or ADM's class embedding)
    text.py              "caption" -> WordLevel tokenizer -> transformer tau_theta -> context tokens
    layout.py            "boxes" + "box_labels" -> (class, corner, corner) grid tokens -> transformer
    clip_text.py         "caption" -> CLIP BPE tokens -> frozen CLIP ViT-L/14 text transformer (Stable Diffusion v1)
    concat.py            what the spatial (concat) conditioners share
    inpainting.py        "image" + "mask" -> [E(masked image) ; mask] concatenated to z_t
    super_resolution.py  "low_res" -> the low-resolution image concatenated to z_t
    segmentation.py      "segmentation" -> one-hot -> SpatialRescaler -> concatenated to z_t
    hybrid.py            concat + cross-attention together
    registry.py          config `conditioner: {type: ...}` -> a built conditioner
"""

from minildm.conditioning.base import Conditioner
from minildm.conditioning.class_embedder import ClassConditioner
from minildm.conditioning.clip_text import FrozenCLIPTextConditioner
from minildm.conditioning.concat import ConcatConditioner
from minildm.conditioning.hybrid import HybridConditioner
from minildm.conditioning.inpainting import MaskedImageConditioner, mask_to_latent, masked_image, paste_back
from minildm.conditioning.layout import LayoutConditioner, box_tokens, grid_tokens, shuffle_objects
from minildm.conditioning.registry import CONDITIONERS, build_conditioner
from minildm.conditioning.segmentation import SegmentationConditioner, SpatialRescaler, one_hot_segmentation
from minildm.conditioning.super_resolution import LowResConditioner, bicubic_downsample, bicubic_upsample
from minildm.conditioning.text import TextConditioner, build_tokenizer, caption_vocabulary

__all__ = ["CONDITIONERS", "ClassConditioner", "ConcatConditioner", "Conditioner", "FrozenCLIPTextConditioner",
           "HybridConditioner", "LayoutConditioner", "LowResConditioner", "MaskedImageConditioner",
           "SegmentationConditioner", "SpatialRescaler", "TextConditioner",
           "bicubic_downsample", "bicubic_upsample", "box_tokens", "build_conditioner", "build_tokenizer",
           "caption_vocabulary", "grid_tokens", "mask_to_latent", "masked_image", "one_hot_segmentation",
           "paste_back", "shuffle_objects"]
