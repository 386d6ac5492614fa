"""Fully sharded data parallelism on two CPU processes (gloo): one sharded training step of a UNet equals one
ordinary step on the whole batch, while each process holds half of every parameter; the trainer with
train.fsdp=true trains, clips, averages (EMA), checkpoints, resumes and samples as plain data parallelism does."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from minildm.train import ConfigError, TrainConfig, Trainer, load_model
from minildm.train import checkpoint as ckpt
from minildm.train.distributed import DistInfo
from minildm.train.toy import ToyGAN, ToyRegressionDataset, ToyRegressor

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import copy, json, sys
    import torch
    import torch.distributed as dist
    from minildm.train.distributed import end_process, init_distributed, shard_model, shutdown
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
        with open(sys.argv[1], "w") as f:
            json.dump({"diff": diff, "moved": moved, "local": local, "total": total,
                       "dtensor": type(next(unet.parameters())).__name__}, f)
    shutdown(info)
    end_process(0)  # the sharded parameters keep gloo's threads alive past shutdown
""")


def run_two_processes(script: str, out: Path, timeout: int = 240) -> None:
    """Run `script` (argument: `out`) as ranks 0 and 1 of a gloo process group on this machine."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "WORLD_SIZE": "2",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    workers = [subprocess.Popen([sys.executable, "-c", script, str(out)], cwd=ROOT,
                                env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for rank in range(2)]
    for worker in workers:
        _, stderr = worker.communicate(timeout=timeout)
        assert worker.returncode == 0, stderr[-3000:]


def test_sharded_step_equals_one_process_on_the_whole_batch(tmp_path):
    out = tmp_path / "result.json"
    run_two_processes(SCRIPT, out)
    result = json.loads(out.read_text())
    assert result["dtensor"] == "DTensor"
    assert result["total"] / 2 <= result["local"] < result["total"] / 2 + 100  # half of every parameter, padded
    assert result["moved"] > 1e-3 and result["diff"] < 1e-6


TRAINER_SCRIPT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import torch
    from safetensors.torch import save_file
    from minildm.ldm import LatentDataset, LatentDiffusion
    from minildm.train import Trainer
    from minildm.train.distributed import end_process, full_tensors, init_distributed, shutdown
    from minildm.train.toy import ToyRegressionDataset, ToyRegressor

    info = init_distributed("cpu")  # joined here, so every fit below shares the group
    out = Path(sys.argv[1])

    TOY = {"target": "minildm.train.toy:ToyRegressor", "params": {"in_features": 8, "hidden": 16}}

    def fit(name, model, dataset, steps, resume=False, **train):
        # constant rate: a 2-step run followed by a resumed one follows the 4-step run's schedule
        train = dict(steps=steps, batch_size=8, lr=1e-2, warmup_steps=2, log_every=1, checkpoint_every=2,
                     ema_decay=0.9, device="cpu", **train)
        config = {"model": TOY, "train": train} if isinstance(model, ToyRegressor) else {"train": train}
        return Trainer(model, dataset, config, out_dir=out / name, progress=False).fit(resume=resume)

    def toy():
        torch.manual_seed(0)
        return ToyRegressor(**TOY["params"])

    data = ToyRegressionDataset(size=8, length=64)
    # small clip: every step is clipped; 2 micro-batches: sharded gradients accumulate
    fit("ddp", toy(), data, 4, grad_clip=0.05, grad_accum=2)
    sharded = fit("fsdp", toy(), data, 4, grad_clip=0.05, grad_accum=2, fsdp=True)
    gathered = full_tensors(sharded.model.state_dict(), keep=info.is_main)  # a collective: both ranks
    local = sum(p.to_local().numel() for p in sharded.model.parameters())
    fit("resumed", toy(), data, 2, grad_clip=0.05, grad_accum=2, fsdp=True)
    fit("resumed", toy(), data, 4, resume=True, grad_clip=0.05, grad_accum=2, fsdp=True)
    fit("switched", toy(), data, 2, grad_clip=0.05, grad_accum=2)  # replicas, then sharded from its checkpoint
    fit("switched", toy(), data, 4, resume=True, grad_clip=0.05, grad_accum=2, fsdp=True)

    def ldm():  # a tiny pixel-space UNet (sharded) and a class embedding (trained, not sharded)
        torch.manual_seed(0)
        unet = dict(in_channels=3, out_channels=3, model_channels=16, channel_mult=(1, 2), num_res_blocks=1,
                    attention_resolutions=(2,), num_heads=2, context_dim=16, norm_num_groups=8)
        conditioner = {"type": "class", "num_classes": 3, "embed_dim": 16, "mode": "crossattn"}
        return LatentDiffusion(unet=unet, conditioner=conditioner, image_size=8, sampler="ddim", sample_steps=3)

    generator = torch.Generator().manual_seed(0)
    latents = LatentDataset(torch.randn(32, 3, 8, 8, generator=generator), {"label": torch.arange(32) % 3})
    fit("ldm-ddp", ldm(), latents, 2, sample_every=2, num_samples=4)
    fit("ldm-fsdp", ldm(), latents, 2, sample_every=2, num_samples=4, fsdp=True)
    if info.is_main:
        save_file(gathered, str(out / "gathered.safetensors"))
        total = sum(p.numel() for p in toy().parameters())
        with open(out / "sizes.json", "w") as f:
            json.dump({"local": local, "total": total}, f)
    shutdown(info)
    end_process(0)  # the sharded parameters keep gloo's threads alive past shutdown
""")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """Toy and tiny-UNet runs on 2 processes, plain data parallel and sharded, and a sharded resume (~40 s)."""
    out = tmp_path_factory.mktemp("fsdp")
    run_two_processes(TRAINER_SCRIPT, out, timeout=400)
    return out


