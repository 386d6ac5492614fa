"""minildm.diffusion: the diffusion half of an LDM (LDM paper Sec. 3.2), independent of any network.

    schedules   betas, alpha_bar, sigma, SNR (NoiseSchedule; the CompVis naming trap)
    forward     q_sample: x_t from x_0 in one step
    objectives  eps / x0 / v targets and conversions, diffusion_loss, min-SNR weighting
    spacing     which noise levels a sampler visits (leading/trailing/linspace, Karras)
    denoiser    the samplers' single convention: D(x, sigma) -> x0_hat
    samplers    DDPM, DDIM, PLMS, PNDM, DPM-Solver++(2M), Euler, Euler ancestral, Heun, and their
                registry SAMPLERS (function, number of model calls, options)
    guidance    classifier-free guidance as a model wrapper
    replacement inpainting without training: the known region replaces the clean estimate at every step
    sampling    sample(): network + schedule -> images, sampler chosen by name
    diffusers_schedulers  diffusers_options(): the sample() settings that reproduce a diffusers scheduler
"""

from minildm.diffusion.denoiser import make_denoiser, ve_to_vp, vp_to_ve
from minildm.diffusion.forward import q_sample
from minildm.diffusion.guidance import cfg_combine, cfg_model, rescale_guidance
from minildm.diffusion.objectives import (
    OBJECTIVES,
    diffusion_loss,
    eps_from_v,
    eps_from_x0,
    min_snr_weight,
    training_target,
    x0_from_eps,
    x0_from_output,
    x0_from_v,
)
from minildm.diffusion.replacement import output_from_x0, replacement_model_fn
from minildm.diffusion.diffusers_schedulers import (
    DIFFUSERS_SAMPLERS,
    diffusers_options,
    diffusers_sampler,
    diffusers_schedule,
)
from minildm.diffusion.samplers import (
    SAMPLER_NAMES,
    SAMPLERS,
    SamplerSpec,
    ancestral_sigmas,
    ddim,
    ddim_step,
    ddpm,
    dpmpp_2m,
    dpmpp_2m_step,
    euler,
    euler_ancestral,
    get_sampler,
    heun,
    model_calls,
    plms,
    pndm,
    timestep_midpoint,
)
from minildm.diffusion.sampling import sample
from minildm.diffusion.schedules import (
    COMPVIS_TO_MINILDM,
    SCHEDULE_NAMES,
    NoiseSchedule,
    compvis_schedule,
    cosine_betas,
    linear_betas,
    make_betas,
    scaled_linear_betas,
)
from minildm.diffusion.spacing import karras_sigmas, sampling_sigmas, spaced_timesteps

__all__ = [
    "COMPVIS_TO_MINILDM",
    "DIFFUSERS_SAMPLERS",
    "OBJECTIVES",
    "SAMPLERS",
    "SAMPLER_NAMES",
    "SCHEDULE_NAMES",
    "NoiseSchedule",
    "SamplerSpec",
    "ancestral_sigmas",
    "cfg_combine",
    "cfg_model",
    "compvis_schedule",
    "cosine_betas",
    "ddim",
    "ddim_step",
    "ddpm",
    "diffusers_options",
    "diffusers_sampler",
    "diffusers_schedule",
    "diffusion_loss",
    "dpmpp_2m",
    "dpmpp_2m_step",
    "eps_from_v",
    "eps_from_x0",
    "euler",
    "euler_ancestral",
    "get_sampler",
    "heun",
    "karras_sigmas",
    "linear_betas",
    "make_betas",
    "make_denoiser",
    "min_snr_weight",
    "model_calls",
    "output_from_x0",
    "plms",
    "pndm",
    "q_sample",
    "replacement_model_fn",
    "rescale_guidance",
    "sample",
    "sampling_sigmas",
    "scaled_linear_betas",
    "spaced_timesteps",
    "timestep_midpoint",
    "training_target",
    "ve_to_vp",
    "vp_to_ve",
    "x0_from_eps",
    "x0_from_output",
    "x0_from_v",
]
