"""Teaching helpers for notebook 09 (class conditioning and classifier-free guidance).

    object_geometry     where and how large the object of each image is: (x centre, y centre, size)
    guidance_sweep      sample the same labels and noise at several guidance scales, judge each set
    show_rows           image rows with a label at the left of each row (e.g. one row per scale)
    GuidanceExplorer    ipywidgets: class, guidance scale, rescale -> a grid of samples

Classifier-free guidance (Ho & Salimans 2022, Eq. 6) trades diversity for fidelity to the
condition. `guidance_sweep` measures both sides of the trade on a class-conditional LDM:
fidelity as the judge classifier's accuracy on the asked classes, diversity as the spread
of object positions and sizes within each class (`minildm.metrics.class_diversity` of
`object_geometry`).
Why not the judge's features: a classifier's features change a lot with sample artefacts
(blur, colour casts) that say nothing about variety, so their spread mixes the two effects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from minildm.metrics import class_diversity


def object_geometry(images: torch.Tensor, threshold: float = 0.2) -> torch.Tensor:
    """(B, C, H, W) in [-1, 1] -> (B, 3): x centre, y centre and size (sqrt of the area) of the object, in pixels.

    The background colour of each image is the median of its border pixels; a pixel belongs to
    the object when some channel differs from it by more than `threshold` (in [0, 1] units).
    An image with no object pixels gets the image centre and size 0.
    """
    if images.ndim != 4:
        raise ValueError(f"object_geometry expects images (B, C, H, W), got shape {tuple(images.shape)}")
    x = (images.float() + 1) / 2  # [-1, 1] -> [0, 1]
    border = torch.cat([x[:, :, 0], x[:, :, -1], x[:, :, 1:-1, 0], x[:, :, 1:-1, -1]], dim=2)  # (B, C, perimeter)
    background = border.median(dim=2).values[:, :, None, None]  # (B, C, 1, 1)
    mask = ((x - background).abs().amax(dim=1) > threshold).float()  # (B, H, W)
    area = mask.sum(dim=(1, 2))  # (B,)
    height, width = mask.shape[1:]
    ys = torch.arange(height, dtype=x.dtype, device=x.device)
    xs = torch.arange(width, dtype=x.dtype, device=x.device)
    safe = area.clamp(min=1)
    cx = torch.where(area > 0, (mask.sum(1) * xs).sum(1) / safe, torch.full_like(area, (width - 1) / 2))
    cy = torch.where(area > 0, (mask.sum(2) * ys).sum(1) / safe, torch.full_like(area, (height - 1) / 2))
    return torch.stack([cx, cy, area.sqrt()], dim=1)


@dataclass
class GuidanceSweep:
    """Samples and measurements of `guidance_sweep`, one entry per guidance scale."""

    guidance_scales: list[float]
    labels: torch.Tensor  # (N,) the asked classes, the same at every scale
    images: list[torch.Tensor] = field(default_factory=list)  # (N, C, H, W) in [-1, 1] per scale, on the CPU
    accuracy: list[float] = field(default_factory=list)  # judge accuracy on the asked classes
    diversity: list[float] = field(default_factory=list)  # class_diversity of object_geometry (pixels)


@torch.no_grad()
def guidance_sweep(ldm: nn.Module, judge: nn.Module, labels: torch.Tensor, guidance_scales: Sequence[float],
                   noise: torch.Tensor | None = None, sampler: str = "dpmpp_2m", steps: int = 20,
                   guidance_rescale: float = 0.0, batch_size: int = 256, progress: bool = True) -> GuidanceSweep:
    """Sample `labels` once per guidance scale from the same starting `noise`; measure every set.

    accuracy: how often the judge sees the asked class (fidelity); diversity: the mean distance
    between the (x centre, y centre, size) of two samples of the same class, in pixels (NaN when
    no class is asked twice).

    noise: (N, *ldm.latent_shape) starting latents (default: drawn with seed 0), shared by all
    scales, so that the rows of the result differ only by the guidance scale.
    """
    from tqdm.auto import tqdm

    labels = torch.as_tensor(labels).long().cpu()
    shape = (labels.shape[0], *ldm.latent_shape)
    if noise is None:
        noise = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    if tuple(noise.shape) != shape:
        raise ValueError(f"noise has shape {tuple(noise.shape)}, expected {shape} (one latent per label)")
    device = next(ldm.parameters()).device
    noise = noise.to(device)
    result = GuidanceSweep(guidance_scales=[float(s) for s in guidance_scales], labels=labels)
    for guidance_scale in tqdm(result.guidance_scales, desc="guidance scales", disable=not progress):
        images = torch.cat([
            ldm.sample(labels=labels[i:i + batch_size], sampler=sampler, steps=steps, guidance_scale=guidance_scale,
                       guidance_rescale=guidance_rescale, noise=noise[i:i + batch_size], progress=False).cpu()
            for i in range(0, labels.shape[0], batch_size)])  # (N, C, H, W) on the CPU
        result.images.append(images)
        predicted = torch.cat([judge.predict(chunk.to(device)).cpu() for chunk in images.split(batch_size)])
        result.accuracy.append((predicted == labels).float().mean().item())
        repeated = bool((labels.bincount() >= 2).any())  # diversity needs two samples of some class
        result.diversity.append(class_diversity(object_geometry(images), labels) if repeated else float("nan"))
    return result


def show_rows(rows: Sequence[torch.Tensor], row_labels: Sequence[str] | None = None, title: str | None = None,
              image_size: float = 0.9):
    """Image rows [(n, C, H, W), ...] in [-1, 1] as a grid, `row_labels` written at the left; return the Figure.

    image_size: inches per image in the figure.
    """
    import matplotlib.pyplot as plt

    from minildm.data.transforms import to_image

    if not rows:
        raise ValueError("show_rows needs at least one row of images (n, C, H, W)")
    if row_labels is not None and len(row_labels) != len(rows):
        raise ValueError(f"{len(row_labels)} row labels for {len(rows)} rows; give one label per row")
    ncols = max(row.shape[0] for row in rows)
    fig, axes = plt.subplots(len(rows), ncols, squeeze=False,
                             figsize=(image_size * ncols + 1.0, image_size * len(rows) + (0.4 if title else 0.1)))
    for r, row in enumerate(rows):
        pixels = to_image(row)  # (n, H, W, C) uint8
        for c in range(ncols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c < row.shape[0]:
                image = pixels[c]
                ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=255)
        if row_labels is not None:
            axes[r, 0].set_ylabel(row_labels[r], rotation=0, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


class GuidanceExplorer:
    """An ipywidgets explorer: pick a class, a guidance scale and a rescale phi; see a grid of samples.

    `explorer.widget` holds the controls and the picture; every change calls `update()`, which
    samples `n` images of the chosen class from fixed noise (so only the settings change the
    picture) and titles them with the judge's accuracy. Call `update()` once after displaying
    the widget: that also works headless (nbval, nbclient).
    """

    def __init__(self, ldm: nn.Module, judge: nn.Module | None = None, class_names: Sequence[str] | None = None,
                 n: int = 8, guidance_scale: float = 3.0, steps: int = 20, max_guidance_scale: float = 10.0,
                 seed: int = 0):
        import ipywidgets as widgets

        num_classes = ldm.conditioner.num_classes
        names = list(class_names) if class_names is not None else [str(c) for c in range(num_classes)]
        if len(names) != num_classes:
            raise ValueError(f"{len(names)} class names for a model with {num_classes} classes")
        self.ldm, self.judge, self.n, self.steps = ldm, judge, n, steps
        self.device = next(ldm.parameters()).device
        self.noise = torch.randn(n, *ldm.latent_shape, generator=torch.Generator().manual_seed(seed)).to(self.device)
        self.label = widgets.Dropdown(options=[(name, c) for c, name in enumerate(names)], value=0, description="class")
        self.guidance_scale = widgets.FloatSlider(value=guidance_scale, min=0.0, max=max_guidance_scale, step=0.5,
                                                  description="scale s",
                                         continuous_update=False)
        self.guidance_rescale = widgets.FloatSlider(value=0.0, min=0.0, max=1.0, step=0.1, description="rescale phi",
                                           continuous_update=False)
        self.output = widgets.Output()
        for control in (self.label, self.guidance_scale, self.guidance_rescale):
            control.observe(self.update, names="value")
        controls = widgets.HBox([self.label, self.guidance_scale, self.guidance_rescale])
        self.widget = widgets.VBox([controls, self.output])
        self.names = names

    def run(self, label: int, guidance_scale: float, guidance_rescale: float = 0.0) -> torch.Tensor:
        """`n` samples (n, C, H, W) of class `label` from the explorer's fixed noise."""
        labels = torch.full((self.n,), int(label), device=self.device)
        return self.ldm.sample(labels=labels, steps=self.steps, guidance_scale=guidance_scale,
                               guidance_rescale=guidance_rescale, noise=self.noise, progress=False).cpu()

    def update(self, *_: Any):
        """Redraw for the current control values (also the widgets' change handler); return the Figure."""
        import matplotlib.pyplot as plt
        from IPython.display import clear_output, display

        label, scale, rescale = self.label.value, self.guidance_scale.value, self.guidance_rescale.value
        images = self.run(label, scale, rescale)
        title = f"{self.names[label]}, guidance scale {scale:g}" + (f", rescale {rescale:g}" if rescale else "")
        if self.judge is not None:
            hits = (self.judge.predict(images.to(self.device)).cpu() == label).sum().item()
            title += f": the judge sees the class in {hits} of {self.n}"
        fig = show_rows([images], title=title, image_size=1.0)
        with self.output:
            clear_output(wait=True)
            display(fig)
        plt.close(fig)
        return fig
