"""Plotting the first stage's compression trade-off (notebook 04; LDM Sec. 3.1, 4.1, Tab. 8).

    plot_tradeoff         PSNR or LPIPS against latent numbers per image, one line per dataset and kind
    images_to_png / png_to_images   a row of images <-> base64 PNG text (stored in the benchmark's JSON)

The numbers come from the library: `minildm.metrics.evaluate_autoencoder` (PSNR, SSIM, LPIPS,
codebook statistics, latent size, speed), `minildm.metrics.compression_ratio`, `minildm.metrics.unet_flops`
and `minildm.autoencoder.latent_shape`; `benchmarks/stage1.py` (the course's version of paper
Tab. 8) measures with the same function, so the notebook and the benchmark report the same numbers.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from typing import Any

import torch


def plot_tradeoff(rows: Sequence[Mapping[str, Any]], metric: str = "psnr_db", ax=None, title: str | None = None):
    """Plot `metric` ("psnr_db", "ssim" or "lpips") against latent numbers per image (log x axis).

    `rows` are dicts with "dataset", "kind" ("kl"/"vq"), "f", "latent_numbers" and the metric,
    as in benchmarks/results/stage1.json; one line per (dataset, kind), each point labelled f.
    Returns the Axes.
    """
    import matplotlib.pyplot as plt

    accepted = ("psnr_db", "ssim", "lpips")
    if metric not in accepted:
        raise ValueError(f"unknown metric {metric!r}; accepted: {accepted}")
    usable = [r for r in rows if r.get(metric) is not None]
    if not usable:
        raise ValueError(f"no row has a value for {metric!r}; rows need keys dataset, kind, f, latent_numbers, {metric}")
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.6))
    styles = {"kl": ("tab:blue", "o", "-"), "vq": ("tab:orange", "s", "--")}
    datasets = sorted({r["dataset"] for r in usable})
    for dataset_index, dataset in enumerate(datasets):
        for kind in sorted({r["kind"] for r in usable if r["dataset"] == dataset}):
            line = sorted((r for r in usable if r["dataset"] == dataset and r["kind"] == kind),
                          key=lambda r: r["latent_numbers"])
            color, marker, style = styles.get(kind, ("gray", "^", ":"))
            ax.plot([r["latent_numbers"] for r in line], [r[metric] for r in line], color=color, marker=marker,
                    linestyle=style, alpha=1.0 if dataset_index == 0 else 0.55,
                    markerfacecolor=color if dataset_index == 0 else "white", label=f"{dataset} {kind.upper()}")
            for r in line:
                ax.annotate(f"f{r['f']}", (r["latent_numbers"], r[metric]), textcoords="offset points",
                            xytext=(4, 4), fontsize=7)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("latent numbers per image (c*h*w)")
    ax.set_ylabel({"psnr_db": "PSNR (dB, higher is better)", "ssim": "SSIM (higher is better)",
                   "lpips": "LPIPS (lower is better)"}[metric])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def images_to_png(images: torch.Tensor) -> str:
    """Images (B, C, H, W) in [-1, 1], C = 1 or 3, as ONE base64 PNG: a row of B images, 8 bits per channel."""
    from PIL import Image

    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be (B, 1 or 3, H, W), got shape {tuple(images.shape)}")
    row = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)  # (B, C, H, W)
    row = row.permute(2, 0, 3, 1).reshape(images.shape[2], -1, images.shape[1])  # (H, B*W, C)
    picture = Image.fromarray(row.squeeze(-1).numpy() if images.shape[1] == 1 else row.numpy())
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def png_to_images(text: str, count: int) -> torch.Tensor:
    """Inverse of `images_to_png`: base64 PNG text of a row of `count` equal-width images -> (count, C, H, W) in [-1, 1]."""
    import numpy as np
    from PIL import Image

    array = np.asarray(Image.open(io.BytesIO(base64.b64decode(text))))  # (H, count*W) or (H, count*W, 3)
    if array.ndim == 2:
        array = array[:, :, None]
    height, width, channels = array.shape
    if count < 1 or width % count:
        raise ValueError(f"a PNG {width} pixels wide does not hold {count} images of equal width")
    images = torch.from_numpy(array.copy()).reshape(height, count, width // count, channels).permute(1, 3, 0, 2)
    return images.float() / 127.5 - 1
