"""`photos`: random square crops of the colour photographs that ship with scikit-image.

Works offline: only images stored inside the scikit-image package are used (those
that would need a `pooch` download are left out). Each photo is cut into a 3 x 3 grid
of regions; one region of each photo is reserved for `test`, another for `val`, the
other seven for `train` (a fixed assignment), and a crop never leaves its region, so
the splits share no pixels. Item i is a pure function of (seed, split, i): pick a
photo, one of its regions for the split, a crop side = crop_scale x the region's
shorter side, a position, then resize to `size` (bilinear, antialiased).
`label` is the index of the source photo (class_names = photo names).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from minildm.data.base import SPLIT_CODES, check_size, check_split
from minildm.data.transforms import resize_image

PHOTOS: tuple[str, ...] = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field",
                           "immunohistochemistry", "motorcycle")
DEFAULT_LENGTHS: dict[str, int] = {"train": 10_000, "val": 1_000, "test": 1_000}
GRID = 3  # regions per side
_REGION_SEED = 1234  # fixes which region of each photo is val / test; never changes with `seed`


def load_photo(name: str) -> np.ndarray:
    """One of PHOTOS as a (H, W, 3) uint8 array, read from the scikit-image package."""
    import skimage.data

    if name == "motorcycle":
        return skimage.data.stereo_motorcycle()[0]  # the left view of the stereo pair
    if name not in PHOTOS:
        raise ValueError(f"unknown photo {name!r}; valid photos are {', '.join(PHOTOS)}")
    return getattr(skimage.data, name)()


@functools.lru_cache(maxsize=1)
def _photo_tensors() -> tuple[torch.Tensor, ...]:
    """All PHOTOS as (3, H, W) uint8 tensors, decoded once per process and shared by every dataset."""
    return tuple(torch.from_numpy(load_photo(name)).permute(2, 0, 1).contiguous() for name in PHOTOS)


def split_regions(num_photos: int) -> dict[str, list[list[int]]]:
    """For each split, the grid cells (0..GRID*GRID-1) of each photo it may crop from."""
    rng = np.random.default_rng(_REGION_SEED)
    regions: dict[str, list[list[int]]] = {split: [] for split in SPLIT_CODES}
    for _ in range(num_photos):
        order = rng.permutation(GRID * GRID).tolist()
        regions["test"].append(order[:1])
        regions["val"].append(order[1:2])
        regions["train"].append(sorted(order[2:]))
    return regions


class PhotosDataset(Dataset):
    """Random crops of real photos: items {"image": (3, size, size) in [-1, 1], "label": photo index}.

    Args:
        split: "train", "val" or "test" (disjoint regions of every photo).
        size: output side in pixels.
        seed: base seed; item i is a pure function of (seed, split, i).
        length: number of items (virtual); defaults to 10,000 / 1,000 / 1,000.
        crop_scale: crop side as a fraction of the region's shorter side, a float or a
            (min, max) range inside (0, 1]; default (0.5, 1.0).
    """

    def __init__(self, split: str = "train", size: int = 32, seed: int = 0, length: int | None = None,
                 crop_scale: float | Sequence[float] = (0.5, 1.0)):
        self.split = check_split(split)
        self.size = check_size(size)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.seed = int(seed)
        self.length = DEFAULT_LENGTHS[split] if length is None else int(length)
        if self.length < 1:
            raise ValueError(f"length must be a positive integer, got {length!r}")
        lo, hi = (crop_scale, crop_scale) if isinstance(crop_scale, (int, float)) else tuple(crop_scale)
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f"crop_scale must be a float or (min, max) range inside (0, 1], got {crop_scale!r}")
        self.crop_scale = (float(lo), float(hi))
        self.class_names = list(PHOTOS)
        self.num_classes = len(PHOTOS)
        self.photos = _photo_tensors()
        self.regions = split_regions(len(PHOTOS))[split]

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for a photos split of length {self.length}")
        rng = np.random.default_rng((self.seed, SPLIT_CODES[self.split], int(index)))
        label = int(rng.random() * len(self.photos))
        photo = self.photos[label]
        cells = self.regions[label]
        row, col = divmod(cells[int(rng.random() * len(cells))], GRID)
        _, h, w = photo.shape
        top, bottom = row * h // GRID, (row + 1) * h // GRID  # the region, in pixels
        left, right = col * w // GRID, (col + 1) * w // GRID
        scale = self.crop_scale[0] + (self.crop_scale[1] - self.crop_scale[0]) * rng.random()
        side = max(int(scale * min(bottom - top, right - left)), 1)
        y = top + int(rng.random() * (bottom - top - side + 1))
        x = left + int(rng.random() * (right - left - side + 1))
        crop = photo[:, y:y + side, x:x + side].float() / 255.0  # (3, side, side) in [0, 1]
        return {"image": resize_image(crop, self.size) * 2.0 - 1.0, "label": label}
