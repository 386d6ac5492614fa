"""Hybrid conditioning: a concat map and cross-attention tokens at once (the original's `conditioning_key: hybrid`).

One conditioner gives the spatial map (e.g. inpainting's masked image + mask), another the context tokens
(e.g. a caption); the UNet gets both, {"concat": (B, c, h, w), "context": (B, M, D)}. Guidance and
condition dropout act on the two together: the null condition is both nulls.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn

from minildm.conditioning.base import Conditioner


class HybridConditioner(Conditioner):
    """Combine a concat conditioner and a cross-attention conditioner (each a built Conditioner).

    The condition dict holds the keys of both, e.g. {"image", "mask", "caption"}.
    """

    def __init__(self, concat: Conditioner, crossattn: Conditioner):
        super().__init__()
        if not concat.concat_channels or crossattn.concat_channels:
            raise ValueError("a hybrid conditioner needs a concat conditioner (inpaint, low_res, segmentation) "
                             "as `concat` and a cross-attention one (class, text, layout, clip) as `crossattn`")
        shared = set(concat.keys) & set(crossattn.keys)
        if shared:
            raise ValueError(f"the two conditioners both read {', '.join(sorted(shared))}")
        self.concat, self.crossattn = concat, crossattn
        self.keys = concat.keys + crossattn.keys
        self.concat_channels = concat.concat_channels

    @property
    def dataset_keys(self) -> tuple[str, ...]:
        """What both read from the dataset."""
        return tuple(dict.fromkeys(self.concat.dataset_keys + self.crossattn.dataset_keys))

    def training_cond(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """Both parts' raw conditions."""
        return {**self.concat.training_cond(batch), **self.crossattn.training_cond(batch)}

    def bind(self, first_stage: nn.Module) -> None:
        """Bind both parts."""
        self.concat.bind(first_stage)
        self.crossattn.bind(first_stage)

    def prepare(self, cond: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Each part prepares its own keys."""
        self.check_keys(cond)
        return {**self.concat.prepare(cond), **self.crossattn.prepare(cond)}

    def null_cond(self, cond: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Both nulls."""
        return {**self.concat.null_cond(cond), **self.crossattn.null_cond(cond)}

    def encode(self, cond: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """{"concat": ..., "context": ...} (each part's UNet arguments, merged)."""
        return {**self.concat.encode(cond), **self.crossattn.encode(cond)}

    def forward(self, *values: torch.Tensor) -> dict[str, torch.Tensor]:
        """The prepared values in `keys` order -> the merged UNet arguments."""
        return self.encode(dict(zip(self.keys, values)))

    def image_size(self, cond: Mapping[str, torch.Tensor]) -> tuple[int, int] | None:
        """The concat part's."""
        return self.concat.image_size(cond)

    def postprocess(self, images: torch.Tensor, cond: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The concat part's (e.g. paste-back)."""
        return self.concat.postprocess(images, cond)

    def latent_size(self, cond: Mapping[str, torch.Tensor]) -> tuple[int, int]:
        """The concat part's."""
        return self.concat.latent_size(cond)
