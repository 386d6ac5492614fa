"""Inpainting without training: "replacement" sampling with a model that never saw a mask.

Song et al. (2021, "Score-Based Generative Modeling through SDEs", Sec. 5 and App. I.2, imputation)
and RePaint (Lugmayr et al. 2022, Eq. 8-10) fill a hole with an unconditional diffusion model by
forcing, at every step, the known region to agree with the known image; only the hole is generated.
In latent space (LDM), the known image is the latent of the masked image, z_known = E((1 - m) x), and
the known region is the latent cells the hole does not touch.

Here the agreement is imposed on the model's estimate of the clean latent: at every call,

    x0_hat = m * x0_hat + (1 - m) * z_known          m: (B, 1, h, w), 1 = cell to generate

and the prediction (eps, x0 or v) is rewritten to match, so *any* sampler of minildm.diffusion runs
unchanged. With a deterministic sampler this is the x0 form of replacing x_t by q(z_known, t) in the
known region (RePaint without its resampling loop). The hole only "sees" the known region through
the noisy input, which is why such a model blends less well than one trained with the mask as input
(the paper's Sec. 4.5 concat model): the comparison in benchmarks/image_to_image.py.
"""

from __future__ import annotations

import torch

from minildm.diffusion.denoiser import ModelFn
from minildm.diffusion.objectives import check_objective, x0_from_output
from minildm.diffusion.schedules import NoiseSchedule


def output_from_x0(x_t: torch.Tensor, alpha_bar: torch.Tensor, x0: torch.Tensor, objective: str) -> torch.Tensor:
    """The network output (eps, x0 or v) that implies the clean estimate `x0` at x_t (inverse of x0_from_output)."""
    check_objective(objective)
    if objective == "x0":
        return x0
    eps = (x_t - alpha_bar.sqrt() * x0) / (1 - alpha_bar).sqrt()
    if objective == "eps":
        return eps
    return alpha_bar.sqrt() * eps - (1 - alpha_bar).sqrt() * x0  # v (Salimans & Ho 2022)


def replacement_model_fn(model_fn: ModelFn, z_known: torch.Tensor, fill: torch.Tensor, schedule: NoiseSchedule,
                         objective: str = "eps", interpolation: str = "log") -> ModelFn:
    """Wrap model_fn(x_t, t) so that its clean estimate equals `z_known` (B, c, h, w) where `fill` (B, 1, h, w) is 0.

    t may be fractional (samplers pass it so); alpha_bar is read at t with the same `interpolation`
    the sampler used to turn its sigma into t (minildm.diffusion.denoiser).
    """
    check_objective(objective)
    if fill.dim() != 4 or fill.shape[1] != 1 or fill.shape[0] != z_known.shape[0] \
            or fill.shape[-2:] != z_known.shape[-2:]:
        raise ValueError(f"fill must be (B, 1, h, w) matching z_known {tuple(z_known.shape)}, got {tuple(fill.shape)}")

    def replaced(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        output = model_fn(x_t, t)
        sigma = schedule.t_to_sigma(torch.as_tensor(t).expand(x_t.shape[0]), interpolation)
        alpha_bar = (1 / (sigma**2 + 1)).to(x_t.dtype).view(-1, *([1] * (x_t.dim() - 1)))  # (B,) -> (B, 1, 1, 1)
        x0 = x0_from_output(x_t, alpha_bar, output, objective)
        x0 = fill * x0 + (1 - fill) * z_known.to(x0.dtype)  # the known cells take the known latent
        return output_from_x0(x_t, alpha_bar, x0, objective)

    return replaced
