"""Data-parallel training with torchrun: two CPU processes (gloo) must keep identical replicas."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from minildm.train import checkpoint as ckpt
from minildm.train import load_model
from minildm.train.data import EpochBatchSampler
from minildm.train.distributed import model_checksum

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "minildm" / "configs" / "examples" / "toy-regressor.yaml"


def test_shards_cover_each_epoch_once():
    shards = [EpochBatchSampler(40, batch_size=4, seed=3, rank=r, world_size=2) for r in range(2)]
    seen = [i for s in shards for batch in s for i in batch]
    assert sorted(seen) == list(range(40))  # 2 ranks x 5 batches x 4 items, no overlap
    first = [list(s) for s in shards]
    for s in shards:
        s.epoch = 1
    assert [list(s) for s in shards] != first  # a new order every epoch
    shards[0].epoch, shards[0].start_batch = 0, 3
    assert list(shards[0]) == first[0][3:]  # resuming inside an epoch skips exactly the used batches


SHUTDOWN_SCRIPT = textwrap.dedent("""
    import os
    import torch
    import torch.distributed as dist
    from minildm.train.distributed import init_distributed, shutdown
    info = init_distributed("cpu")
    torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))])  # imports torch._dynamo, as the trainer's optimizers do
    dist.all_reduce(torch.ones(2))
    shutdown(info)
    print(sorted(open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task")))
""")


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="lists threads through Linux /proc")
def test_shutdown_joins_the_gloo_threads():
    # gloo threads still running at interpreter exit sometimes abort the process (SIGABRT,
    # "terminate called without an active exception"): `shutdown` must leave none behind
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "WORLD_SIZE": "2",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    workers = [subprocess.Popen([sys.executable, "-c", SHUTDOWN_SCRIPT], cwd=ROOT, env={**env, "RANK": str(rank)},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for rank in range(2)]
    for worker in workers:
        out, err = worker.communicate(timeout=240)
        assert worker.returncode == 0, err[-3000:]
        threads = out.strip().splitlines()[-1]
        assert "gloo" not in threads, threads


def torchrun(out: Path, *overrides: str) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc_per_node=2 -m minildm train <toy config> ...` on CPU (gloo)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "minildm", "train", str(EXAMPLE), "train.log_every=1", "train.batch_size=8", "data.options.length=64",
               *overrides, "--out", str(out), "--no-progress"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


CONSTANT = ("train.lr_schedule=constant", "train.checkpoint_every=2")


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory) -> Path:
    """4 uninterrupted steps on 2 processes (shared by the tests below: each torchrun costs ~15 s)."""
    out = tmp_path_factory.mktemp("ddp") / "straight"
    torchrun(out, "train.steps=4", *CONSTANT)
    return out


def test_torchrun_two_processes_keep_replicas_identical(straight_run):
    state = ckpt.read_state(straight_run / "checkpoints" / "last")
    assert state["step"] == 4 and state["world_size"] == 2
    checksums = state["replica_checksums"]
    assert len(checksums) == 2 and checksums[0] == checksums[1]
    # the checksum is of the saved weights: rank 0's checkpoint is the replica every rank holds
    model = load_model(straight_run, ema=False)
    assert model_checksum(model) == checksums[0]
    # each rank had its own RNG stream (dropout), saved separately for an exact resume
    optim = load_file(straight_run / "checkpoints" / "last" / "optim.safetensors")
    assert not torch.equal(optim["rng/rank0/torch_cpu"], optim["rng/rank1/torch_cpu"])
    # 64 items / (2 ranks x 8 per batch) = 4 steps per epoch
    assert state["data"] == {"epoch": 0, "batch_in_epoch": 4}
    assert [row["step"] for row in state["logs"]] == [1, 2, 3, 4]


def test_torchrun_resume_continues_the_run(straight_run, tmp_path):
    torchrun(tmp_path / "resumed", "train.steps=2", *CONSTANT)
    torchrun(tmp_path / "resumed", "train.steps=4", *CONSTANT, "--resume")
    a = ckpt.read_state(straight_run / "checkpoints" / "last")
    b = ckpt.read_state(tmp_path / "resumed" / "checkpoints" / "last")
    assert b["step"] == 4 and a["replica_checksums"] == b["replica_checksums"]
    assert a["logs"] == b["logs"]


def test_end_process_flushes_and_exits_with_the_code():
    """A distributed worker leaves through `end_process`: what it printed arrives, and the exit status is kept."""
    script = ("import sys\nfrom minildm.train.distributed import end_process\n"
              "print('written', end='')\nprint('to stderr', end='', file=sys.stderr)\nend_process(3)\n"
              "print('never')\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 3
    assert result.stdout == "written" and result.stderr.endswith("to stderr")
