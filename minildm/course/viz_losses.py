"""Teaching helpers for notebook 03 (perceptual and adversarial losses, LDM Sec. 3.1 and App. G).

    receptive_field       how many input pixels one PatchGAN logit sees (Isola et al. 2017, App. 6.1.2)
    gradient_magnitude    mean finite-difference gradient magnitude of images: a sharpness measure
    high_frequency_energy fraction of an image's spectral energy above a radial frequency cut-off
    plot_gan_losses       hinge and vanilla (non-saturating) GAN losses as functions of the logit
    show_zoomed           rows of images with a zoomed crop beside each, to make blur visible
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def receptive_field(model: nn.Module) -> int:
    """Side in pixels of the input window that one output element of a plain conv stack depends on.

    Walks the Conv2d layers in order (square kernels, dilation 1): each adds
    (kernel - 1) * jump pixels, where jump is the product of the strides before it. For the
    PatchGAN of `NLayerDiscriminator(n_layers=3)` this is the "70 x 70 PatchGAN" of pix2pix.
    Padding does not change the window size, only where it sits.
    """
    size, jump = 1, 1
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"receptive_field needs a model with Conv2d layers, {type(model).__name__} has none")
    for conv in convs:
        k, s, d = conv.kernel_size[0], conv.stride[0], conv.dilation[0]
        if conv.kernel_size[0] != conv.kernel_size[1] or conv.stride[0] != conv.stride[1] or d != 1:
            raise ValueError(f"receptive_field handles square kernels and strides without dilation, got {conv}")
        size += (k - 1) * jump
        jump *= s
    return size


def gradient_magnitude(images: torch.Tensor) -> torch.Tensor:
    """Mean |grad| per image (B,): sqrt(dx^2 + dy^2) of forward differences, averaged over channels and pixels.

    Blurring lowers it, so the ratio gradient_magnitude(x_hat) / gradient_magnitude(x) is a simple
    sharpness score of reconstructions: about 1 when they are as sharp as the originals, below 1
    when blurred. Images (B, C, H, W), any range (the course uses [-1, 1]).
    """
    if images.dim() != 4 or images.shape[-1] < 2 or images.shape[-2] < 2:
        raise ValueError(f"gradient_magnitude expects images (B, C, H, W) with H, W >= 2, got {tuple(images.shape)}")
    dx = images[..., :-1, 1:] - images[..., :-1, :-1]  # (B, C, H-1, W-1)
    dy = images[..., 1:, :-1] - images[..., :-1, :-1]  # (B, C, H-1, W-1)
    return (dx.pow(2) + dy.pow(2)).sqrt().flatten(1).mean(dim=1)


def high_frequency_energy(images: torch.Tensor, cutoff: float = 0.25) -> torch.Tensor:
    """Fraction (B,) of each image's spectral energy at radial frequencies above `cutoff` (cycles per pixel).

    The mean of each channel is removed first, so a flat image has no energy at all (its
    fraction is reported as 0). Frequencies run from 0 to 0.5 (Nyquist) along each axis;
    `cutoff` must lie in (0, 0.5). Blur removes high frequencies, so this fraction drops.
    """
    if images.dim() != 4:
        raise ValueError(f"high_frequency_energy expects images (B, C, H, W), got {tuple(images.shape)}")
    if not 0.0 < cutoff < 0.5:
        raise ValueError(f"cutoff is a frequency in cycles per pixel and must lie in (0, 0.5), got {cutoff}")
    centred = images - images.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.fft2(centred).abs().pow(2)  # (B, C, H, W)
    fy = torch.fft.fftfreq(images.shape[-2], device=images.device)[:, None]
    fx = torch.fft.fftfreq(images.shape[-1], device=images.device)[None, :]
    high = (fx.pow(2) + fy.pow(2)).sqrt() > cutoff  # (H, W)
    total = power.sum(dim=(1, 2, 3))
    return torch.where(total > 0, (power * high).sum(dim=(1, 2, 3)) / total.clamp_min(1e-30), torch.zeros_like(total))


def plot_gan_losses(limit: float = 3.0):
    """Two panels: the discriminator's loss on a real and on a fake patch, and the generator's loss, vs the logit.

    Hinge (Lim & Ye 2017; Miyato et al. 2018): D pays relu(1 - D(x)) on reals and relu(1 + D(x_hat))
    on fakes, G pays -D(x_hat). Vanilla non-saturating GAN (Goodfellow et al. 2014): D pays
    softplus(-D(x)) and softplus(D(x_hat)), G pays softplus(-D(x_hat)). Returns the Figure.
    """
    logit = torch.linspace(-limit, limit, 301)
    fig, (ax_d, ax_g) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax_d.plot(logit, F.relu(1 - logit), color="tab:blue", label="hinge, real: relu(1 - D)")
    ax_d.plot(logit, F.relu(1 + logit), color="tab:red", label="hinge, fake: relu(1 + D)")
    ax_d.plot(logit, F.softplus(-logit), "--", color="tab:blue", label="vanilla, real: softplus(-D)")
    ax_d.plot(logit, F.softplus(logit), "--", color="tab:red", label="vanilla, fake: softplus(D)")
    ax_d.set_title("discriminator loss per patch")
    ax_g.plot(logit, -logit, color="tab:green", label="hinge / LDM: -D(x_hat)")
    ax_g.plot(logit, F.softplus(-logit), "--", color="tab:green", label="non-saturating: softplus(-D(x_hat))")
    ax_g.set_title("generator (autoencoder) loss per patch")
    for ax in (ax_d, ax_g):
        ax.axvline(0, color="gray", linewidth=0.6)
        ax.set_xlabel("discriminator logit D")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def show_zoomed(rows: Mapping[str, torch.Tensor], crop: tuple[int, int, int] | Sequence[tuple[int, int, int]],
                scale: float = 1.6, title: str | None = None):
    """One row per entry of `rows` (name -> images (N, C, H, W) in [-1, 1]): each image, then its zoomed crop.

    `crop` = (top, left, side) in pixels, one window for every image, or a list of one window per
    image column; each is drawn as a box on the full images of its column and enlarged with
    nearest-neighbour pixels (no smoothing of its own). Returns the Figure.
    """
    if not rows:
        raise ValueError("show_zoomed needs at least one row of images, got an empty mapping")
    shapes = {tuple(images.shape) for images in rows.values()}
    if len(shapes) != 1:
        raise ValueError(f"every row must hold images of the same shape, got {sorted(shapes)}")
    n, channels, height, width = next(iter(shapes))
    crops = [tuple(crop)] * n if isinstance(crop[0], (int, np.integer)) else [tuple(c) for c in crop]
    if len(crops) != n:
        raise ValueError(f"give one crop for all images or one per image ({n}), got {len(crops)}")
    for top, left, side in crops:
        if channels not in (1, 3) or side < 1 or top < 0 or left < 0 or top + side > height or left + side > width:
            raise ValueError(f"crop (top={top}, left={left}, side={side}) must fit in {height} x {width} images "
                             "with 1 or 3 channels")
    fig, axes = plt.subplots(len(rows), 2 * n, figsize=(scale * 2 * n, scale * len(rows) + 0.4), squeeze=False)
    for r, (name, images) in enumerate(rows.items()):
        pixels = ((images.detach().float().cpu().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy()  # (N, H, W, C)
        if channels == 1:
            pixels = np.repeat(pixels, 3, axis=-1)
        for i, (top, left, side) in enumerate(crops):
            full_ax, zoom_ax = axes[r, 2 * i], axes[r, 2 * i + 1]
            full_ax.imshow(pixels[i], interpolation="nearest")
            full_ax.add_patch(plt.Rectangle((left - 0.5, top - 0.5), side, side, fill=False, edgecolor="white", linewidth=0.8))
            zoom_ax.imshow(pixels[i, top:top + side, left:left + side], interpolation="nearest")
            for ax in (full_ax, zoom_ax):
                ax.set_xticks([])
                ax.set_yticks([])
        axes[r, 0].set_ylabel(name, fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
