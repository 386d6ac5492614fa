"""Data-parallel training over processes started by `torchrun` (one process per GPU, or CPU processes).

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; we join the process group (nccl on CUDA,
gloo on CPU). Every process holds a full replica of the model and sees a different shard
of the data; after each backward pass the gradients are averaged over processes
(all-reduce), so every replica takes the same optimizer step and stays identical.

This is what torch's DistributedDataParallel does in its backward hooks; the trainer
calls the all-reduce itself because models expose `training_step` (not `forward`) and
GAN models step several optimizer groups per step.

Only rank 0 writes logs and checkpoints; on resume every process reads the checkpoint,
so a multi-node job needs `out_dir` on a filesystem all nodes share.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


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


def average_gradients(params: list[nn.Parameter], flag: torch.Tensor, world_size: int) -> torch.Tensor:
    """Average the gradients of `params` over processes, in one all-reduce; returns the summed `flag`.

    Missing gradients count as zeros (so every process reduces the same tensors). `flag`
    (a 0-d tensor on the device) rides along in the same buffer: the trainer sends 1.0 when
    its loss was not finite, so every process learns whether any diverged, without an extra
    round trip and without waiting for the result on the host.
    """
    if world_size <= 1:
        return flag
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1).float() for g in grads] + [flag.reshape(1).float().to(grads[0].device)])
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


def shard_model(model: nn.Module, unit_types: tuple[type[nn.Module], ...] | None = None) -> nn.Module:
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
    Call inside a process group (torchrun; `init_distributed`), on identical replicas, before building
    the optimizer. Parameters become DTensors: `p.to_local()` is this process's piece, `p.full_tensor()`
    gathers the whole. Frozen parts (a first stage) belong outside: shard the trainable module (ldm.unet).
    """
    from torch.distributed.fsdp import fully_shard

    from minildm.unet import TimestepEmbedSequential

    if not dist.is_initialized():
        raise RuntimeError("shard_model needs a process group: start with torchrun (init_distributed joins it)")
    unit_types = unit_types or (TimestepEmbedSequential,)
    for module in model.modules():
        if module is not model and isinstance(module, unit_types):
            fully_shard(module)
    fully_shard(model)
    return model
