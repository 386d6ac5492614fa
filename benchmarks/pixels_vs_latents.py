"""Pixels vs latents: the paper's central claim (LDM Sec. 3, Sec. 4.1, Fig. 6), measured here.

The same UNet (the demo's class-conditional cross-attention UNet, same initial weights) runs as a
pixel-space DDPM on 3x32x32 single-object shapes (LatentDiffusion with an identity first stage) and
as an LDM-f4 on the 3x8x8 latents of a KL-f4 autoencoder (`--first-stage`, default the course's
"shapes-kl-f4").

Throughput (always): training images/s (latents cached, as `minildm demo` does, and encoded on the
fly) and sampling seconds per image (DPM-Solver++(2M), 20 steps, classifier-free guidance 3,
decoding included), on random images: speed does not depend on what the pixels show.

Equal wall clock (`--wall-clock SECONDS`): both models train, one after the other in the same
process (same threads), for the SAME wall-clock budget on the same pre-rendered training images;
the LDM's budget also pays for encoding its latents once. Then each draws >= 180 samples balanced
over the 18 classes (DPM-Solver++(2M), 20 steps, CFG 3, EMA weights) and the judge classifier
("judge-shapes") reports judge accuracy (samples labelled as the asked class) and the Frechet
distance between judge features of samples and of held-out real images.

On a machine shared with other jobs, `--clock cpu` counts every second (budgets and rates) in this
process's CPU seconds instead of wall-clock seconds (run with one thread: a CPU second is then a
second of one dedicated core), so both models get the same compute whatever the other jobs do.

    python benchmarks/pixels_vs_latents.py [--steps 10] [--batch 64] [--threads N] [--json FILE]
    OMP_NUM_THREADS=1 python benchmarks/pixels_vs_latents.py --steps 5 --wall-clock 300 --clock cpu --json out.json
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from minildm.data import balanced_labels, load_images
from minildm.ldm import LatentDataset, LatentDiffusion
from minildm.metrics import (judge_accuracy, judge_features, sample_and_judge, sampling_seconds_per_image,
                             train_images_per_second)
from minildm.pretrained import resolve
from minildm.train import Trainer, load_config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_info  # noqa: E402  (benchmarks/common.py)

UNET_FAMILY = "demo/shapes-ldm"
SHAPES = {"name": "shapes", "size": 32, "options": {"num_objects": 1}}  # single-object shapes, 18 classes
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
"""Clocks: wall-clock seconds, or this process's CPU seconds (= wall clock on a dedicated core with one
thread; the fair measure on a machine shared with other jobs)."""


def build_models(first_stage: str | dict[str, Any], params: dict[str, Any] | None = None,
                 seed: int = 0) -> dict[str, LatentDiffusion]:
    """{"pixel DDPM": identity first stage, "LDM-f<f>": `first_stage`}: the same UNet with the same initial weights.

    first_stage: anything `minildm.pretrained.resolve` loads (a course checkpoint name, a run folder, a config).
    params: LatentDiffusion keyword arguments without `first_stage` (default: the demo LDM's,
    `minildm/configs/demo/shapes-ldm.yaml`); both first stages must give 3-channel inputs.
    """
    if params is None:
        params = load_config(UNET_FAMILY, ["model.params.first_stage=null"])["model"]["params"]
    torch.manual_seed(seed)
    pixel = LatentDiffusion(**{**params, "first_stage": None})
    latent = LatentDiffusion(**{**params, "first_stage": resolve(first_stage)})
    latent.unet.load_state_dict(pixel.unet.state_dict())  # the same starting point for both
    if pixel.conditioner is not None:
        latent.conditioner.load_state_dict(pixel.conditioner.state_dict())
    return {"pixel DDPM": pixel, f"LDM-f{latent.first_stage.downsampling_factor}": latent}


def _shape_name(model: LatentDiffusion) -> str:
    return "x".join(str(d) for d in model.latent_shape)


# --- throughput -------------------------------------------------------------------------------
def _clock(name: str) -> Callable[[], float]:
    if name not in CLOCKS:
        raise ValueError(f"unknown clock {name!r}; valid clocks: {', '.join(CLOCKS)}")
    return CLOCKS[name]


def throughput(models: dict[str, LatentDiffusion], batch_size: int = 64, steps: int = 10,
               samples: int = 18, clock: str = "wall") -> dict[str, Any]:
    """Train images/s (cached latents and on the fly) and sampling s/image of each model, and the LDM's speed-up.

    models: {"pixel ...": model, "LDM ...": model} as `build_models` returns (pixels first);
    seconds are read on `clock` (see CLOCKS).
    """
    read = _clock(clock)
    rows = []
    for name, model in models.items():
        size, num_classes = model.image_size, model.conditioner.num_classes
        images = torch.rand(batch_size, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1
        labels = torch.arange(batch_size) % num_classes
        row = {"model": f"{name} ({_shape_name(model)})", "latent_shape": list(model.latent_shape)}
        row["train_img_per_s_on_the_fly"] = train_images_per_second(model, {"image": images, "label": labels}, steps,
                                                                    clock=read)
        if model.first_stage.downsampling_factor == 1:
            row["train_img_per_s_cached"] = row["train_img_per_s_on_the_fly"]  # nothing to cache
        else:
            latents = model.encode(images)
            row["train_img_per_s_cached"] = train_images_per_second(model, {"latent": latents, "label": labels}, steps,
                                                                    clock=read)
        row["sample_s_per_image"] = sampling_seconds_per_image(model, torch.arange(samples) % num_classes, steps=20,
                                                               guidance_scale=3.0, clock=read)
        rows.append(row)
    pixel, latent = rows
    speedup = {k: latent[k] / pixel[k] for k in ("train_img_per_s_cached", "train_img_per_s_on_the_fly")}
    speedup["sampling"] = pixel["sample_s_per_image"] / latent["sample_s_per_image"]
    return {"clock": clock, "batch_size": batch_size, "timed_steps": steps, "rows": rows, "latent_speedup": speedup}


# --- equal wall clock ---------------------------------------------------------------------------
def train_for(model: LatentDiffusion, data: LatentDataset, seconds: float, start: float | None = None,
              batch_size: int = 64, lr: float = 1e-3, warmup_steps: int = 20, ema_decay: float = 0.999,
              grad_clip: float = 1.0, seed: int = 0, clock: Callable[[], float] = time.perf_counter,
              calibration_steps: int = 3) -> dict[str, Any]:
    """Train with minildm.train.Trainer for as many steps as fit in `seconds` since `start` (default: now).

    The trainer runs a fixed number of steps, so the budget becomes a step count first: a copy of the
    model times `calibration_steps` optimizer steps on one batch (`train_images_per_second`), and the
    rest of the budget buys that many more (at least one). The run: AdamW with linear warm-up then a
    constant rate (the budget, not a step count, ends training, so there is no cosine decay), gradient
    clipping, and an EMA of the weights, copied into the model at the end (as the course samples with
    them). data: "latent" (cached latents, or the images themselves for pixel diffusion) and "label".
    The trainer's fixed cost (setup, its final checkpoint; a fraction of a second) comes on top of the
    steps. Returns {"steps", "images", "seconds"}.
    """
    start = clock() if start is None else start
    batch = data.get_batch(list(range(min(batch_size, len(data)))))
    rate = train_images_per_second(copy.deepcopy(model), batch, calibration_steps, lr=lr, clock=clock)
    step_seconds = len(batch["latent"]) / rate
    steps = max(1, int((seconds - (clock() - start)) / step_seconds))
    config = {"train": {"steps": steps, "batch_size": batch_size, "lr": lr, "warmup_steps": warmup_steps,
                        "lr_schedule": "constant", "grad_clip": grad_clip, "ema_decay": ema_decay, "seed": seed,
                        "log_every": steps, "checkpoint_every": steps, "sample_every": 0,
                        "device": str(next(model.parameters()).device)}}
    with tempfile.TemporaryDirectory(prefix="minildm-pixels-vs-latents-") as out_dir:
        trainer = Trainer(model, data, config, out_dir=out_dir, progress=False).fit()
    trainer.ema.copy_to(model)
    model.eval()
    return {"steps": steps, "images": steps * batch_size, "seconds": clock() - start}


def equal_wall_clock(models: dict[str, LatentDiffusion], judge: nn.Module, seconds: float,
                     train: tuple[torch.Tensor, torch.Tensor], real: torch.Tensor, min_samples: int = 180,
                     batch_size: int = 64, sample_steps: int = 20, guidance_scale: float = 3.0,
                     seed: int = 0, clock: str = "wall") -> list[dict[str, Any]]:
    """Train each model for `seconds` on `clock` (latent encoding included), then sample and judge it."""
    read = _clock(clock)
    images, labels = train
    sample_labels = balanced_labels(judge.num_classes, min_samples)
    real_features = judge_features(judge, real)
    rows = []
    for name, model in models.items():
        start, wall_start = read(), time.perf_counter()
        if model.first_stage.downsampling_factor == 1:  # pixel diffusion: the "latents" are the images
            data, encode_seconds = LatentDataset(model.encode(images), {"label": labels}), 0.0
        else:
            data = LatentDataset(model.encode(images, batch_size=256).cpu(), {"label": labels})
            encode_seconds = read() - start
        trained = train_for(model, data, seconds, start=start, batch_size=batch_size, seed=seed, clock=read)
        rows.append({"model": f"{name} ({_shape_name(model)})", "clock": clock, "budget_s": seconds,
                     "train_seconds": trained["seconds"], "encode_seconds": encode_seconds,
                     "wall_seconds": time.perf_counter() - wall_start,
                     "steps": trained["steps"], "images_seen": trained["images"],
                     "train_img_per_s": trained["images"] / max(trained["seconds"] - encode_seconds, 1e-9),
                     "num_samples": sample_labels.numel(),
                     **sample_and_judge(model, judge, sample_labels, real_features, steps=sample_steps,
                                        guidance_scale=guidance_scale, seed=seed, batch_size=36)})
        print(format_wall_clock([rows[-1]]).splitlines()[-1], flush=True)
    return rows


# --- output ----------------------------------------------------------------------------------
def format_throughput(result: dict[str, Any]) -> str:
    """Markdown table of `throughput`'s result."""
    s, unit = result["latent_speedup"], "s" if result["clock"] == "wall" else "CPU s"
    lines = [f"| model | train img/{unit} (latents cached) | train img/{unit} (encoding on the fly) "
             f"| sampling {unit}/image |", "|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['train_img_per_s_cached']:.1f} | {r['train_img_per_s_on_the_fly']:.1f} "
              f"| {r['sample_s_per_image']:.3f} |" for r in result["rows"]]
    lines.append(f"| latents / pixels | {s['train_img_per_s_cached']:.1f}x | {s['train_img_per_s_on_the_fly']:.1f}x "
                 f"| {s['sampling']:.1f}x faster |")
    return "\n".join(lines)


