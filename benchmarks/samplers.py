"""Sampler quality vs number of model evaluations (NFE): the trade-off notebook 08 discusses.

Every sampler in minildm.diffusion runs from the SAME starting noise (and the same generator
for the stochastic ones) at several step counts; each run reports its NFE (counted by
wrapping the network) and its error:

    --toy             data N(mu, s^2) with the exact denoiser in closed form (runs today, CPU, seconds).
                      error = 2-Wasserstein distance between N(mean, std^2) of the samples and N(mu, s^2).
    --checkpoint DIR  a trained course model. error = RMS distance to a reference sample drawn from
                      the same noise with a many-step high-order sampler (--reference-steps of heun):
                      how far each cheap sampler lands from the converged ODE solution.

    python benchmarks/samplers.py --toy
    python benchmarks/samplers.py --checkpoint outputs/ldm-digits --steps 5 10 20 50 --json out.json

The checkpoint loader is `minildm.ldm.load_for_sampling(path) -> (model_fn, schedule, objective,
shape)`; until the LDM module provides it, --checkpoint stops with a message saying so.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import time
from typing import Callable

import torch

from minildm.diffusion import SAMPLER_NAMES, NoiseSchedule, sample

TOY_MU, TOY_S = 0.5, 0.5


def toy_problem(num_samples: int) -> tuple[Callable, NoiseSchedule, str, tuple[int, ...]]:
    """(model_fn, schedule, objective, shape) of the closed-form Gaussian problem."""
    schedule = NoiseSchedule.from_name("scaled_linear")

    def model_fn(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        sigma = schedule.t_to_sigma(t).to(x_t.dtype).view(-1, *([1] * (x_t.ndim - 1)))
        a = 1 / (1 + sigma**2)  # alpha_bar at t
        return TOY_MU + a.sqrt() * TOY_S**2 / (a * TOY_S**2 + 1 - a) * (x_t - a.sqrt() * TOY_MU)

    return model_fn, schedule, "x0", (num_samples, 1)


def checkpoint_problem(path: str) -> tuple[Callable, NoiseSchedule, str, tuple[int, ...]]:
    """(model_fn, schedule, objective, shape) of a trained course model, via minildm.ldm."""
    try:
        loader = importlib.import_module("minildm.ldm").load_for_sampling
    except (ImportError, AttributeError) as error:
        raise SystemExit(
            f"--checkpoint needs minildm.ldm.load_for_sampling(path) -> (model_fn, schedule, objective, shape); "
            f"not available yet ({error}). Use --toy meanwhile."
        ) from error
    return loader(path)


def counted(model_fn: Callable) -> tuple[Callable, list[int]]:
    """Wrap model_fn so that every call is counted (NFE)."""
    calls = [0]

    def wrapper(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        calls[0] += 1
        return model_fn(x_t, t)

    return wrapper, calls


def run(args: argparse.Namespace) -> list[dict]:
    if args.toy:
        model_fn, schedule, objective, shape = toy_problem(args.num_samples)
    else:
        model_fn, schedule, objective, shape = checkpoint_problem(args.checkpoint)
        shape = (args.num_samples, *shape[1:])
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(args.seed))
    if args.toy:  # start from the toy data's true marginal at t = T-1 (SD's terminal SNR is not 0)
        a = schedule.alphas_cumprod[-1].item()
        noise = a**0.5 * TOY_MU + (a * TOY_S**2 + 1 - a) ** 0.5 * noise
    common = dict(schedule=schedule, objective=objective, noise=noise, karras=args.karras, disable=True)

    reference = None
    if not args.toy:
        reference = sample(model_fn, shape, "heun", args.reference_steps, **common)

    rows = []
    for name in args.samplers:
        for steps in args.steps:
            fn, calls = counted(model_fn)
            start = time.perf_counter()
            out = sample(fn, shape, name, steps, generator=torch.Generator().manual_seed(args.seed + 1), **common)
            seconds = time.perf_counter() - start
            if args.toy:
                error = math.hypot(out.mean().item() - TOY_MU, out.std().item() - TOY_S)
            else:
                error = (out - reference).pow(2).mean().sqrt().item()
            rows.append({"sampler": name, "steps": steps, "nfe": calls[0], "error": error, "seconds": seconds})
    return rows


def print_table(rows: list[dict], metric: str) -> None:
    print(f"| sampler | steps | NFE | {metric} | seconds |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['sampler']} | {r['steps']} | {r['nfe']} | {r['error']:.4f} | {r['seconds']:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--toy", action="store_true", help="closed-form Gaussian problem")
    source.add_argument("--checkpoint", help="trained course model folder")
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLER_NAMES), choices=SAMPLER_NAMES)
    parser.add_argument("--steps", nargs="+", type=int, default=[5, 10, 20, 50])
    parser.add_argument("--num-samples", type=int, default=4000)
    parser.add_argument("--reference-steps", type=int, default=200)
    parser.add_argument("--karras", action="store_true", help="Karras sigmas instead of trailing timesteps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    rows = run(args)
    print_table(rows, "W2 to N(mu, s^2)" if args.toy else "RMS to reference")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
