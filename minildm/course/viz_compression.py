"""Plotting the first stage's compression trade-off (notebook 04; LDM Sec. 3.1, 4.1, Tab. 8).

    plot_tradeoff         PSNR or LPIPS against latent numbers per image, one line per dataset and kind

The numbers come from the library: `minildm.metrics.evaluate_autoencoder` (PSNR, SSIM, LPIPS,
codebook statistics, latent size, speed), `minildm.metrics.compression_ratio`, `minildm.metrics.unet_flops`
and `minildm.autoencoder.latent_shape`; `benchmarks/stage1.py` (the course's version of paper
Tab. 8) measures with the same function, so the notebook and the benchmark report the same numbers;
its example reconstructions travel as PNG text (`minildm.data.images_to_png` / `png_to_images`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


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