def format_wall_clock(rows: list[dict[str, Any]]) -> str:
    """Markdown table of `equal_wall_clock`'s rows."""
    lines = ["| model | budget used (of which encoding) | steps (images seen) | train img/s | judge accuracy "
             "| Frechet distance (judge features) | sampling s/image (CPU s/image) |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['train_seconds']:.0f} {r['clock']} s ({r['encode_seconds']:.0f} s) | {r['steps']} "
              f"({r['images_seen']}) | {r['train_img_per_s']:.1f} | {100 * r['judge_accuracy']:.1f}% "
              f"| {r['judge_frechet_distance']:.3f} | {r['sample_s_per_image']:.3f} ({r['sample_cpu_s_per_image']:.3f}) |"
              for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="timed training steps per model (throughput)")
    parser.add_argument("--batch", type=int, default=64, help="training batch size")
    parser.add_argument("--samples", type=int, default=18, help="images sampled for the throughput sampling time")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--first-stage", default="shapes-kl-f4",
                        help="the LDM's autoencoder: course checkpoint name or run folder (default shapes-kl-f4)")
    parser.add_argument("--wall-clock", type=float, default=None, metavar="SECONDS",
                        help="also train both models for this many seconds each, then sample and judge them")
    parser.add_argument("--clock", default="wall", choices=list(CLOCKS),
                        help="what all seconds count: wall clock, or this process's CPU seconds (use on a machine "
                        "shared with other jobs, with one thread)")
    parser.add_argument("--judge", default="judge-shapes", help="judge: course checkpoint name or run folder")
    parser.add_argument("--train-images", type=int, default=20_000, help="pre-rendered training images")
    parser.add_argument("--min-samples", type=int, default=180, help="samples judged per model, balanced over classes")
    parser.add_argument("--num-real", type=int, default=1000, help="held-out (val) real images for the distance")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    command = " ".join(["python benchmarks/pixels_vs_latents.py", *(sys.argv[1:] if argv is None else argv)])
    result: dict[str, Any] = {"meta": {**machine_info(), "command": command, "unet_family": UNET_FAMILY,
                                       "first_stage": args.first_stage}}

    print(f"torch threads: {torch.get_num_threads()}, batch {args.batch}, {args.clock} seconds")
    result["throughput"] = throughput(build_models(args.first_stage), args.batch, args.steps, args.samples,
                                      args.clock)
    print(format_throughput(result["throughput"]), flush=True)

    if args.wall_clock:
        judge = resolve(args.judge)
        train = load_images(SHAPES, args.train_images, split="train")
        real, real_labels = load_images(SHAPES, args.num_real, split="val")
        result["wall_clock"] = {
            "budget_s_each": args.wall_clock, "clock": args.clock, "judge": args.judge, "batch_size": args.batch,
            "train_images": train[0].shape[0], "num_real": real.shape[0],
            "judge_accuracy_on_real": judge_accuracy(judge, real, real_labels),
            "optimizer": "minildm.train.Trainer: AdamW lr 1e-3, 20 warm-up steps then constant, grad clip 1, "
                         "EMA 0.999 (sampled with EMA); steps = the budget / the time of a calibration step",
            "sampling": "dpmpp_2m, 20 steps, CFG 3"}
        print(f"\nequal budget: {args.wall_clock:.0f} {args.clock} s each; judge {args.judge} "
              f"({100 * result['wall_clock']['judge_accuracy_on_real']:.1f}% on real val images)")
        print(format_wall_clock([]))
        result["wall_clock"]["rows"] = equal_wall_clock(build_models(args.first_stage), judge, args.wall_clock,
                                                        train, real, args.min_samples, args.batch, clock=args.clock)
        print()
        print(format_wall_clock(result["wall_clock"]["rows"]))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
