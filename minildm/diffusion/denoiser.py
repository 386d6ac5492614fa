"""The one convention every sampler uses: a denoiser D(x, sigma) -> x0_hat, with time in sigma.

Following Karras et al. 2022 (and k-diffusion), samplers see the noisy sample in the
"variance-exploding" scale

    x = x_t / sqrt(alpha_bar_t) = x_0 + sigma eps,      sigma = sqrt((1 - alpha_bar_t) / alpha_bar_t),

so that every sampler is a rule for moving x from one sigma to a smaller one given the
denoised estimate D(x, sigma) ~ E[x_0 | x]. The network itself was trained on the
variance-preserving x_t = sqrt(alpha_bar) x_0 + sqrt(1 - alpha_bar) eps at integer timesteps
t and predicts eps, x0 or v; `make_denoiser` bridges the two:

    x_t = x / sqrt(sigma^2 + 1),   t = schedule.sigma_to_t(sigma),   x0_hat = from the network output.
"""

from __future__ import annotations

from typing import Callable

import torch

from minildm.diffusion.objectives import check_objective, x0_from_output
from minildm.diffusion.schedules import INTERPOLATIONS, NoiseSchedule

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""A network as samplers call it: model_fn(x_t (B, ...), t (B,) float timesteps) -> eps, x0 or v."""

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""D(x (B, ...) in the sigma scale, sigma (B,)) -> x0_hat (B, ...)."""


def vp_to_ve(x_t: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
    """x = x_t * sqrt(sigma^2 + 1): from the network's scale to the samplers' sigma scale."""
    return x_t * (torch.as_tensor(sigma, dtype=x_t.dtype, device=x_t.device) ** 2 + 1).sqrt()


def ve_to_vp(x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
    """x_t = x / sqrt(sigma^2 + 1): from the samplers' sigma scale back to the network's scale."""
    return x / (torch.as_tensor(sigma, dtype=x.dtype, device=x.device) ** 2 + 1).sqrt()


def make_denoiser(
    model_fn: ModelFn, schedule: NoiseSchedule, objective: str = "eps", quantize: bool = False,
    interpolation: str = "log",
) -> Denoiser:
    """Wrap a network predicting `objective` (eps, x0 or v) into a denoiser D(x, sigma) -> x0_hat.

    The network gets the timestep t = schedule.sigma_to_t(sigma, interpolation), fractional
    between training steps. `quantize=True` rounds it to the nearest integer (what a network
    trained on integer t expects when Karras sigmas fall between training steps; diffusers'
    DPM-Solver does this, its Euler schedulers do not).
    """
    check_objective(objective)
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {interpolation!r}; valid values: {', '.join(INTERPOLATIONS)}")

    def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, device=x.device).to(x.dtype).expand(x.shape[0])  # (B,)
        t = schedule.sigma_to_t(sigma, interpolation)
        t = (t.round() if quantize else t).to(x.dtype)
        sigma_b = sigma.view(-1, *([1] * (x.ndim - 1)))  # (B,) -> (B, 1, ..., 1)
        alpha_bar = 1 / (sigma_b**2 + 1)
        x_t = x * alpha_bar.sqrt()  # the network's variance-preserving input
        output = model_fn(x_t, t)
        if output.shape != x.shape:
            raise ValueError(f"model_fn returned shape {tuple(output.shape)}, expected {tuple(x.shape)}")
        return x0_from_output(x_t, alpha_bar, output, objective)

    return denoise
