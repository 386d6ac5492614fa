"""Samplers: small stateless functions sharing one convention (see denoiser.py).

Every sampler has the signature

    sampler(denoise, x, sigmas, *, callback=None, progress=True, **options) -> x

`denoise(x, sigma) -> x0_hat` is a denoiser (make_denoiser), `x` the starting sample in the
sigma scale (x = x_0 + sigma eps, so pure noise times sqrt(sigmas[0]^2 + 1)), `sigmas` the
n + 1 descending noise levels (spacing.sampling_sigmas). The sampler returns x at sigmas[-1].
Useful identity: the noise estimate is eps_hat = (x - x0_hat) / sigma, and the probability-flow
ODE is dx/dsigma = eps_hat (Karras et al. 2022, Eq. 4 with s = 1).

`callback`, if given, is called once per step i, before the update, with one dict (as in
k-diffusion): {"step": i, "sigma": sigmas[i], "x": the sample at that level (sigma scale),
"denoised": D(x, sigmas[i])}. `progress=False` hides the tqdm progress bar.

Options differ per sampler and are listed in SAMPLERS, the registry beside the functions: each
`@register(name, nfe=..., options=...)` line records the sampler's number of model calls (NFE)
and its keyword options. Only the samplers that draw fresh noise (ddpm, ddim, euler_ancestral)
take `generator`; the deterministic ones have no such parameter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from tqdm.auto import trange

from minildm.diffusion.denoiser import Denoiser
from minildm.diffusion.schedules import NoiseSchedule
from minildm.utils import randn

Callback = Callable[[dict[str, Any]], None]
"""callback({"step": int, "sigma": tensor, "x": tensor (sigma scale), "denoised": tensor}) -> None."""


@dataclass(frozen=True)
class SamplerSpec:
    """One registry entry: a sampler function with its cost and its options, kept beside the function.

    nfe(steps, ends_at_zero) is the number of denoiser calls (NFE) for `steps` steps, where
    `ends_at_zero` says whether the last noise level is 0; `options` are the keyword options the
    function takes beyond the shared (denoise, x, sigmas, callback, progress).
    """

    name: str
    fn: Callable[..., torch.Tensor]
    nfe: Callable[[int, bool], int]
    options: tuple[str, ...] = ()

    @property
    def stochastic(self) -> bool:
        """Whether the sampler draws fresh noise (and so takes `generator`)."""
        return "generator" in self.options

    def model_calls(self, steps: int, ends_at_zero: bool = True) -> int:
        """Denoiser evaluations (NFE) for `steps` steps."""
        return self.nfe(steps, ends_at_zero)


SAMPLERS: dict[str, SamplerSpec] = {}
"""The sampler registry, in the order the samplers are defined below: name -> SamplerSpec."""


def register(name: str, nfe: Callable[[int, bool], int], options: tuple[str, ...] = ()):
    """Decorator that records a sampler function in SAMPLERS under `name` (see SamplerSpec)."""

    def add(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        SAMPLERS[name] = SamplerSpec(name, fn, nfe, options)
        return fn

    return add


def one_call_per_step(steps: int, ends_at_zero: bool = True) -> int:
    """NFE of a sampler that evaluates the denoiser once per step."""
    return steps


ADAMS_BASHFORTH = {
    1: (1.0,),
    2: (3 / 2, -1 / 2),
    3: (23 / 12, -16 / 12, 5 / 12),
    4: (55 / 24, -59 / 24, 37 / 24, -9 / 24),
}
"""Adams-Bashforth coefficients for the newest, second newest, ... derivative (uniform steps)."""

LOWER_ORDER_FINAL_BELOW = 15
"""DPM-Solver++(2M) takes its last step first-order when it has fewer steps than this (as diffusers)."""


def _report(callback: Callback | None, step: int, x: torch.Tensor, sigma: torch.Tensor, denoised: torch.Tensor) -> None:
    if callback is not None:
        callback({"step": step, "sigma": sigma, "x": x, "denoised": denoised})


def _noise_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return randn(x.shape, generator, device=x.device, dtype=x.dtype)


def ancestral_sigmas(sigma: torch.Tensor, sigma_next: torch.Tensor, eta: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a step sigma -> sigma_next into a deterministic part and fresh noise: (sigma_down, sigma_up).

    sigma_up = eta * sqrt(sigma_next^2 (sigma^2 - sigma_next^2) / sigma^2),
    sigma_down = sqrt(sigma_next^2 - sigma_up^2), so sigma_down^2 + sigma_up^2 = sigma_next^2.
    eta = 1 is the DDPM posterior (Ho et al. 2020, Eq. 7), eta = 0 the deterministic DDIM.
    """
    sigma_up = torch.minimum(sigma_next, eta * (sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2).sqrt())
    sigma_down = (sigma_next**2 - sigma_up**2).sqrt()
    return sigma_down, sigma_up


