"""Building a model from a config: `model.target` names a class, `model.params` are its keyword arguments.

Names map to import strings resolved only when used, so building one model does not import every
model of the course. A target may also be any "package.module:ClassName".

A parameter that names another model (today `first_stage` of a LatentDiffusion) is loaded first,
through `minildm.pretrained.resolve`: a course checkpoint name ("shapes-kl-f4"), a training run
folder, a copied course checkpoint folder, or an architecture {"target": ..., "params": ...}
whose weights then come from the outer model's own checkpoint. The class itself only ever
receives modules, so minildm.ldm never needs to know where a model comes from.

Packaged configs live in minildm/configs ("autoencoder/shapes-kl-f4"); `config_path` finds them.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

CONFIG_ROOT = Path(__file__).resolve().parent.parent / "configs"

MODELS: dict[str, str] = {
    "autoencoder_kl": "minildm.autoencoder.training:KLAutoencoderTrainable",
    "vq_model": "minildm.autoencoder.training:VQAutoencoderTrainable",
    "latent_diffusion": "minildm.ldm:LatentDiffusion",
    "judge": "minildm.metrics.judge:JudgeClassifier",
}

MODEL_VALUED_PARAMS = ("first_stage",)
"""Parameters that name another model; `build_model` loads them (see `minildm.pretrained.resolve`)."""


class ConfigError(ValueError):
    """A config key is unknown, missing or has the wrong type; the message names the key."""


def available_configs() -> list[str]:
    """Names of the packaged configs, e.g. "autoencoder/shapes-kl-f4" (usable as CONFIG in `minildm train`)."""
    return sorted(p.relative_to(CONFIG_ROOT).with_suffix("").as_posix() for p in CONFIG_ROOT.rglob("*.yaml"))


def config_path(name_or_path: str | Path) -> Path:
    """A YAML file path, or the name of a packaged config under minildm/configs ("family/name")."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    for candidate in (CONFIG_ROOT / path, CONFIG_ROOT / path.with_suffix(".yaml")):
        if candidate.is_file():
            return candidate
    raise ConfigError(f"no config file {str(name_or_path)!r}: not a file, and not a packaged config; "
                      f"packaged configs are: {', '.join(available_configs()) or 'none'}")


def import_string(spec: str) -> Any:
    """"package.module:Name" -> the object."""
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
    """The model of a config: `resolve_target(model.target)(**model.params)`, model-valued params loaded first.

    The weights are the class's fresh initialisation, except inside a loaded model-valued
    parameter (a first stage named by a course checkpoint or a run folder comes with its weights).
    """
    from minildm.pretrained.resolver import resolve

    model = config["model"]
    params = dict(model.get("params") or {})
    for name in MODEL_VALUED_PARAMS:
        spec = params.get(name)
        if spec is not None and not isinstance(spec, nn.Module):
            params[name] = resolve(spec)
    return resolve_target(model["target"])(**params)
