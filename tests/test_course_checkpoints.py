"""Course checkpoints: cached latents, held-out evaluation, `minildm train --export`, and the shipped files."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

import minildm.pretrained as pretrained
from minildm.ldm import LatentDataset
from minildm.data import load_images
from minildm.pretrained.evaluate import evaluate
from minildm.train import ConfigError, load_config, train_from_config

TINY_VQ = ["model.params.autoencoder.ch=8", "model.params.autoencoder.num_groups=4", "model.params.autoencoder.n_embed=16",
           "train.steps=3", "train.batch_size=4", "model.params.num_scale_batches=2", "train.checkpoint_every=100"]
TINY_KL = ["model.params.autoencoder.ch=8", "model.params.autoencoder.num_groups=4", "train.steps=3",
           "train.batch_size=4", "model.params.num_scale_batches=2", "train.checkpoint_every=100"]
TINY_LDM = ["model.params.unet.model_channels=16", "model.params.unet.norm_num_groups=8", "train.steps=3",
            "train.batch_size=8", "data.cache_latents=32", "train.checkpoint_every=100"]


@pytest.fixture()
def checkpoint_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(pretrained, "CHECKPOINTS", tmp_path / "checkpoints")
    return tmp_path / "checkpoints"


def test_cache_latents_trains_on_encoded_latents_and_is_validated(tmp_path, checkpoint_dir):
    train_from_config("autoencoder/shapes-kl-f4", TINY_KL, out_dir=tmp_path / "ae", progress=False)
    pretrained.export_run(tmp_path / "ae", "shapes-kl-f4", "minildm train autoencoder/shapes-kl-f4")
    trainer = train_from_config("ldm/shapes-class", TINY_LDM, out_dir=tmp_path / "ldm", progress=False)
    assert isinstance(trainer.dataset, LatentDataset) and len(trainer.dataset) == 32
    item = trainer.dataset[0]
    assert item["latent"].shape == (3, 8, 8) and 0 <= int(item["label"]) < 18  # KL-f4 latents, not 3x32x32 images
    with pytest.raises(ConfigError, match="data.cache_latents must be 0"):
        load_config("ldm/shapes-class", ["data.cache_latents=-1"])
    with pytest.raises(ConfigError, match="needs a model with a first stage"):
        train_from_config("judge/shapes", ["data.cache_latents=8", "train.steps=1"], out_dir=tmp_path / "j",
                          progress=False)


def test_evaluate_autoencoder_counts_codes_over_the_whole_set(tmp_path):
    trainer = train_from_config("autoencoder/shapes-vq-f4", TINY_VQ, out_dir=tmp_path / "ae", progress=False)
    config = load_config("autoencoder/shapes-vq-f4", TINY_VQ)
    metrics = evaluate(trainer.model, config, num_images=48)
    model = trainer.model.autoencoder.eval().cpu()  # evaluate() ran it on its training device
    images, _ = load_images(config["data"], 48)
    with torch.no_grad():
        _, _, info = model.quantize(model.encode_pre_quant(images))
        recon = model.decode_latent(model.encode_latent(images)).clamp(-1, 1)
    assert metrics["codebook_usage"] == pytest.approx(info["indices"].unique().numel() / 16)
    mse = ((recon - images) / 2).pow(2).flatten(1).mean(1)
    assert metrics["psnr_db"] == pytest.approx((10 * torch.log10(1 / mse)).mean().item(), rel=1e-5)
    assert metrics["latent_numbers"] == 4 * 8 * 8 and metrics["eval_images"] == 48


def test_train_export_ships_fp16_without_training_parts_and_loads_by_name(tmp_path, checkpoint_dir):
    train_from_config("judge/shapes", ["train.steps=3", "train.batch_size=4", "model.params.width=8"],
                      out_dir=tmp_path / "judge", progress=False)
    pretrained.export_run(tmp_path / "judge", "judge-shapes", "minildm train judge/shapes --export judge-shapes")
    assert 0.0 <= pretrained.manifest("judge-shapes")["metrics"]["val_accuracy"] <= 1.0

    train_from_config("autoencoder/shapes-kl-f4", TINY_KL, out_dir=tmp_path / "ae", progress=False)
    pretrained.export_run(tmp_path / "ae", "shapes-kl-f4", "minildm train autoencoder/shapes-kl-f4")
    assert not any(k.startswith("loss.") for k in load_file(checkpoint_dir / "shapes-kl-f4" / "model.safetensors"))

    trainer = train_from_config("ldm/shapes-class", TINY_LDM, out_dir=tmp_path / "ldm", progress=False)
    folder = pretrained.export_run(tmp_path / "ldm", "shapes-ldm", "minildm train ldm/shapes-class --export shapes-ldm")
    tensors = load_file(folder / "model.safetensors")
    assert tensors and not any(k.startswith("first_stage.") for k in tensors)
    assert all(v.dtype == torch.float16 for v in tensors.values() if v.is_floating_point())
    info = pretrained.manifest("shapes-ldm")
    assert info["command"] == "minildm train ldm/shapes-class --export shapes-ldm"
    assert info["metrics"]["samples"] == 18 * 20 and 0.0 <= info["metrics"]["judge_accuracy"] <= 1.0
    loaded = pretrained.load("shapes-ldm")
    trainer.ema.copy_to(trainer.model)
    trainer.model.cpu()  # it trained on the default device; the loaded copy is on the CPU
    x = torch.randn(2, 3, 8, 8)
    t = torch.tensor([10, 500])
    cond = trainer.model.condition(torch.tensor([0, 5]))
    with torch.no_grad():
        expected = trainer.model.eval().model_output(x, t, cond)
        assert torch.allclose(loaded.model_output(x, t, loaded.condition(torch.tensor([0, 5]))), expected, atol=5e-3)


def test_export_refuses_an_ldm_whose_first_stage_is_not_a_course_checkpoint(tmp_path, checkpoint_dir):
    train_from_config("autoencoder/shapes-kl-f4", TINY_KL, out_dir=tmp_path / "ae", progress=False)
    train_from_config("ldm/shapes-class", [*TINY_LDM, f"model.params.first_stage={(tmp_path / 'ae').as_posix()}"],
                      out_dir=tmp_path / "ldm", progress=False)
    with pytest.raises(ValueError, match="ships only on a course first stage"):
        pretrained.export_run(tmp_path / "ldm", "x", "minildm train ...")


def test_train_cli_export_flag(tmp_path, checkpoint_dir):
    code = ("import sys, minildm.pretrained as p, pathlib; p.CHECKPOINTS = pathlib.Path(sys.argv[1]); "
            "from minildm.cli import main; sys.exit(main(sys.argv[2:]))")
    args = ["train", "judge/digits", "train.steps=2", "train.batch_size=4", "model.params.width=8",
            "--out", str(tmp_path / "run"), "--no-progress", "--export", "judge-digits"]
    result = subprocess.run([sys.executable, "-c", code, str(checkpoint_dir), *args], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    info = json.loads((checkpoint_dir / "judge-digits" / "manifest.json").read_text())
    assert info["command"].startswith("minildm train judge/digits train.steps=2") and info["steps"] == 2
    assert set(info["metrics"]) == {"val_accuracy", "eval_images"}


# --- the checkpoints shipped with minildm -------------------------------------------------------------
SHIPPED = pretrained.available()
BARS = {"shapes-kl-f4": ("psnr_db", 30.0), "shapes-vq-f4": ("psnr_db", 27.0), "digits-kl-f4": ("psnr_db", 26.0)}


def test_shipped_course_checkpoints_fit_the_budget_and_say_how_to_regenerate():
    total = sum(f.stat().st_size for f in pretrained.CHECKPOINTS.rglob("*") if f.is_file())
    assert total < 40 * 2**20, f"course checkpoints take {total / 2**20:.1f} MB; the budget is 40 MB"
    for name in SHIPPED:
        info = pretrained.manifest(name)
        assert info["command"].startswith("minildm train ") and info["command"].endswith(f"--export {name}")
        assert info["metrics"] and info["commit"] and info["steps"] == info["config"]["train"]["steps"]


@pytest.mark.parametrize("name", sorted(set(BARS) & set(SHIPPED)))
def test_shipped_autoencoders_meet_their_bars_on_held_out_images(name):
    model = pretrained.load(name)
    info = pretrained.manifest(name)
    metric, bar = BARS[name]
    metrics = evaluate(model, info["config"], num_images=128)
    assert metrics[metric] >= bar
    assert metrics[metric] == pytest.approx(info["metrics"][metric], abs=0.6)  # 128 of the manifest's 512 images
    if name == "shapes-vq-f4":
        assert info["metrics"]["codebook_usage"] >= 0.5


@pytest.mark.parametrize("name,judge,bar", [("shapes-ldm", "judge-shapes", 0.9), ("digits-ldm", "judge-digits", 0.9)])
def test_shipped_ldms_draw_the_asked_class(name, judge, bar):
    if name not in SHIPPED:
        pytest.skip(f"{name} is not shipped")
    from minildm.data import dataset_info
    from minildm.pretrained.evaluate import evaluate_ldm

    info = pretrained.manifest(name)
    real, _ = load_images(info["config"]["data"], 64)
    num_classes = dataset_info(info["config"]["data"]["name"])["num_classes"]
    metrics = evaluate_ldm(pretrained.load(name), pretrained.load(judge), real, num_classes, per_class=3, seed=1)
    assert metrics["judge_accuracy"] >= bar and info["metrics"]["judge_accuracy"] >= bar
