"""Which noise levels a sampler visits: timestep spacing and Karras sigmas, shared by all samplers.

A sampler with n steps walks down a grid of n + 1 noise levels sigma_0 > sigma_1 > ... > sigma_n
(sigma = sqrt((1 - alpha_bar) / alpha_bar), see schedules.py). The model is evaluated at the
first n; the last is where the sampler ends: 0 (a clean sample) or the smallest training
sigma ("sigma_min", what diffusers' DDIM calls set_alpha_to_one=False).

Timestep spacings (Lin et al. 2023, "Common Diffusion Noise Schedules and Sample Steps are
Flawed", Table 2), for T training steps, newest first:
    leading              arange(n) * (T // n), reversed, + steps_offset   (Stable Diffusion: offset 1 -> 801, 601, ...)
    trailing             round(arange(T, 0, -T / n)) - 1                  (starts at t = T - 1: pure noise)
    linspace             round(linspace(0, T - 1, n)), reversed
    linspace_fractional  linspace(0, T - 1, n), reversed, NOT rounded     (diffusers' Euler, Euler ancestral, Heun)
    leading_skip_last    leading over n + 1 points, the last dropped      (diffusers' DPM-Solver:
    linspace_skip_last   linspace over n + 1 points, the last dropped      999, 949, ..., 50 for n = 20)
The "_skip_last" grids never call the network at t = 0. A fractional timestep's sigma is read
from the table by `interpolation` (NoiseSchedule.t_to_sigma): "log" (log sigma linear in t,
minildm's default) or "linear" (sigma linear in t, as diffusers reads its fractional timesteps).

Karras et al. 2022 (Eq. 5) instead space sigmas so that sigma^(1/rho) is uniform, rho = 7,
between the schedule's smallest and largest sigma (karras_range="schedule"), or between those
of the spaced timesteps (karras_range="spaced", diffusers' Euler and Heun).
"""

from __future__ import annotations

import numpy as np
import torch

from minildm.diffusion.schedules import NoiseSchedule

SPACINGS = ("leading", "trailing", "linspace", "linspace_fractional", "leading_skip_last", "linspace_skip_last")
FINAL_SIGMAS = ("zero", "sigma_min")
KARRAS_RANGES = ("schedule", "spaced")


def spaced_timesteps(
    steps: int, num_timesteps: int = 1000, spacing: str = "trailing", steps_offset: int = 0
) -> torch.Tensor:
    """`steps` timesteps in [0, T-1], descending, spaced by `spacing` (see module docstring).

    Integer (int64) for every spacing but "linspace_fractional", which returns float64.
    """
    if spacing not in SPACINGS:
        raise ValueError(f"unknown timestep spacing {spacing!r}; valid spacings: {', '.join(SPACINGS)}")
    if not 1 <= steps <= num_timesteps:
        raise ValueError(f"steps must lie in [1, {num_timesteps}], got {steps}")
    if spacing.endswith("_skip_last"):
        return spaced_timesteps(steps + 1, num_timesteps, spacing.removesuffix("_skip_last"), steps_offset)[:-1]
    if spacing == "linspace_fractional":
        # float32 as diffusers computes it, so that both sides read the same table positions
        return torch.from_numpy(np.linspace(0, num_timesteps - 1, steps, dtype=np.float32)[::-1].astype(np.float64))
    if spacing == "leading":
        timesteps = np.arange(steps)[::-1] * (num_timesteps // steps) + steps_offset
    elif spacing == "trailing":
        timesteps = np.round(np.arange(num_timesteps, 0, -num_timesteps / steps)).astype(np.int64) - 1
    else:
        timesteps = np.linspace(0, num_timesteps - 1, steps).round()[::-1]
    timesteps = torch.from_numpy(timesteps.astype(np.int64).copy())
    if int(timesteps.max()) >= num_timesteps or int(timesteps.min()) < 0:
        raise ValueError(f"steps_offset {steps_offset} moves timesteps outside [0, {num_timesteps - 1}]")
    return timesteps


def karras_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """Karras et al. 2022, Eq. 5: sigma_i = (sigma_max^(1/rho) + i/(n-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho.

    Returns `steps` sigmas from sigma_max down to sigma_min (float64), without a final 0.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    max_inv_rho, min_inv_rho = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    return (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho


def sampling_sigmas(
    schedule: NoiseSchedule,
    steps: int,
    spacing: str = "trailing",
    steps_offset: int = 0,
    karras: bool = False,
    rho: float = 7.0,
    final_sigma: str = "zero",
    karras_range: str = "schedule",
    interpolation: str = "log",
) -> torch.Tensor:
    """The n + 1 noise levels (float64, descending) that an n-step sampler visits.

    Without `karras` the first n are the training sigmas at `spaced_timesteps` (read with
    `interpolation` where a timestep is fractional); with `karras` they follow Eq. 5 of Karras
    et al. 2022 between the smallest and largest sigma of the schedule (karras_range="schedule";
    `spacing` is then unused) or of the spaced timesteps (karras_range="spaced"). The last level
    is 0 (final_sigma="zero") or the smallest training sigma (final_sigma="sigma_min").
    """
    if final_sigma not in FINAL_SIGMAS:
        raise ValueError(f"unknown final_sigma {final_sigma!r}; valid values: {', '.join(FINAL_SIGMAS)}")
    if karras_range not in KARRAS_RANGES:
        raise ValueError(f"unknown karras_range {karras_range!r}; valid values: {', '.join(KARRAS_RANGES)}")
    if karras and karras_range == "schedule":
        sigmas = karras_sigmas(steps, float(schedule.sigmas[0]), float(schedule.sigmas[-1]), rho)
    else:
        timesteps = spaced_timesteps(steps, schedule.num_timesteps, spacing, steps_offset)
        if timesteps.is_floating_point():
            sigmas = schedule.t_to_sigma(timesteps, interpolation)
        else:
            sigmas = schedule.sigmas[timesteps]
        if karras:
            sigmas = karras_sigmas(steps, float(sigmas.min()), float(sigmas.max()), rho)
    last = torch.zeros(1, dtype=torch.float64) if final_sigma == "zero" else schedule.sigmas[:1]
    return torch.cat([sigmas, last])
