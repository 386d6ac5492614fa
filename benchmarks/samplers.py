"""Sampler quality vs number of model evaluations (NFE): the trade-off notebook 08 discusses.

Every sampler run starts from the SAME noise (and the stochastic ones draw their fresh noise
from the same seed); its NFE is counted by wrapping the network, not taken from a formula.

    --toy                  data N(mu, s^2) with the exact denoiser in closed form (CPU, seconds).
                           error = 2-Wasserstein distance between N(mean, std^2) of the samples and N(mu, s^2).
    --checkpoint NAME|DIR  a class-conditional LatentDiffusion: a course checkpoint name ("shapes-ldm",
                           "digits-ldm", see minildm.pretrained) or a training run folder. The same balanced
                           labels (>= --min-samples, every class equally often) are sampled with classifier-free
                           guidance by every sampler, then judged by the course's judge classifier (--judge):
                             judge accuracy    fraction of samples the judge labels as the asked class;
                             Frechet distance  FID's formula on judge features, samples vs held-out real images
                                               (comparable between rows of one table, not with the paper's FIDs).
                           With guidance, conditional and unconditional predictions come from ONE network call on
                           a doubled batch (minildm.diffusion.cfg_model), and that call counts as 1 NFE.

    python benchmarks/samplers.py --toy
    OMP_NUM_THREADS=1 python benchmarks/samplers.py --checkpoint shapes-ldm --json shapes-ldm.json
    python benchmarks/samplers.py --checkpoint runs/my-ldm --judge judge-digits --runs ddim:10 dpmpp_2m:20

A run is "sampler:steps". The checkpoint default is the set notebook 08 discusses: DDIM 10/20/50,
PLMS 20, DPM-Solver++(2M) 10/20, Euler 20, Heun 10 and the 1000-step DDPM reference, with CFG scale 3,
timesteps spaced "trailing" (minildm.diffusion.sample's default).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from minildm.data import balanced_labels, load_images
from minildm.diffusion import SAMPLER_NAMES, NoiseSchedule, sample
from minildm.metrics import judge_features
from minildm.pretrained import resolve

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_with_data, machine_info  # noqa: E402  (benchmarks/common.py)

TOY_MU, TOY_S = 0.5, 0.5
CHECKPOINT_RUNS = ("ddim:10", "ddim:20", "ddim:50", "plms:20", "dpmpp_2m:10", "dpmpp_2m:20", "euler:20", "heun:10",
                   "ddpm:1000")  # cheapest first: the long DDPM reference comes last
TOY_RUNS = tuple(f"{name}:{steps}" for name in SAMPLER_NAMES for steps in (5, 10, 20, 50))
NFE_NOTE = "1 NFE = one network call; with CFG the batched cond+uncond call counts as 1 NFE per evaluation"


def parse_run(spec: str) -> tuple[str, int]:
    """"ddim:20" -> ("ddim", 20); ValueError naming the accepted form and samplers otherwise."""
    name, _, steps = spec.partition(":")
    if name not in SAMPLER_NAMES or not steps.isdigit() or int(steps) < 1:
        raise ValueError(f"bad run {spec!r}: expected SAMPLER:STEPS with STEPS >= 1 and SAMPLER one of "
                         f"{', '.join(SAMPLER_NAMES)} (e.g. ddim:20)")
    return name, int(steps)


def counted(model_fn: Callable) -> tuple[Callable, list[int]]:
    """Wrap model_fn so that every call is counted (NFE)."""
    calls = [0]

    def wrapper(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        calls[0] += 1
        return model_fn(x_t, t)

    return wrapper, calls


# --- the closed-form toy problem ------------------------------------------------------------
def toy_problem(num_samples: int) -> tuple[Callable, NoiseSchedule, str, tuple[int, ...]]:
    """(model_fn, schedule, objective, shape) of the closed-form Gaussian problem: the exact x0 denoiser."""
    schedule = NoiseSchedule.from_name("scaled_linear")

    def model_fn(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        sigma = schedule.t_to_sigma(t).to(x_t.dtype).view(-1, *([1] * (x_t.ndim - 1)))
        a = 1 / (1 + sigma**2)  # alpha_bar at t
        return TOY_MU + a.sqrt() * TOY_S**2 / (a * TOY_S**2 + 1 - a) * (x_t - a.sqrt() * TOY_MU)

    return model_fn, schedule, "x0", (num_samples, 1)


def run_toy(runs: list[tuple[str, int]], num_samples: int = 4000, seed: int = 0,
            karras: bool = False) -> list[dict[str, Any]]:
    """One row per run: sampler, steps, counted NFE, W2 error to N(mu, s^2), seconds."""
    model_fn, schedule, objective, shape = toy_problem(num_samples)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    a = schedule.alphas_cumprod[-1].item()  # start from the data's true marginal at t = T-1 (terminal SNR > 0)
    noise = a**0.5 * TOY_MU + (a * TOY_S**2 + 1 - a) ** 0.5 * noise
    rows = []
    for name, steps in runs:
        fn, calls = counted(model_fn)
        start = time.perf_counter()
        out = sample(fn, shape, name, steps, schedule=schedule, objective=objective, noise=noise, karras=karras,
                     generator=torch.Generator().manual_seed(seed + 1), progress=False)
        seconds = time.perf_counter() - start
        error = math.hypot(out.mean().item() - TOY_MU, out.std().item() - TOY_S)
        rows.append({"sampler": name, "steps": steps, "nfe": calls[0], "w2_error": error, "seconds": seconds})
    return rows


# --- a trained class-conditional LDM, judged -------------------------------------------------
@torch.no_grad()
def judge_scores(judge: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                 real_features: torch.Tensor) -> dict[str, float]:
    """{"judge_accuracy", "frechet_distance"} of generated `images` asked to be `labels`."""
    from minildm.metrics import frechet_distance, judge_accuracy

    return {"judge_accuracy": judge_accuracy(judge, images, labels),
            "frechet_distance": frechet_distance(judge_features(judge, images), real_features)}


@torch.no_grad()
def sample_counted(ldm: nn.Module, labels: torch.Tensor, noise: torch.Tensor, sampler: str, steps: int,
                   guidance_scale: float, seed: int, batch_size: int = 256) -> tuple[torch.Tensor, int]:
    """Decoded samples (B, C, H, W) for `labels` from starting latents `noise`, and the NFE of one batch.

    Batches of `batch_size` run one after the other; the stochastic samplers draw their fresh noise
    from one generator seeded with `seed`, so a run is reproducible.
    """
    generator = torch.Generator(device=noise.device).manual_seed(seed)
    images, nfe = [], set()
    for label_chunk, noise_chunk in zip(labels.split(batch_size), noise.split(batch_size)):
        model_fn, calls = counted(ldm.prediction_fn(label_chunk, guidance_scale))
        z = sample(model_fn, noise_chunk.shape, sampler, steps, schedule=ldm.schedule, objective=ldm.objective,
                   noise=noise_chunk, generator=generator, progress=False)
        images.append(ldm.decode(z))
        nfe.add(calls[0])
    if len(nfe) != 1:
        raise RuntimeError(f"batches of one run used different NFE {sorted(nfe)}")
    return torch.cat(images), nfe.pop()


def run_checkpoint(ldm: nn.Module, judge: nn.Module, real: torch.Tensor, runs: list[tuple[str, int]],
                   min_samples: int = 180, guidance_scale: float = 3.0, seed: int = 0, batch_size: int = 256,
                   on_row: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """One row per run: sampler, steps, counted NFE, judge accuracy, Frechet distance, wall and CPU seconds.

    All runs sample the same balanced labels from the same starting noise; `on_row(row)` sees
    each row as soon as it is measured (to save partial results of a long benchmark).
    """
    num_classes = getattr(ldm.conditioner, "num_classes", None)
    if num_classes is None:
        raise ValueError("the samplers benchmark needs a class-conditional LatentDiffusion "
                         f"(conditioner type 'class'); this model's conditioner is {ldm.conditioner!r}")
    labels = balanced_labels(num_classes, min_samples)
    noise = torch.randn((labels.numel(), *ldm.latent_shape), generator=torch.Generator().manual_seed(seed))
    real_features = judge_features(judge, real)
    rows = []
    for name, steps in runs:
        start, cpu_start = time.perf_counter(), time.process_time()
        images, nfe = sample_counted(ldm, labels, noise, name, steps, guidance_scale, seed + 1, batch_size)
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start  # sampling + decoding
        row = {"sampler": name, "steps": steps, "nfe": nfe, **judge_scores(judge, images, labels, real_features),
               "seconds": seconds, "cpu_seconds": cpu_seconds}
        rows.append(row)
        if on_row is not None:
            on_row(row)
    return rows


# --- output ----------------------------------------------------------------------------------
def format_table(rows: list[dict[str, Any]]) -> str:
    """A markdown table of the rows (toy rows have w2_error, checkpoint rows judge scores)."""
    if rows and "w2_error" in rows[0]:
        lines = ["| sampler | steps | NFE | W2 to N(mu, s^2) | seconds |", "|---|---:|---:|---:|---:|"]
        lines += [f"| {r['sampler']} | {r['steps']} | {r['nfe']} | {r['w2_error']:.4f} | {r['seconds']:.2f} |"
                  for r in rows]
    else:
        lines = ["| sampler | steps | NFE | judge accuracy | Frechet distance (judge features) | seconds (CPU s) |",
                 "|---|---:|---:|---:|---:|---:|"]
        lines += [f"| {r['sampler']} | {r['steps']} | {r['nfe']} | {100 * r['judge_accuracy']:.1f}% "
                  f"| {r['frechet_distance']:.3f} | {r['seconds']:.1f} ({r['cpu_seconds']:.1f}) |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--toy", action="store_true", help="closed-form Gaussian problem")
    source.add_argument("--checkpoint", help="class-conditional LDM: course checkpoint name or training run folder")
    parser.add_argument("--judge", help="judge classifier: course name or run folder (default judge-<dataset>)")
    parser.add_argument("--runs", nargs="+", help="SAMPLER:STEPS items (default: notebook 08's set, or a grid "
                        "of every sampler at 5/10/20/50 steps with --toy)")
    parser.add_argument("--guidance-scale", type=float, default=3.0)
    parser.add_argument("--min-samples", type=int, default=180, help="samples per run, balanced over classes")
    parser.add_argument("--num-real", type=int, default=1000, help="held-out real images for the Frechet distance")
    parser.add_argument("--real-split", default="val", help="split of the real images (default val)")
    parser.add_argument("--batch-size", type=int, default=256, help="samples per network batch")
    parser.add_argument("--num-samples", type=int, default=4000, help="--toy: samples of the Gaussian")
    parser.add_argument("--karras", action="store_true", help="--toy: Karras sigmas instead of trailing timesteps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write meta + rows to this file (rewritten after every row)")
    args = parser.parse_args(argv)
    try:
        runs = [parse_run(spec) for spec in args.runs or (TOY_RUNS if args.toy else CHECKPOINT_RUNS)]
    except ValueError as error:
        parser.error(str(error))
    command = " ".join(["python benchmarks/samplers.py", *(sys.argv[1:] if argv is None else argv)])
    meta: dict[str, Any] = {**machine_info(), "command": command, "runs": [f"{n}:{k}" for n, k in runs]}
    rows: list[dict[str, Any]] = []

    def save(row: dict[str, Any] | None = None) -> None:
        if row is not None:
            print(format_table([row]).splitlines()[-1], flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")

    if args.toy:
        meta.update(problem="toy", mu=TOY_MU, s=TOY_S, num_samples=args.num_samples, karras=args.karras)
        rows += run_toy(runs, args.num_samples, args.seed, args.karras)
    else:
        from minildm.metrics import judge_accuracy

        ldm, data = load_with_data(args.checkpoint)
        judge_spec = args.judge or f"judge-{data['name']}"
        judge = resolve(judge_spec)
        real, real_classes = load_images(data, args.num_real, args.real_split)
        labels = balanced_labels(ldm.conditioner.num_classes, args.min_samples)
        meta.update(problem="checkpoint", checkpoint=args.checkpoint, judge=judge_spec, dataset=data,
                    guidance_scale=args.guidance_scale, num_samples=labels.numel(),
                    samples_per_class=labels.numel() // ldm.conditioner.num_classes, seed=args.seed,
                    real_split=args.real_split, num_real=real.shape[0], nfe_counting=NFE_NOTE,
                    judge_accuracy_on_real=judge_accuracy(judge, real, real_classes))
        print(f"{args.checkpoint}: {labels.numel()} samples, CFG {args.guidance_scale}; judge {judge_spec} "
              f"labels {100 * meta['judge_accuracy_on_real']:.1f}% of real {args.real_split} images correctly")
        print(format_table([]))
        run_checkpoint(ldm, judge, real, runs, args.min_samples, args.guidance_scale, args.seed, args.batch_size,
                       on_row=lambda row: (rows.append(row), save(row)))
    save()
    print()
    print(format_table(rows))


if __name__ == "__main__":
    main()
