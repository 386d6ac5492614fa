"""`sample`: one entry point from a trained network to samples, dispatching to a sampler by name."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from minildm.diffusion.denoiser import ModelFn, make_denoiser, ve_to_vp, vp_to_ve
from minildm.diffusion.samplers import SAMPLERS, Callback, get_sampler
from minildm.diffusion.schedules import NoiseSchedule
from minildm.diffusion.spacing import sampling_sigmas
from minildm.utils import randn

START_NOISE = ("vp", "sigma")
"""How the standard-normal `noise` becomes the starting sample x at sigma_max (see `sample`)."""


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
    karras_range: str = "schedule",
    rho: float = 7.0,
    final_sigma: str = "zero",
    interpolation: str = "log",
    quantize: bool = False,
    start_noise: str = "vp",
    generator: torch.Generator | None = None,
    noise: torch.Tensor | None = None,
    callback: Callback | None = None,
    progress: bool = True,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    **sampler_options: Any,
) -> torch.Tensor:
    """Draw samples of `shape` (B, C, H, W) from a network `model_fn(x_t, t) -> eps | x0 | v`.

    sampler: one of SAMPLER_NAMES; steps: number of steps (model calls: SAMPLERS[sampler].nfe).
    schedule: the NoiseSchedule the network was trained with; objective: what it predicts.
    Which noise levels to visit (spacing.sampling_sigmas): spacing, steps_offset, karras,
    karras_range, rho, final_sigma, and interpolation (how a fractional timestep reads the
    schedule, both for the grid and for the t handed to the network); quantize: round that t.
    noise: the starting standard-normal tensor (drawn from `generator` when None). start_noise
    says how it becomes the starting sample: "vp" treats it as x_T in the network's
    variance-preserving scale (x = noise * sqrt(sigma_max^2 + 1)); "sigma" scales it by sigma_max
    alone (x = noise * sigma_max: k-diffusion, and diffusers' Euler-type schedulers with linspace or
    trailing spacing). `generator` also draws the fresh noise of the stochastic samplers (the
    ones whose SAMPLERS entry lists "generator"). Extra keyword options go to the sampler (e.g.
    eta for ddim and euler_ancestral: SAMPLERS[sampler].options). The result is in the network's
    (variance-preserving) scale, on `device` and in `dtype` (defaults: those of `noise`, else CPU
    and float32). minildm.diffusion.diffusers_options gives the settings that reproduce a
    diffusers scheduler.
    """
    spec = get_sampler(sampler)
    unknown = [name for name in sampler_options if name not in spec.options]
    if unknown:
        takes = ", ".join(o for o in spec.options if o != "generator") or "none"
        where = {o: [n for n, s in SAMPLERS.items() if o in s.options] for o in unknown}
        hints = "".join(f"; {o} is an option of {', '.join(names)}" for o, names in where.items() if names)
        raise ValueError(f"sampler {sampler!r} takes no option {', '.join(map(repr, unknown))} "
                         f"(its options: {takes}){hints}")
    if start_noise not in START_NOISE:
        raise ValueError(f"unknown start_noise {start_noise!r}; valid values: {', '.join(START_NOISE)}")
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
    sigmas = sampling_sigmas(schedule, steps, spacing, steps_offset, karras, rho, final_sigma, karras_range,
                             interpolation)
    sigmas = sigmas.to(dtype).to(device)  # cast on the CPU first: MPS has no float64
    denoise = make_denoiser(model_fn, schedule, objective, quantize, interpolation)
    x = vp_to_ve(noise, sigmas[0]) if start_noise == "vp" else noise * sigmas[0]  # -> the sigma scale
    if spec.stochastic:
        sampler_options = {"generator": generator, **sampler_options}
    x = spec.fn(denoise, x, sigmas, callback=callback, progress=progress, **sampler_options)
    return ve_to_vp(x, sigmas[-1])
