"""Helpers the notebooks share: seeding + environment report, image grids, friendly test checks."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


def setup_notebook(seed: int = 0) -> torch.device:
    """Seed `random`, NumPy and PyTorch with `seed`, print the device and fast mode; return the device."""
    from minildm.course.fast import fast_mode
    from minildm.utils import default_device

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    device = default_device()
    mode = "on (MINILDM_FAST=1: small sizes, few steps)" if fast_mode() else "off (full run)"
    print(f"device: {device} | fast mode: {mode} | seed: {seed}")
    return device


def show_images(images: torch.Tensor | Sequence[torch.Tensor], nrow: int = 8, title: str | None = None,
                labels: Sequence[Any] | None = None, scale: float = 1.2):
    """Draw images in [-1, 1] as a matplotlib grid with `nrow` images per row; return the Figure.

    `images` is a (B, C, H, W) tensor or a list of (C, H, W) tensors (C = 1 or 3); `labels`
    (one per image) become small titles. End the notebook line with `;` so Jupyter shows
    the figure once.
    """
    import matplotlib.pyplot as plt

    from minildm.data.transforms import to_image

    if isinstance(images, torch.Tensor):
        if images.ndim == 3:
            images = images[None]  # one image (C, H, W) -> (1, C, H, W)
        batch = list(images)
    else:
        batch = list(images)
    if not batch or any(not isinstance(x, torch.Tensor) or x.ndim != 3 or x.shape[0] not in (1, 3) for x in batch):
        raise ValueError("show_images expects a (B, C, H, W) tensor or a non-empty list of (C, H, W) tensors "
                         "with C = 1 or 3, values in [-1, 1]")
    if labels is not None and len(labels) != len(batch):
        raise ValueError(f"labels has {len(labels)} entries for {len(batch)} images; give one label per image")
    if nrow < 1:
        raise ValueError(f"nrow is the number of images per row and must be >= 1, got {nrow}")
    ncols = min(nrow, len(batch))
    nrows = math.ceil(len(batch) / ncols)
    row_height = scale + (0.3 if labels is not None else 0.0)  # room for the small titles
    fig, axes = plt.subplots(nrows, ncols, figsize=(scale * ncols, row_height * nrows + (0.5 if title else 0.0)),
                             squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= len(batch):
            continue
        pixels = to_image(batch[k])  # (C, H, W) in [-1, 1] -> (H, W, C) uint8
        if pixels.shape[-1] == 1:
            ax.imshow(pixels[..., 0], cmap="gray", vmin=0, vmax=255)
        else:
            ax.imshow(pixels)
        if labels is not None:
            ax.set_title(str(labels[k]), fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _as_array(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def assert_close(actual: Any, expected: Any, name: str = "result", atol: float = 1e-5, rtol: float = 1e-4,
                 check_dtype: bool = True) -> None:
    """Assert that `actual` matches `expected` (tensors, arrays or numbers) with a message a student can act on.

    Checks, in order: the kind of object (tensor vs NumPy array), the shape, the dtype
    (unless `check_dtype=False`) and the values (|a - e| <= atol + rtol |e|).
    """
    if isinstance(expected, torch.Tensor) != isinstance(actual, torch.Tensor) or (
        isinstance(expected, np.ndarray) and not isinstance(actual, np.ndarray)
    ):
        raise AssertionError(f"{name}: expected a {type(expected).__name__}, got a {type(actual).__name__}")
    a, e = _as_array(actual), _as_array(expected)
    if a.shape != e.shape:
        raise AssertionError(f"{name}: shape {tuple(a.shape)}, expected {tuple(e.shape)}")
    if check_dtype and (isinstance(expected, (torch.Tensor, np.ndarray))) and a.dtype != e.dtype:
        got = actual.dtype if isinstance(actual, torch.Tensor) else a.dtype
        want = expected.dtype if isinstance(expected, torch.Tensor) else e.dtype
        raise AssertionError(f"{name}: dtype {got}, expected {want}")
    if a.dtype == bool or e.dtype == bool or not (np.issubdtype(a.dtype, np.number) and np.issubdtype(e.dtype, np.number)):
        if not np.array_equal(a, e):
            raise AssertionError(f"{name}: values differ from the expected ones")
        return
    a64, e64 = a.astype(np.float64), e.astype(np.float64)
    if np.isnan(a64).any() and not np.isnan(e64).any():
        raise AssertionError(f"{name}: contains NaN where the expected values are finite")
    diff = np.abs(a64 - e64)
    bad = ~(diff <= atol + rtol * np.abs(e64)) & ~(np.isnan(a64) & np.isnan(e64))
    if bad.any():
        where = tuple(int(i) for i in np.unravel_index(int(np.argmax(np.where(bad, diff, -1))), a.shape)) if a.ndim else ()
        raise AssertionError(
            f"{name}: {int(bad.sum())} of {a.size} values differ; largest difference {float(diff[bad].max()):.4g} "
            f"at index {where}: got {a64[where]:.6g}, expected {e64[where]:.6g} (atol {atol}, rtol {rtol})"
        )
