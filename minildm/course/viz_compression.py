"""Measuring and plotting the first stage's compression trade-off (notebook 04; LDM Sec. 3.1, 4.1, Tab. 8).

    latent_shape          (C, H, W) image + ch_mult + z_channels -> the latent's (z, H/f, W/f)
    compression_ratio     how many times fewer numbers the latent holds than the image
    codebook_usage        fraction of the K codes used at least once by a set of code indices
    codebook_perplexity   exp(entropy) of the code histogram: the "effective number of codes"
    reconstruct           x -> x_hat for a KL or VQ autoencoder (posterior mean / nearest codes)
    evaluate_autoencoder  PSNR, SSIM, LPIPS, codebook statistics, latent size and speed on a set of images
    unet_flops            floating-point operations of one UNet forward pass on a latent shape
    plot_tradeoff         PSNR or LPIPS against latent numbers per image, one line per dataset and kind
    images_to_png / png_to_images   a row of images <-> base64 PNG text (stored in the benchmark's JSON)

`benchmarks/stage1.py` (the course's version of paper Tab. 8) measures with `evaluate_autoencoder`,
so the notebook and the benchmark report the same numbers. Nothing here is needed to train or
sample; the library never imports this module.
"""

from __future__ import annotations

import base64
import io
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from minildm.autoencoder import AutoencoderKL, VQModel
from minildm.metrics import psnr, ssim


