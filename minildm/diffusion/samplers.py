"""Samplers: small stateless functions sharing one convention (see denoiser.py).

Every sampler has the signature

    sampler(denoise, x, sigmas, *, generator=None, callback=None, disable=False, **options) -> x

`denoise(x, sigma) -> x0_hat` is a denoiser (make_denoiser), `x` the starting sample in the
sigma scale (x = x_0 + sigma eps, so pure noise times sqrt(sigmas[0]^2 + 1)), `sigmas` the
n + 1 descending noise levels (spacing.sampling_sigmas). The sampler returns x at sigmas[-1].
Useful identity: the noise estimate is eps_hat = (x - x0_hat) / sigma, and the probability-flow
ODE is dx/dsigma = eps_hat (Karras et al. 2022, Eq. 4 with s = 1).

`callback(step, x_t, x0_hat)`, if given, sees after every step the new sample in the network's
(variance-preserving) scale and the denoised estimate the step used. `generator` draws the
fresh noise of stochastic samplers; `disable` hides the tqdm progress bar.
"""

from __future__ import annotations

from typing import Callable

import torch
from tqdm.auto import trange

from minildm.diffusion.denoiser import Denoiser, ve_to_vp
from minildm.utils import randn

Callback = Callable[[int, torch.Tensor, torch.Tensor], None]

ADAMS_BASHFORTH = {
    1: (1.0,),
    2: (3 / 2, -1 / 2),
    3: (23 / 12, -16 / 12, 5 / 12),
    4: (55 / 24, -59 / 24, 37 / 24, -9 / 24),
}
"""Adams-Bashforth coefficients for the newest, second newest, ... derivative (uniform steps)."""

LOWER_ORDER_FINAL_BELOW = 15
"""DPM-Solver++(2M) takes its last step first-order when it has fewer steps than this (as diffusers)."""


def _report(callback: Callback | None, step: int, x: torch.Tensor, sigma: torch.Tensor, x0_hat: torch.Tensor) -> None:
    if callback is not None:
        callback(step, ve_to_vp(x, sigma), x0_hat)


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


@torch.no_grad()
def ddim(
    denoise: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    disable: bool = False,
) -> torch.Tensor:
    """DDIM (Song et al. 2021, "Denoising Diffusion Implicit Models"): `ddim_step` at every level.

    eta = 0 (default) is deterministic: the same noise always gives the same sample, which is
    also exactly an Euler step of the probability-flow ODE in sigma.
    """
    for i in trange(len(sigmas) - 1, disable=disable):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        x0_hat = denoise(x, sigma)
        noise = _noise_like(x, generator) if eta > 0 and float(sigma_next) > 0 else None
        x = ddim_step(x, x0_hat, sigma, sigma_next, eta, noise)
        _report(callback, i, x, sigma_next, x0_hat)
    return x


@torch.no_grad()
def ddpm(
    denoise: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    disable: bool = False,
) -> torch.Tensor:
    """DDPM ancestral sampling (Ho et al. 2020, Alg. 2), on any subsequence of timesteps.

    Sampling the posterior q(x_{t'} | x_t, x0_hat) (Eq. 6-7, "fixed small" variance
    beta_tilde) is exactly DDIM with eta = 1, so this is `ddim(..., eta=1)`.
    """
    return ddim(denoise, x, sigmas, eta=1.0, generator=generator, callback=callback, disable=disable)


@torch.no_grad()
def plms(
    denoise: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    disable: bool = False,
) -> torch.Tensor:
    """PLMS, pseudo linear multistep (Liu et al. 2022, "Pseudo Numerical Methods for Diffusion Models").

    Each step is a DDIM step x_next = x + (sigma_next - sigma) eps' whose noise estimate eps'
    is an Adams-Bashforth combination of the last (up to) 4 eps_hat. The first step has no
    history, so it spends one extra model call on a Heun (trapezoid) step instead; this is
    the "skip_prk_steps" variant Stable Diffusion uses. `generator` is unused (deterministic).
    """
    history: list[torch.Tensor] = []  # eps_hat at the accepted points, oldest first
    for i in trange(len(sigmas) - 1, disable=disable):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        x0_hat = denoise(x, sigma)
        eps_hat = (x - x0_hat) / sigma
        if not history and float(sigma_next) > 0:  # warm-up: Heun step
            x_pred = x + (sigma_next - sigma) * eps_hat
            eps_next = (x_pred - denoise(x_pred, sigma_next)) / sigma_next
            eps_prime = (eps_hat + eps_next) / 2
        else:
            recent = (history + [eps_hat])[-4:][::-1]  # newest first
            eps_prime = sum(c * e for c, e in zip(ADAMS_BASHFORTH[len(recent)], recent))
        history = (history + [eps_hat])[-3:]
        x = x + (sigma_next - sigma) * eps_prime
        _report(callback, i, x, sigma_next, x0_hat)
    return x


