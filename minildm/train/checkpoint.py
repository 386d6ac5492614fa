"""Checkpoints: safetensors for tensors, JSON for everything else, written atomically.

A checkpoint is a folder (the trainer keeps one, `<out_dir>/checkpoints/last/`):

    model.safetensors   the model's state_dict
    ema.safetensors     the EMA shadow weights (only when EMA is on)
    optim.safetensors   optimizer tensors ("<group>/<param index>/<name>") and torch RNG states ("rng/...")
    state.json          step, the full config, optimizer hyper-parameters, RNG states of
                        numpy / python, data position, the log history

Loading never unpickles: safetensors and JSON only, so a checkpoint from the internet
cannot run code. This file writes checkpoints and restores training state (optimizers, RNG);
reading a checkpoint back into a model (`find_checkpoint`, `read_state`, `load_model`) lives in
minildm/pretrained/runs.py, the one home of model loading, and is re-exported here.

Saving writes into a temporary folder beside the target, fsyncs every
file, then swaps it in with renames; the previous checkpoint is removed only after the
new one is complete. If the process dies between the two renames, `last.previous` is
the good copy and `find_checkpoint` picks it up.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from minildm.pretrained.runs import (EMA_FILE, MODEL_FILE, OPTIM_FILE, STATE_FILE, CheckpointError, find_checkpoint,
                                     load_model, load_weights, read_state, read_tensors)
from minildm.train.ema import EMA

FORMAT_VERSION = 1

# ----------------------------------------------------------------------------- writing


def _fsync_dir(path: Path) -> None:
    """Flush a directory entry to disk (a no-op where the OS does not allow it, e.g. Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _make_readable(folder: Path) -> None:
    """Give the folder (mkdtemp makes it private) and its files the usual permissions under the umask."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(folder, 0o777 & ~umask)
    for path in folder.iterdir():
        os.chmod(path, 0o666 & ~umask)


def _write_safetensors(tensors: Mapping[str, torch.Tensor], path: Path) -> None:
    """Write tensors (copied to CPU, contiguous, unshared) to `path` and fsync it."""
    save_file({k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}, str(path))
    _fsync_file(path)


def _write_json(data: Any, path: Path) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
        f.flush()
        os.fsync(f.fileno())


def _optimizer_state(optimizers: Mapping[str, torch.optim.Optimizer | Mapping[str, Any]],
                     ) -> tuple[dict[str, torch.Tensor], dict]:
    """Split optimizer state_dicts into tensors ("group/index/name") and JSON (hyper-parameters, scalars)."""
    tensors, meta = {}, {}
    for group, optimizer in optimizers.items():
        state = optimizer if isinstance(optimizer, Mapping) else optimizer.state_dict()
        scalars = {}
        for index, values in state["state"].items():
            for name, value in values.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"{group}/{index}/{name}"] = value
                else:
                    scalars[f"{index}/{name}"] = value
        meta[group] = {"param_groups": state["param_groups"], "scalars": scalars}
    return tensors, meta


def save_checkpoint(
    checkpoint_dir: str | Path,
    model: nn.Module | Mapping[str, torch.Tensor],
    config: Mapping[str, Any],
    step: int,
    optimizers: Mapping[str, torch.optim.Optimizer | Mapping[str, Any]] | None = None,
    ema: EMA | None = None,
    extra_tensors: Mapping[str, torch.Tensor] | None = None,
    extra_state: Mapping[str, Any] | None = None,
    ema_state: Mapping[str, torch.Tensor] | None = None,
) -> Path:
    """Atomically write a checkpoint folder at `checkpoint_dir` (replacing any previous one); returns it.

    `config` is the full config (so `load_model` can rebuild the model); `extra_tensors`
    go into optim.safetensors and `extra_state` into state.json (both used by the trainer
    for RNG states, data position and logs). `model`, each optimizer and `ema_state` (the EMA
    weights to write instead of `ema.state_dict()`) may be given as state dicts: a sharded model's
    whole tensors, gathered beforehand (minildm.train.distributed.full_tensors), are written the same way.
    """
    target = Path(checkpoint_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        _write_safetensors(model if isinstance(model, Mapping) else model.state_dict(), tmp / MODEL_FILE)
        if ema is not None:
            _write_safetensors(ema.state_dict() if ema_state is None else ema_state, tmp / EMA_FILE)
        optim_tensors, optim_meta = _optimizer_state(optimizers or {})
        _write_safetensors({**optim_tensors, **(extra_tensors or {})}, tmp / OPTIM_FILE)
        state = {"format_version": FORMAT_VERSION, "step": int(step), "config": dict(config),
                 "optimizers": optim_meta, "ema_num_updates": ema.num_updates if ema is not None else None,
                 **(extra_state or {})}
        _write_json(state, tmp / STATE_FILE)
        _make_readable(tmp)
        _fsync_dir(tmp)
        previous = target.with_name(target.name + ".previous")
        if target.exists():
            if previous.exists():
                shutil.rmtree(previous)
            os.replace(target, previous)
        os.replace(tmp, target)
        _fsync_dir(target.parent)
        if previous.exists():
            shutil.rmtree(previous)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


# ----------------------------------------------------------------------------- resuming


def load_optimizer_state(optimizer: torch.optim.Optimizer, group: str, tensors: Mapping[str, torch.Tensor],
                         meta: Mapping[str, Any]) -> None:
    """Inverse of the split done by `save_checkpoint` for optimizer `group`."""
    state: dict[int, dict[str, Any]] = {}
    prefix = f"{group}/"
    for key, tensor in tensors.items():
        if key.startswith(prefix):
            index, name = key[len(prefix):].split("/", 1)
            state.setdefault(int(index), {})[name] = tensor
    for key, value in meta["scalars"].items():
        index, name = key.split("/", 1)
        state.setdefault(int(index), {})[name] = value
    # keep this run's implementation (fused on CUDA, foreach on the CPU): a checkpoint may come from the other
    implementation = {k: optimizer.defaults[k] for k in ("fused", "foreach") if k in optimizer.defaults}
    param_groups = [{**saved, **implementation} for saved in meta["param_groups"]]
    optimizer.load_state_dict({"state": state, "param_groups": param_groups})


def capture_rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """This process's RNG states: torch CPU/CUDA as uint8 tensors, numpy and python as JSON lists."""
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda_{i}"] = state
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return tensors, {"numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
                     "python": [version, list(internal), gauss_next]}


def restore_rng_state(tensors: Mapping[str, torch.Tensor], state: Mapping[str, Any]) -> None:
    """Inverse of `capture_rng_state`."""
    torch.set_rng_state(tensors["torch_cpu"])
    cuda = [tensors[f"cuda_{i}"] for i in range(len(tensors)) if f"cuda_{i}" in tensors]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[:torch.cuda.device_count()])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


__all__ = ["EMA_FILE", "MODEL_FILE", "OPTIM_FILE", "STATE_FILE", "CheckpointError", "find_checkpoint",
           "load_model", "load_weights", "read_state", "read_tensors", "save_checkpoint"]
