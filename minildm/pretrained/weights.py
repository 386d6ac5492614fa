"""Reading weight files safely: safetensors directly, pickles only through torch.load(weights_only=True)."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A flat state dict from a .safetensors file, or from a .ckpt/.pt/.pth/.bin holding only tensors.

    Lightning checkpoints (`{"state_dict": {...}}`) are unwrapped. A pickle that needs more than
    tensors is refused, never executed: minildm does not unpickle downloaded files.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    if path.suffix not in PICKLE_SUFFIXES:
        raise ValueError(f"unsupported weights file {path.name}; accepted: .safetensors, {', '.join(PICKLE_SUFFIXES)}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError) as error:
        raise ValueError(f"{path} holds more than tensors, and minildm never unpickles arbitrary objects "
                         "(torch.load(weights_only=True) refused it). Convert it to .safetensors with a tool you "
                         f"trust, or use a .safetensors release. Details: {error}") from error
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]  # PyTorch Lightning checkpoints wrap the weights
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not contain a state dict (got {type(data).__name__})")
    return {k: v for k, v in data.items() if isinstance(v, torch.Tensor)}
