"""The trainer: configs, optimisation, EMA, checkpoints, exact resume, divergence handling."""

from __future__ import annotations

import math
import os
import random
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from minildm.train import (EMA, CheckpointError, ConfigError, TrainConfig, Trainer, TrainingDivergedError,
                           load_config, load_model, save_checkpoint, train_from_config)
from minildm.train import checkpoint as ckpt
from minildm.train.optim import learning_rate
from minildm.train.toy import ToyGAN, ToyRegressionDataset, ToyRegressor

EXAMPLE = Path(__file__).resolve().parents[1] / "minildm" / "configs" / "examples" / "toy-regressor.yaml"


def toy_config(**train) -> dict:
    """A full config for ToyRegressor with small, test-sized train settings."""
    settings = dict(steps=12, batch_size=8, lr=1e-2, log_every=1, checkpoint_every=5, ema_decay=0.9,
                    warmup_steps=3, lr_schedule="cosine")
    settings.update(train)
    return {"model": {"target": "minildm.train.toy:ToyRegressor", "params": {"in_features": 8, "hidden": 16}},
            "data": {"name": "minildm.train.toy:ToyRegressionDataset", "size": 8, "options": {"length": 64}},
            "train": settings}


def fit(model, config, out_dir, resume=False, dataset=None) -> Trainer:
    dataset = dataset if dataset is not None else ToyRegressionDataset(size=8, length=64)
    return Trainer(model, dataset, config, out_dir=out_dir, progress=False).fit(resume=resume)


def new_model(cls=ToyRegressor, **kwargs):
    torch.manual_seed(0)
    return cls(in_features=8, hidden=16, **kwargs)


# ----------------------------------------------------------------------------- configs


@pytest.mark.parametrize("override, key", [
    ("train.lrr=0.1", "train.lrr"),
    ("train.steps=many", "train.steps"),
    ("train.lr_schedule=linear", "train.lr_schedule"),
    ("model.params.hiden=4", "model.params.hiden"),
    ("model.params.hidden=wide", "model.params.hidden"),
    ("trian.steps=3", "trian"),
    ("data.sise=3", "data.sise"),
])
def test_config_errors_name_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(EXAMPLE, [override])


def test_config_errors_list_valid_keys_and_targets():
    with pytest.raises(ConfigError, match="valid train keys: seed, steps"):
        load_config(EXAMPLE, ["train.learning_rate=1"])
    with pytest.raises(ConfigError, match="autoencoder_kl"):
        load_config(EXAMPLE, ["model.target=unet_model"])
    with pytest.raises(ConfigError, match="hidden"):  # the valid ToyRegressor keys are listed
        load_config(EXAMPLE, ["model.params.width=3"])
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(EXAMPLE, ["train.lr"])


def test_overrides_parse_as_yaml_scalars():
    config = load_config(EXAMPLE, ["train.lr=3e-4", "model.params.hidden=64", "train.betas=[0.5, 0.9]",
                                   "train.channels_last=true", "train.lr_groups={model: 1e-3}"])
    assert config["train"]["lr"] == 3e-4 and isinstance(config["train"]["lr"], float)
    assert config["model"]["params"]["hidden"] == 64
    assert config["train"]["betas"] == [0.5, 0.9]
    assert config["train"]["channels_last"] is True
    assert config["train"]["lr_groups"] == {"model": 1e-3}
    # untouched keys keep the file's values, absent keys get TrainConfig defaults
    assert config["train"]["ema_decay"] == 0.99 and config["train"]["grad_accum"] == 1
    assert config["train"]["out_dir"] == "runs/examples/toy-regressor"


def test_train_config_defaults_and_types():
    cfg = TrainConfig()
    assert (cfg.steps, cfg.lr, cfg.lr_schedule, cfg.precision, cfg.out_dir) == (2000, 1e-3, "constant", "auto", None)
    with pytest.raises(ConfigError, match="train.batch_size"):
        TrainConfig(batch_size=0)
    with pytest.raises(ConfigError, match="train.ema_decay"):
        TrainConfig(ema_decay=1.0)