def ddim_step(
    x: torch.Tensor,
    x0_hat: torch.Tensor,
    sigma: torch.Tensor,
    sigma_next: torch.Tensor,
    eta: float = 0.0,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """One DDIM update (Song et al. 2021, Eq. 12) written in the sigma scale.

    Dividing Eq. 12, x_prev = sqrt(a') x0 + sqrt(1 - a' - s^2) eps + s z, by sqrt(a') gives
        x_next = x0_hat + sigma_down * eps_hat + sigma_up * z,     eps_hat = (x - x0_hat) / sigma,
    with (sigma_down, sigma_up) = ancestral_sigmas(sigma, sigma_next, eta) (Eq. 16 for s).
    eta = 0: deterministic DDIM; eta = 1: DDPM ancestral sampling. `noise` (z) is needed when eta > 0.
    """
    eps_hat = (x - x0_hat) / sigma
    if eta == 0 or float(sigma_next) == 0:
        return x0_hat + sigma_next * eps_hat
    if noise is None:
        raise ValueError("ddim_step with eta > 0 needs `noise` (a standard normal tensor like x)")
    sigma_down, sigma_up = ancestral_sigmas(sigma, sigma_next, eta)
    return x0_hat + sigma_down * eps_hat + sigma_up * noise


def dpmpp_2m_step(
    x: torch.Tensor,
    x0_hat: torch.Tensor,
    sigma: torch.Tensor,
    sigma_next: torch.Tensor,
    x0_prev: torch.Tensor | None = None,
    sigma_prev: torch.Tensor | None = None,
) -> torch.Tensor:
    """One DPM-Solver++(2M) update (Lu et al. 2022, "DPM-Solver++", Alg. 2), in the sigma scale.

    With lambda = -log sigma (the log-SNR) and h = lambda_next - lambda:
        x_next = (sigma_next / sigma) x - expm1(-h) D,
        D = x0_hat                                              (first order; x0_prev is None)
        D = (1 + 1/(2r)) x0_hat - 1/(2r) x0_prev,  r = h_prev / h   (second order, multistep)
    where h_prev = lambda - lambda_prev uses the previous step's sigma_prev. Ends at x0_hat if sigma_next = 0.
    """
    if float(sigma_next) == 0:
        return x0_hat
    h = (sigma / sigma_next).log()
    if x0_prev is None:
        denoised = x0_hat
    else:
        if sigma_prev is None:
            raise ValueError("dpmpp_2m_step needs sigma_prev together with x0_prev")
        r = (sigma_prev / sigma).log() / h
        denoised = (1 + 1 / (2 * r)) * x0_hat - (1 / (2 * r)) * x0_prev
    return (sigma_next / sigma) * x - torch.expm1(-h) * denoised


@register("ddpm", nfe=one_call_per_step, options=("generator", "clip_denoised"))
@torch.no_grad()
def ddpm(
    denoise: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    clip_denoised: float | None = None,
    callback: Callback | None = None,
    progress: bool = True,
) -> torch.Tensor:
    """DDPM ancestral sampling (Ho et al. 2020, Alg. 2), on any subsequence of timesteps.

    Sampling the posterior q(x_{t'} | x_t, x0_hat) (Eq. 6-7, "fixed small" variance
    beta_tilde) is exactly DDIM with eta = 1, so this is `ddim(..., eta=1)`.
    `clip_denoised=c` clips x0_hat to [-c, c] before the posterior is formed (Ho et al.'s code for
    pixel data in [-1, 1]; diffusers' clip_sample), so the implied noise estimate changes with it.
    """
    if clip_denoised is not None:
        denoise = _clipped(denoise, clip_denoised)
    return ddim(denoise, x, sigmas, eta=1.0, generator=generator, callback=callback, progress=progress)


@register("ddim", nfe=one_call_per_step, options=("eta", "generator", "clip_denoised"))
@torch.no_grad()
def ddim(
    denoise: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    clip_denoised: float | None = None,
    callback: Callback | None = None,
    progress: bool = True,
) -> torch.Tensor:
    """DDIM (Song et al. 2021, "Denoising Diffusion Implicit Models"): `ddim_step` at every level.

    eta = 0 (default) is deterministic: the same noise always gives the same sample, which is
    also exactly an Euler step of the probability-flow ODE in sigma; `generator` draws the fresh
    noise when eta > 0. `clip_denoised=c` clips the "predicted x0" term of Eq. 12 to [-c, c] and
    keeps the network's noise estimate in the "direction pointing to x_t" term (diffusers'
    DDIMScheduler with clip_sample).
    """
    for i in trange(len(sigmas) - 1, disable=not progress):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        x0_hat = denoise(x, sigma)
        _report(callback, i, x, sigma, x0_hat)
        if clip_denoised is not None:
            eps_hat = (x - x0_hat) / sigma
            x0_hat = x0_hat.clamp(-clip_denoised, clip_denoised)
            x = x0_hat + sigma * eps_hat  # the point whose split is (clipped x0_hat, the same eps_hat)
        noise = _noise_like(x, generator) if eta > 0 and float(sigma_next) > 0 else None
        x = ddim_step(x, x0_hat, sigma, sigma_next, eta, noise)
    return x


def warmup_nfe(calls_per_step: int, warmup_steps: int) -> Callable[[int, bool], int]:
    """NFE of a multistep sampler that spends `calls_per_step` extra model calls on each of its first
    `warmup_steps` steps, except on a step that ends at sigma = 0 (there is no model at sigma = 0)."""

    def nfe(steps: int, ends_at_zero: bool = True) -> int:
        warm = max(0, min(warmup_steps, steps - (1 if ends_at_zero else 0)))
        return steps + calls_per_step * warm

    return nfe


def heun_eps(denoise: Denoiser, x: torch.Tensor, eps_hat: torch.Tensor, sigma: torch.Tensor,
             sigma_next: torch.Tensor) -> torch.Tensor:
    """The noise estimate of one pseudo Heun (trapezoid) step, one extra model call:
    eps' = (eps_hat + eps(x + (sigma_next - sigma) eps_hat, sigma_next)) / 2."""
    x_pred = x + (sigma_next - sigma) * eps_hat
    return (eps_hat + (x_pred - denoise(x_pred, sigma_next)) / sigma_next) / 2


def runge_kutta_eps(denoise: Denoiser, x: torch.Tensor, eps_hat: torch.Tensor, sigma: torch.Tensor,
                    sigma_next: torch.Tensor, sigma_mid: torch.Tensor) -> torch.Tensor:
    """The noise estimate of one pseudo Runge-Kutta step (Liu et al. 2022), three extra model calls.

    Classical 4th-order Runge-Kutta whose stages are DDIM steps x + (s - sigma) e from x (the
    "transfer part" phi of the paper) to the midpoint level sigma_mid and to sigma_next:
        e1 = eps_hat,                                   e2 = eps(x + (sigma_mid - sigma) e1, sigma_mid),
        e3 = eps(x + (sigma_mid - sigma) e2, sigma_mid),  e4 = eps(x + (sigma_next - sigma) e3, sigma_next),
        eps' = (e1 + 2 e2 + 2 e3 + e4) / 6,
    where eps(x, s) = (x - D(x, s)) / s is the noise estimate at level s.
    """

    def eps_at(e: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        x_stage = x + (level - sigma) * e
        return (x_stage - denoise(x_stage, level)) / level

    e2 = eps_at(eps_hat, sigma_mid)
    e3 = eps_at(e2, sigma_mid)
    e4 = eps_at(e3, sigma_next)
    return (eps_hat + 2 * e2 + 2 * e3 + e4) / 6


def adams_bashforth_eps(history: list[torch.Tensor], eps_hat: torch.Tensor) -> torch.Tensor:
    """The linear multistep noise estimate of PLMS (Liu et al. 2022): Adams-Bashforth over eps_hat
    and up to 3 earlier ones (`history`, oldest first), of the order the history allows."""
    recent = (history + [eps_hat])[-4:][::-1]  # newest first
    return sum(c * e for c, e in zip(ADAMS_BASHFORTH[len(recent)], recent))


def geometric_midpoint(sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
    """sqrt(sigma sigma_next): halfway between two levels in log sigma (the log-SNR)."""
    return (sigma * sigma_next).sqrt()


def timestep_midpoint(schedule: NoiseSchedule) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The midpoint rule of the PNDM paper (and diffusers' PNDMScheduler): halfway in training timesteps.

    For levels at the integer timesteps t > t', the midpoint is the training sigma at
    t - (t - t') // 2 (t - delta/2 in Liu et al. 2022), as diffusers moves the sample. When t - t' is
    odd (8 or 40 steps of 1000), diffusers then calls the network one timestep lower, at
    t' + (t - t') // 2, on that sample; minildm keeps one level per stage, so there the two differ by
    about 1e-3 (relative) after the whole run.
    """

    def midpoint(sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
        levels = torch.stack([sigma, sigma_next]).detach().to("cpu", torch.float64)
        t, t_next = schedule.sigma_to_t(levels).round().long().tolist()
        return schedule.sigmas[t - (t - t_next) // 2].to(sigma.dtype).to(sigma.device)

    return midpoint


def _linear_multistep(
    denoise: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    warmup_steps: int,
    warmup_eps: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    callback: Callback | None,
    progress: bool,
) -> torch.Tensor:
    """The pseudo linear multistep loop shared by plms and pndm: every step is a DDIM step
    x_next = x + (sigma_next - sigma) eps'; eps' = warmup_eps(x, eps_hat, sigma, sigma_next) on the
    first `warmup_steps` steps that do not end at 0, else `adams_bashforth_eps` on the history."""
    history: list[torch.Tensor] = []  # eps_hat at the accepted points, oldest first
    for i in trange(len(sigmas) - 1, disable=not progress):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        x0_hat = denoise(x, sigma)
        _report(callback, i, x, sigma, x0_hat)
        eps_hat = (x - x0_hat) / sigma
        if i < warmup_steps and float(sigma_next) > 0:
            eps_prime = warmup_eps(x, eps_hat, sigma, sigma_next)
        else:
            eps_prime = adams_bashforth_eps(history, eps_hat)
        history = (history + [eps_hat])[-3:]
        x = x + (sigma_next - sigma) * eps_prime
    return x


PNDM_WARMUP_STEPS = 3
"""Pseudo Runge-Kutta steps before PNDM's linear multistep part has the 3 earlier eps_hat it needs."""


@register("plms", nfe=warmup_nfe(1, 1))
@torch.no_grad()
def plms(
    denoise: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    callback: Callback | None = None,
    progress: bool = True,
) -> torch.Tensor:
    """PLMS, pseudo linear multistep (Liu et al. 2022, "Pseudo Numerical Methods for Diffusion Models").

    Each step is a DDIM step x_next = x + (sigma_next - sigma) eps' whose noise estimate eps'
    is an Adams-Bashforth combination of the last (up to) 4 eps_hat. The first step has no
    history, so it spends one extra model call on a Heun (trapezoid) step instead; this is
    the "skip_prk_steps" variant Stable Diffusion uses (`pndm` warms up with the paper's
    Runge-Kutta steps). Adams-Bashforth extrapolates: with few steps and a strongly guided
    (large, quickly changing) eps it overshoots (notebook 08).
    """
    return _linear_multistep(
        denoise, x, sigmas, 1, lambda x, eps_hat, s, s_next: heun_eps(denoise, x, eps_hat, s, s_next),
        callback, progress,
    )


@register("pndm", nfe=warmup_nfe(3, PNDM_WARMUP_STEPS), options=("midpoint",))
@torch.no_grad()
def pndm(
    denoise: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    midpoint: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = geometric_midpoint,
    callback: Callback | None = None,
    progress: bool = True,
) -> torch.Tensor:
    """PNDM, pseudo numerical methods (Liu et al. 2022, "Pseudo Numerical Methods for Diffusion Models
    on Manifolds", ICLR; their F-PNDM): pseudo Runge-Kutta warm-up, then pseudo linear multistep.

    The first 3 steps are pseudo Runge-Kutta steps (`runge_kutta_eps`, 4 model calls each) that
    collect the history the 4th-order Adams-Bashforth steps of `plms` need; every later step
    costs one call. NFE: n + 9 for n >= 4 steps (diffusers' PNDMScheduler default). A warm-up
    step that would end at sigma = 0 is a plain multistep step instead. `midpoint(sigma,
    sigma_next)` is the level of the Runge-Kutta midpoint stages: by default `geometric_midpoint`;
    the paper's t - delta/2 is `timestep_midpoint(schedule)`.
    """

    def warmup(x: torch.Tensor, eps_hat: torch.Tensor, sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
        return runge_kutta_eps(denoise, x, eps_hat, sigma, sigma_next, midpoint(sigma, sigma_next))

    return _linear_multistep(denoise, x, sigmas, PNDM_WARMUP_STEPS, warmup, callback, progress)


@register("dpmpp_2m", nfe=one_call_per_step)
@torch.no_grad()
def dpmpp_2m(
    denoise: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    callback: Callback | None = None,
    progress: bool = True,
) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling", Alg. 2).

    A second-order multistep exponential integrator in the log-SNR: one model call per step,
    reusing the previous step's x0_hat. The first step is first order (no history), and so is
    the last when it ends at sigma = 0 or when there are fewer than 15 steps.
    """
    steps = len(sigmas) - 1
    x0_prev = None
    for i in trange(steps, disable=not progress):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        x0_hat = denoise(x, sigma)
        _report(callback, i, x, sigma, x0_hat)
        last_first_order = i == steps - 1 and (float(sigma_next) == 0 or steps < LOWER_ORDER_FINAL_BELOW)
        history = None if last_first_order else x0_prev
        x = dpmpp_2m_step(x, x0_hat, sigma, sigma_next, history, sigmas[i - 1] if i > 0 else None)
        x0_prev = x0_hat
    return x


@register("euler", nfe=one_call_per_step)
@torch.no_grad()
def euler(
    denoise: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    callback: Callback | None = None,
    progress: bool = True,
) -> torch.Tensor:
    """Euler's method on the probability-flow ODE dx/dsigma = (x - D(x, sigma)) / sigma.

    Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative Models",
    Alg. 2 without its second-order correction and without churn.
    """
    for i in trange(len(sigmas) - 1, disable=not progress):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        x0_hat = denoise(x, sigma)
        _report(callback, i, x, sigma, x0_hat)
        derivative = (x - x0_hat) / sigma
        x = x + derivative * (sigma_next - sigma)
    return x


@register("euler_ancestral", nfe=one_call_per_step, options=("eta", "generator"))
@torch.no_grad()
def euler_ancestral(
    denoise: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    eta: float = 1.0,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    progress: bool = True,
) -> torch.Tensor:
    """Euler ancestral (k-diffusion; Karras et al. 2022 sigma parameterisation): an Euler step down
    to sigma_down, then fresh noise of size sigma_up (`ancestral_sigmas`), drawn from `generator`.

    Same update as DDIM with the same eta (`ddim_step`), written as an ODE step; eta = 1 is DDPM.
    """
    for i in trange(len(sigmas) - 1, disable=not progress):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        x0_hat = denoise(x, sigma)
        _report(callback, i, x, sigma, x0_hat)
        sigma_down, sigma_up = ancestral_sigmas(sigma, sigma_next, eta)
        derivative = (x - x0_hat) / sigma
        x = x + derivative * (sigma_down - sigma)
        if float(sigma_next) > 0 and eta > 0:
            x = x + _noise_like(x, generator) * sigma_up
    return x


@register("heun", nfe=lambda steps, ends_at_zero: 2 * steps - (1 if ends_at_zero else 0))
@torch.no_grad()
def heun(
    denoise: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    callback: Callback | None = None,
    progress: bool = True,
) -> torch.Tensor:
    """Heun's second-order method (Karras et al. 2022, Alg. 1/2 without churn).

    An Euler step predicts x at sigma_next, the derivative there corrects it (trapezoid rule).
    Two model calls per step, except the last step to sigma = 0, which is plain Euler
    (2n - 1 calls for n steps).
    """
    for i in trange(len(sigmas) - 1, disable=not progress):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        x0_hat = denoise(x, sigma)
        _report(callback, i, x, sigma, x0_hat)
        derivative = (x - x0_hat) / sigma
        dt = sigma_next - sigma
        x_pred = x + derivative * dt
        if float(sigma_next) == 0:
            x = x_pred
        else:
            derivative_next = (x_pred - denoise(x_pred, sigma_next)) / sigma_next
            x = x + (derivative + derivative_next) / 2 * dt
    return x


SAMPLER_NAMES = tuple(SAMPLERS)


def get_sampler(name: str) -> SamplerSpec:
    """The registry entry (function, NFE formula, options) of sampler `name`.

    ValueError listing SAMPLER_NAMES for an unknown name.
    """
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; valid samplers: {', '.join(SAMPLER_NAMES)}")
    return SAMPLERS[name]


def model_calls(sampler: str, steps: int, ends_at_zero: bool = True) -> int:
    """Number of denoiser evaluations (NFE) `sampler` spends on `steps` steps (SAMPLERS[sampler].nfe)."""
    return get_sampler(sampler).model_calls(steps, ends_at_zero)


def _clipped(denoise: Denoiser, limit: float) -> Denoiser:
    """The denoiser with its x0_hat clipped to [-limit, limit]."""
    return lambda x, sigma: denoise(x, sigma).clamp(-limit, limit)


__all__ = [
    "SAMPLERS",
    "SAMPLER_NAMES",
    "Callback",
    "SamplerSpec",
    "adams_bashforth_eps",
    "ancestral_sigmas",
    "ddim",
    "ddim_step",
    "ddpm",
    "dpmpp_2m",
    "dpmpp_2m_step",
    "euler",
    "euler_ancestral",
    "geometric_midpoint",
    "get_sampler",
    "heun",
    "heun_eps",
    "model_calls",
    "plms",
    "pndm",
    "register",
    "runge_kutta_eps",
    "timestep_midpoint",
    "warmup_nfe",
]
