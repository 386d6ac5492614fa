"""Speed parity: minildm UNetModel vs diffusers UNet2DConditionModel at one identical config.

Both models hold the same weights (diffusers' random init, converted with
minildm.pretrained.unet) and are checked to compute the same output before timing. Then, in
one process and interleaved (so background load hits both alike), each model runs

    train step:    forward + backward of a mean-squared loss (no optimizer)
    sampling step: forward under torch.no_grad()

`--repeats` times `--iters` steps; a model's time is the minimum over repeats of the median
step time. The acceptance target is ratio = minildm / diffusers <= 1.0 for both.

    python benchmarks/unet_speed.py                       # table
    python benchmarks/unet_speed.py --threads 2 --json results.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from typing import Callable

import torch

from minildm.pretrained.unet import convert_unet_state_dict, unet_config_from_diffusers
from minildm.unet import UNetModel

# A reduced Stable Diffusion layout: SD's block pattern and head count at small widths.
DIFFUSERS_CONFIG = dict(
    sample_size=16,
    in_channels=4,
    out_channels=4,
    block_out_channels=(32, 64, 64),
    layers_per_block=2,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=64,
    attention_head_dim=8,
    norm_num_groups=32,
)


def build_models(seed: int = 0) -> tuple[torch.nn.Module, UNetModel]:
    """The diffusers reference with random weights, and a minildm UNetModel holding the same weights."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    reference = UNet2DConditionModel(**DIFFUSERS_CONFIG)
    ours = UNetModel.from_config(unet_config_from_diffusers(DIFFUSERS_CONFIG))
    ours.load_state_dict(convert_unet_state_dict(reference.state_dict(), source="diffusers"))
    return reference, ours


def median_step_time(step: Callable[[], None], iters: int) -> float:
    """Median wall time of `iters` calls of `step` (after one warm-up call)."""
    step()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=16, help="latent height = width")
    parser.add_argument("--tokens", type=int, default=8, help="context length")
    parser.add_argument("--iters", type=int, default=10, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON ('-' for stdout)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    reference, ours = build_models()
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(args.batch, 4, args.size, args.size, generator=generator)
    t = torch.randint(0, 1000, (args.batch,), generator=generator)
    context = torch.randn(args.batch, args.tokens, DIFFUSERS_CONFIG["cross_attention_dim"], generator=generator)

    runs = {
        "diffusers": lambda: reference(x, t, encoder_hidden_states=context).sample,
        "minildm": lambda: ours(x, t, context),
    }
    with torch.no_grad():
        max_diff = (runs["diffusers"]() - runs["minildm"]()).abs().max().item()
    if max_diff > 1e-4:
        raise SystemExit(f"outputs differ (max abs diff {max_diff:.2e}); the comparison would be meaningless")

    def train_step(model: torch.nn.Module, forward: Callable[[], torch.Tensor]) -> Callable[[], None]:
        def step() -> None:
            forward().square().mean().backward()
            model.zero_grad(set_to_none=True)

        return step

    def sample_step(forward: Callable[[], torch.Tensor]) -> Callable[[], None]:
        def step() -> None:
            with torch.no_grad():
                forward()

        return step

    models = {"diffusers": reference, "minildm": ours}
    best: dict[str, dict[str, float]] = {"train": {}, "sample": {}}
    for repeat in range(args.repeats):
        order = list(models) if repeat % 2 == 0 else list(models)[::-1]  # alternate who goes first
        for mode in ("train", "sample"):
            for name in order:
                models[name].train(mode == "train")
                step = train_step(models[name], runs[name]) if mode == "train" else sample_step(runs[name])
                seconds = median_step_time(step, args.iters)
                best[mode][name] = min(best[mode].get(name, float("inf")), seconds)

    results = {
        "config": {**DIFFUSERS_CONFIG, "batch": args.batch, "latent": [4, args.size, args.size], "tokens": args.tokens},
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "max_abs_diff": max_diff,
        "steps": {
            mode: {
                "minildm_ms": 1000 * best[mode]["minildm"],
                "diffusers_ms": 1000 * best[mode]["diffusers"],
                "ratio": best[mode]["minildm"] / best[mode]["diffusers"],
            }
            for mode in ("train", "sample")
        },
    }
    print(f"UNet speed, batch {args.batch} x 4x{args.size}x{args.size}, {args.tokens} context tokens, "
          f"{results['threads']} threads (outputs match: max abs diff {max_diff:.1e})")  # fmt: skip
    print(f"{'step':<10}{'minildm ms':>12}{'diffusers ms':>14}{'ratio':>8}")
    for mode, row in results["steps"].items():
        print(f"{mode:<10}{row['minildm_ms']:>12.1f}{row['diffusers_ms']:>14.1f}{row['ratio']:>8.3f}")
    if args.json == "-":
        json.dump(results, sys.stdout, indent=2)
        print()
    elif args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
