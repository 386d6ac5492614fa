"""Small helpers shared by every part of minildm."""

from __future__ import annotations

from collections.abc import Sequence

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


def has_native_bf16(device: str | torch.device) -> bool:
    """Whether `device` computes in bfloat16 natively, so bf16 autocast makes training faster.

    CUDA GPUs from Ampere on, and CPUs with AVX512-BF16 or AMX instructions (recent Intel Xeon, AMD
    Zen 4). Elsewhere bf16 is emulated and autocast would slow training down.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch.cpu's own CPUID checks
        return any(getattr(torch.cpu, name, lambda: False)() for name in probes)
    return False


def randn(shape: Sequence[int], generator: torch.Generator | None = None, device: str | torch.device | None = None,
          dtype: torch.dtype | None = None) -> torch.Tensor:
    """Standard-normal noise of `shape` on `device`, drawn on the generator's own device, then moved.

    A seeded CPU generator therefore gives the same numbers whether the model runs on the CPU or a
    GPU, and a CUDA generator works too (torch.randn alone refuses a generator on another device).
    """
    draw_on = generator.device if generator is not None else device
    noise = torch.randn(tuple(shape), generator=generator, device=draw_on, dtype=dtype)
    return noise.to(device) if device is not None else noise


def rand(shape: Sequence[int], generator: torch.Generator | None = None, device: str | torch.device | None = None,
         dtype: torch.dtype | None = None) -> torch.Tensor:
    """Uniform [0, 1) numbers of `shape` on `device`, drawn on the generator's device (as `randn`)."""
    draw_on = generator.device if generator is not None else device
    numbers = torch.rand(tuple(shape), generator=generator, device=draw_on, dtype=dtype)
    return numbers.to(device) if device is not None else numbers


def count_parameters(module: torch.nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of `module` (optionally only those with requires_grad)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
