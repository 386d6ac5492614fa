"""Notebook 14's pictures and explorer: segmentation maps in their class colours, a map you repaint.

    paint_segmentation   (B, H, W) class maps -> (B, 3, H, W) images, each pixel in its class colour
    MapExplorer          ipywidgets: pick the class of each region of a map, see samples drawn from it
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn

from minildm.metrics.image_to_image import class_colour, shapes_palette


def paint_segmentation(segmentation: torch.Tensor) -> torch.Tensor:
    """(B, H, W) or (H, W) maps (0 = background, 1 + class id) -> (B, 3, H, W) in [-1, 1], class colours.

    The shapes dataset's class id is kind * 6 + colour, so a pixel of class c is painted in colour c % 6
    (the kind shows in the region's outline); background (and -1, "no map") in the palette's dark grey.
    """
    if segmentation.is_floating_point() or segmentation.dim() not in (2, 3):
        raise ValueError(f"segmentation must be (B, H, W) or (H, W) integer class maps, "
                         f"got {tuple(segmentation.shape)} {segmentation.dtype}")
    seg = segmentation.long().cpu()
    seg = seg[None] if seg.dim() == 2 else seg
    colours = shapes_palette()[class_colour(seg)]  # (B, H, W, 3) in [0, 1]
    return colours.permute(0, 3, 1, 2) * 2 - 1  # (B, H, W, 3) -> (B, 3, H, W) in [-1, 1]


class MapExplorer:
    """An ipywidgets explorer: a map made of named regions, one class drop-down per region, and samples.

    regions: {name: (H, W) bool mask}; later regions paint over earlier ones. classes: {name: initial
    value}, 0 = background or 1 + class id. `explorer.widget` holds the controls and the picture; every
    change calls `update()`, which samples `n` images from fixed noise (so only the map changes the picture).
    Call `update()` once after displaying the widget: that also works headless (nbval, nbclient).
    """

    def __init__(self, ldm: nn.Module, regions: Mapping[str, torch.Tensor], class_names: Sequence[str],
                 classes: Mapping[str, int] | None = None, n: int = 4, steps: int = 20, seed: int = 0):
        import ipywidgets as widgets

        if not regions:
            raise ValueError("give at least one region: {name: (H, W) bool mask}")
        shapes = {tuple(mask.shape) for mask in regions.values()}
        if len(shapes) != 1 or len(next(iter(shapes))) != 2:
            raise ValueError(f"the region masks must all be (H, W) of one size, got {sorted(shapes)}")
        num_classes = ldm.conditioner.num_classes
        if len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names for a model with {num_classes} classes")
        self.ldm, self.n, self.steps = ldm, n, steps
        self.regions = {name: mask.bool().cpu() for name, mask in regions.items()}
        self.size = next(iter(shapes))
        self.device = next(ldm.parameters()).device
        f = ldm.first_stage.downsampling_factor
        latent_shape = (ldm.latent_shape[0], self.size[0] // f, self.size[1] // f)
        self.noise = torch.randn(n, *latent_shape, generator=torch.Generator().manual_seed(seed)).to(self.device)
        options = [("background", 0)] + [(name, 1 + c) for c, name in enumerate(class_names)]
        classes = dict(classes or {})
        self.dropdowns = {name: widgets.Dropdown(options=options, value=classes.get(name, 1), description=name)
                          for name in self.regions}
        self.output = widgets.Output()
        for dropdown in self.dropdowns.values():
            dropdown.observe(self.update, names="value")
        self.widget = widgets.VBox([widgets.HBox(list(self.dropdowns.values())), self.output])

    def segmentation(self, classes: Mapping[str, int] | None = None) -> torch.Tensor:
        """The (H, W) map with each region filled with its class (the drop-downs' values by default)."""
        classes = classes or {name: dropdown.value for name, dropdown in self.dropdowns.items()}
        seg = torch.zeros(self.size, dtype=torch.long)
        for name, mask in self.regions.items():
            seg[mask] = int(classes[name])
        return seg

    def run(self, classes: Mapping[str, int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(map (H, W), `n` samples (n, 3, H, W)) for the region classes, from the explorer's fixed noise."""
        seg = self.segmentation(classes)
        cond = {"segmentation": seg.expand(self.n, -1, -1).to(self.device)}
        images = self.ldm.sample(cond=cond, steps=self.steps, noise=self.noise, progress=False).cpu()
        return seg, images

    def update(self, *_: Any):
        """Redraw for the current drop-downs (also their change handler); return the Figure."""
        import matplotlib.pyplot as plt
        from IPython.display import clear_output, display

        from minildm.course.viz_guidance import show_rows

        seg, images = self.run()
        rows = [paint_segmentation(seg), images]
        fig = show_rows(rows, ["map", "samples"], image_size=1.1)
        with self.output:
            clear_output(wait=True)
            display(fig)
        plt.close(fig)
        return fig
