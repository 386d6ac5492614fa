"""Whole batches from a dataset: the first N items stacked, and class labels balanced for sampling.

    stack_items       the first `num_items` items of a Dataset, each key stacked into one tensor
    load_images       images (N, C, H, W) and labels (N,) of a dataset named by a config's `data` section
    balanced_labels   every class equally often, e.g. the labels a class-conditional model is evaluated on

Evaluations (held-out images of checkpoints, benchmarks, notebooks, the demo) all load their
images through `load_images`, so "the first N validation images" means the same everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset


def stack_items(dataset: Dataset, num_items: int | None = None, keys: Sequence[str] = ("image", "label"),
                start: int = 0) -> dict[str, torch.Tensor]:
    """Items start .. start + num_items - 1 of `dataset` (fewer if it is shorter), each key in `keys` stacked.

    Tensor values are stacked along a new first axis; numbers (labels) become a (N,) tensor. Keys an
    item lacks are left out.
    """
    stop = len(dataset) if num_items is None else min(start + num_items, len(dataset))
    if stop <= start:
        raise ValueError(f"no items to stack: the dataset has {len(dataset)} items, asked for {num_items} from {start}")
    items = [dataset[i] for i in range(start, stop)]
    return {key: torch.stack([torch.as_tensor(it[key]) for it in items]) for key in keys if key in items[0]}


def load_images(data: str | Mapping[str, Any], num_images: int, split: str = "val"
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The first `num_images` images (N, C, H, W) in [-1, 1] of `split`, and their labels (N,) or None.

    `data` is a dataset name or a config's `data` section {"name", "size" (default 32), "options"}.
    """
    from minildm.data.registry import get_dataset

    data = {"name": data} if isinstance(data, str) else data
    dataset = get_dataset(data["name"], split=split, size=data.get("size", 32), **dict(data.get("options") or {}))
    batch = stack_items(dataset, num_images)
    return batch["image"], batch.get("label")


def balanced_labels(num_classes: int, min_samples: int) -> torch.Tensor:
    """Every class equally often, at least `min_samples` in all: (0, 0, ..., 1, 1, ..., C-1, C-1)."""
    if num_classes < 1 or min_samples < 1:
        raise ValueError(f"need num_classes >= 1 and min_samples >= 1, got {num_classes} and {min_samples}")
    return torch.arange(num_classes).repeat_interleave(math.ceil(min_samples / num_classes))
