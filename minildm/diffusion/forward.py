"""The forward (noising) process q(x_t | x_0) in closed form."""

from __future__ import annotations

import torch

from minildm.diffusion.schedules import NoiseSchedule


def q_sample(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, schedule: NoiseSchedule) -> torch.Tensor:
    """Sample x_t ~ q(x_t | x_0) by reparameterisation (Ho et al. 2020, Eq. 4; LDM paper Sec. 3.1).

        x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps,     eps ~ N(0, I)

    x0, noise: (B, ...) of the same shape; t: (B,) integer timesteps in [0, T-1].
    """
    if noise.shape != x0.shape:
        raise ValueError(f"noise must have the shape of x0 {tuple(x0.shape)}, got {tuple(noise.shape)}")
    alpha_bar = schedule.at(t, x0)  # (B, 1, ..., 1)
    return alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * noise
