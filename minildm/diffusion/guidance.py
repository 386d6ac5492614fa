"""Classifier-free guidance (Ho & Salimans 2022; LDM paper Sec. 4.3 "-G" models) as a model wrapper.

    eps_guided = eps_uncond + s (eps_cond - eps_uncond),   s = guidance_scale

s = 1 is the plain conditional model, s > 1 trades diversity for fidelity to the condition.
`guidance_rescale` (phi in Lin et al. 2023) pulls the guided prediction's scale back toward
the conditional one's.
Conditional and unconditional predictions come from ONE network call on a doubled batch.
Because eps, x0 and v are affine in each other with the same coefficients (objectives.py),
the same combination applies to whatever the network predicts.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch

Cond = torch.Tensor | Mapping[str, torch.Tensor]
CondModelFn = Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]
"""A conditional network: model(x_t (B, ...), t (B,), cond) -> eps, x0 or v (B, ...)."""


def cfg_combine(eps_uncond: torch.Tensor, eps_cond: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """Classifier-free guidance: eps_uncond + s (eps_cond - eps_uncond) (Ho & Salimans 2022, Eq. 6, s = 1 + w)."""
    return eps_uncond + guidance_scale * (eps_cond - eps_uncond)


def rescale_guidance(guided: torch.Tensor, cond_output: torch.Tensor, guidance_rescale: float) -> torch.Tensor:
    """Guidance rescale (Lin et al. 2023, Sec. 3.4): undo the variance blow-up of large guidance scales.

    x_rescaled = guided * std(cond_output) / std(guided) per sample; returns
    phi * x_rescaled + (1 - phi) * guided with phi = guidance_rescale; 0 leaves `guided` unchanged.
    """
    phi = guidance_rescale
    dims = tuple(range(1, guided.ndim))
    std_cond = cond_output.std(dim=dims, keepdim=True)
    std_guided = guided.std(dim=dims, keepdim=True)
    return phi * guided * (std_cond / std_guided) + (1 - phi) * guided


def _batch_of(cond: Cond, batch: int, name: str) -> Cond:
    """`cond` with batch size `batch` (size-1 batches are expanded); tensors or dicts of tensors."""
    if isinstance(cond, Mapping):
        return {key: _batch_of(value, batch, f"{name}[{key!r}]") for key, value in cond.items()}
    if not isinstance(cond, torch.Tensor):
        raise TypeError(f"{name} must be a tensor or a dict of tensors, got {type(cond).__name__}")
    if cond.shape[0] == batch:
        return cond
    if cond.shape[0] == 1:
        return cond.expand(batch, *cond.shape[1:])
    raise ValueError(f"{name} has batch size {cond.shape[0]}, expected {batch} or 1")


def _concat(uncond: Cond, cond: Cond) -> Cond:
    """Stack unconditional then conditional inputs along the batch: (B, ...) + (B, ...) -> (2B, ...)."""
    if isinstance(cond, Mapping):
        if not isinstance(uncond, Mapping) or set(uncond) != set(cond):
            raise ValueError("cond and uncond must be dicts with the same keys")
        return {key: torch.cat([uncond[key], cond[key]]) for key in cond}
    return torch.cat([uncond, cond])


def cfg_model(
    model: CondModelFn, cond: Cond, uncond: Cond, guidance_scale: float, guidance_rescale: float = 0.0
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Turn a conditional network into a guided model_fn(x_t, t) for `sample`.

    cond / uncond: the condition and the "null" condition (empty-prompt context, null class
    id ...), tensors or dicts of tensors with batch size B or 1. Each call runs the network
    once on [x; x] with [uncond; cond], then applies `cfg_combine` and, if guidance_rescale > 0,
    `rescale_guidance`.
    """
    if not 0.0 <= guidance_rescale <= 1.0:
        raise ValueError(f"guidance_rescale (phi) must lie in [0, 1], got {guidance_rescale}")

    def guided(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        both = _concat(_batch_of(uncond, batch, "uncond"), _batch_of(cond, batch, "cond"))
        t = torch.as_tensor(t, device=x.device).expand(batch)
        out = model(torch.cat([x, x]), torch.cat([t, t]), both)  # (2B, ...)
        out_uncond, out_cond = out.chunk(2)  # (2B, ...) -> 2 x (B, ...)
        result = cfg_combine(out_uncond, out_cond, guidance_scale)
        return rescale_guidance(result, out_cond, guidance_rescale) if guidance_rescale > 0 else result

    return guided
