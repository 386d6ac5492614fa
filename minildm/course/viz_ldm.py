"""Teaching helpers for notebook 07 (latent diffusion: scale factor, training, pixels vs latents; LDM Sec. 3.2-3.3).

    effective_log_snr        log SNR(t) of a schedule seen by data of standard deviation `data_std`
    plot_effective_snr       those curves for several latent scales
    show_noised_latents      decode z_t for a few t, one row per latent scale (why 1 / std matters)
    plot_loss_curve          a training loss with its running mean
    show_class_grid          samples in a classes x samples grid, judge mistakes framed in red
    plot_cost_bars           train img/s and sampling s/image of several models as bar charts

The library pieces notebook 07 teaches live in the library: `minildm.ldm.latent_diffusion_loss`
(Eq. 2) and the timers `minildm.metrics.train_images_per_second` / `sampling_seconds_per_image`.
Models are loaded by name or folder with `minildm.pretrained.resolve`.
Nothing here is needed to train or sample; the library never imports this module.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from minildm.diffusion import NoiseSchedule, q_sample


def effective_log_snr(schedule: NoiseSchedule, data_std: float) -> torch.Tensor:
    """log SNR(t) = log(data_std^2 alpha_bar_t / (1 - alpha_bar_t)) for t = 0..T-1 (float64, (T,)).

    The schedule is designed for unit-variance data; data of std s sees every SNR multiplied by s^2.
    """
    if data_std <= 0:
        raise ValueError(f"data_std must be > 0, got {data_std}")
    a = schedule.alphas_cumprod
    return (a / (1 - a)).log() + 2 * math.log(data_std)


def plot_effective_snr(schedule: NoiseSchedule, stds: Mapping[str, float], title: str | None = None):
    """log SNR(t) of `schedule` for data of each standard deviation in `stds`, with SNR = 1 marked; returns the Figure."""
    import matplotlib.pyplot as plt

    if not stds:
        raise ValueError("plot_effective_snr needs at least one {name: std} entry, got none")
    fig, ax = plt.subplots(figsize=(7, 3.6))
    steps = torch.arange(schedule.num_timesteps)
    for name, std in stds.items():
        log_snr = effective_log_snr(schedule, std)
        crossing = int((log_snr > 0).sum())  # first t with SNR <= 1
        ax.plot(steps, log_snr, label=f"{name}: SNR = 1 at t = {crossing}")
    ax.axhline(0.0, color="gray", linestyle="--", linewidth=1)
    ax.set(xlabel="t", ylabel="log SNR(t)", title=title or "signal-to-noise ratio the network sees")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


@torch.no_grad()
def show_noised_latents(first_stage: nn.Module, x: torch.Tensor, schedule: NoiseSchedule, timesteps: Sequence[int],
                        scales: Mapping[str, float], generator: torch.Generator | None = None):
    """Noise c * z (z = E(x), one image x (C, H, W)) to z_t at each t and decode z_t / c; one row per scale c.

    The same noise is used in every row, so rows differ only by how loud the signal is relative
    to the noise the schedule adds. Returns the Figure.
    """
    import matplotlib.pyplot as plt

    from minildm.data.transforms import to_image

    if x.ndim != 3:
        raise ValueError(f"show_noised_latents takes one image (C, H, W), got shape {tuple(x.shape)}")
    device, stored = first_stage.scale_factor.device, first_stage.scale_factor
    z = first_stage.encode_latent(x[None].to(device)) / stored  # (C, H, W) -> (1, c, h, w), unscaled
    noise = torch.randn(z.shape, generator=generator).to(device)
    fig, axes = plt.subplots(len(scales), len(timesteps), figsize=(1.05 * len(timesteps), 1.15 * len(scales)),
                             squeeze=False)
    for row, (name, c) in enumerate(scales.items()):
        for col, t in enumerate(timesteps):
            z_t = q_sample(c * z, torch.tensor([t], device=device), noise, schedule)
            image = first_stage.decode_latent(stored * z_t / c).clamp(-1, 1)[0]  # back to the unscaled z_t / c
            ax = axes[row, col]
            ax.imshow(to_image(image), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(f"t = {t}", fontsize=9)
            if col == 0:
                ax.set_ylabel(name.replace(" (", "\n("), fontsize=8)
    fig.tight_layout()
    return fig


def plot_loss_curve(losses: Sequence[float], title: str = "training loss", window: int | None = None):
    """Per-step loss (faint) and its running mean over `window` steps (default len/20), log y axis; returns the Figure."""
    import matplotlib.pyplot as plt

    if len(losses) == 0:
        raise ValueError("plot_loss_curve needs at least one loss value, got none")
    values = torch.as_tensor(list(losses), dtype=torch.float64)
    window = max(1, min(window or len(values) // 20, len(values)))
    smooth = values.unfold(0, window, 1).mean(1)
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.plot(values, alpha=0.3, label="per step")
    ax.plot(range(window - 1, len(values)), smooth, label=f"mean of {window}")
    ax.set(xlabel="training step", ylabel="loss", yscale="log", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def show_class_grid(images: torch.Tensor, labels: torch.Tensor, class_names: Sequence[str],
                    predictions: torch.Tensor | None = None, title: str | None = None, scale: float = 0.65):
    """Samples (B, C, H, W) in [-1, 1] with their asked `labels` (B,): one column per class, one row per sample.

    With `predictions` (a judge's labels, (B,)) every sample the judge reads as another class gets
    a red frame. Returns the Figure.
    """
    import matplotlib.pyplot as plt

    from minildm.data.transforms import to_image

    if images.ndim != 4 or labels.shape != (images.shape[0],):
        raise ValueError(f"expected images (B, C, H, W) and labels (B,), got {tuple(images.shape)} and {tuple(labels.shape)}")
    classes = sorted(set(labels.tolist()))
    columns = {c: (labels == c).nonzero().flatten().tolist() for c in classes}
    rows = max(len(v) for v in columns.values())
    fig, axes = plt.subplots(rows, len(classes), figsize=(scale * len(classes), scale * rows + 0.9), squeeze=False)
    for col, c in enumerate(classes):
        for row in range(rows):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            if row >= len(columns[c]):
                ax.axis("off")
                continue
            i = columns[c][row]
            ax.imshow(to_image(images[i]), interpolation="nearest")
            wrong = predictions is not None and int(predictions[i]) != c
            for spine in ax.spines.values():
                spine.set_edgecolor("red" if wrong else "white")
                spine.set_linewidth(2.5 if wrong else 0.5)
        axes[0, col].set_title(class_names[c].replace(" ", "\n"), fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_cost_bars(results: Mapping[str, Mapping[str, float]], title: str | None = None):
    """Bar charts of {"model": {"train img/s": ..., "sampling s/image": ...}}, one panel per quantity; returns the Figure.

    Each bar is annotated with its value and, after the first, its ratio to the first model's value.
    """
    import textwrap

    import matplotlib.pyplot as plt

    if not results:
        raise ValueError("plot_cost_bars needs at least one model, got none")
    names = list(results)
    quantities = list(results[names[0]])
    fig, axes = plt.subplots(1, len(quantities), figsize=(4.6 * len(quantities), 3.4), squeeze=False)
    colours = [plt.get_cmap("tab10")(i) for i in range(len(names))]
    for ax, quantity in zip(axes[0], quantities):
        values = [results[name][quantity] for name in names]
        bars = ax.bar(range(len(names)), values, color=colours)
        first = values[0]
        ax.bar_label(bars, fontsize=8, labels=[f"{v:.3g}" if i == 0 or not first else f"{v:.3g} ({v / first:.3g}x)"
                                               for i, v in enumerate(values)])
        ax.set_xticks(range(len(names)), [textwrap.fill(name, 18) for name in names], fontsize=8)
        ax.set_title(quantity, fontsize=9)
        ax.margins(y=0.15)
        ax.grid(alpha=0.3, axis="y")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
