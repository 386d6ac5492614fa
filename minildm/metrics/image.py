"""Reconstruction metrics: PSNR and SSIM on images in [-1, 1].

PSNR = 10 log10(MAX^2 / MSE) with MAX = 1 on images mapped to [0, 1].
SSIM follows Wang et al. (2004), "Image quality assessment: from error visibility to
structural similarity": an 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03,
computed per channel and averaged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _to_unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], clamped (what an image viewer would show)."""
    return ((x.float() + 1) / 2).clamp(0, 1)


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image; x, y: (B, C, H, W) in [-1, 1] -> (B,)."""
    mse = (_to_unit(x) - _to_unit(y)).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-10))


def _gaussian_window(size: int, sigma: float, channels: int, device, dtype) -> torch.Tensor:
    coords = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    window = g[:, None] * g[None, :]  # (size, size)
    return window.expand(channels, 1, size, size).contiguous()  # depthwise conv weight


def ssim(x: torch.Tensor, y: torch.Tensor, window_size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Structural similarity per image (Wang et al. 2004); x, y: (B, C, H, W) in [-1, 1] -> (B,).

    Images smaller than the window use a window as large as the image.
    """
    x, y = _to_unit(x), _to_unit(y)
    channels = x.shape[1]
    size = min(window_size, x.shape[-1], x.shape[-2])
    w = _gaussian_window(size, sigma, channels, x.device, x.dtype)
    conv = lambda t: F.conv2d(t, w, groups=channels)  # noqa: E731  (valid conv, as in the reference)
    mu_x, mu_y = conv(x), conv(y)
    sigma_xx = conv(x * x) - mu_x**2
    sigma_yy = conv(y * y) - mu_y**2
    sigma_xy = conv(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * sigma_xy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sigma_xx + sigma_yy + c2))
    return ssim_map.flatten(1).mean(1)