def checkpoint_tensors(run: Path, filename: str) -> dict[str, torch.Tensor]:
    return ckpt.read_tensors(run / "checkpoints" / "last", filename)


def assert_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float) -> None:
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name].shape == b[name].shape, name
        assert torch.allclose(a[name].float(), b[name].float(), rtol=0, atol=atol), \
            (name, (a[name].float() - b[name].float()).abs().max().item())


def test_fsdp_training_equals_data_parallel(runs):
    sizes = json.loads((runs / "sizes.json").read_text())
    assert sizes["local"] < 0.6 * sizes["total"]  # each process holds about half of the model
    ddp, fsdp = ckpt.read_state(runs / "ddp" / "checkpoints" / "last"), \
        ckpt.read_state(runs / "fsdp" / "checkpoints" / "last")
    assert fsdp["step"] == 4 and fsdp["world_size"] == 2 and fsdp["replica_checksums"] is None
    # the same losses and (clipped: norms above 0.05) gradient norms, step by step; same weights, moments, EMA:
    # all-reduce vs reduce-scatter only change the order of float32 sums
    for a, b in zip(ddp["logs"], fsdp["logs"], strict=True):
        assert a["grad_norm/model"] > 0.05
        for key in ("loss", "grad_norm/model"):
            assert abs(a[key] - b[key]) <= 1e-6 * max(1.0, abs(a[key])), (a["step"], key, a[key], b[key])
    for filename in (ckpt.MODEL_FILE, ckpt.EMA_FILE):
        assert_close(checkpoint_tensors(runs / "ddp", filename), checkpoint_tensors(runs / "fsdp", filename), 1e-6)
    optim_ddp, optim_fsdp = (checkpoint_tensors(r, ckpt.OPTIM_FILE) for r in (runs / "ddp", runs / "fsdp"))
    moments = [k for k in optim_ddp if k.startswith("model/")]
    assert len(moments) == 3 * 4  # step, exp_avg, exp_avg_sq for each of the 4 parameters
    # 4 steps x 2 micro-batches = 8 batches of 2 ranks x 8 items; 64 items = 4 batches per epoch
    assert fsdp["data"] == ddp["data"] == {"epoch": 1, "batch_in_epoch": 4}
    assert_close({k: optim_ddp[k] for k in moments}, {k: optim_fsdp[k] for k in moments}, 1e-6)
    torch.manual_seed(0)
    initial = ToyRegressor(in_features=8, hidden=16).net[0].weight.detach()
    moved = load_model(runs / "fsdp", ema=False).state_dict()["net.0.weight"] - initial
    assert moved.abs().max() > 1e-3  # training changed the weights (the comparisons above are not vacuous)


