"""What a config's `data.name` means, and building the model and dataset of a config for training.

Model names (`model.target`) and `build_model` live in minildm/pretrained/build.py, the one home
of model loading (a config may name a course checkpoint as its first stage); they are re-exported here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from minildm.pretrained.build import MODELS, build_model, import_string, resolve_target
from minildm.train.config import ConfigError


def build_dataset(config: Mapping[str, Any]) -> Dataset:
    """The dataset of a config's data section: `minildm.data.get_dataset(name, split=, size=, **options)`.

    A name of the form "package.module:Class" is called as Class(split=, size=, **options)
    instead (used by the toy examples).
    """
    data = config.get("data")
    if data is None:
        raise ConfigError("the config has no data section (data: {name: shapes, size: 32, ...})")
    kwargs = {"split": data.get("split", "train"), "size": data.get("size", 32), **(data.get("options") or {})}
    if ":" in data["name"]:
        return import_string(data["name"])(**kwargs)
    from minildm.data import get_dataset

    return get_dataset(data["name"], **kwargs)


def seeded_build_model(config: Mapping[str, Any]) -> nn.Module:
    """`build_model` with torch seeded from train.seed, so the initial weights are reproducible."""
    torch.manual_seed(int((config.get("train") or {}).get("seed", 0)))
    return build_model(config)


__all__ = ["MODELS", "build_dataset", "build_model", "import_string", "resolve_target", "seeded_build_model"]
