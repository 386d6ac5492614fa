"""Pixel conversions used by every dataset and notebook.

The model side of the course works with float tensors (C, H, W) in [-1, 1]
(LDM Sec. 3 / DDPM: images are scaled to [-1, 1] before encoding or noising);
the human side wants (H, W, C) uint8 arrays for matplotlib and PNG files.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def resize_image(x: torch.Tensor, size: int) -> torch.Tensor:
    """Centre-crop (C, h, w) to a square, then resize it to (C, size, size), bilinear + antialias."""
    _, h, w = x.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    x = x[:, top:top + side, left:left + side]  # (C, side, side)
    if side == size:
        return x
    # antialias only matters when shrinking; it averages source pixels like a box filter would
    return F.interpolate(x[None], size=(size, size), mode="bilinear", align_corners=False,
                         antialias=side > size)[0]  # (1, C, side, side) -> (C, size, size)


def to_image(tensor: torch.Tensor) -> np.ndarray:
    """[-1, 1] image tensor -> uint8 numpy array for matplotlib / PNG.

    (C, H, W) -> (H, W, C), and a batch (B, C, H, W) -> (B, H, W, C). Values are clamped
    to [-1, 1] first, so model samples that overshoot still convert. Note: a 1-channel
    image keeps its channel axis, (H, W, 1); pass `image[..., 0]` to `plt.imshow`.
    """
    if not isinstance(tensor, torch.Tensor) or tensor.ndim not in (3, 4):
        shape = tuple(tensor.shape) if hasattr(tensor, "shape") else type(tensor).__name__
        raise ValueError(f"to_image expects a (C, H, W) or (B, C, H, W) tensor in [-1, 1], got {shape}")
    x = tensor.detach().float().cpu().clamp(-1.0, 1.0)
    x = ((x + 1.0) * 127.5).round().to(torch.uint8)
    return x.movedim(-3, -1).numpy()  # (..., C, H, W) -> (..., H, W, C)


def image_grid(images: torch.Tensor, ncols: int | None = None, pad: int = 1) -> np.ndarray:
    """Tile a batch (B, C, H, W) in [-1, 1] into one (rows*(H+pad)-pad, cols*(W+pad)-pad, C) uint8 array.

    `ncols` defaults to ceil(sqrt(B)); gaps of `pad` pixels are white.
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise ValueError("image_grid expects a (B, C, H, W) tensor in [-1, 1]")
    tiles = to_image(images)  # (B, H, W, C)
    b, h, w, c = tiles.shape
    ncols = ncols or int(np.ceil(np.sqrt(b)))
    nrows = int(np.ceil(b / ncols))
    grid = np.full((nrows * (h + pad) - pad, ncols * (w + pad) - pad, c), 255, dtype=np.uint8)
    for k in range(b):
        r, col = divmod(k, ncols)
        grid[r * (h + pad):r * (h + pad) + h, col * (w + pad):col * (w + pad) + w] = tiles[k]
    return grid
