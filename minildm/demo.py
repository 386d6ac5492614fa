"""`minildm demo`: the whole latent diffusion pipeline, from scratch, on shapes, in minutes on a CPU.

1. stage 1: train a tiny KL-f4 autoencoder (3x32x32 images -> 3x8x8 latents), estimate its scale factor;
2. stage 2: encode 24,000 images once, then train a class-conditional latent diffusion model on
   those latents, with condition dropout (for classifier-free guidance);
3. sample every class with classifier-free guidance and DPM-Solver++(2M), ask the judge what it sees.

The judge is the course's fixed evaluation classifier of the 18 shape classes (`judge-shapes`, shipped
with the package, trained on real images by `minildm train judge/shapes --export judge-shapes`). Like
the Inception network behind FID it is never retrained: every run, on any machine, is scored by the
same instrument. (Two judges, each retrained in its own run, scored the same samples 86% and 93%.)

Everything lands in `outputs/demo/`: the two training runs (checkpoints, log.csv, TensorBoard),
`samples.png` (one row per class), `reconstructions.png` and `report.md`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from minildm.course import fast_mode

CONFIGS = {"autoencoder": "demo/shapes-ae", "ldm": "demo/shapes-ldm"}
FAST_STEPS = {"autoencoder": 20, "ldm": 20}
JUDGE = "judge-shapes"  # the course checkpoint that scores every run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `minildm demo`."""
    parser.add_argument("--out", default="outputs/demo", help="output folder (default: outputs/demo)")
    parser.add_argument("--fast", action="store_true", help="a seconds-long smoke run (also with MINILDM_FAST=1)")
    parser.add_argument("--samples-per-class", type=int, default=None, help="samples drawn per class (default 8)")
    parser.add_argument("--guidance-scale", type=float, default=4.0, help="classifier-free guidance scale (default 4)")
    parser.add_argument("--sampler", default="dpmpp_2m", help="sampler name (default dpmpp_2m)")
    parser.add_argument("--steps", type=int, default=20, help="sampling steps (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampling noise")


def _overrides(name: str, fast: bool) -> list[str]:
    if not fast:
        return []
    return [f"train.steps={FAST_STEPS[name]}", "train.batch_size=8", "train.checkpoint_every=1000000",
            "train.log_every=10"]


def _train(name: str, out: Path, fast: bool):
    from minildm.train import train_from_config

    return train_from_config(CONFIGS[name], _overrides(name, fast), out_dir=out / name)


def _train_ldm(out: Path, fast: bool, num_latents: int):
    """Stage 2 on latents encoded once by the frozen autoencoder (see `LatentDataset`)."""
    from minildm.train import Trainer, build_dataset, load_config, seeded_build_model

    overrides = [*_overrides("ldm", fast), f"model.params.first_stage={(out / 'autoencoder').as_posix()}",
                 f"train.out_dir={(out / 'ldm').as_posix()}"]
    config = load_config(CONFIGS["ldm"], overrides)
    model = seeded_build_model(config)
    latents = model.encode_dataset(build_dataset(config), num_items=num_latents)
    return Trainer(model, latents, config).fit()


