"""Conditioning: turn a label, caption, layout or image into UNet inputs (LDM Sec. 3.3).

    base.py            the Conditioner interface: dataset item keys in, UNet keyword arguments out
    class_embedder.py  "label" -> one context token (or ADM's class embedding)
    text.py            "caption" -> WordLevel tokenizer -> transformer tau_theta -> context tokens
    layout.py          "boxes" + "box_labels" -> (class, corner, corner) grid tokens -> transformer
    clip_text.py       "caption" -> CLIP BPE tokens -> frozen CLIP ViT-L/14 text transformer (Stable Diffusion v1)
"""

from minildm.conditioning.base import Conditioner
from minildm.conditioning.class_embedder import ClassConditioner
from minildm.conditioning.clip_text import FrozenCLIPTextConditioner
from minildm.conditioning.layout import LayoutConditioner, box_tokens, grid_tokens, shuffle_objects
from minildm.conditioning.text import TextConditioner, build_tokenizer, caption_vocabulary

__all__ = ["ClassConditioner", "Conditioner", "FrozenCLIPTextConditioner", "LayoutConditioner", "TextConditioner",
           "box_tokens",
           "build_tokenizer", "caption_vocabulary", "grid_tokens", "shuffle_objects"]
