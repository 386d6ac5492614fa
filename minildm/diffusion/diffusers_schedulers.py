"""diffusers' schedulers as `sample()` settings: which sampler, grid, start and end each one means.

minildm has no scheduler objects: a diffusers scheduler is one of minildm's sampler functions
plus choices about the noise levels (spacing, offset, Karras, the last level), how fractional
timesteps are read, how the start noise is scaled and whether x0_hat is clipped. Three lookups
translate a scheduler class name and its config (a dict such as `scheduler.config`; None = the
class defaults; keys starting with "_" and keys the class does not use are ignored):

    diffusers_sampler(name, config)     the minildm sampler          ("DDIMScheduler" -> "ddim")
    diffusers_schedule(name, config)    the NoiseSchedule (betas) the config describes
    diffusers_options(name, config)     keyword options for `sample`

so that, for the unit noise x_T diffusers would multiply by `scheduler.init_noise_sigma`,

    sample(model_fn, shape, diffusers_sampler(name, config), steps, schedule=diffusers_schedule(name, config),
           noise=x_T, **diffusers_options(name, config))

is diffusers' own loop (set_timesteps(steps); scale_model_input; model; step), which
tests/test_sampler_equivalence.py checks to 1e-5. DDIM's `eta` is an argument of diffusers'
`step`, not of the config: pass eta= to `sample` too. The stochastic ones (DDPM, Euler
ancestral, DDIM with eta > 0) draw one noise tensor per step from `generator`, as diffusers does.
DIFFUSERS_SAMPLERS[name] is the sampler of the class defaults; only PNDM's depends on the config.

What the schedulers mean, in minildm's terms (checked against diffusers 0.42):
    DDIMScheduler       ddim: leading spacing; set_alpha_to_one=False ends at sigma_min;
                        clip_sample clips the x0 term and keeps the network's eps
    DDPMScheduler       ddpm: clip_sample clips x0_hat before the posterior
    PNDMScheduler       pndm (default skip_prk_steps=False): 3 pseudo Runge-Kutta steps, their midpoint
                        stages at t - (T // n) // 2 (timestep_midpoint), then 4th-order multistep;
                        n + 9 model calls for n >= 4 steps (diffusers' minimum);
                        plms with skip_prk_steps=True (Stable Diffusion's setting);
                        set_alpha_to_one=False (the default) ends at sigma_min
    DPMSolverMultistepScheduler  dpmpp_2m: linspace/leading over n + 1 timesteps, the last
                        dropped (999, 949, ..., 50 for 20 steps); Karras sigmas over the whole
                        schedule, the network's t rounded
    EulerDiscreteScheduler, EulerAncestralDiscreteScheduler, HeunDiscreteScheduler
                        euler / euler_ancestral / heun: fractional linspace timesteps read with sigma
                        linear in t; Karras sigmas between the spaced levels; start noise times
                        sigma_max (not sqrt(sigma_max^2 + 1)) for linspace and trailing spacing
Caveat: diffusers' DDIM and PNDM step from t to t - T // n, which is the next listed timestep
for leading spacing (and trailing when n divides T) but not for linspace; minildm's samplers
always step to the next level, so DDIM/PNDM with linspace spacing are refused. PNDM's Runge-Kutta
warm-up matches when T // n is even (n = 4, 5, 10, 20, 25, 50, ...); when it is odd, diffusers moves
the first stage to t - (T // n) // 2 but calls the network one timestep lower, at t - T // n +
(T // n) // 2, where minildm keeps the one midpoint t - (T // n) // 2 (5e-4 relative apart for
n = 8 on the test network).
diffusers' PNDM needs n >= 4 steps (set_timesteps fails below); minildm's pndm takes fewer
Runge-Kutta steps there.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from minildm.diffusion.samplers import timestep_midpoint
from minildm.diffusion.schedules import NoiseSchedule

DIFFUSERS_SAMPLERS = {
    "DDIMScheduler": "ddim",
    "DDPMScheduler": "ddpm",
    "PNDMScheduler": "pndm",
    "DPMSolverMultistepScheduler": "dpmpp_2m",
    "EulerDiscreteScheduler": "euler",
    "EulerAncestralDiscreteScheduler": "euler_ancestral",
    "HeunDiscreteScheduler": "heun",
}
"""diffusers scheduler class name -> the minildm sampler its default config runs (see diffusers_sampler)."""

_COMMON = {"num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear",
           "trained_betas": None, "prediction_type": "epsilon", "timestep_spacing": "leading", "steps_offset": 0,
           "rescale_betas_zero_snr": False}
_KARRAS_OFF = {"use_karras_sigmas": False, "use_exponential_sigmas": False, "use_beta_sigmas": False}

DIFFUSERS_DEFAULTS: dict[str, dict[str, Any]] = {
    "DDIMScheduler": {**_COMMON, "clip_sample": True, "clip_sample_range": 1.0, "set_alpha_to_one": True,
                      "thresholding": False},
    "DDPMScheduler": {**_COMMON, "variance_type": "fixed_small", "clip_sample": True, "clip_sample_range": 1.0,
                      "thresholding": False},
    "PNDMScheduler": {**_COMMON, "skip_prk_steps": False, "set_alpha_to_one": False},
    "DPMSolverMultistepScheduler": {**_COMMON, **_KARRAS_OFF, "timestep_spacing": "linspace", "solver_order": 2,
                                    "algorithm_type": "dpmsolver++", "solver_type": "midpoint",
                                    "lower_order_final": True, "euler_at_final": False, "use_lu_lambdas": False,
                                    "use_flow_sigmas": False, "final_sigmas_type": "zero",
                                    "lambda_min_clipped": -math.inf, "thresholding": False, "variance_type": None},
    "EulerDiscreteScheduler": {**_COMMON, **_KARRAS_OFF, "timestep_spacing": "linspace",
                               "interpolation_type": "linear", "sigma_min": None, "sigma_max": None,
                               "timestep_type": "discrete", "final_sigmas_type": "zero"},
    "EulerAncestralDiscreteScheduler": {**_COMMON, "timestep_spacing": "linspace"},
    "HeunDiscreteScheduler": {**_COMMON, **_KARRAS_OFF, "beta_start": 0.00085, "beta_end": 0.012,
                              "timestep_spacing": "linspace", "clip_sample": False},
}
"""The defaults of each class's config (the keys minildm reads), as in diffusers' __init__ signatures."""

_FIXED = {  # settings whose other values minildm's samplers do not reproduce: key -> the only accepted value
    "DDIMScheduler": {"thresholding": False, "rescale_betas_zero_snr": False},
    "DDPMScheduler": {"thresholding": False, "rescale_betas_zero_snr": False, "variance_type": "fixed_small"},
    "PNDMScheduler": {"rescale_betas_zero_snr": False},
    "DPMSolverMultistepScheduler": {
        "solver_order": 2, "algorithm_type": "dpmsolver++", "solver_type": "midpoint", "lower_order_final": True,
        "euler_at_final": False, "use_exponential_sigmas": False, "use_beta_sigmas": False, "use_lu_lambdas": False,
        "use_flow_sigmas": False, "lambda_min_clipped": -math.inf, "thresholding": False, "variance_type": None,
        "rescale_betas_zero_snr": False},
    "EulerDiscreteScheduler": {"use_exponential_sigmas": False, "use_beta_sigmas": False, "sigma_min": None,
                               "sigma_max": None, "interpolation_type": "linear", "timestep_type": "discrete",
                               "rescale_betas_zero_snr": False},
    "EulerAncestralDiscreteScheduler": {"rescale_betas_zero_snr": False},
    "HeunDiscreteScheduler": {"use_exponential_sigmas": False, "use_beta_sigmas": False, "clip_sample": False,
                              "rescale_betas_zero_snr": False},
}
_WHY: dict[str, str] = {}

OBJECTIVES = {"epsilon": "eps", "sample": "x0", "v_prediction": "v"}
"""diffusers' prediction_type -> minildm's objective."""
BETA_SCHEDULES = {"linear": "linear", "scaled_linear": "scaled_linear", "squaredcos_cap_v2": "cosine"}
"""diffusers' beta_schedule -> minildm's schedule name (diffusers' names, unlike CompVis', are minildm's)."""


def diffusers_config(scheduler_class_name: str, config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The class defaults updated by `config`, restricted to the keys minildm reads; checked.

    ValueError for an unknown class and for settings minildm's samplers do not reproduce.
    """
    if scheduler_class_name not in DIFFUSERS_DEFAULTS:
        raise ValueError(f"unknown diffusers scheduler {scheduler_class_name!r}; "
                         f"supported: {', '.join(DIFFUSERS_DEFAULTS)}")
    defaults = DIFFUSERS_DEFAULTS[scheduler_class_name]
    merged = {**defaults, **{k: v for k, v in (config or {}).items() if k in defaults}}
    for key, accepted in _FIXED[scheduler_class_name].items():
        value = merged[key]
        if value != accepted and not (value is None and accepted is None):
            why = _WHY.get(key, "minildm's samplers do not reproduce it")
            raise ValueError(f"{scheduler_class_name} with {key}={value!r}: {why}; accepted: {key}={accepted!r}")
    if merged["prediction_type"] not in OBJECTIVES:
        raise ValueError(f"unknown prediction_type {merged['prediction_type']!r}; valid: {', '.join(OBJECTIVES)}")
    if merged["timestep_spacing"] not in ("leading", "trailing", "linspace"):
        raise ValueError(f"unknown timestep_spacing {merged['timestep_spacing']!r}; valid: leading, trailing, linspace")
    if scheduler_class_name in ("DDIMScheduler", "PNDMScheduler") and merged["timestep_spacing"] == "linspace":
        raise ValueError(f"{scheduler_class_name} with linspace spacing steps from t to t - T // n, not to the next "
                         "listed timestep; minildm's samplers always step to the next level (use leading or trailing)")
    return merged


def diffusers_sampler(scheduler_class_name: str, config: Mapping[str, Any] | None = None) -> str:
    """The minildm sampler that `scheduler_class_name` with `config` runs: DIFFUSERS_SAMPLERS[name],
    except PNDMScheduler with skip_prk_steps=True, which is plms (one Heun warm-up step)."""
    cfg = diffusers_config(scheduler_class_name, config)
    if scheduler_class_name == "PNDMScheduler" and cfg["skip_prk_steps"]:
        return "plms"
    return DIFFUSERS_SAMPLERS[scheduler_class_name]


def diffusers_schedule(scheduler_class_name: str, config: Mapping[str, Any] | None = None) -> NoiseSchedule:
    """The NoiseSchedule (float64 betas) that a diffusers scheduler config describes."""
    cfg = diffusers_config(scheduler_class_name, config)
    if cfg["trained_betas"] is not None:
        return NoiseSchedule(torch.as_tensor(cfg["trained_betas"], dtype=torch.float64))
    if cfg["beta_schedule"] not in BETA_SCHEDULES:
        raise ValueError(f"unknown beta_schedule {cfg['beta_schedule']!r}; valid: {', '.join(BETA_SCHEDULES)}")
    name = BETA_SCHEDULES[cfg["beta_schedule"]]
    if name == "cosine":
        return NoiseSchedule.from_name(name, cfg["num_train_timesteps"])
    return NoiseSchedule.from_name(name, cfg["num_train_timesteps"], cfg["beta_start"], cfg["beta_end"])


def diffusers_options(scheduler_class_name: str, config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Keyword options for `minildm.diffusion.sample` that reproduce diffusers' `scheduler_class_name` with `config`.

    Returns objective, spacing, steps_offset, final_sigma, karras, karras_range, interpolation,
    quantize, start_noise and, for DDIM/DDPM with clip_sample, clip_denoised, for PNDM's Runge-Kutta
    warm-up midpoint (see the module docstring for what each scheduler means). The sampler is
    diffusers_sampler(name, config) and the schedule diffusers_schedule(name, config).
    """
    cfg = diffusers_config(scheduler_class_name, config)
    spacing = cfg["timestep_spacing"]
    options: dict[str, Any] = {
        "objective": OBJECTIVES[cfg["prediction_type"]],
        "spacing": spacing,
        "steps_offset": cfg["steps_offset"],
        "final_sigma": "zero",
        "karras": False,
        "karras_range": "schedule",
        "interpolation": "log",
        "quantize": False,
        "start_noise": "vp",
    }
    if scheduler_class_name in ("DDIMScheduler", "PNDMScheduler"):
        options["final_sigma"] = "zero" if cfg["set_alpha_to_one"] else "sigma_min"
    if scheduler_class_name == "PNDMScheduler" and not cfg["skip_prk_steps"]:
        options["midpoint"] = timestep_midpoint(diffusers_schedule(scheduler_class_name, cfg))
    if scheduler_class_name in ("DDIMScheduler", "DDPMScheduler") and cfg["clip_sample"]:
        options["clip_denoised"] = float(cfg["clip_sample_range"])
    if scheduler_class_name == "DPMSolverMultistepScheduler":
        if spacing in ("leading", "linspace"):
            options["spacing"] = f"{spacing}_skip_last"
        options["final_sigma"] = cfg["final_sigmas_type"]
        options["karras"] = bool(cfg["use_karras_sigmas"])
        options["quantize"] = options["karras"] and cfg["beta_schedule"] != "squaredcos_cap_v2"
    if scheduler_class_name in ("EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler", "HeunDiscreteScheduler"):
        if spacing == "linspace":
            options["spacing"] = "linspace_fractional"
        options["karras"] = bool(cfg.get("use_karras_sigmas", False))
        options["karras_range"] = "spaced"
        options["interpolation"] = "log" if options["karras"] else "linear"  # Karras: t from diffusers' _sigma_to_t
        options["start_noise"] = "sigma" if spacing in ("linspace", "trailing") else "vp"
        options["final_sigma"] = cfg.get("final_sigmas_type", "zero")
    return options


__all__ = ["DIFFUSERS_DEFAULTS", "DIFFUSERS_SAMPLERS", "diffusers_config", "diffusers_options", "diffusers_sampler",
           "diffusers_schedule"]