def test_fsdp_checkpoint_loads_in_one_process_and_equals_the_gathered_model(runs):
    gathered = ckpt.read_tensors(runs, "gathered.safetensors")
    model = load_model(runs / "fsdp", ema=False)  # an ordinary model in this (single) process
    assert_close(model.state_dict(), gathered, atol=0.0)
    ema = load_model(runs / "fsdp", ema=True).state_dict()
    assert any(not torch.equal(ema[k], gathered[k]) for k in gathered)  # the EMA shadow is written whole too


def test_fsdp_resume_equals_the_uninterrupted_run(runs):
    straight, resumed = runs / "fsdp", runs / "resumed"
    for filename in (ckpt.MODEL_FILE, ckpt.EMA_FILE, ckpt.OPTIM_FILE):
        assert_close(checkpoint_tensors(straight, filename), checkpoint_tensors(resumed, filename), atol=0.0)
    a, b = (ckpt.read_state(r / "checkpoints" / "last") for r in (straight, resumed))
    assert b["step"] == 4 and a["logs"] == b["logs"] and a["data"] == b["data"]
    # a run started with replicas continues sharded from its checkpoint (the same format either way)
    for filename in (ckpt.MODEL_FILE, ckpt.EMA_FILE):
        assert_close(checkpoint_tensors(straight, filename), checkpoint_tensors(runs / "switched", filename), 1e-6)


def test_fsdp_samples_on_every_rank(runs):
    # sampling (class-conditional, guided, EMA weights) with the UNet sharded needs both ranks (rank 0 alone would
    # wait forever for rank 1's pieces); the grid rank 0 saved is the one plain data parallelism saves
    assert sorted(p.name for p in (runs / "ldm-fsdp" / "samples").iterdir()) == ["step_0000002.png"]
    grids = [np.asarray(Image.open(runs / name / "samples" / "step_0000002.png"), dtype=np.int16)
             for name in ("ldm-ddp", "ldm-fsdp")]
    assert grids[0].std() > 10  # an image, not a blank
    assert np.abs(grids[0] - grids[1]).max() <= 1  # the same samples (up to rounding to 8 bits)
    # the UNet sharded, the class embedding replicated (its gradient averaged by the trainer): as plain DDP
    for filename in (ckpt.MODEL_FILE, ckpt.EMA_FILE):
        assert_close(checkpoint_tensors(runs / "ldm-ddp", filename), checkpoint_tensors(runs / "ldm-fsdp", filename),
                     1e-5)
    ddp, fsdp = (ckpt.read_state(runs / name / "checkpoints" / "last")["logs"] for name in ("ldm-ddp", "ldm-fsdp"))
    for a, b in zip(ddp, fsdp, strict=True):
        assert abs(a["loss"] - b["loss"]) < 1e-5 and abs(a["grad_norm/model"] - b["grad_norm/model"]) < 1e-4


def test_fsdp_is_ignored_in_one_process(tmp_path):
    train = {"steps": 1, "batch_size": 8, "fsdp": True, "device": "cpu"}
    trainer = Trainer(ToyGAN(in_features=8), ToyRegressionDataset(size=8, length=32), {"train": train},
                      out_dir=tmp_path, progress=False).fit()
    assert not trainer.sharded and trainer.step == 1


class FrozenBody(ToyRegressor):
    """A model whose only module offered for sharding has no trainable parameters."""

    def fsdp_modules(self) -> list[torch.nn.Module]:
        return [self.net[2]]  # the dropout layer


@pytest.mark.parametrize("model, device, message", [
    (ToyGAN(in_features=8), "cpu", r"one optimizer group.*ToyGAN steps 2 \(generator, disc\).*train\.fsdp=false"),
    (ToyRegressor(in_features=8), "meta", r"CUDA \(NCCL\) or CPU \(gloo\).*not device meta"),
    (FrozenBody(in_features=8), "cpu", r"FrozenBody.fsdp_modules\(\) has no trainable parameters"),
])
def test_fsdp_refuses_what_it_cannot_shard(tmp_path, model, device, message):
    trainer = Trainer(model, ToyRegressionDataset(size=8), {"train": {"fsdp": True}}, out_dir=tmp_path)
    trainer.dist, trainer.device = DistInfo(rank=0, world_size=2), torch.device(device)  # as under torchrun
    with pytest.raises(ConfigError, match=message):
        trainer._shard()
    with pytest.raises(ConfigError, match="train.fsdp must be true or false"):
        TrainConfig(fsdp="yes")
