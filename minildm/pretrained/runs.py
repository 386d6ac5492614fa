"""Reading what the trainer wrote: a run's checkpoint folder -> config, weights, the rebuilt model.

A checkpoint is a folder (the trainer keeps one, `<out_dir>/checkpoints/last/`; the writer and
the full format are in minildm/train/checkpoint.py):

    model.safetensors   the model's state_dict
    ema.safetensors     the EMA shadow weights (only when EMA is on)
    optim.safetensors   optimizer tensors and RNG states (only needed to resume training)
    state.json          step, the full config, optimizer hyper-parameters, data position, logs

Loading never unpickles: safetensors and JSON only, so a checkpoint from the internet cannot run code.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

MODEL_FILE, EMA_FILE, OPTIM_FILE, STATE_FILE = "model.safetensors", "ema.safetensors", "optim.safetensors", "state.json"


class CheckpointError(ValueError):
    """A checkpoint folder or file is missing or unreadable; the message names it."""


def find_checkpoint(path: str | Path) -> Path:
    """The checkpoint folder for a checkpoint folder, a run's `out_dir`, or its `checkpoints/` folder.

    `last.previous` is the good copy when the trainer died between the two renames of a save.
    """
    path = Path(path)
    for candidate in (path, path / "last", path / "checkpoints" / "last",
                      path.with_name(path.name + ".previous"), path / "last.previous",
                      path / "checkpoints" / "last.previous"):
        if (candidate / STATE_FILE).is_file():
            return candidate
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}: the folder does not exist")
    raise CheckpointError(f"no checkpoint at {path}: expected {path / STATE_FILE} "
                          f"(or a run folder holding checkpoints/last/{STATE_FILE})")


def read_state(checkpoint_dir: str | Path) -> dict[str, Any]:
    """state.json of a checkpoint, as a dict."""
    path = Path(checkpoint_dir) / STATE_FILE
    try:
        with open(path, encoding="utf-8") as f:
            state = json.load(f)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint file {path} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"checkpoint file {path} is corrupt (not valid JSON: {error})") from None
    if not isinstance(state, dict) or "step" not in state:
        raise CheckpointError(f"checkpoint file {path} is not a minildm state.json (no 'step')")
    return state


def read_tensors(checkpoint_dir: str | Path, filename: str) -> dict[str, torch.Tensor]:
    """The tensors of one safetensors file of a checkpoint (never unpickles)."""
    path = Path(checkpoint_dir) / filename
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} is missing")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"checkpoint file {path} is corrupt or not safetensors ({error})") from None


def load_weights(model: nn.Module, checkpoint_dir: str | Path, ema: bool = True) -> nn.Module:
    """Load a checkpoint's weights into `model` (the EMA weights on top when `ema` and present)."""
    folder = find_checkpoint(checkpoint_dir)
    try:
        model.load_state_dict(read_tensors(folder, MODEL_FILE))
    except RuntimeError as error:
        raise CheckpointError(f"{folder / MODEL_FILE} does not fit {type(model).__name__}: {error}") from None
    if ema and (folder / EMA_FILE).is_file():
        shadow = read_tensors(folder, EMA_FILE)
        params = dict(model.named_parameters())
        unknown = sorted(set(shadow) - set(params))
        if unknown:
            raise CheckpointError(f"{folder / EMA_FILE} has weights the model lacks: {unknown[:5]}")
        with torch.no_grad():
            for name, tensor in shadow.items():
                params[name].copy_(tensor)
    return model


def anchor_relative_paths(config: dict[str, Any], run: Path) -> dict[str, Any]:
    """A copy of `config` whose relative model paths (e.g. `first_stage: outputs/demo/autoencoder`) exist.

    A run names its first stage by a path relative to where training started; loaded from anywhere
    else, that path is looked up from the closest folder above the run where it exists.
    """
    from minildm.pretrained import available
    from minildm.pretrained.build import MODEL_VALUED_PARAMS

    config = copy.deepcopy(config)
    params = (config.get("model") or {}).get("params") or {}
    for name in MODEL_VALUED_PARAMS:
        value = params.get(name)
        if not isinstance(value, str) or value in available() or Path(value).is_absolute() or Path(value).exists():
            continue
        anchor = next((folder for folder in run.resolve().parents if (folder / value).exists()), None)
        if anchor is not None:
            params[name] = str(anchor / value)
    return config


def load_model(checkpoint_dir: str | Path, ema: bool = True, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model of a checkpoint from its config and weights, in eval mode on `device`.

    `checkpoint_dir` may be the checkpoint folder or the run's out_dir. With `ema=True` the
    EMA weights are used when the run kept them.
    """
    from minildm.pretrained.build import build_model

    folder = find_checkpoint(checkpoint_dir)
    state = read_state(folder)
    config = state.get("config") or {}
    if not config.get("model"):
        raise CheckpointError(f"{folder / STATE_FILE} has no model config (the Trainer was given a model without "
                              f"one); build the model yourself and call load_weights(model, {str(folder)!r})")
    model = build_model(anchor_relative_paths(config, folder))
    return load_weights(model, folder, ema=ema).to(device).eval()
