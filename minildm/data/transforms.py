"""Pixel conversions used by every dataset and notebook.

The model side of the course works with float tensors (C, H, W) in [-1, 1]
(LDM Sec. 3 / DDPM: images are scaled to [-1, 1] before encoding or noising);
the human side wants (H, W, C) uint8 arrays for matplotlib and PNG files, and results files
store a row of images as base64 PNG text (`images_to_png` / `png_to_images`).
"""

from __future__ import annotations

import base64
import io

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
    from PIL import Image

    array = np.asarray(Image.open(io.BytesIO(base64.b64decode(text))))  # (H, count*W) or (H, count*W, 3)
    if array.ndim == 2:
        array = array[:, :, None]
    height, width, channels = array.shape
    if count < 1 or width % count:
        raise ValueError(f"a PNG {width} pixels wide does not hold {count} images of equal width")
    images = torch.from_numpy(array.copy()).reshape(height, count, width // count, channels).permute(1, 3, 0, 2)
    return images.float() / 127.5 - 1
