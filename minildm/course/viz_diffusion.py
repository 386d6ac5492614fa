"""Teaching helpers for notebooks 05 (DDPM from scratch) and 08 (samplers).

    plot_schedules        beta_t, alpha_bar_t and log-SNR of several NoiseSchedules side by side
    show_forward_process  x_t = q_sample(x_0, t, eps) for a few t, one row per schedule
    TrajectoryRecorder    a sampler callback that keeps x_t, sigma and x0_hat at every step
    show_trajectory       recorded frames as a grid: one row per sample, one column per step
    plot_samples_2d       2-D samples over the data, with their trajectories
    SamplerExplorer       ipywidgets: sampler, steps, eta -> 2-D samples and trajectories

The explorer samples `minildm.diffusion.gaussian_mixture.GaussianMixture` (an exact denoiser: a
"perfectly trained network") and scores samples with `minildm.metrics.sliced_wasserstein`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from minildm.diffusion import NoiseSchedule, q_sample
from minildm.diffusion.gaussian_mixture import GaussianMixture
from minildm.diffusion.denoiser import ve_to_vp
from minildm.diffusion.samplers import SAMPLERS, model_calls
from minildm.metrics import sliced_wasserstein

# ---------------------------------------------------------------- schedules and the forward process


def plot_schedules(schedules: Mapping[str, NoiseSchedule]):
    """Three panels over t: beta_t, alpha_bar_t (signal left in x_t) and log SNR(t); return the Figure.

    SNR(t) = alpha_bar_t / (1 - alpha_bar_t) (Kingma et al. 2021); log SNR = 2 lambda_t of DPM-Solver.
    """
    import matplotlib.pyplot as plt

    if not schedules:
        raise ValueError("plot_schedules needs at least one schedule, e.g. {'linear': NoiseSchedule.from_name('linear')}")
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    for name, schedule in schedules.items():
        t = torch.arange(schedule.num_timesteps)
        axes[0].plot(t, schedule.betas, label=name)
        axes[1].plot(t, schedule.alphas_cumprod, label=name)
        axes[2].plot(t, 2 * schedule.log_snrs, label=name)
    axes[0].set(title=r"$\beta_t$", xlabel="t", yscale="log")
    axes[1].set(title=r"$\bar\alpha_t$: signal left in $x_t$", xlabel="t")
    axes[2].set(title=r"$\log \mathrm{SNR}(t) = \log \bar\alpha_t / (1 - \bar\alpha_t)$", xlabel="t")
    axes[2].axhline(0, color="gray", linewidth=0.8, linestyle=":")
    for ax in axes:
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def show_forward_process(x0: torch.Tensor, schedules: Mapping[str, NoiseSchedule], timesteps: Sequence[int],
                         generator: torch.Generator | None = None, scale: float = 1.1):
    """x_t ~ q(x_t | x_0) of one image (C, H, W) at `timesteps`, one row per schedule, same noise everywhere."""
    import matplotlib.pyplot as plt

    from minildm.data.transforms import to_image

    if x0.ndim != 3:
        raise ValueError(f"show_forward_process expects one image (C, H, W), got shape {tuple(x0.shape)}")
    noise = torch.randn(x0.shape, generator=generator)  # (C, H, W), shared by all panels
    fig, axes = plt.subplots(len(schedules), len(timesteps), squeeze=False,
                             figsize=(scale * len(timesteps), (scale + 0.35) * len(schedules)))
    for row, (name, schedule) in enumerate(schedules.items()):
        t = torch.tensor(list(timesteps))  # (N,)
        batch = x0.expand(len(timesteps), *x0.shape)  # (N, C, H, W)
        x_t = q_sample(batch, t, noise.expand_as(batch), schedule)
        for col, image in enumerate(x_t):
            pixels = to_image(image)  # clamped to [-1, 1] for display
            ax = axes[row, col]
            ax.imshow(pixels[..., 0] if pixels.shape[-1] == 1 else pixels, cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"t={timesteps[col]}\n" + r"$\bar\alpha$=" + f"{float(schedule.alphas_cumprod[timesteps[col]]):.2f}",
                         fontsize=7)
        axes[row, 0].set_ylabel(name, fontsize=9)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- sampler trajectories


class TrajectoryRecorder:
    """A sampler callback that keeps CPU copies of what every step starts from.

    A sampler calls it once per step i with {"step", "sigma", "x", "denoised"} (samplers.py):
    the recorder keeps `steps`, `sigmas`, `x_t` (x in the network's scale, x / sqrt(sigma^2 + 1))
    and `x0_hat` (the denoised estimate at that level). The first x_t is the starting noise; the
    sampler's return value is the last point of the trajectory.
    """

    def __init__(self):
        self.steps: list[int] = []
        self.sigmas: list[float] = []
        self.x_t: list[torch.Tensor] = []
        self.x0_hat: list[torch.Tensor] = []

    def __call__(self, info: dict[str, Any]) -> None:
        self.steps.append(int(info["step"]))
        self.sigmas.append(float(info["sigma"]))
        self.x_t.append(ve_to_vp(info["x"], info["sigma"]).detach().float().cpu().clone())
        self.x0_hat.append(info["denoised"].detach().float().cpu().clone())

    def __len__(self) -> int:
        return len(self.steps)

    def pick(self, count: int) -> list[int]:
        """Indices of `count` recorded steps spread evenly from the first to the last."""
        if not self.steps:
            raise ValueError("nothing recorded yet: pass the recorder as callback= to a sampler first")
        count = max(1, min(count, len(self.steps)))
        if count == 1:
            return [len(self.steps) - 1]
        return sorted({round(i * (len(self.steps) - 1) / (count - 1)) for i in range(count)})


def show_trajectory(frames: Sequence[torch.Tensor], labels: Sequence[str] | None = None, max_samples: int = 4,
                    title: str | None = None, scale: float = 1.0):
    """Frames [(B, C, H, W), ...] in [-1, 1] as a grid: row i follows sample i, column j is frame j."""
    import matplotlib.pyplot as plt

    from minildm.data.transforms import to_image

    if not frames:
        raise ValueError("show_trajectory needs at least one frame (B, C, H, W)")
    if labels is not None and len(labels) != len(frames):
        raise ValueError(f"{len(labels)} labels for {len(frames)} frames; give one label per frame")
    rows = min(max_samples, frames[0].shape[0])
    fig, axes = plt.subplots(rows, len(frames), squeeze=False,
                             figsize=(scale * len(frames), scale * rows + (0.5 if title else 0.2)))
    for col, frame in enumerate(frames):
        pixels = to_image(frame[:rows])  # (rows, H, W, C) uint8
        for row in range(rows):
            ax = axes[row, col]
            image = pixels[row]
            ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=255)
            ax.axis("off")
        if labels is not None:
            axes[0, col].set_title(labels[col], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- 2-D samplers: plots and an interactive explorer


def plot_samples_2d(ax, samples: torch.Tensor, reference: torch.Tensor | None = None,
                    path: torch.Tensor | None = None, title: str = "", limit: float = 2.5, max_points: int = 500) -> None:
    """Draw 2-D samples (N, 2) over reference data (M, 2) in gray, with trajectories (S, K, 2) in orange.

    Only the first `max_points` points of each cloud are drawn (keeps saved notebooks small).
    """
    if samples.ndim != 2 or samples.shape[1] != 2:
        raise ValueError(f"plot_samples_2d draws (N, 2) points, got shape {tuple(samples.shape)}")
    if reference is not None:
        ax.scatter(*reference[:max_points].T, s=3, color="lightgray", label="data")
    ax.scatter(*samples[:max_points].T, s=3, color="tab:blue", label="samples")
    if path is not None:
        for k in range(path.shape[1]):
            ax.plot(path[:, k, 0], path[:, k, 1], color="tab:orange", linewidth=0.8, marker=".", markersize=3)
        ax.plot([], [], color="tab:orange", marker=".", label=r"trajectories $x_T \to x_0$")
    ax.set_title(title, fontsize=9)
    ax.set(xlim=(-limit, limit), ylim=(-limit, limit), aspect="equal")
    ax.set_xticks([])
    ax.set_yticks([])



def takes_eta(sampler: str) -> bool:
    """Whether `sampler` has an `eta` option (0 = deterministic, 1 = DDPM-like fresh noise), from SAMPLERS."""
    return "eta" in SAMPLERS[sampler].options


class SamplerExplorer:
    """An ipywidgets explorer for 2-D samplers: choose the sampler, number of steps, eta and Karras sigmas.

    `explorer.widget` holds the controls and the plot; every change calls `update()`, which draws
    the samples over the true distribution plus a few trajectories x_T -> x_0. Call `update()`
    once after displaying the widget: that also works headless (nbval, nbclient).
    """

    def __init__(self, mixture: GaussianMixture, schedule: NoiseSchedule, n: int = 500,
                 samplers: Sequence[str] | None = None, steps: int = 10, eta: float = 0.0,
                 num_trajectories: int = 12, seed: int = 0):
        import ipywidgets as widgets

        from minildm.diffusion import SAMPLER_NAMES

        if mixture.event_shape != (2,):
            raise ValueError(f"SamplerExplorer draws 2-D points; the mixture's samples have shape {mixture.event_shape}")
        self.mixture, self.schedule, self.n, self.seed = mixture, schedule, n, seed
        self.num_trajectories = num_trajectories
        self.reference = mixture.sample(n, torch.Generator().manual_seed(seed + 1))  # (n, 2)
        self.sampler = widgets.Dropdown(options=list(samplers or SAMPLER_NAMES), value="ddim", description="sampler")
        self.steps = widgets.IntSlider(value=steps, min=1, max=50, description="steps", continuous_update=False)
        self.eta = widgets.FloatSlider(value=eta, min=0.0, max=1.0, step=0.1, description="eta", continuous_update=False)
        self.karras = widgets.Checkbox(value=False, description="Karras sigmas")
        self.output = widgets.Output()
        for control in (self.sampler, self.steps, self.eta, self.karras):
            control.observe(self.update, names="value")
        self.widget = widgets.VBox([widgets.HBox([self.sampler, self.steps]), widgets.HBox([self.eta, self.karras]),
                                    self.output])

    def run(self, sampler: str, steps: int, eta: float = 0.0, karras: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Samples (n, 2) and trajectories (steps + 1, num_trajectories, 2) in the network's (VP) scale."""
        from minildm.diffusion import sample

        recorder = TrajectoryRecorder()
        generator = torch.Generator().manual_seed(self.seed)
        options: dict[str, Any] = {"eta": eta} if takes_eta(sampler) else {}
        noise = torch.randn(self.n, 2, generator=generator)
        samples = sample(self.mixture.model_fn(self.schedule), (self.n, 2), sampler, steps, schedule=self.schedule,
                         karras=karras, noise=noise, generator=generator, callback=recorder, progress=False, **options)
        path = torch.stack([x[: self.num_trajectories] for x in recorder.x_t + [samples]])  # x_T, ..., x_0
        return samples, path

    def update(self, *_: Any):
        """Redraw for the current control values (also the widgets' change handler); return the Figure."""
        import matplotlib.pyplot as plt
        from IPython.display import clear_output, display

        sampler, steps, eta, karras = self.sampler.value, self.steps.value, self.eta.value, self.karras.value
        self.eta.disabled = not takes_eta(sampler)
        samples, path = self.run(sampler, steps, eta, karras)
        distance = sliced_wasserstein(samples, self.reference, generator=torch.Generator().manual_seed(0))
        eta_text = f", eta {eta:.1f}" if takes_eta(sampler) else ""
        title = (f"{sampler}{eta_text}, {steps} steps ({model_calls(sampler, steps)} model calls)"
                 f"{', Karras' if karras else ''}\nsliced W2 to the data: {distance:.3f}")
        fig, ax = plt.subplots(figsize=(5.2, 5.2))
        plot_samples_2d(ax, samples, self.reference, path, title)
        ax.legend(loc="upper right", fontsize=7)
        with self.output:
            clear_output(wait=True)
            display(fig)
        plt.close(fig)
        return fig
