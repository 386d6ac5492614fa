"""What the network predicts (eps, x0 or v), how to convert between them, and the training loss.

With x_t = sqrt(a) x_0 + sqrt(1 - a) eps (a = alpha_bar_t) the three parameterisations are
affine in each other given x_t:

    eps  (Ho et al. 2020, Eq. 14; the LDM paper's L_LDM, Eq. 2)   the noise that was added
    x0   (the clean sample)                                       x_0 = (x_t - sqrt(1-a) eps) / sqrt(a)
    v    (Salimans & Ho 2022, Sec. 4)                             v = sqrt(a) eps - sqrt(1-a) x_0

and back: x_0 = sqrt(a) x_t - sqrt(1-a) v,  eps = sqrt(1-a) x_t + sqrt(a) v.
"""

from __future__ import annotations

import torch

from minildm.diffusion.schedules import NoiseSchedule

OBJECTIVES = ("eps", "x0", "v")
WEIGHTINGS = ("uniform", "min_snr")


def check_objective(objective: str) -> None:
    """Raise ValueError unless `objective` is one of OBJECTIVES."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; valid objectives: {', '.join(OBJECTIVES)}")


# Conversions between predictions: all named <wanted>_from_<given>(x_t, t, given, schedule).


def x0_from_eps(x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, schedule: NoiseSchedule) -> torch.Tensor:
    """x_0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)  (Ho et al. 2020, Eq. 15)."""
    return x0_from_output(x_t, schedule.at(t, x_t), eps, "eps")


def eps_from_x0(x_t: torch.Tensor, t: torch.Tensor, x0: torch.Tensor, schedule: NoiseSchedule) -> torch.Tensor:
    """eps = (x_t - sqrt(alpha_bar_t) x_0) / sqrt(1 - alpha_bar_t)."""
    a = schedule.at(t, x_t)
    return (x_t - a.sqrt() * x0) / (1 - a).sqrt()


def x0_from_v(x_t: torch.Tensor, t: torch.Tensor, v: torch.Tensor, schedule: NoiseSchedule) -> torch.Tensor:
    """x_0 = sqrt(alpha_bar_t) x_t - sqrt(1 - alpha_bar_t) v."""
    return x0_from_output(x_t, schedule.at(t, x_t), v, "v")


def eps_from_v(x_t: torch.Tensor, t: torch.Tensor, v: torch.Tensor, schedule: NoiseSchedule) -> torch.Tensor:
    """eps = sqrt(1 - alpha_bar_t) x_t + sqrt(alpha_bar_t) v."""
    a = schedule.at(t, x_t)
    return (1 - a).sqrt() * x_t + a.sqrt() * v


def x0_from_output(x_t: torch.Tensor, alpha_bar: torch.Tensor, output: torch.Tensor, objective: str) -> torch.Tensor:
    """x_0 implied by a network `output` under `objective`, given alpha_bar broadcastable to x_t.

    The one place the eps/x0/v -> x_0 formulas live; samplers reach it through `make_denoiser`.
    """
    check_objective(objective)
    if objective == "eps":
        return (x_t - (1 - alpha_bar).sqrt() * output) / alpha_bar.sqrt()
    if objective == "x0":
        return output
    return alpha_bar.sqrt() * x_t - (1 - alpha_bar).sqrt() * output


def training_target(
    objective: str, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, schedule: NoiseSchedule
) -> torch.Tensor:
    """What the network should output for x_t = q_sample(x0, t, noise): noise, x0 or v."""
    check_objective(objective)
    if objective == "eps":
        return noise
    if objective == "x0":
        return x0
    a = schedule.at(t, x0)
    return a.sqrt() * noise - (1 - a).sqrt() * x0  # v (Salimans & Ho 2022)


def min_snr_weight(snr: torch.Tensor, objective: str = "eps", gamma: float = 5.0) -> torch.Tensor:
    """Min-SNR-gamma loss weights (Hang et al. 2023, "Efficient Diffusion Training via Min-SNR Weighting").

    The paper weights the x0-space loss by min(SNR, gamma). The eps and v losses are the x0
    loss times SNR and SNR + 1, so the same weighting reads:
        x0: min(SNR, gamma),   eps: min(SNR, gamma) / SNR,   v: min(SNR, gamma) / (SNR + 1).
    """
    check_objective(objective)
    if gamma <= 0:
        raise ValueError(f"gamma must be positive, got {gamma}")
    clipped = snr.clamp(max=gamma)
    if objective == "x0":
        return clipped
    if objective == "eps":
        return clipped / snr
    return clipped / (snr + 1)


def diffusion_loss(
    model_output: torch.Tensor,
    x0: torch.Tensor,
    noise: torch.Tensor,
    t: torch.Tensor,
    schedule: NoiseSchedule,
    objective: str = "eps",
    weighting: str = "uniform",
    gamma: float = 5.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """Denoising loss || target - model_output ||^2 (LDM paper Eq. 1/2; Ho et al. 2020 Eq. 14 "L_simple").

    model_output, x0, noise: (B, ...); t: (B,). The squared error is averaged over all but the
    batch dimension, multiplied by a per-sample weight (1, or min-SNR-gamma, see
    `min_snr_weight`), then averaged over the batch (reduction="mean") or returned as (B,)
    (reduction="none").
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {weighting!r}; valid weightings: {', '.join(WEIGHTINGS)}")
    if reduction not in ("mean", "none"):
        raise ValueError(f"unknown reduction {reduction!r}; valid reductions: mean, none")
    if model_output.shape != x0.shape:
        raise ValueError(f"model_output shape {tuple(model_output.shape)} differs from x0 shape {tuple(x0.shape)}")
    target = training_target(objective, x0, noise, t, schedule)
    per_sample = (model_output - target).pow(2).flatten(1).mean(dim=1)  # (B, ...) -> (B,)
    if weighting == "min_snr":
        snr = schedule.snr(t.to(per_sample.device)).to(dtype=per_sample.dtype)
        per_sample = per_sample * min_snr_weight(snr, objective, gamma)
    return per_sample.mean() if reduction == "mean" else per_sample
