"""Optimizer groups (one AdamW each) and the learning-rate schedule.

A model may split its parameters into named groups with `optimizer_groups()` (a GAN
autoencoder: {"autoencoder": [...], "disc": [...]}); otherwise everything trainable is
one group, "model". Each group gets its own AdamW (Loshchilov & Hutter, 2019), stepped in
the dict's order every step.

Schedule, with base rate lr, warm-up W steps and T steps in total, at (0-based) step s:

    warm-up   lr_s = lr * (s + 1) / W                       for s < W
    constant  lr_s = lr                                     afterwards
    cosine    lr_s = lr * (1 + cos(pi * (s - W) / (T - W))) / 2

It is a pure function of the step, so resuming needs no scheduler state.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.distributed.tensor import DTensor

from minildm.train.config import ConfigError, TrainConfig


def parameter_groups(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """`model.optimizer_groups()` when defined, else {"model": every parameter with requires_grad}; checked."""
    if hasattr(model, "optimizer_groups"):
        groups = dict(model.optimizer_groups())
    else:
        groups = {"model": [p for p in model.parameters() if p.requires_grad]}
    if not groups:
        raise ValueError(f"{type(model).__name__}.optimizer_groups() returned no groups")
    seen: dict[int, str] = {}
    for name, params in groups.items():
        params = list(params)
        if not params:
            raise ValueError(f"optimizer group {name!r} of {type(model).__name__} has no parameters")
        for p in params:
            if id(p) in seen:
                raise ValueError(f"a parameter is in both optimizer groups {seen[id(p)]!r} and {name!r}")
            seen[id(p)] = name
        groups[name] = params
    return groups


def build_optimizers(groups: dict[str, list[nn.Parameter]], config: TrainConfig) -> dict[str, torch.optim.AdamW]:
    """One AdamW per group, with lr from `lr_groups[group]` when given, else `lr`."""
    unknown = sorted(set(config.lr_groups) - set(groups))
    if unknown:
        raise ConfigError(f"train.lr_groups has unknown group(s) {', '.join(unknown)}; "
                          f"this model's optimizer groups are {', '.join(groups)}")
    return {name: torch.optim.AdamW(params, lr=config.lr_groups.get(name, config.lr), betas=tuple(config.betas),
                                    weight_decay=config.weight_decay, **_implementation(params))
            for name, params in groups.items()}


def _implementation(params: list[nn.Parameter]) -> dict[str, bool]:
    """Fused AdamW when every parameter is a floating CUDA tensor; else the multi-tensor (foreach) one.

    Same update either way; both avoid the per-tensor Python loop that torch picks by default on the CPU.
    A group that mixes sharded parameters (DTensors, train.fsdp) with whole ones takes the per-tensor
    loop: torch's multi-tensor kernels take one kind or the other, not both.
    """
    sharded = [isinstance(p, DTensor) for p in params]
    if any(sharded) and not all(sharded):
        return {"foreach": False}
    if params and all(p.is_cuda and p.is_floating_point() for p in params):
        return {"fused": True}
    return {"foreach": True}


def learning_rate(base_lr: float, step: int, total_steps: int, warmup_steps: int = 0,
                  schedule: str = "constant") -> float:
    """The learning rate of 0-based optimizer step `step` (linear warm-up, then constant or cosine)."""
    factor = (step + 1) / warmup_steps if step < warmup_steps else 1.0
    if schedule == "cosine":
        progress = min(max((step - warmup_steps) / max(1, total_steps - warmup_steps), 0.0), 1.0)
        factor *= 0.5 * (1.0 + math.cos(math.pi * progress))
    elif schedule != "constant":
        raise ConfigError(f"train.lr_schedule must be constant or cosine, got {schedule!r}")
    return base_lr * factor
