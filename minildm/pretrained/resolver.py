"""`resolve(spec)`: the one way to turn "a model, by name or place" into an nn.Module.

Accepted, tried in this order:

    nn.Module                    returned as it is (moved to `device`)
    course checkpoint name       "shapes-kl-f4", "shapes-ldm", ... (`minildm.pretrained.available()`)
    course checkpoint folder     a copy of one: manifest.json + model.safetensors
    training run folder          a run's out_dir or a checkpoint folder (state.json, written by the trainer)
    config                       a dict {"model": {target, params}} or {target, params}, a YAML file, or
                                 a packaged config name ("autoencoder/shapes-kl-f4"): a freshly built model

`resolve_config(spec)` gives the training config behind the same specs (e.g. its `data` section,
to find the held-out images a model should be judged on).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

ModelSpec = str | Path | Mapping[str, Any] | nn.Module


def accepted_specs() -> str:
    """One line naming what `resolve` accepts, with the course checkpoint names."""
    from minildm.pretrained import available

    return (f"a course checkpoint name ({', '.join(available()) or 'none installed'}), a copied course checkpoint "
            "folder (manifest.json + model.safetensors), a training run folder (state.json), or a config "
            "(dict, YAML file or packaged config name such as autoencoder/shapes-kl-f4)")


def _unknown(spec: Any, why: str = "") -> ValueError:
    return ValueError(f"cannot load a model from {str(spec)!r}{why}; accepted: {accepted_specs()}")


def _read_yaml(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        config = yaml.safe_load(f) or {}
    if not isinstance(config, dict) or "model" not in config:
        raise _unknown(path, ": the YAML file has no model section")
    return config


def resolve_config(spec: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """The config ({"model": ..., "data": ..., ...}) behind a course name, a checkpoint folder, a run or a config."""
    from minildm.pretrained import MANIFEST, available, manifest
    from minildm.pretrained.build import available_configs, config_path
    from minildm.pretrained.runs import CheckpointError, find_checkpoint, read_state

    if isinstance(spec, Mapping):
        return dict(spec) if "model" in spec else {"model": dict(spec)}
    name, path = str(spec), Path(spec)
    if name in available():
        return manifest(name)["config"]
    if path.is_dir():
        if (path / MANIFEST).is_file():
            return json.loads((path / MANIFEST).read_text())["config"]
        try:
            return read_state(find_checkpoint(path))["config"]
        except CheckpointError as error:
            raise _unknown(spec, f" ({error})") from None
    if path.is_file() and path.suffix in (".yaml", ".yml"):
        return _read_yaml(path)
    if name in available_configs():
        return _read_yaml(config_path(name))
    raise _unknown(spec, ": no such course checkpoint, folder or config")


def resolve(spec: ModelSpec, ema: bool = True, device: str | torch.device = "cpu") -> nn.Module:
    """The model named by `spec` (see the module docstring), in eval mode on `device`.

    ema: for a training run, use the EMA weights when the run kept them (course checkpoints
    already hold the weights that were shipped, EMA when training had it).
    Raises ValueError naming `spec` and listing what is accepted.
    """
    from minildm.pretrained import MANIFEST, available, load, load_folder
    from minildm.pretrained.build import available_configs, build_model
    from minildm.pretrained.runs import CheckpointError, find_checkpoint, load_model

    if isinstance(spec, nn.Module):
        model = spec
    elif isinstance(spec, Mapping):
        model = build_model(resolve_config(spec))
    elif isinstance(spec, (str, Path)):
        name, path = str(spec), Path(spec)
        if name in available():
            model = load(name)
        elif path.is_dir() and (path / MANIFEST).is_file():
            model = load_folder(path)
        elif path.is_dir():
            try:
                folder = find_checkpoint(path)
            except CheckpointError as error:
                raise _unknown(spec, f" ({error})") from None
            model = load_model(folder, ema=ema)
        elif (path.is_file() and path.suffix in (".yaml", ".yml")) or name in available_configs():
            model = build_model(resolve_config(spec))
        else:
            raise _unknown(spec, ": no such course checkpoint, folder or config")
    else:
        raise TypeError(f"resolve takes a name, a path, a config dict or a module, got {type(spec).__name__}; "
                        f"accepted: {accepted_specs()}")
    if any(p.is_meta for p in model.parameters()):  # an architecture built under torch.device("meta"): no data to move
        return model.eval()
    return model.to(device).eval()
