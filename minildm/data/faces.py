"""`faces`: scikit-image's LFW subset, 200 grayscale 25x25 crops (100 faces, 100 non-faces).

Ships inside scikit-image (`skimage.data.lfw_subset()`), so it works offline. The first
100 images are faces from Labeled Faces in the Wild, the other 100 are background crops
from the same photos: label 1 = face, 0 = non-face. The fixed stratified split (seed 0)
is 160 train / 20 val / 20 test.
"""

from __future__ import annotations

import numpy as np
import torch

from minildm.data.base import ImageTensorDataset, check_split, stratified_split

SPLIT_SIZES = {"train": 160, "val": 20, "test": 20}
SPLIT_SEED = 0
CLASS_NAMES = ["non-face", "face"]


class FacesDataset(ImageTensorDataset):
    """LFW subset: items {"image": (channels, size, size) in [-1, 1], "label": 1 face / 0 non-face}.

    Args:
        split: "train" (160), "val" (20) or "test" (20); fixed and stratified.
        size: image side in pixels (the originals are 25x25).
        channels: 1 (grayscale, default) or 3 (the gray value repeated as RGB).
    """

    def __init__(self, split: str = "train", size: int = 32, channels: int = 1):
        from skimage.data import lfw_subset

        check_split(split)
        pixels = np.asarray(lfw_subset(), dtype=np.float32)  # (200, 25, 25) in [0, 1]
        labels = np.r_[np.ones(100, dtype=np.int64), np.zeros(len(pixels) - 100, dtype=np.int64)]
        indices = stratified_split(labels, SPLIT_SIZES, SPLIT_SEED)[split]
        images = torch.from_numpy(pixels[indices])[:, None]  # (N, 1, 25, 25)
        super().__init__(images, labels[indices], size, CLASS_NAMES, channels)
        self.split = split