def test_learning_rate_schedule():
    assert learning_rate(1.0, 0, 100, warmup_steps=4) == pytest.approx(0.25)
    assert learning_rate(1.0, 3, 100, warmup_steps=4) == pytest.approx(1.0)
    assert learning_rate(1.0, 50, 100) == 1.0
    assert learning_rate(1.0, 4, 104, warmup_steps=4, schedule="cosine") == pytest.approx(1.0)
    assert learning_rate(1.0, 54, 104, warmup_steps=4, schedule="cosine") == pytest.approx(0.5)
    assert learning_rate(1.0, 104, 104, warmup_steps=4, schedule="cosine") == pytest.approx(0.0)


# ----------------------------------------------------------------------------- training


def test_training_reduces_the_loss(tmp_path):
    trainer = fit(new_model(), toy_config(steps=80, ema_decay=0.0, lr_schedule="constant", log_every=10), tmp_path)
    losses = [row["loss"] for row in trainer.history]
    assert len(losses) == 8 and trainer.step == 80
    assert losses[-1] < 0.1 * losses[0]
    csv_lines = (tmp_path / "log.csv").read_text().splitlines()
    assert csv_lines[0].startswith("step,") and len(csv_lines) == 9


def test_gradient_accumulation_equals_a_larger_batch(tmp_path):
    # fp32 pinned: with bf16 autocast (the default on CUDA) the two sums round differently (~4e-5)
    config = dict(steps=3, ema_decay=0.0, grad_clip=0.0, warmup_steps=0, precision="fp32")
    big = fit(new_model(dropout=0.0), toy_config(batch_size=16, **config), tmp_path / "big")
    small = fit(new_model(dropout=0.0), toy_config(batch_size=8, grad_accum=2, **config), tmp_path / "accum")
    for p, q in zip(big.model.parameters(), small.model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    assert [r["loss"] for r in big.history] == pytest.approx([r["loss"] for r in small.history], rel=1e-5)


def test_two_optimizer_groups_step_both(tmp_path):
    torch.manual_seed(0)
    model = ToyGAN(in_features=8, hidden=16)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = fit(model, {"train": dict(steps=2, batch_size=8, lr=1e-2, lr_groups={"disc": 1e-3}, log_every=1)},
                  tmp_path)
    for prefix in ("generator.", "discriminator."):
        changed = [k for k in before if k.startswith(prefix) and not torch.equal(before[k], model.state_dict()[k].cpu())]
        assert changed, f"no {prefix} parameter was updated"
    row = trainer.history[-1]
    assert row["lr/generator"] == 1e-2 and row["lr/disc"] == 1e-3
    assert {"g_loss", "d_loss", "loss/generator", "loss/disc"} <= set(row)
    assert list(trainer.optimizers) == ["generator", "disc"]


def test_compiled_training_step_matches_eager(tmp_path):
    settings = dict(steps=4, ema_decay=0.0, precision="fp32", checkpoint_every=100)
    eager = fit(new_model(dropout=0.0), toy_config(**settings), tmp_path / "eager")
    compiled = fit(new_model(dropout=0.0), toy_config(compile=True, **settings), tmp_path / "compiled")
    assert compiled.config.compile and compiled._training_step is not compiled.model.training_step
    for p, q in zip(eager.model.parameters(), compiled.model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)
    assert [r["loss"] for r in compiled.history] == pytest.approx([r["loss"] for r in eager.history], rel=1e-4)


def test_sample_grid_is_written(tmp_path):
    fit(new_model(), toy_config(steps=4, sample_every=2, num_samples=4), tmp_path)
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == ["step_0000002.png", "step_0000004.png"]


# ----------------------------------------------------------------------------- EMA


def test_ema_follows_the_warmup_formula():
    model = torch.nn.Linear(2, 1)
    ema = EMA(model, decay=0.5)
    shadow = model.weight.detach().clone()
    for n in range(1, 4):
        with torch.no_grad():
            model.weight.add_(1.0)
        d = min(0.5, (1 + n) / (10 + n))
        assert ema.current_decay() == pytest.approx(d)
        ema.update(model)
        shadow = d * shadow + (1 - d) * model.weight.detach()
        torch.testing.assert_close(ema.shadow["weight"], shadow)
    assert ema.num_updates == 3 and EMA(model, 0.9999).current_decay() == pytest.approx(2 / 11)
    training_weight = model.weight.detach().clone()
    ema.store(model)
    ema.copy_to(model)
    torch.testing.assert_close(model.weight.detach(), shadow)
    ema.restore(model)
    torch.testing.assert_close(model.weight.detach(), training_weight)
    with ema.average_parameters(model):
        torch.testing.assert_close(model.weight.detach(), shadow)
    torch.testing.assert_close(model.weight.detach(), training_weight)


# ----------------------------------------------------------------------------- checkpoints and resume


class Crash(Exception):
    pass


class CrashingRegressor(ToyRegressor):
    """Dies (like a killed process) when asked for step `crash_at`."""

    crash_at = 8

    def training_step(self, batch, group, step):
        if step == self.crash_at:
            raise Crash(f"killed at step {step}")
        return super().training_step(batch, group, step)


class DivergingRegressor(ToyRegressor):
    """Returns a NaN loss from step 7 on."""

    def training_step(self, batch, group, step):
        loss, logs = super().training_step(batch, group, step)
        if step >= 7:
            loss = loss * float("nan")
            logs = {"mse": float("nan")}
        return loss, logs


def test_kill_and_resume_equals_uninterrupted(tmp_path):
    config = toy_config(grad_accum=2)
    full = fit(new_model(), config, tmp_path / "full")
    with pytest.raises(Crash):
        fit(new_model(CrashingRegressor), config, tmp_path / "killed")
    assert ckpt.read_state(tmp_path / "killed" / "checkpoints" / "last")["step"] == 5
    resumed = fit(new_model(), config, tmp_path / "killed", resume=True)

    assert resumed.step == full.step == 12
    assert [r["step"] for r in resumed.history] == list(range(1, 13))
    for a, b in zip(full.history, resumed.history):
        assert a == b  # every logged value, bitwise
    for name in ("model.safetensors", "ema.safetensors"):
        a = load_file(tmp_path / "full" / "checkpoints" / "last" / name)
        b = load_file(tmp_path / "killed" / "checkpoints" / "last" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "killed" / "log.csv").read_text() == (tmp_path / "full" / "log.csv").read_text()


def test_load_model_rebuilds_from_config_and_uses_ema(tmp_path):
    trainer = fit(new_model(), toy_config(steps=6), tmp_path)
    plain, averaged = load_model(tmp_path, ema=False), load_model(tmp_path)
    assert isinstance(plain, ToyRegressor) and not plain.training
    for p, q in zip(plain.parameters(), trainer.model.parameters()):  # load_model gives the CPU by default
        assert torch.equal(p, q.detach().cpu())
    for name, p in averaged.named_parameters():
        assert torch.equal(p, trainer.ema.shadow[name].cpu())


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    with pytest.raises(TrainingDivergedError, match=r"step 7.*group 'model'.*nan.*mse=nan"):
        fit(new_model(DivergingRegressor), toy_config(), tmp_path)
    folder = tmp_path / "checkpoints" / "last"
    assert ckpt.read_state(folder)["step"] == 5
    model = load_model(tmp_path)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert sorted(p.name for p in folder.parent.iterdir()) == ["last"]


@pytest.mark.parametrize("log_every", [4, 20])
def test_divergence_found_at_a_later_sync_point_names_the_first_bad_step(tmp_path, log_every):
    # values are read back only every log_every steps (4: at step 8; 20: at the step-10 checkpoint),
    # yet the error names step 7 and the step-5 checkpoint survives: nothing is written after a NaN
    with pytest.raises(TrainingDivergedError, match=r"at step 7\b.*group 'model'"):
        fit(new_model(DivergingRegressor), toy_config(log_every=log_every), tmp_path)
    assert ckpt.read_state(tmp_path / "checkpoints" / "last")["step"] == 5
    assert all(torch.isfinite(p).all() for p in load_model(tmp_path).parameters())


def test_logged_rows_are_means_over_the_log_window(tmp_path):
    every_step = fit(new_model(), toy_config(log_every=1, precision="fp32"), tmp_path / "one")
    windowed = fit(new_model(), toy_config(log_every=4, precision="fp32"), tmp_path / "four")
    losses = [row["loss"] for row in every_step.history]
    assert [row["step"] for row in windowed.history] == [4, 8, 12]
    for row in windowed.history:
        assert row["loss"] == pytest.approx(sum(losses[row["step"] - 4:row["step"]]) / 4, rel=1e-5)
        assert row["lr/model"] == pytest.approx(every_step.history[row["step"] - 1]["lr/model"])


def test_interrupted_write_leaves_previous_checkpoint(tmp_path, monkeypatch):
    model = new_model()
    folder = save_checkpoint(tmp_path / "checkpoints" / "last", model, toy_config(), step=5)
    good = load_file(folder / "model.safetensors")

    def killed_mid_write(data, path):
        raise KeyboardInterrupt("killed while writing")

    with torch.no_grad():
        model.net[0].weight.add_(1.0)
    monkeypatch.setattr(ckpt, "_write_json", killed_mid_write)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(folder, model, toy_config(), step=10)
    assert sorted(p.name for p in folder.parent.iterdir()) == ["last"]  # no temp folder left behind
    assert ckpt.read_state(folder)["step"] == 5
    after = load_file(folder / "model.safetensors")
    assert all(torch.equal(good[k], after[k]) for k in good)


def test_crash_between_renames_is_recovered(tmp_path):
    folder = save_checkpoint(tmp_path / "checkpoints" / "last", new_model(), toy_config(), step=5)
    folder.rename(folder.with_name("last.previous"))  # died after moving the old one aside
    assert ckpt.find_checkpoint(tmp_path) == tmp_path / "checkpoints" / "last.previous"
    assert isinstance(load_model(tmp_path), ToyRegressor)


def test_missing_or_corrupt_checkpoint_names_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "nowhere")
    folder = save_checkpoint(tmp_path / "last", new_model(), toy_config(), step=1)
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*corrupt"):
        load_model(folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"model\.safetensors is missing"):
        load_model(folder)
    (folder / "state.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"state\.json is corrupt"):
        load_model(folder)


# ----------------------------------------------------------------------------- from a config / the CLI


def test_train_from_config_on_shapes(tmp_path):
    pytest.importorskip("minildm.data")
    config = {"model": {"target": "judge", "params": {"in_channels": 3, "num_classes": 18, "width": 8}},
              "data": {"name": "shapes", "size": 8, "options": {}},
              "train": {"steps": 2, "batch_size": 4, "log_every": 1, "checkpoint_every": 2}}
    trainer = train_from_config(config, ["train.lr=3e-3"], out_dir=tmp_path, progress=False)
    assert trainer.step == 2 and trainer.optimizers["model"].param_groups[0]["lr"] == 3e-3
    state = ckpt.read_state(tmp_path / "checkpoints" / "last")
    assert state["config"]["model"]["target"] == "judge" and state["data"] == {"epoch": 0, "batch_in_epoch": 2}
    restored = load_model(tmp_path)
    assert type(restored).__name__ == "JudgeClassifier"
    for p, q in zip(restored.parameters(), trainer.model.parameters()):
        assert torch.equal(p, q.detach().cpu())
    assert all(math.isfinite(r["loss"]) for r in trainer.history)


def test_cli_reports_config_errors(tmp_path, capsys):
    from minildm.cli import main

    assert main(["train", str(EXAMPLE), "train.stepz=3", "--out", str(tmp_path)]) == 2
    assert "train.stepz" in capsys.readouterr().err
    assert main(["train", str(EXAMPLE), "train.steps=3", "--out", str(tmp_path), "--no-progress"]) == 0
    assert ckpt.read_state(tmp_path / "checkpoints" / "last")["step"] == 3


@pytest.mark.not_on_stand_in("pretends torch.cuda.is_available() while the default device is the stand-in")
def test_gpu_section_applies_only_on_cuda_and_the_command_line_wins(monkeypatch):
    config = toy_config()
    config["gpu"] = {"train.batch_size": 32, "train.num_workers": 2}
    assert load_config(config)["train"]["batch_size"] == 8  # this machine: the CPU recipe
    assert load_config(config, ["train.device=cpu"])["train"]["num_workers"] == 0
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    on_gpu = load_config(config)
    assert on_gpu["train"]["batch_size"] == 32 and on_gpu["train"]["num_workers"] == 2 and "gpu" not in on_gpu
    assert load_config(config, ["train.batch_size=4"])["train"]["batch_size"] == 4
    assert load_config(config, ["train.device=cpu"])["train"]["batch_size"] == 8
    with pytest.raises(ConfigError, match="gpu must be a mapping"):
        load_config({**config, "gpu": [1]})
    with pytest.raises(ConfigError, match="train.batchsize"):
        load_config({**config, "gpu": {"train.batchsize": 3}})


def test_optimizer_state_keeps_this_runs_implementation():
    from minildm.train.checkpoint import _optimizer_state, load_optimizer_state

    param = torch.nn.Parameter(torch.randn(3))
    saved = torch.optim.AdamW([param], foreach=True)
    param.grad = torch.ones(3)
    saved.step()
    tensors, meta = _optimizer_state({"model": saved})
    meta["model"]["param_groups"][0].update(fused=True, foreach=None)  # as written by a fused (CUDA) run
    resumed = torch.optim.AdamW([param], foreach=True)
    load_optimizer_state(resumed, "model", tensors, meta["model"])
    assert resumed.param_groups[0]["foreach"] is True and not resumed.param_groups[0]["fused"]
    assert torch.equal(resumed.state[param]["exp_avg"], saved.state[param]["exp_avg"])
    resumed.step()  # runs on the CPU


@pytest.mark.not_on_stand_in("autocasts on the default device, which has no autocast on the stand-in")
@pytest.mark.parametrize("native", [True, False])
def test_bf16_if_native_autocasts_only_where_bf16_is_native(tmp_path, monkeypatch, native):
    import minildm.train.trainer as trainer_module

    monkeypatch.setattr(trainer_module, "has_native_bf16", lambda device: native)
    trainer = fit(new_model(), toy_config(steps=1, precision="bf16-if-native"), tmp_path)
    with trainer._autocast():
        y = torch.nn.functional.linear(torch.randn(2, 4), torch.randn(3, 4))
    assert y.dtype == (torch.bfloat16 if native else torch.float32)


def test_has_native_bf16_answers_for_every_device_kind():
    from minildm.utils import has_native_bf16

    assert isinstance(has_native_bf16("cpu"), bool)
    assert has_native_bf16("meta") is False


# ----------------------------------------------------------------------------- EMA and checkpoint edge cases


def test_ema_rejects_a_decay_of_one():
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        EMA(torch.nn.Linear(2, 1), decay=1.0)


def test_ema_tracks_only_trainable_parameters():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    model[0].requires_grad_(False)
    assert set(EMA(model).state_dict()) == {"1.weight", "1.bias"}


def test_ema_update_follows_the_model_it_is_given():
    """update(other) averages toward `other`'s weights, not toward the model of an earlier update."""
    torch.manual_seed(0)
    first, second = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    ema = EMA(first, decay=0.5)
    ema.update(first)
    shadow = ema.shadow["weight"].clone()
    d = ema.current_decay()
    ema.update(second)
    torch.testing.assert_close(ema.shadow["weight"], d * shadow + (1 - d) * second.weight.detach())


def test_ema_restore_is_needed_once_per_store():
    model = torch.nn.Linear(2, 1)
    ema = EMA(model)
    ema.store(model)
    ema.restore(model)
    with pytest.raises(RuntimeError, match="without a matching EMA.store"):
        ema.restore(model)


def test_ema_average_parameters_restores_the_weights_after_an_error():
    model = torch.nn.Linear(2, 1)
    ema = EMA(model, decay=0.5)
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    with torch.no_grad():
        model.weight.add_(1.0)
    training_weight = model.weight.detach().clone()
    with pytest.raises(KeyError):
        with ema.average_parameters(model):
            assert not torch.equal(model.weight.detach(), training_weight)
            raise KeyError("evaluation failed")
    torch.testing.assert_close(model.weight.detach(), training_weight)


def test_rng_state_round_trip_covers_torch_numpy_and_python():
    tensors, state = ckpt.capture_rng_state()
    expected = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    torch.rand(5), np.random.rand(5), random.random()  # move every generator on
    ckpt.restore_rng_state(tensors, state)
    again = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    assert torch.equal(expected[0], again[0])
    assert np.array_equal(expected[1], again[1])
    assert expected[2] == again[2]


def test_overwriting_a_checkpoint_leaves_only_the_new_folder(tmp_path):
    folder = save_checkpoint(tmp_path / "checkpoints" / "last", new_model(), toy_config(), step=5)
    save_checkpoint(folder, new_model(), toy_config(), step=10)
    assert sorted(p.name for p in folder.parent.iterdir()) == ["last"]
    assert ckpt.read_state(folder)["step"] == 10


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")
def test_checkpoint_files_get_the_usual_permissions(tmp_path):
    """mkdtemp makes a private folder; the saved checkpoint must be readable like any file the user writes."""
    umask = os.umask(0o022)
    try:
        folder = save_checkpoint(tmp_path / "last", new_model(), toy_config(), step=1)
    finally:
        os.umask(umask)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
    for path in folder.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path.name
