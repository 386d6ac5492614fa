"""Concat conditioning (LDM Sec. 3.3, "concatenation"): a spatially aligned condition joins z_t as extra channels.

For image-to-image tasks the paper does not need cross-attention: the condition already lives on the
image grid, so it is brought to the latent's size h x w and concatenated to the noisy latent,

    eps_theta([z_t ; c], t),    c: (B, c_cond, h, w),    UNet in_channels = latent channels + c_cond,

as the original's `conditioning_key: concat` (its DiffusionWrapper concatenates before the UNet; here
`LatentDiffusion.model_output` does, from the "concat" entry the conditioner returns). The UNet is
convolutional, so a larger condition gives a larger latent and a larger image: the output size follows
the spatial condition (`image_size`).

    inpainting.py        "image" + "mask" -> [E(masked image) ; mask at latent size]      (Sec. 4.5)
    super_resolution.py  "low_res" -> the low-resolution image at latent size            (Sec. 4.4)
    segmentation.py      "segmentation" -> one-hot -> SpatialRescaler                     (Sec. 4.3.2)

`ConcatConditioner` holds what they share: the first stage's downsampling factor f (given by
LatentDiffusion through `bind`) and, for the inpainting conditioner, the frozen first stage itself.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn as nn

from minildm.conditioning.base import Conditioner


class ConcatConditioner(Conditioner):
    """Base of the spatial conditioners: knows the first stage (held, not owned) and its factor f."""

    def __init__(self) -> None:
        super().__init__()
        self._first_stage: tuple[nn.Module, ...] = ()  # a tuple, so the frozen weights are not saved twice

    def bind(self, first_stage: nn.Module) -> None:
        """Keep a reference to LatentDiffusion's frozen first stage (its weights stay LatentDiffusion's)."""
        self._first_stage = (first_stage,)

    @property
    def first_stage(self) -> nn.Module:
        """The frozen first stage given by `bind`."""
        if not self._first_stage:
            raise RuntimeError(f"{type(self).__name__} is not bound to a first stage: build it inside a "
                               "LatentDiffusion (which calls bind), or call bind(first_stage) yourself")
        return self._first_stage[0]

    @property
    def factor(self) -> int:
        """The first stage's downsampling factor f (1 for pixel-space diffusion)."""
        return int(self.first_stage.downsampling_factor)

    def latent_size(self, cond: Mapping[str, torch.Tensor]) -> tuple[int, int]:
        """(h, w) of the latent a prepared condition asks for: its image size / f."""
        height, width = self.image_size(cond)
        if height % self.factor or width % self.factor:
            raise ValueError(f"the condition asks for {height} x {width} images, which the first stage's factor "
                             f"f = {self.factor} does not divide")
        return height // self.factor, width // self.factor
