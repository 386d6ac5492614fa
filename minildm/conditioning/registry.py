"""Conditioners by name: the `conditioner:` section of an LDM config -> a built Conditioner."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch.nn as nn

from minildm.conditioning.base import Conditioner
from minildm.conditioning.class_embedder import ClassConditioner
from minildm.conditioning.clip_text import FrozenCLIPTextConditioner
from minildm.conditioning.hybrid import HybridConditioner
from minildm.conditioning.inpainting import MaskedImageConditioner
from minildm.conditioning.layout import LayoutConditioner
from minildm.conditioning.segmentation import SegmentationConditioner
from minildm.conditioning.super_resolution import LowResConditioner
from minildm.conditioning.text import TextConditioner

CONDITIONERS: dict[str, type[Conditioner]] = {
    "class": ClassConditioner, "text": TextConditioner, "layout": LayoutConditioner,
    "clip": FrozenCLIPTextConditioner,                                       # cross-attention (or ADM's class embedding)
    "inpaint": MaskedImageConditioner, "low_res": LowResConditioner,
    "segmentation": SegmentationConditioner,                                 # concat
    "hybrid": HybridConditioner,                                             # concat + cross-attention
}


def build_conditioner(spec: Mapping[str, Any] | nn.Module | None) -> nn.Module | None:
    """{"type": one of CONDITIONERS, **the conditioner's arguments} -> conditioner.

    e.g. {"type": "class", "num_classes": 18, "embed_dim": 64, "mode": "crossattn"},
    {"type": "text", "vocabulary": [...], "max_length": 16}, {"type": "layout", "num_classes": 18},
    {"type": "clip"} (Stable Diffusion v1's frozen CLIP text encoder, random weights until loaded),
    {"type": "inpaint", "latent_channels": 3}, {"type": "low_res", "scale": 4},
    {"type": "segmentation", "num_classes": 18},
    {"type": "hybrid", "concat": {"type": "inpaint", ...}, "crossattn": {"type": "text", ...}}.
    """
    if spec is None or isinstance(spec, nn.Module):  # none, or one already built (e.g. a loaded CLIP encoder)
        return spec
    spec = dict(spec)
    kind = spec.pop("type", None)
    if kind not in CONDITIONERS:
        raise ValueError(f"unknown conditioner type {kind!r}; valid types: {', '.join(CONDITIONERS)}")
    if kind == "hybrid":
        if set(spec) != {"concat", "crossattn"}:
            raise ValueError(f"a hybrid conditioner takes exactly `concat` and `crossattn` specs, got {sorted(spec)}")
        spec = {name: build_conditioner(part) for name, part in spec.items()}
    return CONDITIONERS[kind](**spec)
