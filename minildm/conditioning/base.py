"""What every conditioner offers LatentDiffusion (LDM Sec. 3.3: tau_theta(y) -> tokens, or a map to concatenate).

A condition is a dict keyed by the dataset's item keys, so a training batch, a config and a
call to `LatentDiffusion.sample(cond=...)` all speak the same language:

    {"label": (B,)}                                  ClassConditioner
    {"caption": [B strings]}                         TextConditioner
    {"boxes": (B, N, 4), "box_labels": (B, N)}       LayoutConditioner (-1 = no object)
    {"image": (B, 3, H, W), "mask": (B, 1, H, W)}   MaskedImageConditioner (inpainting, 1 = to fill)
    {"low_res": (B, 3, H/4, W/4)}                    LowResConditioner (super-resolution)
    {"segmentation": (B, H, W) long}                 SegmentationConditioner (semantic synthesis)

A conditioner implements
    keys                 the item keys it reads
    prepare(cond)        the raw values -> tensors (e.g. captions -> token ids); tensors pass through
    null_cond(cond)      the "no condition" of the same batch size (classifier-free guidance)
    forward(*values)     the prepared values, in `keys` order -> UNet keyword arguments: {"context": (B, M, D)}
                         for cross-attention, {"concat": (B, c, h, w)} for a map concatenated to z_t
and inherits the rest: `encode(cond)`, condition dropout `drop_cond(cond, p)` and `where_null(cond, mask)`.

Spatial (concat) conditioners override a few more hooks, all no-ops here:
    concat_channels      channels they add to the UNet's input (in_channels = latent + concat_channels)
    dataset_keys         the item keys training reads (e.g. "image", from which masks or low-res inputs are made)
    training_cond(batch) a training batch -> the raw condition (draw a mask, degrade the image)
    bind(first_stage)    hold the frozen first stage (inpainting encodes the masked image with it)
    image_size(cond)     the (H, W) of the images a condition asks for: the output follows a spatial condition
    postprocess(x, cond) decoded samples -> final images (inpainting pastes the known pixels back)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn

from minildm.utils import rand


class Conditioner(nn.Module):
    """Base class: the dict-level interface (`prepare`, `null_cond`, `encode`, `drop_cond`) of a conditioner."""

    keys: tuple[str, ...] = ()
    concat_channels: int = 0

    @property
    def dataset_keys(self) -> tuple[str, ...]:
        """The dataset item keys a training batch must carry (by default the condition keys themselves)."""
        return self.keys

    def training_cond(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """A training batch -> its raw condition (by default: the condition keys, as the dataset gives them)."""
        return {k: batch[k] for k in self.keys if k in batch}

    def bind(self, first_stage: nn.Module) -> None:
        """Called by LatentDiffusion with its frozen first stage; a conditioner that encodes images keeps it."""

    def image_size(self, cond: Mapping[str, torch.Tensor]) -> tuple[int, int] | None:
        """The (H, W) in pixels that a prepared condition asks for; None when it does not say (cross-attention)."""
        return None

    def postprocess(self, images: torch.Tensor, cond: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Decoded samples (B, C, H, W) -> the final images (by default unchanged)."""
        return images

    def check_keys(self, cond: Mapping[str, Any]) -> None:
        """Raise a ValueError naming the missing keys and the ones this conditioner reads."""
        missing = [k for k in self.keys if k not in cond]
        if missing:
            raise ValueError(f"{type(self).__name__} needs the condition key(s) {', '.join(self.keys)}; "
                             f"missing {', '.join(missing)} (got {', '.join(cond) or 'none'})")

    def prepare(self, cond: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Raw values (tensors, lists of tensors or numbers) -> tensors (LatentDiffusion moves them to its device)."""
        self.check_keys(cond)
        return {k: _as_batch(cond[k]) for k in self.keys}

    def null_cond(self, cond: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The unconditional input for a prepared batch like `cond` (same batch size)."""
        raise NotImplementedError

    def encode(self, cond: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A prepared condition -> the UNet's keyword arguments (tau_theta(y))."""
        return self(*(cond[k] for k in self.keys))

    def where_null(self, cond: Mapping[str, torch.Tensor], mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Replace the items where `mask` (B,) is True by the null condition, every key alike."""
        null = self.null_cond(cond)
        out = {}
        for k in self.keys:
            m = mask.to(cond[k].device).view(-1, *([1] * (cond[k].dim() - 1)))  # (B,) -> (B, 1, ...)
            out[k] = torch.where(m, null[k], cond[k])
        return out

    def drop_cond(self, cond: Mapping[str, torch.Tensor], drop_prob: float,
                  generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Condition dropout for CFG training: each item becomes the null condition with probability `drop_prob`."""
        if drop_prob <= 0:
            return dict(cond)
        first = cond[self.keys[0]]
        mask = rand((first.shape[0],), generator, device=first.device) < drop_prob
        return self.where_null(cond, mask)


def _as_batch(value: Any) -> torch.Tensor:
    """A tensor, or a list of per-item tensors / numbers stacked along a new first axis."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], torch.Tensor):
        return torch.stack(list(value))
    return torch.as_tensor(value)
