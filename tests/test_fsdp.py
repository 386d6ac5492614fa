"""Fully sharded data parallelism on two CPU processes (gloo): one sharded training step of a UNet equals one
ordinary step on the whole batch, while each process holds half of every parameter."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import copy, json, sys
    import torch
    import torch.distributed as dist
    from minildm.train.distributed import init_distributed, shard_model, shutdown
    from minildm.unet import UNetModel

    info = init_distributed("cpu")
    torch.manual_seed(0)
    config = dict(in_channels=4, out_channels=4, model_channels=32, channel_mult=(1, 2), num_res_blocks=1,
                  attention_resolutions=(1,), num_heads=2, context_dim=16, norm_num_groups=8)
    unet = UNetModel(**config)
    with torch.no_grad():  # nothing zero-initialised: every weight gets a gradient
        for p in unet.parameters():
            p.normal_(0, 0.1)
    reference, initial = copy.deepcopy(unet), copy.deepcopy(unet)
    g = torch.Generator().manual_seed(1)
    x, t = torch.randn(4, 4, 8, 8, generator=g), torch.tensor([1, 200, 500, 999])
    context = torch.randn(4, 3, 16, generator=g)

    def step(model, rows):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5)  # plain SGD: the update is the averaged gradient
        model(x[rows], t[rows], context=context[rows]).square().mean().backward()
        optimizer.step()

    shard_model(unet)
    mine = slice(2 * info.rank, 2 * info.rank + 2)  # this process's half of the batch
    step(unet, mine)
    local = sum(p.to_local().numel() for p in unet.parameters())
    full = {name: p.full_tensor() for name, p in unet.named_parameters()}
    if info.rank == 0:
        step(reference, slice(0, 4))  # one process, the whole batch
        diff = max((full[name] - p).abs().max().item() for name, p in reference.named_parameters())
        moved = max((full[name] - p).abs().max().item() for name, p in initial.named_parameters())
        total = sum(p.numel() for p in reference.parameters())
        json.dump({"diff": diff, "moved": moved, "local": local, "total": total,
                   "dtensor": type(next(unet.parameters())).__name__}, open(sys.argv[1], "w"))
    shutdown(info)
""")


def test_sharded_step_equals_one_process_on_the_whole_batch(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "WORLD_SIZE": "2",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    out = tmp_path / "result.json"
    workers = [subprocess.Popen([sys.executable, "-c", SCRIPT, str(out)], cwd=ROOT,
                                env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for rank in range(2)]
    for worker in workers:
        _, stderr = worker.communicate(timeout=180)
        assert worker.returncode == 0, stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["dtensor"] == "DTensor"
    assert result["total"] / 2 <= result["local"] < result["total"] / 2 + 100  # half of every parameter, padded
    assert result["moved"] > 1e-3 and result["diff"] < 1e-6
