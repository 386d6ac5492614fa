"""What every minildm dataset shares: split names, argument checks, stratified splits,
and an in-memory image dataset that maps stored pixels to the course's [-1, 1] tensors.

The course contract (DESIGN.md): an item is a dict whose `image` is a float tensor
(C, H, W) in [-1, 1]; labelled datasets add an int `label` and expose `num_classes`
and `class_names`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from minildm.data.transforms import resize_image

SPLITS: tuple[str, ...] = ("train", "val", "test")
# a number per split, mixed into per-item random seeds so that no two splits ever draw the same item
SPLIT_CODES: dict[str, int] = {name: code for code, name in enumerate(SPLITS)}


def check_split(split: str) -> str:
    """Return `split` if it is one of SPLITS, else raise ValueError listing them."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits are {', '.join(SPLITS)}")
    return split


def check_size(size: int, minimum: int = 4) -> int:
    """Return `size` (the square image side in pixels) if it is an int >= minimum."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < minimum:
        raise ValueError(f"size must be an integer >= {minimum} (pixels per side), got {size!r}")
    return int(size)


def check_channels(channels: int) -> int:
    """Return `channels` if it is 1 (grayscale) or 3 (grayscale repeated as RGB)."""
    if channels not in (1, 3) or isinstance(channels, bool):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    return int(channels)


def stratified_split(labels: np.ndarray, sizes: dict[str, int], seed: int) -> dict[str, np.ndarray]:
    """Split indices 0..N-1 into disjoint train/val/test sets of the given sizes, same class mix.

    `sizes` = {"train": n_train, "val": n_val, "test": n_test} adding up to N; uses
    scikit-learn's stratified `train_test_split` with a fixed `seed` (so the split never changes).
    """
    from sklearn.model_selection import train_test_split

    labels = np.asarray(labels)
    if set(sizes) != set(SPLITS) or sum(sizes.values()) != len(labels):
        raise ValueError(f"split sizes {sizes} must name {SPLITS} and add up to the {len(labels)} examples")
    everything = np.arange(len(labels))
    rest, test = train_test_split(everything, test_size=sizes["test"], stratify=labels, random_state=seed)
    train, val = train_test_split(rest, test_size=sizes["val"], stratify=labels[rest], random_state=seed)
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}


class ImageTensorDataset(Dataset):
    """Images held in memory as a (N, C, h, w) tensor (uint8 0..255 or float 0..1) with labels.

    Items are {"image": (C, size, size) float in [-1, 1], "label": int}; images are
    resized on access (bilinear, antialiased) and grayscale can be repeated to 3 channels.
    """

    def __init__(self, images: torch.Tensor, labels: Sequence[int] | np.ndarray | torch.Tensor, size: int,
                 class_names: Sequence[str], channels: int | None = None):
        if images.ndim != 4:
            raise ValueError(f"images must be (N, C, h, w), got shape {tuple(images.shape)}")
        self.images = images
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
        self.size = check_size(size)
        self.class_names = list(class_names)
        self.num_classes = len(self.class_names)
        self.channels = images.shape[1] if channels is None else check_channels(channels)
        if self.channels != images.shape[1] and images.shape[1] != 1:
            raise ValueError(f"cannot turn {images.shape[1]}-channel images into {self.channels} channels")

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} images")
        x = self.images[index]
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()  # (C, h, w) in [0, 1]
        x = resize_image(x, self.size) * 2.0 - 1.0  # (C, size, size) in [-1, 1]
        if self.channels != x.shape[0]:
            x = x.expand(self.channels, -1, -1).contiguous()
        return {"image": x, "label": int(self.labels[index])}
