"""What a model costs: floating-point operations and measured throughput (LDM Sec. 4.1, Fig. 6).

    unet_flops                   FLOPs of one UNet call on a latent shape (one denoising step of stage 2)
    images_per_second            images/s of any batched function, after a warm-up call
    train_images_per_second      training images/s of a model with the trainer's `training_step`
    sampling_seconds_per_image   seconds per image of `LatentDiffusion.sample` (decoding included)

Every timer takes a `clock` (default wall-clock `time.perf_counter`; `time.process_time` counts this
process's CPU seconds, the fair measure on a machine shared with other jobs). On a GPU the timers
synchronize before reading the clock, so the time covers the work and not just its launch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

Clock = Callable[[], float]


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def unet_flops(unet: nn.Module, latent: Sequence[int], **forward_kwargs: Any) -> int:
    """Floating-point operations (2 per multiply-add) of ONE `unet(x, t, **forward_kwargs)` call on a (1, *latent) input.

    This is the cost of one denoising step of stage 2; it grows with h*w of the latent
    (convolutions linearly, self-attention quadratically), which is why small f makes
    diffusion slow (LDM Sec. 4.1, Fig. 6). Counted with torch.utils.flop_counter.
    """
    from torch.utils.flop_counter import FlopCounterMode

    device = _device(unet)
    x = torch.zeros(1, *latent, device=device)
    t = torch.zeros(1, dtype=torch.long, device=device)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        unet(x, t, **forward_kwargs)
    return int(counter.get_total_flops())


@torch.no_grad()
def images_per_second(fn: Callable[[torch.Tensor], Any], x: torch.Tensor, repeats: int = 3,
                      clock: Clock = time.perf_counter) -> float:
    """Images per second of `fn(x)` on the batch x (B, ...): `repeats` timed calls after one warm-up call."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    fn(x)  # warm-up: first-call allocations are not part of the rate
    _synchronize(x.device)
    start = clock()
    for _ in range(repeats):
        fn(x)
    _synchronize(x.device)
    return repeats * x.shape[0] / (clock() - start)


def train_images_per_second(model: nn.Module, batch: Mapping[str, torch.Tensor], steps: int, lr: float = 1e-4,
                            clock: Clock = time.perf_counter) -> float:
    """Images per second of `steps` timed optimizer steps (AdamW on `optimizer_groups()["model"]`) after one warm-up.

    `batch` is one batch of the model's `training_step` (moved to the model's device); the model
    trains in place, so time a copy whose weights you do not need.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    device = _device(model)
    batch = {k: v.to(device) for k, v in batch.items()}
    optimizer = torch.optim.AdamW(model.optimizer_groups()["model"], lr=lr)
    was_training = model.training
    model.train()

    def step(i: int) -> None:
        loss, _ = model.training_step(dict(batch), "model", i)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step(0)  # warm-up
    _synchronize(device)
    start = clock()
    for i in range(steps):
        step(i + 1)
    _synchronize(device)
    seconds = clock() - start
    model.train(was_training)
    return steps * next(iter(batch.values())).shape[0] / seconds


@torch.no_grad()
def sampling_seconds_per_image(model: nn.Module, labels: torch.Tensor, steps: int = 20, guidance_scale: float = 3.0,
                               sampler: str = "dpmpp_2m", clock: Clock = time.perf_counter) -> float:
    """Seconds per image of `model.sample` for `labels` (decoding included), with classifier-free guidance."""
    was_training = model.training
    model.eval()
    device = _device(model)
    _synchronize(device)
    start = clock()
    model.sample(labels=labels, sampler=sampler, steps=steps, guidance_scale=guidance_scale, progress=False,
                 generator=torch.Generator().manual_seed(0))
    _synchronize(device)
    seconds = clock() - start
    model.train(was_training)
    return seconds / len(labels)