@torch.no_grad()
def dpmpp_2m(
    denoise: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    disable: bool = False,
) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling", Alg. 2).

    A second-order multistep exponential integrator in the log-SNR: one model call per step,
    reusing the previous step's x0_hat. The first step is first order (no history), and so is
    the last when it ends at sigma = 0 or when there are fewer than 15 steps.
    `generator` is unused (deterministic).
    """
    steps = len(sigmas) - 1
    x0_prev = None
    for i in trange(steps, disable=disable):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        x0_hat = denoise(x, sigma)
        last_first_order = i == steps - 1 and (float(sigma_next) == 0 or steps < LOWER_ORDER_FINAL_BELOW)
        history = None if last_first_order else x0_prev
        x = dpmpp_2m_step(x, x0_hat, sigma, sigma_next, history, sigmas[i - 1] if i > 0 else None)
        x0_prev = x0_hat
        _report(callback, i, x, sigma_next, x0_hat)
    return x


@torch.no_grad()
def euler(
    denoise: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    disable: bool = False,
) -> torch.Tensor:
    """Euler's method on the probability-flow ODE dx/dsigma = (x - D(x, sigma)) / sigma.

    Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative Models",
    Alg. 2 without its second-order correction and without churn. `generator` is unused.
    """
    for i in trange(len(sigmas) - 1, disable=disable):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        x0_hat = denoise(x, sigma)
        derivative = (x - x0_hat) / sigma
        x = x + derivative * (sigma_next - sigma)
        _report(callback, i, x, sigma_next, x0_hat)
    return x


@torch.no_grad()
def euler_ancestral(
    denoise: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    eta: float = 1.0,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    disable: bool = False,
) -> torch.Tensor:
    """Euler ancestral (k-diffusion; Karras et al. 2022 sigma parameterisation): an Euler step down
    to sigma_down, then fresh noise of size sigma_up (`ancestral_sigmas`).

    Same update as DDIM with the same eta (`ddim_step`), written as an ODE step; eta = 1 is DDPM.
    """
    for i in trange(len(sigmas) - 1, disable=disable):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        x0_hat = denoise(x, sigma)
        sigma_down, sigma_up = ancestral_sigmas(sigma, sigma_next, eta)
        derivative = (x - x0_hat) / sigma
        x = x + derivative * (sigma_down - sigma)
        if float(sigma_next) > 0 and eta > 0:
            x = x + _noise_like(x, generator) * sigma_up
        _report(callback, i, x, sigma_next, x0_hat)
    return x


@torch.no_grad()
def heun(
    denoise: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    disable: bool = False,
) -> torch.Tensor:
    """Heun's second-order method (Karras et al. 2022, Alg. 1/2 without churn).

    An Euler step predicts x at sigma_next, the derivative there corrects it (trapezoid rule).
    Two model calls per step, except the last step to sigma = 0, which is plain Euler
    (2n - 1 calls for n steps). `generator` is unused.
    """
    for i in trange(len(sigmas) - 1, disable=disable):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        x0_hat = denoise(x, sigma)
        derivative = (x - x0_hat) / sigma
        dt = sigma_next - sigma
        x_pred = x + derivative * dt
        if float(sigma_next) == 0:
            x = x_pred
        else:
            derivative_next = (x_pred - denoise(x_pred, sigma_next)) / sigma_next
            x = x + (derivative + derivative_next) / 2 * dt
        _report(callback, i, x, sigma_next, x0_hat)
    return x


def model_calls(sampler: str, steps: int) -> int:
    """Number of denoiser evaluations (NFE) `sampler` spends on `steps` steps ending at sigma = 0."""
    extra = {"heun": steps - 1, "plms": 1 if steps > 1 else 0}
    return steps + extra.get(sampler, 0)


__all__ = [
    "ancestral_sigmas",
    "ddim",
    "ddim_step",
    "ddpm",
    "dpmpp_2m",
    "dpmpp_2m_step",
    "euler",
    "euler_ancestral",
    "heun",
    "model_calls",
    "plms",
]