def latent_shape(image_shape: Sequence[int], ch_mult: Sequence[int], z_channels: int) -> tuple[int, int, int]:
    """The first stage's latent shape (z_channels, H/f, W/f) for images (C, H, W), with f = 2^(len(ch_mult) - 1).

    Each level after the first ends in a stride-2 Downsample (LDM Sec. 3.1: x in R^{HxWx3}
    -> z in R^{hxwxc}, h = H/f, w = W/f). The channel count of the image does not matter.
    """
    if len(image_shape) != 3:
        raise ValueError(f"image_shape must be (C, H, W), got {tuple(image_shape)}")
    if len(ch_mult) < 1 or z_channels < 1:
        raise ValueError(f"need at least one ch_mult level and z_channels >= 1, got ch_mult={tuple(ch_mult)}, "
                         f"z_channels={z_channels}")
    f = 2 ** (len(ch_mult) - 1)
    _, height, width = image_shape
    if height % f or width % f:
        raise ValueError(f"image size {height}x{width} is not divisible by the downsampling factor f={f} "
                         f"(ch_mult {tuple(ch_mult)})")
    return (z_channels, height // f, width // f)


def compression_ratio(image_shape: Sequence[int], latent: Sequence[int]) -> float:
    """Numbers per image / numbers per latent, e.g. (3, 32, 32) -> (3, 8, 8) gives 16.0."""
    pixels, numbers = math.prod(image_shape), math.prod(latent)
    if pixels < 1 or numbers < 1:
        raise ValueError(f"shapes must be non-empty, got image {tuple(image_shape)} and latent {tuple(latent)}")
    return pixels / numbers


def _code_histogram(indices: torch.Tensor, n_embed: int) -> torch.Tensor:
    """Counts (n_embed,) of each code among integer `indices` of any shape."""
    if indices.is_floating_point() or indices.is_complex():
        raise ValueError(f"indices must be an integer tensor of code indices, got dtype {indices.dtype}")
    if indices.numel() == 0:
        raise ValueError("indices is empty: need at least one code index")
    if indices.min() < 0 or indices.max() >= n_embed:
        raise ValueError(f"code indices must lie in [0, {n_embed - 1}] for n_embed={n_embed}, "
                         f"got values in [{indices.min().item()}, {indices.max().item()}]")
    return torch.bincount(indices.flatten().long(), minlength=n_embed)


def codebook_usage(indices: torch.Tensor, n_embed: int) -> torch.Tensor:
    """Fraction of the `n_embed` codes that occur at least once in `indices` (any shape): a 0-dim float tensor.

    Computed over ALL the indices given, e.g. a whole evaluation set, not per batch (a batch of
    64 images at f = 4 holds only 64 * 8 * 8 = 4096 positions, fewer than many codebooks have codes).
    """
    return (_code_histogram(indices, n_embed) > 0).float().mean()


def codebook_perplexity(indices: torch.Tensor, n_embed: int) -> torch.Tensor:
    """exp(-sum_k p_k log p_k) with p_k the fraction of `indices` equal to code k: a 0-dim float tensor.

    n_embed when every code is used equally often, 1 when one code takes everything
    (VQ-VAE / VQGAN's "perplexity", the effective number of codes in use).
    """
    p = _code_histogram(indices, n_embed).double()
    p = p / p.sum()
    p = p[p > 0]  # 0 log 0 = 0
    return torch.exp(-(p * p.log()).sum()).float()


def _unwrap(model: nn.Module) -> AutoencoderKL | VQModel:
    """The AutoencoderKL / VQModel itself, also when given a trainer wrapper holding it as `.autoencoder`."""
    inner = getattr(model, "autoencoder", model)
    if not isinstance(inner, (AutoencoderKL, VQModel)):
        raise ValueError(f"expected an AutoencoderKL or VQModel (or a wrapper with .autoencoder), got {type(model).__name__}")
    return inner


@torch.no_grad()
def reconstruct(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(x_hat, code indices or None): KL models decode the posterior mean, VQ models the nearest codes.

    x: (B, C, H, W) in [-1, 1] -> x_hat (B, C, H, W) clamped to [-1, 1]; indices (B, h, w) for VQ.
    """
    autoencoder = _unwrap(model)
    if isinstance(autoencoder, VQModel):
        x_hat, _, info = autoencoder(x)
        return x_hat.clamp(-1, 1), info["indices"]
    return autoencoder(x, sample_posterior=False)[0].clamp(-1, 1), None


def _throughput(autoencoder: nn.Module, x: torch.Tensor, repeats: int) -> float:
    """Encode + decode images per second on the batch x (one warm-up call first)."""
    reconstruct(autoencoder, x)
    start = time.perf_counter()
    for _ in range(repeats):
        reconstruct(autoencoder, x)
    return repeats * x.shape[0] / (time.perf_counter() - start)


@torch.no_grad()
def evaluate_autoencoder(model: nn.Module, images: torch.Tensor, lpips: nn.Module | None = None,
                         batch_size: int = 64, speed_repeats: int = 3) -> dict[str, Any]:
    """Reconstruction quality, codebook use, latent size and speed of `model` on `images` (N, C, H, W) in [-1, 1].

    Returns a dict: psnr, ssim (dB / index, means over images), lpips and lpips_variant (when an
    LPIPS module is given; its `.variant` says whether it is real LPIPS or the named fallback),
    codebook_usage and perplexity over ALL N images (VQ only, else None), n_embed, latent_shape,
    latent_numbers (C*h*w per image), compression (pixels / latent numbers), parameters, and
    images_per_s (encode + decode, eval mode, no grad, batches of `batch_size`). The model is
    put in eval mode.
    """
    if images.dim() != 4 or images.shape[0] < 1:
        raise ValueError(f"images must be a non-empty (N, C, H, W) batch, got shape {tuple(images.shape)}")
    autoencoder = _unwrap(model).eval()
    device = next(autoencoder.parameters()).device
    scores: dict[str, list[torch.Tensor]] = {"psnr": [], "ssim": [], "lpips": []}
    all_indices = []
    for start in range(0, images.shape[0], batch_size):
        x = images[start:start + batch_size].to(device)
        x_hat, indices = reconstruct(autoencoder, x)
        scores["psnr"].append(psnr(x_hat, x).cpu())
        scores["ssim"].append(ssim(x_hat, x).cpu())
        if lpips is not None:
            scores["lpips"].append(lpips(x_hat, x).flatten().cpu())
        if indices is not None:
            all_indices.append(indices.cpu())
    latent = tuple(autoencoder.encode_latent(images[:1].to(device)).shape[1:])  # (c, h, w)
    result: dict[str, Any] = {
        "psnr": torch.cat(scores["psnr"]).mean().item(),
        "ssim": torch.cat(scores["ssim"]).mean().item(),
        "lpips": torch.cat(scores["lpips"]).mean().item() if lpips is not None else None,
        "lpips_variant": getattr(lpips, "variant", type(lpips).__name__) if lpips is not None else None,
        "codebook_usage": None,
        "perplexity": None,
        "n_embed": None,
        "latent_shape": list(latent),
        "latent_numbers": math.prod(latent),
        "compression": compression_ratio(images.shape[1:], latent),
        "parameters": sum(p.numel() for p in autoencoder.parameters()),
        "eval_images": images.shape[0],
    }
    if all_indices:
        indices = torch.cat(all_indices)
        n_embed = autoencoder.quantize.n_embed
        result.update(codebook_usage=codebook_usage(indices, n_embed).item(),
                      perplexity=codebook_perplexity(indices, n_embed).item(), n_embed=n_embed)
    if speed_repeats > 0:
        result["images_per_s"] = _throughput(autoencoder, images[:batch_size].to(device), speed_repeats)
    return result


def unet_flops(unet: nn.Module, latent: Sequence[int], **forward_kwargs: Any) -> int:
    """Floating-point operations (2 per multiply-add) of ONE `unet(x, t, **forward_kwargs)` call on a (1, *latent) input.

    This is the cost of one denoising step of stage 2; it grows with h*w of the latent
    (convolutions linearly, self-attention quadratically), which is why small f makes
    diffusion slow (LDM Sec. 4.1, Fig. 6). Counted with torch.utils.flop_counter.
    """
    from torch.utils.flop_counter import FlopCounterMode

    device = next(unet.parameters()).device
    x = torch.zeros(1, *latent, device=device)
    t = torch.zeros(1, dtype=torch.long, device=device)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        unet(x, t, **forward_kwargs)
    return int(counter.get_total_flops())


def plot_tradeoff(rows: Sequence[Mapping[str, Any]], metric: str = "psnr", ax=None, title: str | None = None):
    """Plot `metric` ("psnr", "ssim" or "lpips") against latent numbers per image (log x axis).

    `rows` are dicts with "dataset", "kind" ("kl"/"vq"), "f", "latent_numbers" and the metric,
    as in benchmarks/results/stage1.json; one line per (dataset, kind), each point labelled f.
    Returns the Axes.
    """
    import matplotlib.pyplot as plt

    accepted = ("psnr", "ssim", "lpips")
    if metric not in accepted:
        raise ValueError(f"unknown metric {metric!r}; accepted: {accepted}")
    usable = [r for r in rows if r.get(metric) is not None]
    if not usable:
        raise ValueError(f"no row has a value for {metric!r}; rows need keys dataset, kind, f, latent_numbers, {metric}")
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.6))
    styles = {"kl": ("tab:blue", "o", "-"), "vq": ("tab:orange", "s", "--")}
    datasets = sorted({r["dataset"] for r in usable})
    for dataset_index, dataset in enumerate(datasets):
        for kind in sorted({r["kind"] for r in usable if r["dataset"] == dataset}):
            line = sorted((r for r in usable if r["dataset"] == dataset and r["kind"] == kind),
                          key=lambda r: r["latent_numbers"])
            color, marker, style = styles.get(kind, ("gray", "^", ":"))
            ax.plot([r["latent_numbers"] for r in line], [r[metric] for r in line], color=color, marker=marker,
                    linestyle=style, alpha=1.0 if dataset_index == 0 else 0.55,
                    markerfacecolor=color if dataset_index == 0 else "white", label=f"{dataset} {kind.upper()}")
            for r in line:
                ax.annotate(f"f{r['f']}", (r["latent_numbers"], r[metric]), textcoords="offset points",
                            xytext=(4, 4), fontsize=7)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("latent numbers per image (c*h*w)")
    ax.set_ylabel({"psnr": "PSNR (dB, higher is better)", "ssim": "SSIM (higher is better)",
                   "lpips": "LPIPS (lower is better)"}[metric])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def images_to_png(images: torch.Tensor) -> str:
    """Images (B, C, H, W) in [-1, 1], C = 1 or 3, as ONE base64 PNG: a row of B images, 8 bits per channel."""
    from PIL import Image

    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be (B, 1 or 3, H, W), got shape {tuple(images.shape)}")
    row = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)  # (B, C, H, W)
    row = row.permute(2, 0, 3, 1).reshape(images.shape[2], -1, images.shape[1])  # (H, B*W, C)
    picture = Image.fromarray(row.squeeze(-1).numpy() if images.shape[1] == 1 else row.numpy())
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def png_to_images(text: str, count: int) -> torch.Tensor:
    """Inverse of `images_to_png`: base64 PNG text of a row of `count` equal-width images -> (count, C, H, W) in [-1, 1]."""
    import numpy as np
    from PIL import Image

    array = np.asarray(Image.open(io.BytesIO(base64.b64decode(text))))  # (H, count*W) or (H, count*W, 3)
    if array.ndim == 2:
        array = array[:, :, None]
    height, width, channels = array.shape
    if count < 1 or width % count:
        raise ValueError(f"a PNG {width} pixels wide does not hold {count} images of equal width")
    images = torch.from_numpy(array.copy()).reshape(height, count, width // count, channels).permute(1, 3, 0, 2)
    return images.float() / 127.5 - 1
