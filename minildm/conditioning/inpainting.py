"""Inpainting by concat conditioning (LDM Sec. 4.5): fill the masked pixels of an image.

The condition is the image with its hole blanked out and the mask. The masked image goes through
the *frozen* first stage, the mask is brought to the latent's size, and both are concatenated to z_t:

    x_masked = (1 - m) * x                          (the hole becomes 0, mid-grey in [-1, 1])
    c = [ scale * E(x_masked) ; m at h x w ]        (B, c_lat + 1, h, w)
    eps_theta([z_t ; c], t)                         in_channels = 2 c_lat + 1 (7 for the paper's f = 4, c_lat = 3)

A latent cell is marked "to fill" when any pixel it covers is (max-pooling over the f x f pixels of the
cell), so a thin stroke never vanishes at latent resolution. After decoding, the known pixels are pasted
back, x_out = m * x_generated + (1 - m) * x: the model only ever changes the hole.

Convention: image (B, 3, H, W) in [-1, 1] (whatever the hole holds is ignored), mask (B, 1, H, W) float,
1 = to fill, 0 = known. The null condition (for guidance) is "everything to fill, nothing known".
Training masks come from `minildm.data.masks.random_masks` (boxes and strokes, and with `object_share` > 0
also holes over part of an object, drawn from the items' boxes), a new mask per step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from minildm.conditioning.concat import ConcatConditioner
from minildm.data.masks import MASK_KINDS, random_masks


def masked_image(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W), (B, 1, H, W) -> the image with the hole (mask = 1) set to 0."""
    return image * (1 - mask)


def mask_to_latent(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Mask (B, 1, H, W) -> (B, 1, h, w): a latent cell is to fill when any pixel it covers is (max-pooling)."""
    return F.adaptive_max_pool2d(mask, size)


def paste_back(generated: torch.Tensor, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Keep the known pixels of `image`, take the hole from `generated`: m * generated + (1 - m) * image."""
    return mask * generated + (1 - mask) * image


class MaskedImageConditioner(ConcatConditioner):
    """{"image": (B, 3, H, W), "mask": (B, 1, H, W)} -> {"concat": (B, c_lat + 1, H/f, W/f)}.

    Args:
        latent_channels: channels of the first stage's latent (the concat map has latent_channels + 1).
        mask_kind: training masks, "mixed" (boxes and strokes), "box" or "stroke" (see minildm.data.masks).
        paste: paste the known pixels back after decoding (the paper's practice).
        object_share: the fraction of training masks that hide one side of an object (object-aware masks,
            `minildm.data.masks.object_part_masks`); training then also reads the items' boxes.
    """

    keys = ("image", "mask")

    def __init__(self, latent_channels: int = 3, mask_kind: str = "mixed", paste: bool = True,
                 object_share: float = 0.0):
        super().__init__()
        if mask_kind not in MASK_KINDS:
            raise ValueError(f"unknown mask_kind {mask_kind!r}; valid kinds: {', '.join(MASK_KINDS)}")
        if not 0.0 <= object_share <= 1.0:
            raise ValueError(f"object_share must lie in [0, 1], got {object_share!r}")
        self.latent_channels, self.mask_kind, self.paste = latent_channels, mask_kind, paste
        self.object_share = float(object_share)
        self.concat_channels = latent_channels + 1

    @property
    def dataset_keys(self) -> tuple[str, ...]:
        """Training reads the images (and the boxes, for object-part masks); the masks are drawn per step."""
        return ("image", "boxes", "box_labels") if self.object_share > 0 else ("image",)

    def training_cond(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """The batch's images with a fresh random mask each (boxes and strokes, some object parts)."""
        image = batch["image"]
        objects = {"boxes": batch["boxes"], "box_labels": batch["box_labels"]} if self.object_share > 0 else {}
        mask = random_masks(image.shape[0], image.shape[-1], self.mask_kind, device=image.device,
                            object_share=self.object_share, **objects)
        return {"image": image, "mask": mask}

    def prepare(self, cond: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Stack and check: image (B, C, H, W), mask (B, 1, H, W) with values in [0, 1]."""
        cond = super().prepare(cond)
        image, mask = cond["image"].float(), cond["mask"].float()
        if image.dim() != 4 or mask.dim() != 4 or mask.shape[1] != 1 or mask.shape[0] != image.shape[0] \
                or mask.shape[-2:] != image.shape[-2:]:
            raise ValueError(f"inpainting needs image (B, C, H, W) and mask (B, 1, H, W) of the same B, H, W; "
                             f"got {tuple(image.shape)} and {tuple(mask.shape)}")
        if mask.numel() and (mask.min() < 0 or mask.max() > 1):
            raise ValueError("mask values must lie in [0, 1] (1 = to fill, 0 = known)")
        return {"image": image, "mask": mask}

    def null_cond(self, cond: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Nothing known: a blank image and a mask of ones."""
        return {"image": torch.zeros_like(cond["image"]), "mask": torch.ones_like(cond["mask"])}

    def image_size(self, cond: Mapping[str, torch.Tensor]) -> tuple[int, int]:
        """The input image's (H, W)."""
        return tuple(cond["image"].shape[-2:])

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, C, H, W), (B, 1, H, W) -> {"concat": [E(masked image) ; mask at latent size]} (B, c_lat + 1, h, w)."""
        stage = self.first_stage
        dtype = stage.scale_factor.dtype
        with torch.no_grad():  # the first stage is frozen
            z_masked = stage.encode_latent(masked_image(image, mask).to(dtype)).to(image.dtype)  # (B, c_lat, h, w)
        if z_masked.shape[1] != self.latent_channels:
            raise ValueError(f"the first stage gives {z_masked.shape[1]}-channel latents, this conditioner was "
                             f"built for latent_channels = {self.latent_channels}")
        small_mask = mask_to_latent(mask, tuple(z_masked.shape[-2:]))  # (B, 1, H, W) -> (B, 1, h, w)
        return {"concat": torch.cat([z_masked, small_mask], dim=1)}

    def postprocess(self, images: torch.Tensor, cond: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Paste the known pixels back (when `paste`)."""
        if not self.paste:
            return images
        return paste_back(images, cond["image"].to(images.dtype), cond["mask"].to(images.dtype))
