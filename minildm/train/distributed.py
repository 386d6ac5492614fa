"""Data-parallel training over processes started by `torchrun` (one process per GPU, or CPU processes).

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; we join the process group (nccl on CUDA,
gloo on CPU). Every process holds a full replica of the model and sees a different shard
of the data; after each backward pass the gradients are averaged over processes
(all-reduce), so every replica takes the same optimizer step and stays identical.

This is what torch's DistributedDataParallel does in its backward hooks; the trainer
calls the all-reduce itself because models expose `training_step` (not `forward`) and
GAN models step several optimizer groups per step.

Fully sharded (`shard_model`, train.fsdp): each process keeps only a piece of every parameter,
gradient and optimizer state; the helpers below gather whole tensors for checkpoints
(`full_tensors`), hand each process its piece again on resume (`shard_state`) and clip a
gradient norm whose pieces live on different processes (`clip_grad_norm`).

Only rank 0 writes logs and checkpoints; on resume every process reads the checkpoint,
so a multi-node job needs `out_dir` on a filesystem all nodes share.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import DTensor, distribute_tensor


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        """Only the main process (rank 0) writes logs, samples and checkpoints."""
        return self.rank == 0


def init_distributed(device_type: str) -> DistInfo:
    """Join the torchrun process group when WORLD_SIZE > 1 (backend nccl for CUDA, else gloo)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, initialized_here=False)
    if device_type == "cuda":
        torch.cuda.set_device(local_rank)
    # Import torch._dynamo before the group exists: the first optimizer imports it anyway, and
    # imported later it keeps ~10 references to the default group that destroy_process_group
    # cannot drop, so gloo's threads outlive `shutdown` and die with the interpreter, which
    # now and then aborts the process ("terminate called without an active exception").
    import torch._dynamo  # noqa: F401

    dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return DistInfo(rank, world_size, local_rank, initialized_here=True)


def shutdown(info: DistInfo) -> None:
    """Leave the process group if `init_distributed` joined it.

    Destroying the group frees the backend: gloo's worker and socket threads are joined here,
    while the interpreter is whole, not left running into interpreter exit.
    """
    if info.initialized_here and dist.is_initialized():
        dist.destroy_process_group()


def end_process(code: int = 0) -> NoReturn:
    """End a process of a distributed job: flush stdout and stderr, then exit at once with `code`.

    Call it last, after `shutdown` and after every file is written and closed. Sharded parameters
    (DTensors, `shard_model`) keep the process group alive inside torch even after
    destroy_process_group, so gloo's threads are still running when the interpreter tears itself
    down, and that sometimes aborts the process ("terminate called without an active exception",
    SIGABRT) after a successful run. Leaving through os._exit skips that teardown; nothing of the
    run is lost, since checkpoints and logs are closed by then.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    os._exit(code)


def average_gradients(params: list[nn.Parameter], flag: torch.Tensor, world_size: int) -> torch.Tensor:
    """Average the gradients of `params` over processes, in one all-reduce; returns the summed `flag`.

    Missing gradients count as zeros (so every process reduces the same tensors); with no `params`
    (every parameter sharded, see `shard_model`) only the flag travels. `flag`
    (a 0-d tensor on the device) rides along in the same buffer: the trainer sends 1.0 when
    its loss was not finite, so every process learns whether any diverged, without an extra
    round trip and without waiting for the result on the host.
    """
    if world_size <= 1:
        return flag
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1).float() for g in grads] + [flag.reshape(1).float()])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat[:-1] /= world_size
    offset = 0
    for param, grad in zip(params, grads):
        n = grad.numel()
        param.grad = flat[offset:offset + n].view_as(grad).to(grad.dtype)
        offset += n
    return flat[-1].to(flag.device)


@torch.no_grad()
def broadcast_state(model: nn.Module, world_size: int, buffers_only: bool = False) -> None:
    """Copy rank 0's parameters (unless `buffers_only`) and buffers to every process."""
    if world_size <= 1:
        return
    tensors = list(model.buffers()) if buffers_only else [*model.parameters(), *model.buffers()]
    for tensor in tensors:
        dist.broadcast(tensor.data, src=0)


def model_checksum(model: nn.Module) -> str:
    """SHA-256 of every parameter and buffer: equal checksums mean identical replicas."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def gather_objects(obj: object, world_size: int) -> list[object]:
    """Every process's `obj`, in rank order (just [obj] for one process)."""
    if world_size <= 1:
        return [obj]
    out: list[object] = [None] * world_size
    dist.all_gather_object(out, obj)
    return out


