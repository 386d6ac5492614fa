"""The demo pipeline end to end (fast mode), course checkpoint export/load, and `minildm sample`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import minildm.pretrained as pretrained
from minildm.train import train_from_config


@pytest.fixture()
def checkpoint_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(pretrained, "CHECKPOINTS", tmp_path / "checkpoints")
    return tmp_path / "checkpoints"


def test_demo_fast_writes_samples_report_and_metrics(tmp_path):
    out = tmp_path / "demo"
    result = subprocess.run([sys.executable, "-m", "minildm", "demo", "--fast", "--out", str(out)],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    assert results["samples"] == 18 * 2 and results["fast_mode"] is True
    assert 0.0 <= results["judge_accuracy_on_samples"] <= 1.0
    assert results["latent_scale_factor"] > 0 and results["latent_scale_factor"] != 1.0  # estimated from data
    assert (out / "samples.png").stat().st_size > 1000
    assert "judge labels" in (out / "report.md").read_text()
    assert results["judge"] == "judge-shapes" and not (out / "judge").exists()  # the fixed course judge
    assert results["judge_val_accuracy"] >= 0.95  # trained, not a fast-mode stand-in
    for run in ("autoencoder", "ldm"):
        assert (out / run / "checkpoints" / "last" / "model.safetensors").is_file()


def test_export_and_load_course_checkpoint_roundtrip(tmp_path, checkpoint_dir):
    trainer = train_from_config("judge/shapes", ["train.steps=3", "train.batch_size=4"],
                                out_dir=tmp_path / "judge", progress=False)
    folder = pretrained.export_checkpoint(tmp_path / "judge", "test-judge", {"val_accuracy": 0.5},
                                          command="minildm train judge/shapes")
    assert pretrained.available() == ["test-judge"]
    info = pretrained.manifest("test-judge")
    assert info["steps"] == 3 and info["metrics"] == {"val_accuracy": 0.5} and info["command"].startswith("minildm")
    assert all(v.dtype == torch.float16 for k, v in __import__("safetensors.torch").torch.load_file(
        folder / "model.safetensors").items() if v.is_floating_point())
    model = pretrained.load("test-judge")
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    reference = trainer.model.eval().cpu()(x)  # trained on the default device; compared on the CPU
    assert torch.allclose(model(x), reference, atol=2e-2)  # float16 storage
    with pytest.raises(ValueError, match="unknown course checkpoint 'nope'; available: test-judge"):
        pretrained.load("nope")


def test_sample_cli_rejects_models_that_cannot_sample_and_unknown_names(tmp_path, capsys):
    from minildm.cli import main

    assert main(["sample", "no-such-model"]) == 2
    assert "no-such-model" in capsys.readouterr().err
    train_from_config("judge/shapes", ["train.steps=1", "train.batch_size=2"], out_dir=tmp_path / "j",
                      progress=False)
    assert main(["sample", str(tmp_path / "j"), "--device", "cpu"]) == 2
    assert "cannot sample" in capsys.readouterr().err
