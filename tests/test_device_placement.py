"""Every path of the course on an accelerator, checked without one.

`stand_in_gpu` (tests/stand_in_gpu.py) gives a second device that computes on the CPU but keeps CUDA's
placement rules: a CPU tensor meeting a device tensor, or a CPU generator drawing on the device, raises
the error CUDA would. Sampling, training (with sample grids, checkpoints and resuming), evaluation,
export and the demo run on it here, so that a GPU user's first command cannot fail on placement.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import minildm.pretrained as pretrained
import minildm.utils
from minildm.cli import main
from minildm.commands.sample import val_condition
from minildm.pretrained.evaluate import evaluate
from minildm.train import load_model
from minildm.utils import randn
from stand_in_gpu import DEVICE, DevicePlacementError, OnDevice, stand_in_gpu, to_cpu

ROOT = Path(__file__).resolve().parents[1]
# notebook 16 builds full-size models on the meta device, the stand-in's own name: it cannot run there
NOTEBOOKS = sorted(path.name for path in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")
                   if not path.name.startswith("16_"))
SHIPPED_LDMS = ["shapes-ldm", "digits-ldm", "shapes-txt2img", "shapes-layout", "shapes-inpaint", "shapes-sr4",
                "shapes-semantic"]
COURSE_CONFIGS = ["autoencoder/shapes-kl-f4", "autoencoder/shapes-vq-f4", "judge/shapes", "ldm/shapes-class",
                  "ldm/shapes-txt2img", "ldm/shapes-layout", "ldm/shapes-inpaint", "ldm/shapes-sr4",
                  "ldm/shapes-semantic", "ldm/shapes-sr4-pixels"]


@pytest.fixture()
def gpu(monkeypatch):
    """The stand-in device, which `device: auto` also picks (as it picks CUDA on a GPU machine)."""
    monkeypatch.setattr(minildm.utils, "default_device", lambda: DEVICE)
    with stand_in_gpu() as device:
        yield device


@pytest.fixture()
def checkpoint_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(pretrained, "CHECKPOINTS", tmp_path / "checkpoints")
    return tmp_path / "checkpoints"


# --------------------------------------------------------------------------- the stand-in itself

def test_the_stand_in_computes_like_the_cpu_and_refuses_what_cuda_refuses(gpu):
    layer = torch.nn.Linear(3, 2)
    x = torch.randn(4, 3)
    expected = layer(x).detach()
    layer.to(gpu)
    assert isinstance(layer.weight, OnDevice) and layer.weight.device == gpu
    out = layer(x.to(gpu))
    assert isinstance(out, OnDevice) and torch.equal(to_cpu(out), expected)
    assert type(out.cpu()) is torch.Tensor
    assert out.detach().sum().item() == pytest.approx(float(expected.sum()), abs=1e-5)
    with pytest.raises(DevicePlacementError, match="same device"):
        layer(x)  # a CPU batch into a model on the device
    with pytest.raises(DevicePlacementError, match="same device"):
        torch.cat([out, expected])
    assert torch.equal(to_cpu(out * torch.tensor(2.0)), expected * 2)  # 0-dim CPU tensors act as scalars
    assert torch.equal(to_cpu(out[torch.tensor([0, 2])]), expected[[0, 2]])  # CPU indices are fine
    made = torch.tensor([1.0, 2.0], device=gpu)
    assert isinstance(made, OnDevice) and to_cpu(made).tolist() == [1.0, 2.0] and made.tolist() == [1.0, 2.0]
    with pytest.raises(TypeError, match="numpy"):
        out.numpy()
    layer.load_state_dict({"weight": torch.ones(2, 3), "bias": torch.zeros(2)})  # copies CPU weights in
    assert torch.equal(to_cpu(layer.weight), torch.ones(2, 3))


def test_the_stand_in_checks_the_generator_of_every_random_draw(gpu):
    cpu_generator = torch.Generator().manual_seed(0)
    with pytest.raises(DevicePlacementError, match="generator"):
        torch.randn(3, generator=cpu_generator, device=gpu)  # what CUDA raises for a CPU generator
    with pytest.raises(DevicePlacementError, match="generator"):
        torch.zeros(3, device=gpu).normal_(generator=cpu_generator)
    device_generator = torch.Generator(gpu).manual_seed(0)
    assert device_generator.device == gpu and torch.randn(3, generator=device_generator, device=gpu).device == gpu
    with pytest.raises(DevicePlacementError, match="generator"):
        torch.randn(3, generator=device_generator)  # a device generator cannot draw on the CPU either
    # minildm draws on the generator's device, then moves: the same numbers as on the CPU
    noise = randn((2, 3), generator=torch.Generator().manual_seed(1), device=gpu)
    assert isinstance(noise, OnDevice)
    assert torch.equal(to_cpu(noise), torch.randn(2, 3, generator=torch.Generator().manual_seed(1)))


# --------------------------------------------------------------------------- sampling

@pytest.mark.parametrize("name", SHIPPED_LDMS)
def test_shipped_models_sample_on_the_device_as_on_the_cpu(name):
    ldm = pretrained.load(name)
    cond, _ = val_condition(name, tuple(ldm.conditioner.keys), 3)
    expected = ldm.sample(cond=cond, steps=3, generator=torch.Generator().manual_seed(0), progress=False)
    with stand_in_gpu() as device:
        ldm.to(device)
        images = ldm.sample(cond=cond, steps=3, generator=torch.Generator().manual_seed(0), progress=False)
    assert isinstance(images, OnDevice)
    # the same seed gives the same images; the schedule's tables are float32 on a device, float64 on the CPU
    assert torch.allclose(to_cpu(images), expected, atol=1e-3)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "plms", "pndm", "dpmpp_2m", "euler", "euler_ancestral", "heun"])
def test_every_sampler_runs_on_the_device(sampler, gpu, tmp_path):
    out = tmp_path / "grid.png"
    args = ["sample", "shapes-ldm", "--labels", "0,5", "--steps", "3", "--sampler", sampler, "--out", str(out)]
    assert main(args) == 0
    assert np.asarray(Image.open(out)).std() > 0


def test_sample_command_on_the_device_matches_the_cpu(tmp_path, monkeypatch):
    args = ["sample", "shapes-inpaint", "--val", "2", "--steps", "2"]
    assert main([*args, "--device", "cpu", "--out", str(tmp_path / "cpu.png")]) == 0
    monkeypatch.setattr(minildm.utils, "default_device", lambda: DEVICE)
    with stand_in_gpu():
        assert main([*args, "--out", str(tmp_path / "device.png")]) == 0
    cpu, device = (np.asarray(Image.open(tmp_path / f"{n}.png")).astype(int) for n in ("cpu", "device"))
    assert np.abs(cpu - device).max() <= 1


# --------------------------------------------------------------------------- training, checkpoints, export

@pytest.mark.parametrize("config", COURSE_CONFIGS)
def test_course_configs_train_checkpoint_and_resume_on_the_device(config, gpu, tmp_path):
    overrides = ["train.steps=3", "train.batch_size=4", "train.log_every=1", "train.checkpoint_every=2",
                 "train.sample_every=2", "train.num_samples=4"]
    if config.startswith("ldm/"):
        overrides.append("data.cache_latents=16")
    out = tmp_path / "run"
    assert main(["train", config, *overrides, "--out", str(out), "--no-progress"]) == 0
    if not config.startswith("judge/"):  # a classifier draws no sample grid
        assert (out / "samples" / "step_0000002.png").is_file()  # every generative model draws it on the device
    weights = load_file(out / "checkpoints" / "last" / "model.safetensors")
    assert weights and all(type(v) is torch.Tensor and v.device.type == "cpu" for v in weights.values())
    assert main(["train", config, *overrides[1:], "train.steps=4", "--out", str(out), "--resume", "--no-progress"]) == 0
    state = json.loads((out / "checkpoints" / "last" / "state.json").read_text())
    assert state["step"] == 4
    rows = (out / "log.csv").read_text().splitlines()
    assert len(rows) == 1 + 4 and all(math.isfinite(float(v)) for v in rows[-1].split(",")[1:] if v)


@pytest.mark.parametrize("config", ["judge/shapes", "autoencoder/shapes-kl-f4", "autoencoder/shapes-vq-f4"])
def test_runs_trained_on_the_device_evaluate_and_export(config, gpu, tmp_path, checkpoint_dir):
    """`--export` evaluates the run on held-out data on its device, then ships it; it loads on the CPU."""
    name = "test-" + config.split("/")[1]
    assert main(["train", config, "train.steps=2", "train.batch_size=4", "--out", str(tmp_path / "run"),
                 "--no-progress", "--export", name]) == 0
    metrics = pretrained.manifest(name)["metrics"]
    assert metrics and all(math.isfinite(v) for v in metrics.values() if isinstance(v, float))
    model = pretrained.load(name)
    assert all(type(p) is torch.nn.Parameter and p.device.type == "cpu" for p in model.parameters())


@pytest.mark.filterwarnings("ignore:LPIPS backbone weights not found")  # the SR model's LPIPS, offline
@pytest.mark.parametrize("name", [n for n in SHIPPED_LDMS if n != "digits-ldm"])
def test_held_out_evaluation_of_every_kind_of_ldm_on_the_device(name, gpu):
    """What `--export` measures for an LDM (judge accuracy, scene or image-to-image metrics), on the device."""
    config = pretrained.resolve_config(name)
    on_cpu, on_device = (evaluate(pretrained.load(name, device=device), config, num_images=12, per_class=1)
                         for device in ("cpu", gpu))
    assert on_device.keys() == on_cpu.keys()
    for key, value in on_cpu.items():  # the same numbers up to a judge's call flipped by float32 tables
        if isinstance(value, float):
            assert on_device[key] == pytest.approx(value, abs=0.15, nan_ok=True), key


def test_stable_diffusion_loads_and_samples_on_the_device(tmp_path):
    from test_stable_diffusion import PROMPTS, tiny_pipeline

    from minildm.pretrained.stable_diffusion import load_stable_diffusion

    tiny_pipeline(tmp_path).save_pretrained(tmp_path / "sd")
    options = dict(cond={"caption": PROMPTS}, steps=3, guidance_scale=5.0, progress=False)
    expected = load_stable_diffusion(tmp_path / "sd").sample(generator=torch.Generator().manual_seed(0), **options)
    with stand_in_gpu() as device:
        ldm = load_stable_diffusion(tmp_path / "sd", device=device)
        assert all(isinstance(p, OnDevice) for p in ldm.parameters())
        images = ldm.sample(generator=torch.Generator().manual_seed(0), **options)
    assert torch.allclose(to_cpu(images), expected, atol=1e-3)


def test_eval_command_on_the_device(gpu, tmp_path):
    out = tmp_path / "eval.json"
    assert main(["eval", "shapes-inpaint", "--n", "12", "--steps", "2", "--batch-size", "6", "--train-n", "16",
                 "--no-progress", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["n_fake"] == 12 and math.isfinite(result["fd"])


def test_demo_runs_on_the_device(gpu, tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--fast", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["samples"] == 36 and 0.0 <= results["judge_accuracy_on_samples"] <= 1.0
    assert (out / "samples.png").stat().st_size > 1000


# --------------------------------------------------------------------------- the notebooks

@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_notebooks_run_on_the_device(notebook):
    """Each notebook's cells in fast mode, in a fresh process, with `setup_notebook()` picking the device."""
    command = [sys.executable, str(ROOT / "tests" / "stand_in_gpu.py"), str(ROOT / "notebooks" / notebook)]
    fast = {**os.environ, "MINILDM_FAST": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=fast)
    assert result.returncode == 0, result.stderr[-3000:]