def shard_model(model: nn.Module, unit_types: tuple[type[nn.Module], ...] | None = None,
                device_type: str | None = None) -> nn.Module:
    """Fully sharded data parallelism (FSDP; ZeRO stage 3, Rajbhandari et al. 2020) with torch's `fully_shard`.

    Data parallelism above keeps a whole replica on every process: for the SD-v1 UNet 16 GiB of weights,
    gradients, AdamW moments and EMA before any activation. Sharding splits every parameter, its gradient
    and its optimizer state into world_size pieces, one per process. Before a unit (a UNet block) runs,
    its full weights are all-gathered, and freed after; in the backward pass its gradients are
    reduce-scattered, so each process receives the average gradient of its own piece and updates only
    that. Training state per process: (20 bytes / world_size) per parameter, for two extra collectives
    per unit and step.

    unit_types: the modules gathered one at a time (default: the UNet's blocks, TimestepEmbedSequential);
    the model itself becomes the last unit (what no block owns: time embedding, output layers).
    device_type: where the shards live, "cuda" or "cpu" (default: the device of the model's parameters).
    Call inside a process group (torchrun; `init_distributed`), on identical replicas, before building
    the optimizer. Parameters become DTensors: `p.to_local()` is this process's piece, `p.full_tensor()`
    gathers the whole. Frozen parts (a first stage) belong outside: shard the trainable module (ldm.unet).
    """
    from torch.distributed.fsdp import fully_shard

    from minildm.unet import TimestepEmbedSequential

    if not dist.is_initialized():
        raise RuntimeError("shard_model needs a process group: start with torchrun (init_distributed joins it)")
    device_type = device_type or next(model.parameters()).device.type
    mesh = init_device_mesh(device_type, (dist.get_world_size(),))  # 1-D: every process holds one piece
    unit_types = unit_types or (TimestepEmbedSequential,)
    for module in model.modules():
        if module is not model and isinstance(module, unit_types):
            fully_shard(module, mesh=mesh)
    # torch keeps the root unit gathered after its forward by default; resharding it too means that outside a
    # forward every parameter is this process's piece (what EMA swaps, checkpoints and the optimizer see)
    fully_shard(model, mesh=mesh, reshard_after_forward=True)
    return model


def is_sharded(tensor: torch.Tensor) -> bool:
    """True for a parameter (or gradient, optimizer moment, EMA shadow) split over processes by `shard_model`."""
    return isinstance(tensor, DTensor)


def full_tensors(tensors: Mapping[str, Any], keep: bool = True) -> dict[str, Any]:
    """Whole tensors on the CPU: sharded ones all-gathered (`DTensor.full_tensor`), the others copied.

    Every process must call it (each gather is a collective); processes with `keep=False` (all but
    the one that writes the checkpoint) drop each whole tensor at once and get {}, so only one
    tensor at a time is ever whole on their device. Values that are not tensors pass through.
    """
    out = {}
    for name, value in tensors.items():
        whole = value.full_tensor() if is_sharded(value) else value
        if keep:
            out[name] = whole.detach().to("cpu") if isinstance(whole, torch.Tensor) else whole
    return out


def full_optimizer_state(optimizer: torch.optim.Optimizer, keep: bool = True) -> dict[str, Any]:
    """`optimizer.state_dict()` with whole tensors (see `full_tensors`; every process calls it)."""
    state = optimizer.state_dict()
    moments = {index: full_tensors(values, keep) for index, values in state["state"].items()}
    return {"state": moments, "param_groups": state["param_groups"]} if keep else {}


def shard_state(full: Mapping[str, torch.Tensor], like: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Whole tensors (e.g. read from a checkpoint) laid out as the tensors of `like` with the same names.

    Where `like` holds a sharded tensor this process keeps its own piece (each process slices the whole
    tensor itself: no communication); other tensors move to like's device; names not in `like` pass.
    """
    out = {}
    for name, tensor in full.items():
        target = like.get(name)
        if target is None:
            out[name] = tensor
        elif is_sharded(target):
            out[name] = distribute_tensor(tensor.to(target.device, target.dtype), target.device_mesh,
                                          target.placements, src_data_rank=None)
        else:
            out[name] = tensor.to(target.device)
    return out


def clip_grad_norm(params: list[nn.Parameter], max_norm: float) -> torch.Tensor:
    """`torch.nn.utils.clip_grad_norm_` for parameters of which some are sharded; returns the total norm.

    The total norm is over the whole gradients: ||g||^2 = sum over processes of each one's pieces' squares
    (one all-reduce) + the squares of the unsharded gradients (identical on every process, counted once).
    Every gradient is then scaled by min(1, max_norm / (||g|| + 1e-6)), as torch does.
    """
    pieces = [p.grad.to_local() for p in params if p.grad is not None and is_sharded(p.grad)]
    whole = [p.grad for p in params if p.grad is not None and not is_sharded(p.grad)]
    device = (pieces or whole)[0].device
    sharded_sq = sum((g.float().square().sum() for g in pieces), torch.zeros((), device=device))
    dist.all_reduce(sharded_sq, op=dist.ReduceOp.SUM)
    whole_sq = sum((g.float().square().sum() for g in whole), torch.zeros((), device=device))
    total = (sharded_sq + whole_sq).sqrt()
    scale = (max_norm / (total + 1e-6)).clamp(max=1.0)
    with torch.no_grad():
        torch._foreach_mul_(pieces + whole, scale)
    return total
