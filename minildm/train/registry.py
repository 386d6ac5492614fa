"""Which class a config's `model.target` and `data.name` mean, and building them.

Names map to import strings resolved only when used, so importing the trainer does not
import every model of the course. A target may also be any "package.module:ClassName".
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

MODELS: dict[str, str] = {
    "autoencoder_kl": "minildm.autoencoder.training:KLAutoencoderTrainable",
    "vq_model": "minildm.autoencoder.training:VQAutoencoderTrainable",
    "latent_diffusion": "minildm.ldm:LatentDiffusion",
    "judge": "minildm.metrics.judge:JudgeClassifier",
}


def import_string(spec: str) -> Any:
    """"package.module:Name" -> the object."""
    from minildm.train.config import ConfigError

    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"{spec!r} is not an import string of the form package.module:ClassName")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ConfigError(f"cannot import module {module_name!r} of {spec!r}: {error}") from error
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"module {module_name!r} has no attribute {attr!r} (from {spec!r})") from None


def resolve_target(target: str) -> type:
    """A registered model name (see MODELS) or "package.module:ClassName" -> the nn.Module class."""
    from minildm.train.config import ConfigError

    if target in MODELS:
        cls = import_string(MODELS[target])
    elif ":" in target:
        cls = import_string(target)
    else:
        raise ConfigError(f"model.target {target!r} is not a registered model; valid: {', '.join(MODELS)}, "
                          f"or an import string package.module:ClassName")
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ConfigError(f"model.target {target!r} resolves to {cls!r}, which is not an nn.Module class")
    return cls


def build_model(config: Mapping[str, Any]) -> nn.Module:
    """The model of a (validated) config: `resolve_target(model.target)(**model.params)`."""
    model = config["model"]
    return resolve_target(model["target"])(**(model.get("params") or {}))


def build_dataset(config: Mapping[str, Any]) -> Dataset:
    """The dataset of a config's data section: `minildm.data.get_dataset(name, split=, size=, **options)`.

    A name of the form "package.module:Class" is called as Class(split=, size=, **options)
    instead (used by the toy examples).
    """
    from minildm.train.config import ConfigError

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
