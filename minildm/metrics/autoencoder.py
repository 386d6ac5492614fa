"""Held-out evaluation of a first stage (LDM Sec. 4.1, Tab. 8): how well and how compactly it reconstructs.

    compression_ratio      numbers per image / numbers per latent
    reconstruct            x -> (x_hat, code indices or None) through the latent stage 2 uses
    evaluate_autoencoder   PSNR, SSIM, optional LPIPS, codebook statistics over the whole set, latent
                           size, and optional speed; what checkpoint manifests, benchmarks/stage1.py
                           and notebook 04 all report

Codebook statistics (`codebook_usage`, `codebook_perplexity`) are defined with the quantizer,
minildm.autoencoder.quantize, and re-exported by minildm.metrics.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from minildm.autoencoder import Autoencoder, VQModel, codebook_perplexity, codebook_usage
from minildm.metrics.image import psnr, ssim
from minildm.metrics.speed import Clock, images_per_second


def compression_ratio(image_shape: Sequence[int], latent: Sequence[int]) -> float:
    """Numbers per image / numbers per latent, e.g. (3, 32, 32) -> (3, 8, 8) gives 16.0."""
    pixels, numbers = math.prod(image_shape), math.prod(latent)
    if pixels < 1 or numbers < 1:
        raise ValueError(f"shapes must be non-empty, got image {tuple(image_shape)} and latent {tuple(latent)}")
    return pixels / numbers


def _unwrap(model: nn.Module) -> Autoencoder:
    """The AutoencoderKL / VQModel itself, also when given a trainer wrapper holding it as `.autoencoder`."""
    inner = getattr(model, "autoencoder", model)
    if not isinstance(inner, Autoencoder):
        raise ValueError(f"expected an AutoencoderKL or VQModel (or a wrapper with .autoencoder), "
                         f"got {type(model).__name__}")
    return inner


@torch.no_grad()
def reconstruct(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(x_hat, code indices or None) through the latent stage 2 diffuses: decode_latent(encode_latent(x)).

    KL models decode the posterior mean, VQ models the nearest codes. x: (B, C, H, W) in [-1, 1]
    (moved to the model's device) -> x_hat (B, C, H, W) clamped to [-1, 1]; indices (B, h, w) for VQ.
    """
    autoencoder = _unwrap(model)
    x = x.to(autoencoder.scale_factor.device)
    x_hat = autoencoder.decode_latent(autoencoder.encode_latent(x)).clamp(-1, 1)
    return x_hat, autoencoder.code_indices(x) if isinstance(autoencoder, VQModel) else None


@torch.no_grad()
def evaluate_autoencoder(model: nn.Module, images: torch.Tensor, lpips: nn.Module | None = None,
                         batch_size: int = 64, speed_repeats: int = 0,
                         clock: Clock = time.perf_counter) -> dict[str, Any]:
    """Reconstruction quality, codebook use and latent size of `model` on `images` (N, C, H, W) in [-1, 1].

    Returns a dict of plain numbers: psnr_db and ssim (means over images), latent_shape,
    latent_numbers (c*h*w per image), compression (pixels / latent numbers), parameters,
    scale_factor, eval_images; for VQ models codebook_usage and perplexity over ALL N images and
    n_embed; with an LPIPS module, lpips and lpips_variant (its `.variant`: real LPIPS or the named
    fallback); with speed_repeats > 0, images_per_s (encode + decode of one batch of `batch_size`).
    Keys that do not apply are absent. The model is put in eval mode; images are moved to its device.
    """
    if images.dim() != 4 or images.shape[0] < 1:
        raise ValueError(f"images must be a non-empty (N, C, H, W) batch, got shape {tuple(images.shape)}")
    autoencoder = _unwrap(model).eval()
    device = autoencoder.scale_factor.device
    scores: dict[str, list[torch.Tensor]] = {"psnr_db": [], "ssim": [], "lpips": []}
    all_indices = []
    for x in images.split(batch_size):
        x = x.to(device)
        x_hat, indices = reconstruct(autoencoder, x)
        scores["psnr_db"].append(psnr(x_hat, x).cpu())
        scores["ssim"].append(ssim(x_hat, x).cpu())
        if lpips is not None:
            scores["lpips"].append(lpips(x_hat, x).flatten().cpu())
        if indices is not None:
            all_indices.append(indices.cpu())
    latent = tuple(autoencoder.encode_latent(images[:1].to(device)).shape[1:])  # (c, h, w)
    result: dict[str, Any] = {
        "psnr_db": torch.cat(scores["psnr_db"]).mean().item(),
        "ssim": torch.cat(scores["ssim"]).mean().item(),
        "latent_shape": list(latent),
        "latent_numbers": math.prod(latent),
        "compression": compression_ratio(images.shape[1:], latent),
        "parameters": sum(p.numel() for p in autoencoder.parameters()),
        "scale_factor": float(autoencoder.scale_factor),
        "eval_images": images.shape[0],
    }
    if lpips is not None:
        result["lpips"] = torch.cat(scores["lpips"]).mean().item()
        result["lpips_variant"] = getattr(lpips, "variant", type(lpips).__name__)
    if all_indices:
        indices, n_embed = torch.cat(all_indices), autoencoder.quantize.n_embed
        result.update(codebook_usage=codebook_usage(indices, n_embed).item(),
                      perplexity=codebook_perplexity(indices, n_embed).item(), n_embed=n_embed)
    if speed_repeats > 0:
        result["images_per_s"] = images_per_second(lambda x: reconstruct(autoencoder, x),
                                                   images[:batch_size].to(device), speed_repeats, clock)
    return result
