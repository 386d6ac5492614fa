"""Teaching plots for the first-stage notebooks (01 autoencoders and VAE, 02 vector quantization).

    plot_latent_histograms   latent values of several autoencoders against N(0, 1) (LDM App. G)
    plot_training_curves     logged quantities (loss, KL, perplexity, ...) of one or more runs vs step
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch


def plot_latent_histograms(latents: Mapping[str, torch.Tensor], bins: int = 60, limit: float | None = None,
                           title: str | None = None):
    """Histogram the elements of each latent tensor, one panel per name, with the N(0, 1) density on top.

    `latents` maps a model name to its latents (any shape, e.g. (B, c, h, w)); each panel's
    legend gives the mean and standard deviation, the numbers the scale factor 1 / std of
    LDM App. G is made of. `limit` fixes the x range to [-limit, limit] (default: 4 stds of
    the widest latent). Returns the Figure.
    """
    if not latents:
        raise ValueError("plot_latent_histograms needs at least one latent tensor, got an empty mapping")
    values = {name: z.detach().float().cpu().flatten().numpy() for name, z in latents.items()}
    if limit is None:
        limit = 4.0 * max(max(float(v.std()), 1.0) for v in values.values())
    fig, axes = plt.subplots(1, len(values), figsize=(4.2 * len(values), 3.2), squeeze=False)
    grid = np.linspace(-limit, limit, 400)
    gaussian = np.exp(-0.5 * grid**2) / math.sqrt(2 * math.pi)  # N(0, 1) density
    for ax, (name, v) in zip(axes[0], values.items()):
        ax.hist(np.clip(v, -limit, limit), bins=bins, range=(-limit, limit), density=True, color="tab:blue",
                alpha=0.7, label=f"mean {v.mean():+.2f}, std {v.std():.2f}")
        ax.plot(grid, gaussian, color="black", linewidth=1.2, label="N(0, 1)")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("latent value")
        ax.legend(fontsize=8, loc="upper right")
    axes[0, 0].set_ylabel("density")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_training_curves(histories: Mapping[str, Sequence[Mapping[str, Any]]], keys: Sequence[str],
                         logy: Sequence[str] = (), title: str | None = None):
    """Plot logged values against `step`, one panel per key in `keys`, one line per run in `histories`.

    `histories` maps a run name to its log (a list of dicts with a "step" entry, as
    `Trainer.history` returns). Keys a run did not log are skipped for that run; a key no run
    logged raises ValueError naming the keys that exist. Keys in `logy` get a log y axis.
    Returns the Figure.
    """
    if not keys:
        raise ValueError("plot_training_curves needs at least one key to plot, got none")
    logged = {k for history in histories.values() for row in history for k in row}
    missing = [k for k in keys if k not in logged]
    if missing:
        raise ValueError(f"no run logged {missing}; logged keys are {sorted(logged)}")
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.0), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for name, history in histories.items():
            rows = [row for row in history if key in row and "step" in row]
            if rows:
                ax.plot([row["step"] for row in rows], [row[key] for row in rows], label=name)
        if key in logy:
            ax.set_yscale("log")
        ax.set_title(key, fontsize=10)
        ax.set_xlabel("step")
        if len(histories) > 1:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
