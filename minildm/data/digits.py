"""`digits`: scikit-learn's handwritten digits (UCI ML hand-written digits, 1,797 real 8x8 images).

Ships inside scikit-learn, so it works offline. Pixels are ink levels 0..16; we scale
them to [0, 1], resize to the asked size (bilinear) and map to [-1, 1]. The fixed,
stratified split (seed 0) is 1,297 train / 250 val / 250 test images.
"""

from __future__ import annotations

import numpy as np
import torch

from minildm.data.base import ImageTensorDataset, check_split, stratified_split

SPLIT_SIZES = {"train": 1297, "val": 250, "test": 250}
SPLIT_SEED = 0
CLASS_NAMES = [str(d) for d in range(10)]


class DigitsDataset(ImageTensorDataset):
    """scikit-learn digits: items {"image": (channels, size, size) in [-1, 1], "label": 0..9}.

    Args:
        split: "train" (1,297), "val" (250) or "test" (250); fixed and stratified.
        size: image side in pixels (the originals are 8x8).
        channels: 1 (grayscale, default) or 3 (the gray value repeated as RGB).
    """

    def __init__(self, split: str = "train", size: int = 32, channels: int = 1):
        from sklearn.datasets import load_digits

        check_split(split)
        digits = load_digits()
        indices = stratified_split(digits.target, SPLIT_SIZES, SPLIT_SEED)[split]
        images = torch.from_numpy(digits.images[indices].astype(np.float32) / 16.0)[:, None]  # (N, 1, 8, 8)
        super().__init__(images, digits.target[indices], size, CLASS_NAMES, channels)
        self.split = split
