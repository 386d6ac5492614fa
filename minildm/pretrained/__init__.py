"""Pretrained models: one home for loading a model, the course's own checkpoints, CompVis / diffusers interop.

    resolver.py   resolve(spec): a course name, a course checkpoint folder, a run folder or a config -> model
    build.py      build_model(config): model.target -> class (MODELS), model-valued params (first_stage) loaded
    runs.py       reading a training run's checkpoint folder (find_checkpoint, read_state, load_model)
    vae.py, unet.py   CompVis / Stable Diffusion / diffusers weights (`minildm convert`)
    stable_diffusion.py  Stable Diffusion v1 text-to-image from local files (`minildm sample sd-v1`):
                      load_stable_diffusion(path) -> LatentDiffusion, save_stable_diffusion(ldm, path)
    evaluate.py   held-out metrics recorded in each course checkpoint's manifest

Course checkpoints live in `minildm/pretrained/checkpoints/<name>/`:

    model.safetensors   the weights in float16 (loaded back as float32)
    manifest.json       {"name", "config" (the full training config), "commit", "steps", "metrics", "command"}

`load("shapes-kl-f4")` rebuilds the model from the manifest's config and loads the weights;
`load_folder(path)` does the same for a copy of such a folder anywhere on disk.
`export_checkpoint(run_dir, name, ...)` turns a finished training run into such a folder;
each manifest records the one `minildm train` command that regenerates it.
Weights are safetensors and JSON only: nothing is ever unpickled.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from minildm.pretrained.build import MODELS, ConfigError, available_configs, build_model
from minildm.pretrained.resolver import accepted_specs, resolve, resolve_config
from minildm.pretrained.runs import CheckpointError, find_checkpoint, load_model, read_state
from minildm.pretrained.stable_diffusion import load_stable_diffusion, save_stable_diffusion

CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"
WEIGHTS, MANIFEST = "model.safetensors", "manifest.json"


def available() -> list[str]:
    """Names of the course checkpoints shipped with minildm."""
    if not CHECKPOINTS.is_dir():
        return []
    return sorted(p.name for p in CHECKPOINTS.iterdir() if (p / MANIFEST).is_file())


def manifest(name: str) -> dict[str, Any]:
    """The manifest of course checkpoint `name` (config, commit, steps, metrics, command)."""
    folder = CHECKPOINTS / name
    if not (folder / MANIFEST).is_file():
        raise ValueError(f"unknown course checkpoint {name!r}; available: {', '.join(available()) or '(none)'}")
    return json.loads((folder / MANIFEST).read_text())


def load_folder(folder: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the course checkpoint in `folder` (manifest.json + model.safetensors) in float32, eval mode."""
    folder = Path(folder)
    if not (folder / MANIFEST).is_file() or not (folder / WEIGHTS).is_file():
        raise ValueError(f"{folder} is not a course checkpoint folder: expected {MANIFEST} and {WEIGHTS} in it")
    info = json.loads((folder / MANIFEST).read_text())
    model = build_model(info["config"])
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(folder / WEIGHTS).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith(tuple(info.get("dropped_prefixes", ())))]
    if missing or unexpected:
        raise ValueError(f"course checkpoint {info.get('name', folder)!r} does not fit its config: missing "
                         f"{missing[:5]}, unexpected {unexpected[:5]}")
    return model.to(device).eval()


def load(name: str, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild course checkpoint `name` (e.g. "shapes-kl-f4") in float32, eval mode, on `device`."""
    manifest(name)  # a clear error for an unknown name
    return load_folder(CHECKPOINTS / name, device=device)


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).resolve().parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def export_checkpoint(run_dir: str | Path, name: str, metrics: Mapping[str, float], command: str,
                      config_updates: Mapping[str, Any] | None = None, ema: bool = True,
                      drop_prefixes: tuple[str, ...] = ()) -> Path:
    """Write `checkpoints/<name>/` from a finished training run: fp16 weights + manifest.

    config_updates: model params to rewrite for shipping, e.g. {"first_stage": "shapes-kl-f4"} so an
    LDM points at a course checkpoint instead of a local run folder.
    drop_prefixes: state-dict prefixes not worth shipping (e.g. a GAN discriminator).
    """
    folder = find_checkpoint(run_dir)
    state = read_state(folder)
    model = load_model(folder, ema=ema)
    config = json.loads(json.dumps(state["config"]))
    config["model"]["params"].update(config_updates or {})
    tensors = {k: (v.half() if v.is_floating_point() else v).contiguous()
               for k, v in model.state_dict().items() if not k.startswith(drop_prefixes)}
    out = CHECKPOINTS / name
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / WEIGHTS))
    info = {"name": name, "config": config, "commit": _git_commit(), "steps": state.get("step"),
            "metrics": dict(metrics), "command": command, "dropped_prefixes": list(drop_prefixes)}
    (out / MANIFEST).write_text(json.dumps(info, indent=2) + "\n")
    return out


SHIP_WITHOUT = {"autoencoder_kl": ("loss.",), "vq_model": ("loss.",), "latent_diffusion": ("first_stage.",)}


def export_run(run_dir: str | Path, name: str, command: str) -> Path:
    """Evaluate a finished run on held-out data (minildm.pretrained.evaluate) and ship it as course checkpoint `name`.

    Training-only parts are not shipped: the autoencoders' loss modules (discriminator, LPIPS, log-variance)
    and an LDM's first stage when it is itself a course checkpoint (it is rebuilt by name on load).
    """
    from minildm.pretrained.evaluate import evaluate

    folder = find_checkpoint(run_dir)
    config = read_state(folder)["config"]
    target = config["model"]["target"]
    drop = SHIP_WITHOUT.get(target, ())
    if target == "latent_diffusion" and config["model"]["params"].get("first_stage") not in available():
        raise ValueError(f"an LDM ships only on a course first stage (one of {', '.join(available()) or '(none)'}), "
                         f"got first_stage={config['model']['params'].get('first_stage')!r}")
    metrics = evaluate(load_model(folder, ema=True), config)
    return export_checkpoint(folder, name, metrics, command, drop_prefixes=drop)


__all__ = [
    "CHECKPOINTS",
    "MODELS",
    "CheckpointError",
    "ConfigError",
    "accepted_specs",
    "available",
    "available_configs",
    "build_model",
    "export_checkpoint",
    "export_run",
    "load",
    "load_folder",
    "load_model",
    "load_stable_diffusion",
    "manifest",
    "resolve",
    "resolve_config",
    "save_stable_diffusion",
]
