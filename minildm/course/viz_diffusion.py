"""Teaching helpers for notebooks 05 (DDPM from scratch) and 08 (samplers).

    plot_schedules        beta_t, alpha_bar_t and log-SNR of several NoiseSchedules side by side
    show_forward_process  x_t = q_sample(x_0, t, eps) for a few t, one row per schedule
    TrajectoryRecorder    a sampler callback that keeps x_t, sigma and x0_hat at every step
    show_trajectory       recorded frames as a grid: one row per sample, one column per step
    GaussianMixture       a distribution whose ideal denoiser E[x_0 | x] is known in closed form,
                          usable as a "perfectly trained network" by minildm.diffusion.sample
    sliced_wasserstein    distance between two point clouds (how good are 2-D samples?)
    nearest_distance      RMS distance of each sample to its nearest data point
    plot_samples_2d       2-D samples over the data, with their trajectories
    SamplerExplorer       ipywidgets: sampler, steps, eta -> 2-D samples and trajectories

The closed-form denoiser (notebook 08) separates the sampler's error from the network's:
with an exact D(x, sigma) every difference between samplers is discretisation error of the
reverse process, so quality-vs-steps curves measure the samplers alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from minildm.diffusion import NoiseSchedule, q_sample
from minildm.diffusion.denoiser import ve_to_vp
from minildm.diffusion.samplers import SAMPLERS, model_calls

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


# ---------------------------------------------------------------- a distribution with an exact denoiser


class GaussianMixture:
    """p(x_0) = sum_k w_k N(mu_k, s_k^2 I), with its exact denoiser (the ideal network).

    Noising x = x_0 + sigma eps keeps it a mixture, p(x) = sum_k w_k N(mu_k, (s_k^2 + sigma^2) I),
    and the minimum-MSE denoiser (Tweedie's formula; Karras et al. 2022, Sec. 2) is
        D(x, sigma) = E[x_0 | x] = sum_k r_k(x) (mu_k + s_k^2 / (s_k^2 + sigma^2) (x - mu_k)),
        r_k(x) = w_k N(x; mu_k, (s_k^2 + sigma^2) I) / p(x)            (responsibilities).
    With every s_k = 0 the mixture is a finite data set and D is the denoiser that a network
    trained to zero loss on it would learn: its samples are training points (memorisation).

    Args:
        means: (K, ...) component means; each sample has shape means.shape[1:].
        stds: the components' standard deviation(s) s_k, a number or (K,) (0 = a point mass).
        weights: (K,) mixture weights (normalised here); uniform when None.
    """

    def __init__(self, means: torch.Tensor, stds: float | torch.Tensor = 0.0, weights: torch.Tensor | None = None):
        means = torch.as_tensor(means, dtype=torch.float64)
        if means.ndim < 2:
            raise ValueError(f"means must have shape (K, ...) with one row per component, got {tuple(means.shape)}")
        k = means.shape[0]
        stds = torch.as_tensor(stds, dtype=torch.float64).expand(k).clone()
        if bool((stds < 0).any()):
            raise ValueError("stds must be >= 0")
        weights = torch.ones(k, dtype=torch.float64) if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        if weights.shape != (k,) or bool((weights <= 0).any()):
            raise ValueError(f"weights must be {k} positive numbers (one per component), got shape {tuple(weights.shape)}")
        self.event_shape = tuple(means.shape[1:])
        self.means = means.reshape(k, -1)  # (K, D)
        self.stds = stds  # (K,)
        self.weights = weights / weights.sum()  # (K,)

    @classmethod
    def ring(cls, num_components: int = 8, radius: float = 1.0, std: float = 0.1) -> GaussianMixture:
        """`num_components` equal 2-D Gaussians evenly spaced on a circle (a classic toy target)."""
        angles = torch.arange(num_components, dtype=torch.float64) * 2 * math.pi / num_components
        return cls(radius * torch.stack([angles.cos(), angles.sin()], dim=1), std)

    @property
    def dim(self) -> int:
        """Number of coordinates D of one sample."""
        return self.means.shape[1]

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n exact samples (n, ...) as float32."""
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)  # (n,)
        noise = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        x = self.means[k] + self.stds[k, None] * noise  # (n, D)
        return x.reshape(n, *self.event_shape).float()

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """E[x_0 | x] for x = x_0 + sigma eps: (B, ...) and sigma > 0 (a number or (B,)) -> (B, ...)."""
        b = x.shape[0]
        xf = x.detach().reshape(b, -1).to(torch.float64).cpu()  # (B, D)
        if xf.shape[1] != self.dim:
            raise ValueError(f"samples have {xf.shape[1]} coordinates, the mixture has {self.dim}")
        sigma = torch.as_tensor(sigma, dtype=torch.float64).detach().cpu().expand(b)[:, None]  # (B, 1)
        var = self.stds[None] ** 2 + sigma**2  # (B, K): variance of each noisy component
        sq_dist = torch.cdist(xf, self.means).pow(2)  # (B, K)
        log_r = self.weights.log()[None] - 0.5 * self.dim * var.log() - sq_dist / (2 * var)
        r = torch.softmax(log_r, dim=1)  # (B, K) responsibilities
        shrink = self.stds[None] ** 2 / var  # (B, K): how far each component's posterior mean follows x
        x0 = r @ self.means + (r * shrink).sum(1, keepdim=True) * xf - (r * shrink) @ self.means  # (B, D)
        return x0.reshape(x.shape).to(dtype=x.dtype, device=x.device)

    def model_fn(self, schedule: NoiseSchedule, objective: str = "eps"):
        """The ideal network for `schedule`: model_fn(x_t, t) -> eps (or x0) for minildm.diffusion.sample.

        Converts the variance-preserving x_t at (continuous) timestep t to the sigma scale,
        x = x_t sqrt(sigma^2 + 1), and returns eps = (x - D(x, sigma)) / sigma or D itself.
        """
        if objective not in ("eps", "x0"):
            raise ValueError(f"GaussianMixture.model_fn supports objective 'eps' or 'x0', got {objective!r}")

        def fn(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            t = torch.as_tensor(t).expand(x_t.shape[0])  # (B,)
            sigma = schedule.t_to_sigma(t).cpu()  # (B,) float64
            sigma_b = sigma.view(-1, *([1] * (x_t.ndim - 1))).to(x_t.device)
            x = x_t.double() * (sigma_b**2 + 1).sqrt()  # VP -> sigma scale
            x0 = self.denoise(x, sigma)
            out = (x - x0) / sigma_b if objective == "eps" else x0
            return out.to(x_t.dtype)

        return fn


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, num_projections: int = 256,
                       generator: torch.Generator | None = None) -> float:
    """Sliced Wasserstein-2 distance between two equal-size point clouds a, b: (N, D).

    SW_2^2 = E_u [W_2^2 of the 1-D projections <a, u> and <b, u>], u uniform on the sphere;
    in 1-D, W_2 matches sorted values. 0 for identical clouds; grows with any difference.
    """
    if a.ndim != 2 or b.shape != a.shape:
        raise ValueError(f"sliced_wasserstein needs two (N, D) tensors of equal shape, got {tuple(a.shape)}, {tuple(b.shape)}")
    directions = torch.randn(a.shape[1], num_projections, generator=generator, dtype=torch.float64)
    directions = directions / directions.norm(dim=0, keepdim=True)  # (D, P) unit vectors
    pa = (a.double().cpu() @ directions).sort(dim=0).values  # (N, P)
    pb = (b.double().cpu() @ directions).sort(dim=0).values
    return float((pa - pb).pow(2).mean().sqrt())


def nearest_distance(samples: torch.Tensor, data: torch.Tensor) -> torch.Tensor:
    """RMS distance (per coordinate) from each sample (B, ...) to its nearest data point (N, ...) -> (B,)."""
    s = samples.detach().reshape(samples.shape[0], -1).double().cpu()  # (B, D)
    d = data.detach().reshape(data.shape[0], -1).double().cpu()  # (N, D)
    if s.shape[1] != d.shape[1]:
        raise ValueError(f"samples have {s.shape[1]} coordinates, data points {d.shape[1]}")
    return torch.cdist(s, d).min(dim=1).values / math.sqrt(s.shape[1])


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
                         karras=karras, noise=noise, generator=generator, callback=recorder, disable=True, **options)
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
