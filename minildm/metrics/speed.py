"""What a model costs: floating-point operations and measured throughput (LDM Sec. 4.1, Fig. 6).

    unet_flops                   FLOPs of one UNet call on a latent shape (one denoising step of stage 2)
    unet_training_flops          FLOPs of one forward + backward pass (a training step, per batch)
    saved_activation_bytes       activation memory autograd keeps for the backward pass (grows with the batch)
    training_state_bytes         weights, gradients, AdamW moments and EMA (independent of the batch)
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


def _counted_attention(device: torch.device):
    """A context in which torch.utils.flop_counter sees attention's FLOPs on `device`.

    The counter has formulas for the CUDA attention kernels, but none for the CPU's fused kernel,
    whose FLOPs would silently count as zero: on the CPU, attention runs as the plain math
    (matmuls, counted) while counting. The meta device takes that path anyway.
    """
    import contextlib

    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(SDPBackend.MATH) if device.type == "cpu" else contextlib.nullcontext()


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
    with torch.no_grad(), _counted_attention(device), counter:
        unet(x, t, **forward_kwargs)
    return int(counter.get_total_flops())


def unet_training_flops(unet: nn.Module, latent: Sequence[int], batch: int = 1,
                        **forward_kwargs: Any) -> dict[str, int]:
    """FLOPs of one training pass of `unet` on a (batch, *latent) input: {"forward", "backward", "total"}.

    Counted with torch.utils.flop_counter (2 per multiply-add; matmuls, convolutions and attention).
    The backward pass costs about twice the forward (gradients for inputs and for weights). On a
    UNet built on the meta device nothing is computed, so a full-size count takes seconds on a CPU.
    forward_kwargs: tensors of batch size `batch` (e.g. context=(batch, 77, 768)).
    """
    from torch.utils.flop_counter import FlopCounterMode

    device = _device(unet)
    x = torch.zeros(batch, *latent, device=device)
    t = torch.zeros(batch, dtype=torch.long, device=device)
    forward, backward = FlopCounterMode(display=False), FlopCounterMode(display=False)
    with _counted_attention(device):
        with forward:
            out = unet(x, t, **forward_kwargs)
        with backward:
            out.sum().backward()
    unet.zero_grad(set_to_none=True)
    f, b = int(forward.get_total_flops()), int(backward.get_total_flops())
    return {"forward": f, "backward": b, "total": f + b}


_SDPA = torch.nn.functional.scaled_dot_product_attention  # the real one, while saved_activation_bytes patches it


class _FlashAttentionMemory(torch.autograd.Function):
    """scaled_dot_product_attention that keeps for backward what flash attention keeps: q, k, v, the output
    and one log-sum-exp per query row, never the (heads, N, M) attention matrix. For measuring only."""

    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        out = _SDPA(q, k, v)
        ctx.save_for_backward(q, k, v, out, q.new_empty(q.shape[:-1], dtype=torch.float32))
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        raise NotImplementedError("_FlashAttentionMemory only measures what a forward pass keeps")


def saved_activation_bytes(fn: Callable[[], torch.Tensor], model: nn.Module | None = None,
                           attention: str = "flash") -> int:
    """Bytes of the tensors autograd keeps for the backward pass while `fn()` builds its graph.

    This is the activation memory of a training step, the part that grows with the batch size.
    `model`'s parameters (and views of them), which autograd also keeps, are not counted: they are
    in memory anyway (see `training_state_bytes`). Works on the meta device. Tensors that share
    storage are counted once per saving op, so the number is an upper bound; with gradient
    checkpointing only the checkpointed blocks' inputs are kept (each block's activations come
    back, one block at a time, while its backward runs).
    attention: "flash" counts attention as fused kernels keep it (q, k, v, output, one number per row:
    Dao et al. 2022), whatever the device; "as_is" counts what scaled_dot_product_attention keeps on
    the tensors' device; on the meta device that is the unfused computation, whose (B, heads, N, M)
    attention matrices grow quadratically with the number of positions N.
    """
    import contextlib
    from unittest import mock

    if attention not in ("flash", "as_is"):
        raise ValueError(f"unknown attention {attention!r}; accepted: 'flash', 'as_is'")
    parameters = {id(p) for p in model.parameters()} if model is not None else set()
    total = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal total
        base = tensor._base if tensor._base is not None else tensor
        if id(tensor) not in parameters and id(base) not in parameters:
            total += tensor.numel() * tensor.element_size()
        return tensor

    def flash(q, k, v, *args, **kwargs):
        if args or kwargs:
            raise ValueError("attention='flash' measures plain scaled_dot_product_attention(q, k, v) only")
        return _FlashAttentionMemory.apply(q, k, v)

    patch = mock.patch("torch.nn.functional.scaled_dot_product_attention", flash) if attention == "flash" \
        else contextlib.nullcontext()
    with patch, torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        fn()
    return total


def training_state_bytes(model: nn.Module, ema: bool = True) -> dict[str, int]:
    """Memory that does not depend on the batch: fp32 weights, gradients, AdamW's two moments and EMA.

    Counts the trainable parameters (frozen parts, e.g. the first stage, only as weights):
    4 bytes each for weights and gradients, 8 for AdamW's exp_avg and exp_avg_sq, 4 for an EMA copy.
    """
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    return {"weights": 4 * (trainable + frozen), "gradients": 4 * trainable, "adamw": 8 * trainable,
            "ema": 4 * trainable if ema else 0}


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
