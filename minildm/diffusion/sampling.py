"""`sample`: one entry point from a trained network to samples, dispatching to a sampler by name."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from minildm.diffusion import samplers
from minildm.diffusion.denoiser import ModelFn, make_denoiser, ve_to_vp, vp_to_ve
from minildm.diffusion.samplers import Callback
from minildm.diffusion.schedules import NoiseSchedule
from minildm.diffusion.spacing import sampling_sigmas
from minildm.utils import randn

SAMPLERS = {
    "ddpm": samplers.ddpm,
    "ddim": samplers.ddim,
    "plms": samplers.plms,
    "dpmpp_2m": samplers.dpmpp_2m,
    "euler": samplers.euler,
    "euler_ancestral": samplers.euler_ancestral,
    "heun": samplers.heun,
}
SAMPLER_NAMES = tuple(SAMPLERS)


def get_sampler(name: str) -> Callable[..., torch.Tensor]:
    """The sampler function called `name`; ValueError listing SAMPLER_NAMES otherwise."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; valid samplers: {', '.join(SAMPLER_NAMES)}")
    return SAMPLERS[name]


@torch.no_grad()
def sample(
    model_fn: ModelFn,
    shape: Sequence[int],
    sampler: str = "dpmpp_2m",
    steps: int = 20,
    *,
    schedule: NoiseSchedule,
    objective: str = "eps",
    spacing: str = "trailing",
    steps_offset: int = 0,
    karras: bool = False,
    rho: float = 7.0,
    final_sigma: str = "zero",
    quantize: bool = False,
    generator: torch.Generator | None = None,
    noise: torch.Tensor | None = None,
    callback: Callback | None = None,
    disable: bool = False,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    **sampler_options: Any,
) -> torch.Tensor:
    """Draw samples of `shape` (B, C, H, W) from a network `model_fn(x_t, t) -> eps | x0 | v`.

    sampler: one of SAMPLER_NAMES; steps: number of steps (model calls: see samplers.model_calls).
    schedule: the NoiseSchedule the network was trained with; objective: what it predicts.
    spacing / steps_offset / karras / rho / final_sigma: which noise levels to visit
    (spacing.sampling_sigmas); quantize: round the network's timestep (make_denoiser).
    noise: the starting standard-normal x_T (drawn from `generator` when None); `generator`
    also draws the fresh noise of ddpm / ancestral samplers. Extra keyword options go to
    the sampler (e.g. eta for ddim and euler_ancestral). The result is in the network's
    (variance-preserving) scale, on `device` and in `dtype` (defaults: those of `noise`, else
    CPU and float32).
    """
    sampler_fn = get_sampler(sampler)
    if noise is not None:
        if tuple(noise.shape) != tuple(shape):
            raise ValueError(f"noise has shape {tuple(noise.shape)}, expected {tuple(shape)}")
        device = noise.device if device is None else torch.device(device)
        dtype = noise.dtype if dtype is None else dtype
        noise = noise.to(dtype=dtype).to(device)
    else:
        device = torch.device("cpu") if device is None else torch.device(device)
        dtype = torch.float32 if dtype is None else dtype
        noise = randn(shape, generator, device=device, dtype=dtype)
    sigmas = sampling_sigmas(schedule, steps, spacing, steps_offset, karras, rho, final_sigma)
    sigmas = sigmas.to(dtype).to(device)  # cast on the CPU first: MPS has no float64
    denoise = make_denoiser(model_fn, schedule, objective, quantize)
    x = vp_to_ve(noise, sigmas[0])  # x_T ~ N(0, I) in the network's scale -> sigma scale
    x = sampler_fn(denoise, x, sigmas, generator=generator, callback=callback, disable=disable, **sampler_options)
    return ve_to_vp(x, sigmas[-1])
