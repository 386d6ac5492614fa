"""Small helpers shared by every part of minildm."""

from __future__ import annotations

import torch


def default_device() -> torch.device:
    """The fastest device on this machine: CUDA, then Apple MPS, then CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Turn "auto"/None into `default_device()`; pass anything else to `torch.device`."""
    if device is None or device == "auto":
        return default_device()
    return torch.device(device)


def count_parameters(module: torch.nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of `module` (optionally only those with requires_grad)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