def _on_device_of(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`x` moved to the device of `module`'s weights (the trainer may have put them on a GPU)."""
    return x.to(next(module.parameters()).device)


@torch.no_grad()
def _real_images(n: int, split: str = "val") -> tuple[torch.Tensor, torch.Tensor]:
    from minildm.data import get_dataset

    data = get_dataset("shapes", split=split, size=32, num_objects=1)
    items = [data[i] for i in range(n)]
    return torch.stack([it["image"] for it in items]), torch.tensor([it["label"] for it in items])


def _save_grid(images: torch.Tensor, nrow: int, path: Path, row_labels: list[str] | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from minildm.data import image_grid

    grid = image_grid(images, ncols=nrow)
    rows = images.shape[0] // nrow
    fig, ax = plt.subplots(figsize=(nrow * 0.6 + 2.2, rows * 0.6 + 0.3), dpi=100)
    ax.imshow(grid.squeeze(), interpolation="nearest")
    ax.set_xticks([])
    if row_labels:
        step = grid.shape[0] / rows
        ax.set_yticks([(i + 0.5) * step for i in range(rows)], row_labels, fontsize=7)
    else:
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    """Train the autoencoder and the LDM; sample every class; judge the samples; write the report."""
    from minildm import pretrained
    from minildm.data import dataset_info
    from minildm.metrics import frechet_distance, judge_accuracy, psnr

    fast = args.fast or fast_mode()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    per_class = args.samples_per_class or (2 if fast else 8)
    steps = 4 if fast else args.steps
    times: dict[str, float] = {}  # wall seconds per stage
    cpu: dict[str, float] = {}  # CPU seconds of this process per stage (all threads)
    start, cpu_start = time.perf_counter(), time.process_time()

    print("[1/3] stage 1: training the KL-f4 autoencoder on shapes (32 px -> 3x8x8 latents)")
    tic, cpu_tic = time.perf_counter(), time.process_time()
    autoencoder = _train("autoencoder", out, fast).model.eval()
    times["autoencoder"], cpu["autoencoder"] = time.perf_counter() - tic, time.process_time() - cpu_tic

    print("[2/3] stage 2: training the class-conditional latent diffusion model")
    tic, cpu_tic = time.perf_counter(), time.process_time()
    trainer = _train_ldm(out, fast, num_latents=256 if fast else 24_000)
    ldm = trainer.model
    if trainer.ema is not None:
        trainer.ema.copy_to(ldm)  # sample with the EMA weights
    ldm.eval()
    times["ldm"], cpu["ldm"] = time.perf_counter() - tic, time.process_time() - cpu_tic

    print(f"[3/3] sampling {per_class} images per class: {args.sampler}, {steps} steps, CFG {args.guidance_scale}; "
          f"the judge ({JUDGE}) labels them")
    tic, cpu_tic = time.perf_counter(), time.process_time()
    info = dataset_info("shapes")
    num_classes = info["num_classes"]
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    generator = torch.Generator().manual_seed(args.seed)
    samples = torch.cat([
        ldm.sample(labels=chunk, sampler=args.sampler, steps=steps, guidance_scale=args.guidance_scale,
                   generator=generator, progress=False)
        for chunk in labels.split(72)
    ])
    times["sampling"], cpu["sampling"] = time.perf_counter() - tic, time.process_time() - cpu_tic
    times["total"], cpu["total"] = time.perf_counter() - start, time.process_time() - cpu_start

    # the models may sit on a GPU: inputs go to the model's device, results come back to the CPU
    samples = samples.cpu()
    judge = pretrained.load(JUDGE).eval()
    real, real_labels = _real_images(256 if not fast else 64)
    with torch.no_grad():
        recon = autoencoder.decode_latent(autoencoder.encode_latent(_on_device_of(autoencoder, real)))
        recon = recon.clamp(-1, 1).cpu()
        sample_features, real_features = judge.features(samples).cpu(), judge.features(real).cpu()
    results = {
        "autoencoder_val_psnr_db": psnr(recon, real).mean().item(),
        "latent_scale_factor": float(autoencoder.scale_factor),
        "judge": JUDGE,
        "judge_val_accuracy": judge_accuracy(judge, _on_device_of(judge, real), real_labels),
        "judge_accuracy_on_samples": judge_accuracy(judge, _on_device_of(judge, samples), labels),
        "judge_frechet_distance": frechet_distance(sample_features, real_features),
        "samples": int(labels.numel()),
        "sampler": args.sampler,
        "sampling_steps": steps,
        "guidance_scale": args.guidance_scale,
        "fast_mode": fast,
        "threads": torch.get_num_threads(),
        "seconds": {k: round(v, 1) for k, v in times.items()},
        "cpu_seconds": {k: round(v, 1) for k, v in cpu.items()},
    }
    _save_grid(samples, per_class, out / "samples.png", row_labels=info["class_names"])
    _save_grid(torch.cat([real[:8], recon[:8]]), 8, out / "reconstructions.png", ["real", "decoded"])
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "report.md").write_text(_report(results))
    print(_report(results))
    return 0


def _report(r: dict) -> str:
    s = r["seconds"]
    return f"""# minildm demo report

A latent diffusion model trained from scratch on single-object shapes (32 px, 18 classes = kind x colour).{" (fast mode: a smoke run, not a result)" if r["fast_mode"] else ""}

| stage | result | time |
|---|---|---|
| 1. KL-f4 autoencoder, 3x32x32 -> 3x8x8 | held-out PSNR {r["autoencoder_val_psnr_db"]:.2f} dB, scale factor {r["latent_scale_factor"]:.3f} | {s["autoencoder"]:.0f} s |
| 2. class-conditional LDM | trained with 10% condition dropout | {s["ldm"]:.0f} s |
| 3. sampling: {r["sampler"]}, {r["sampling_steps"]} steps, CFG {r["guidance_scale"]} | **judge labels {100 * r["judge_accuracy_on_samples"]:.1f}% of {r["samples"]} samples as the asked class**; Fréchet distance in judge features {r["judge_frechet_distance"]:.3f} | {s["sampling"]:.0f} s |

The judge is the course's fixed classifier `{r["judge"]}` (held-out accuracy on real images here: {100 * r["judge_val_accuracy"]:.1f}%).

Total: {s["total"] / 60:.1f} minutes ({r["cpu_seconds"]["total"] / 60:.1f} CPU-minutes, {r["threads"]} thread(s)). Files: samples.png (one row per class), reconstructions.png, results.json,
and the two training runs (autoencoder/, ldm/) with checkpoints, log.csv and TensorBoard logs.
"""
