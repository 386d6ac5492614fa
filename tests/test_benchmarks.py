"""Smoke tests of benchmarks/samplers.py and benchmarks/pixels_vs_latents.py on tiny models (seconds, CPU)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch

from minildm.diffusion import model_calls
from minildm.ldm import LatentDataset, LatentDiffusion
from minildm.metrics import JudgeClassifier

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


samplers = _load("samplers")
pixels_vs_latents = _load("pixels_vs_latents")
image_to_image = _load("image_to_image")

NUM_CLASSES = 3
TINY_PARAMS = dict(
    unet=dict(in_channels=3, out_channels=3, model_channels=8, channel_mult=[1, 2], num_res_blocks=1,
              attention_resolutions=[2], num_head_channels=8, context_dim=8, norm_num_groups=4),
    conditioner={"type": "class", "num_classes": NUM_CLASSES, "embed_dim": 8}, image_size=16)
TINY_KL_F4 = {"target": "autoencoder_kl", "params": {"autoencoder": dict(
    ch=8, ch_mult=[1, 2, 2], num_res_blocks=1, resolution=16, z_channels=3, embed_dim=3, num_groups=4),
    "loss": {"perceptual_weight": 0.0, "disc_weight": 0.0}}}


def _tiny_ldm(first_stage=None) -> LatentDiffusion:
    torch.manual_seed(0)
    return LatentDiffusion(**TINY_PARAMS, first_stage=first_stage).eval()


def _tiny_judge() -> JudgeClassifier:
    torch.manual_seed(0)
    return JudgeClassifier(in_channels=3, num_classes=NUM_CLASSES, width=8).eval()


# --- samplers.py ---------------------------------------------------------------------------------
def test_parse_run_accepts_sampler_colon_steps_and_rejects_the_rest():
    assert samplers.parse_run("ddim:20") == ("ddim", 20)
    assert samplers.parse_run("dpmpp_2m:10") == ("dpmpp_2m", 10)
    for bad in ("ddim", "ddim:0", "ddim:x", "fast:10", "ddim:-3"):
        with pytest.raises(ValueError, match="SAMPLER:STEPS"):
            samplers.parse_run(bad)


def test_default_checkpoint_runs_are_the_requested_set():
    runs = sorted(samplers.parse_run(r) for r in samplers.CHECKPOINT_RUNS)
    assert runs == sorted([("ddpm", 1000), ("ddim", 10), ("ddim", 20), ("ddim", 50), ("plms", 20),
                           ("dpmpp_2m", 10), ("dpmpp_2m", 20), ("euler", 20), ("heun", 10)])


def test_toy_counts_nfe_and_converges_to_the_true_gaussian():
    runs = [("ddim", 5), ("ddim", 50), ("heun", 10), ("plms", 10), ("dpmpp_2m", 50)]
    rows = samplers.run_toy(runs, num_samples=4000, karras=True)
    assert [(r["sampler"], r["steps"]) for r in rows] == runs
    for r in rows:
        assert r["nfe"] == model_calls(r["sampler"], r["steps"])
    errors = {(r["sampler"], r["steps"]): r["w2_error"] for r in rows}
    assert errors[("ddim", 50)] < errors[("ddim", 5)] / 2
    assert errors[("dpmpp_2m", 50)] < 0.02  # exact denoiser + 2nd-order solver: close to N(0.5, 0.5^2)


def test_balanced_labels_cover_every_class_equally():
    labels = samplers.balanced_labels(18, 180)
    assert labels.numel() == 180 and torch.equal(torch.bincount(labels), torch.full((18,), 10))
    labels = samplers.balanced_labels(10, 185)
    assert labels.numel() == 190 and torch.equal(torch.bincount(labels), torch.full((10,), 19))


def test_cfg_call_counts_as_one_nfe_and_runs_share_their_start():
    ldm, judge = _tiny_ldm(), _tiny_judge()
    unet_batches = []
    ldm.unet.register_forward_hook(lambda module, args, out: unet_batches.append(args[0].shape[0]))
    labels = samplers.balanced_labels(NUM_CLASSES, 6)
    noise = torch.randn(labels.numel(), *ldm.latent_shape, generator=torch.Generator().manual_seed(0))
    images, nfe = samplers.sample_counted(ldm, labels, noise, "plms", 4, guidance_scale=3.0, seed=1, batch_size=4)
    assert images.shape == (6, 3, 16, 16) and images.abs().max() <= 1
    assert nfe == model_calls("plms", 4) == 5
    assert unet_batches == [8] * 5 + [4] * 5  # cond + uncond in one doubled batch per call, 2 batches of 4 + 2
    again, _ = samplers.sample_counted(ldm, labels, noise, "plms", 4, guidance_scale=3.0, seed=1, batch_size=6)
    assert torch.allclose(images, again, atol=1e-5)  # same noise -> same samples, whatever the batching


def test_run_checkpoint_rows_hold_judge_scores():
    ldm, judge = _tiny_ldm(), _tiny_judge()
    real = torch.rand(40, 3, 16, 16) * 2 - 1
    seen = []
    rows = samplers.run_checkpoint(ldm, judge, real, [("ddim", 3), ("ddpm", 4), ("heun", 2)], min_samples=12,
                                   on_row=seen.append)
    assert seen == rows and [r["nfe"] for r in rows] == [3, 4, 3]
    for r in rows:
        assert set(r) == {"sampler", "steps", "nfe", "judge_accuracy", "frechet_distance", "seconds", "cpu_seconds"}
        assert 0.0 <= r["judge_accuracy"] <= 1.0
        assert math.isfinite(r["frechet_distance"]) and r["frechet_distance"] >= 0
    assert "judge accuracy" in samplers.format_table(rows).splitlines()[0]


def test_judge_scores_of_real_images_against_themselves():
    judge = _tiny_judge()
    images = torch.rand(64, 3, 16, 16) * 2 - 1
    labels = judge.predict(images)
    scores = samplers.judge_scores(judge, images, labels, samplers.judge_features(judge, images))
    assert scores["judge_accuracy"] == 1.0
    assert abs(scores["frechet_distance"]) < 1e-6


def test_unknown_checkpoint_is_refused_with_the_available_names():
    common = _load("common")
    with pytest.raises(ValueError, match="'no-such-model'.*shapes-ldm"):
        common.load_with_data("no-such-model")
    model, data = common.load_with_data("shapes-kl-f4")
    assert data["name"] == "shapes" and hasattr(model, "autoencoder")


def test_toy_command_line_writes_meta_and_rows(tmp_path):
    out = tmp_path / "toy.json"
    samplers.main(["--toy", "--runs", "ddim:4", "euler:4", "--num-samples", "500", "--json", str(out)])
    result = json.loads(out.read_text())
    assert result["meta"]["problem"] == "toy" and result["meta"]["threads"] >= 1
    assert [(r["sampler"], r["nfe"]) for r in result["rows"]] == [("ddim", 4), ("euler", 4)]


# --- pixels_vs_latents.py --------------------------------------------------------------------------
def _tiny_pair() -> dict[str, LatentDiffusion]:
    return pixels_vs_latents.build_models(TINY_KL_F4, params=TINY_PARAMS)


def test_build_models_gives_the_same_unet_on_pixels_and_latents():
    models = _tiny_pair()
    assert list(models) == ["pixel DDPM", "LDM-f4"]
    pixel, latent = models.values()
    assert pixel.latent_shape == (3, 16, 16) and latent.latent_shape == (3, 4, 4)
    for a, b in zip(pixel.unet.state_dict().values(), latent.unet.state_dict().values()):
        assert torch.equal(a, b)  # same architecture, same initial weights


def test_throughput_reports_rates_and_speedups():
    result = pixels_vs_latents.throughput(_tiny_pair(), batch_size=4, steps=1, samples=2, clock="cpu")
    pixel, latent = result["rows"]
    assert pixel["train_img_per_s_cached"] == pixel["train_img_per_s_on_the_fly"]  # nothing to cache
    for row in result["rows"]:
        assert row["train_img_per_s_cached"] > 0 and row["sample_s_per_image"] > 0
    assert result["latent_speedup"]["sampling"] == pytest.approx(pixel["sample_s_per_image"]
                                                                  / latent["sample_s_per_image"])
    table = pixels_vs_latents.format_throughput(result)
    assert "latents / pixels" in table and "img/CPU s" in table


def test_train_for_turns_the_budget_into_trainer_steps_and_uses_ema_weights(monkeypatch):
    now, step = [0.0], LatentDiffusion.training_step

    def one_second_step(self, *args, **kwargs):  # a fake clock: every training step takes exactly 1 s
        now[0] += 1.0
        return step(self, *args, **kwargs)

    monkeypatch.setattr(LatentDiffusion, "training_step", one_second_step)
    model = _tiny_pair()["pixel DDPM"]
    before = [p.detach().clone() for p in model.unet.parameters()]
    data = LatentDataset(torch.rand(16, 3, 16, 16) * 2 - 1, {"label": torch.arange(16) % NUM_CLASSES})
    trained = pixels_vs_latents.train_for(model, data, seconds=20.5, batch_size=4, clock=lambda: now[0])
    # calibration: a warm-up and 3 timed steps (4 s); the remaining 16.5 s buy 16 steps of the trainer
    assert trained["steps"] == 16 and trained["images"] == 4 * 16 and trained["seconds"] == 20.0
    assert not model.training
    assert any(not torch.equal(a, b) for a, b in zip(before, model.unet.parameters()))
    model = _tiny_pair()["pixel DDPM"]
    assert pixels_vs_latents.train_for(model, data, 2, batch_size=4, clock=lambda: now[0])["steps"] == 1  # at least one


def test_equal_wall_clock_trains_both_for_the_same_budget_then_judges_them():
    models, judge = _tiny_pair(), _tiny_judge()
    train = (torch.rand(32, 3, 16, 16) * 2 - 1, torch.arange(32) % NUM_CLASSES)
    real = torch.rand(40, 3, 16, 16) * 2 - 1
    rows = pixels_vs_latents.equal_wall_clock(models, judge, 0.5, train, real, min_samples=7, batch_size=4,
                                              clock="cpu")
    assert [r["model"] for r in rows] == ["pixel DDPM (3x16x16)", "LDM-f4 (3x4x4)"]
    pixel, latent = rows
    assert pixel["encode_seconds"] == 0 and latent["encode_seconds"] > 0  # the LDM pays for its encoding
    for r in rows:
        assert r["clock"] == "cpu" and r["budget_s"] == 0.5 and r["num_samples"] == 9  # 3 per class
        # the budget, plus a step of timing noise and the trainer's fixed cost (setup, final checkpoint)
        assert r["steps"] >= 1 and r["train_seconds"] < 0.5 + 2 * r["train_seconds"] / r["steps"] + 0.5
        assert 0.0 <= r["judge_accuracy"] <= 1.0 and math.isfinite(r["judge_frechet_distance"])
        assert r["images_seen"] == 4 * r["steps"] and r["sample_s_per_image"] > 0
    assert "judge accuracy" in pixels_vs_latents.format_wall_clock(rows)


def test_equal_wall_clock_refuses_an_unknown_clock():
    with pytest.raises(ValueError, match="valid clocks: wall, cpu"):
        pixels_vs_latents.equal_wall_clock(_tiny_pair(), _tiny_judge(), 1.0, (torch.zeros(4, 3, 16, 16),
                                           torch.zeros(4, dtype=torch.long)), torch.zeros(4, 3, 16, 16),
                                           clock="gpu")


# --- image_to_image.py ---------------------------------------------------------------------------

def _tiny_concat_ldm(conditioner: dict, extra_channels: int) -> LatentDiffusion:
    """A pixel-space (f = 1) 16 px LDM with a concat conditioner: the UNet reads 3 + extra_channels channels."""
    torch.manual_seed(0)
    unet = dict(in_channels=3 + extra_channels, out_channels=3, model_channels=8, channel_mult=[1, 2],
                num_res_blocks=1, attention_resolutions=[], norm_num_groups=4)
    return LatentDiffusion(unet=unet, conditioner=conditioner, image_size=16, sample_steps=2).eval()


def _shapes16(n: int) -> list[dict]:
    from minildm.data import get_dataset

    return [get_dataset("shapes", split="test", size=16, num_objects=(1, 3))[i] for i in range(n)]


def test_image_to_image_inpainting_rows_compare_every_method_on_the_same_masks():
    model = _tiny_concat_ldm({"type": "inpaint", "latent_channels": 3}, 4)
    rows = image_to_image.run_inpainting(model, "tiny", {"tiny-class": _tiny_ldm()}, _shapes16(6), steps=2, seed=0)
    assert [r["method"] for r in rows] == ["tiny (concat, Sec. 4.5)", "replacement: tiny-class", "masked input",
                                           "first-stage reconstruction (ceiling of raw outputs)",
                                           "real image (ceiling)"]
    for r in rows:
        assert r["known_psnr_pasted"] == pytest.approx(100.0) and r["items"] == 6  # paste-back keeps known pixels
    masked, identity, real = rows[2], rows[3], rows[4]
    assert identity["known_psnr_raw"] == pytest.approx(100.0)  # pixel space: the first stage is the identity
    assert masked["known_psnr_raw"] == pytest.approx(100.0) and masked["background_hole_psnr"] < 20
    assert real["background_hole_psnr"] == pytest.approx(100.0) and real["object_completion"] > 0.8
    assert "background-hole PSNR" in image_to_image.format_table("inpainting", rows)


def test_image_to_image_super_resolution_rows_start_from_bicubic():
    model = _tiny_concat_ldm({"type": "low_res", "scale": 4}, 3)
    images = torch.stack([item["image"] for item in _shapes16(4)])
    rows = image_to_image.run_super_resolution(model, "tiny", {"other": model}, images, 2, 0, lpips=None)
    assert [r["method"] for r in rows] == ["bicubic", "first-stage reconstruction (ceiling)", "tiny", "other"]
    assert rows[1]["psnr"] == pytest.approx(100.0)  # pixel space: the first stage is the identity
    assert rows[2]["psnr_bicubic"] == pytest.approx(rows[0]["psnr"])
    assert rows[2]["psnr"] == pytest.approx(rows[3]["psnr"])  # the same model and seed: the same samples
    assert rows[2]["psnr_gain"] == pytest.approx(rows[2]["psnr"] - rows[0]["psnr"])
    assert "gain over bicubic" in image_to_image.format_table("super_resolution", rows)


def test_image_to_image_semantic_rows_per_size_with_the_real_ceiling():
    model = _tiny_concat_ldm({"type": "segmentation", "num_classes": 18}, 3)
    data = {"name": "shapes", "size": 16, "options": {"num_objects": [1, 3]}}
    rows = image_to_image.run_semantic(model, data, [16, 32], num_items=3, steps=2, seed=0)
    assert [(r["size"], r["method"]) for r in rows] == [(16, "real images"), (16, "samples"), (32, "real images"),
                                                       (32, "samples")]
    assert rows[0]["colour_match_eroded"] == 1.0 and rows[2]["colour_match"] > 0.9  # real images: the ceiling
    assert all(0.0 <= r["colour_match"] <= 1.0 for r in rows)
    assert "32 px, samples" in image_to_image.format_table("semantic", rows)
