"""Teaching helpers for notebook 12 (inpainting by concat conditioning, LDM Sec. 4.5).

    rectangle_mask       one axis-aligned hole per image, given as xyxy fractions -> (B, 1, S, S)
    show_mask_overlay    images with their holes tinted, as a matplotlib grid
    InpaintingExplorer   ipywidgets: pick a test image, move and resize a box hole, watch the model fill it

The inpainting conventions are minildm's: images (B, 3, H, W) in [-1, 1], masks (B, 1, H, W) float,
1 = a pixel to fill, 0 = a known pixel.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn

from minildm.conditioning import masked_image


def rectangle_mask(boxes: torch.Tensor | Sequence[Sequence[float]], size: int) -> torch.Tensor:
    """Boxes (B, 4) xyxy in [0, 1] -> masks (B, 1, size, size): 1 on the pixels whose centre lies in the box."""
    boxes = torch.as_tensor(boxes, dtype=torch.float32)
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be (B, 4) xyxy fractions of the image, got shape {tuple(boxes.shape)}")
    centres = (torch.arange(size, dtype=torch.float32) + 0.5) / size  # pixel centres in [0, 1]
    inside_x = (centres >= boxes[:, 0:1]) & (centres < boxes[:, 2:3])  # (B, W)
    inside_y = (centres >= boxes[:, 1:2]) & (centres < boxes[:, 3:4])  # (B, H)
    return (inside_y[:, :, None] & inside_x[:, None, :]).float()[:, None]  # (B, H, W) -> (B, 1, H, W)


def mask_overlay(images: torch.Tensor, masks: torch.Tensor, tint: Sequence[float] = (1.0, 1.0, 1.0),
                 strength: float = 0.6) -> torch.Tensor:
    """Images (B, 3, H, W) in [-1, 1] with the hole (mask = 1) blended towards `tint`: where the model must fill."""
    colour = torch.tensor(tint, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return images + strength * masks * (colour - images)


def show_mask_overlay(images: torch.Tensor, masks: torch.Tensor, titles: Sequence[str] | None = None,
                      image_size: float = 1.2):
    """A row of images with their holes tinted white; return the Figure."""
    from minildm.course.notebooks import show_images

    return show_images(mask_overlay(images, masks), nrow=len(images), labels=titles, scale=image_size)


class InpaintingExplorer:
    """An ipywidgets explorer: choose a test image, move and resize a rectangular hole, see the fill.

    `explorer.widget` holds the controls and the picture; every change calls `update()`, which samples
    the inpainting model from fixed noise (so only the hole changes the picture) and draws four panels:
    the image with its hole, the model's input (the masked image), the decoded sample before paste-back
    and the result after it. Call `update()` once after displaying the widget: that also works headless
    (nbval, nbclient).
    """

    def __init__(self, ldm: nn.Module, images: torch.Tensor, steps: int = 20, seed: int = 0,
                 box: Sequence[float] = (0.3, 0.3, 0.7, 0.7)):
        import ipywidgets as widgets

        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (N, 3, H, W) in [-1, 1], got shape {tuple(images.shape)}")
        self.ldm, self.images, self.steps = ldm, images, steps
        self.device = next(ldm.parameters()).device
        height, width = images.shape[-2:]
        latent = (ldm.latent_shape[0], height // ldm.conditioner.factor, width // ldm.conditioner.factor)
        self.noise = torch.randn(1, *latent, generator=torch.Generator().manual_seed(seed)).to(self.device)
        x0, y0, x1, y1 = box
        slider = dict(min=0.0, max=1.0, step=0.05, continuous_update=False)
        self.index = widgets.IntSlider(value=0, min=0, max=len(images) - 1, description="image",
                                       continuous_update=False)
        self.x = widgets.FloatSlider(value=(x0 + x1) / 2, description="centre x", **slider)
        self.y = widgets.FloatSlider(value=(y0 + y1) / 2, description="centre y", **slider)
        self.width = widgets.FloatSlider(value=x1 - x0, description="width", **slider)
        self.height = widgets.FloatSlider(value=y1 - y0, description="height", **slider)
        self.output = widgets.Output()
        for control in (self.index, self.x, self.y, self.width, self.height):
            control.observe(self.update, names="value")
        self.widget = widgets.VBox([widgets.HBox([self.index, self.x, self.y]),
                                    widgets.HBox([self.width, self.height]), self.output])

    def box(self) -> list[float]:
        """The hole as xyxy fractions of the image, from the sliders (clipped to the image)."""
        half_w, half_h = self.width.value / 2, self.height.value / 2
        return [max(0.0, self.x.value - half_w), max(0.0, self.y.value - half_h),
                min(1.0, self.x.value + half_w), min(1.0, self.y.value + half_h)]

    def run(self, index: int, box: Sequence[float]) -> dict[str, torch.Tensor]:
        """Image `index` with the hole `box` filled: {"image", "mask", "raw", "pasted"}, each (1, C, H, W)."""
        image = self.images[index: index + 1].to(self.device)
        mask = rectangle_mask([list(box)], image.shape[-1]).to(self.device)
        raw = self.ldm.sample(cond={"image": image, "mask": mask}, steps=self.steps, noise=self.noise,
                              progress=False, decode=False)
        raw = self.ldm.decode(raw)  # (1, 3, H, W) in [-1, 1], before paste-back
        pasted = self.ldm.conditioner.postprocess(raw, {"image": image, "mask": mask})
        return {"image": image.cpu(), "mask": mask.cpu(), "raw": raw.cpu(), "pasted": pasted.cpu()}

    def update(self, *_: Any):
        """Redraw for the current control values (also the widgets' change handler); return the Figure."""
        import matplotlib.pyplot as plt
        from IPython.display import clear_output, display

        from minildm.course.notebooks import show_images

        out = self.run(self.index.value, self.box())
        panels = torch.cat([mask_overlay(out["image"], out["mask"]), masked_image(out["image"], out["mask"]),
                            out["raw"], out["pasted"]])
        fig = show_images(panels, nrow=4, labels=["the hole", "model input", "sample", "pasted back"], scale=1.6)
        with self.output:
            clear_output(wait=True)
            display(fig)
        plt.close(fig)
        return fig
