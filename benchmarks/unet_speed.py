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
    python benchmarks/unet_speed.py --preset sd-v1 --device cuda --precision bf16 --batch 8   # GPU

`--preset sd-v1` is Stable Diffusion v1's UNet (859,520,964 parameters) with 4x64x64 latents
and 77 x 768 context tokens; on a GPU the fp32 equality check runs with TF32 off, then the
timing runs in `--precision` (bf16 autocast by default on CUDA). `--compile` adds a row for
torch.compile of minildm's UNet, and `--optimizer` adds a fused AdamW step to the train step.
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


# Stable Diffusion v1's UNet (diffusers' names): 859,520,964 parameters.
SD_V1_CONFIG = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=768,
    attention_head_dim=8,
    norm_num_groups=32,
)
PRESETS = {"small": DIFFUSERS_CONFIG, "sd-v1": SD_V1_CONFIG}


def build_models(seed: int = 0, config: dict | None = None) -> tuple[torch.nn.Module, UNetModel]:
    """The diffusers reference with random weights, and a minildm UNetModel holding the same weights."""
    from diffusers import UNet2DConditionModel

    config = config or DIFFUSERS_CONFIG
    torch.manual_seed(seed)
    reference = UNet2DConditionModel(**config)
    ours = UNetModel.from_config(unet_config_from_diffusers(config))
    ours.load_state_dict(convert_unet_state_dict(reference.state_dict(), source="diffusers"))
    return reference, ours


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_step_time(step: Callable[[], None], iters: int, device: torch.device = torch.device("cpu"),
                     warmup: int = 1) -> float:
    """Median wall time of `iters` calls of `step` (after `warmup` calls), waiting for the GPU each time."""
    for _ in range(warmup):
        step()
    _sync(device)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="small",
                        help="UNet layout: small (SD's pattern at small widths) or sd-v1 (the real size)")
    parser.add_argument("--batch", type=int, default=None, help="default 16 (small) or 8 (sd-v1)")
    parser.add_argument("--size", type=int, default=None, help="latent height = width (default 16 / 64)")
    parser.add_argument("--tokens", type=int, default=None, help="context length (default 8 / 77)")
    parser.add_argument("--iters", type=int, default=10, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default=None,
                        help="timed precision: bf16 autocast (default on CUDA) or fp32 (default on CPU)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile(minildm UNet)")
    parser.add_argument("--optimizer", action="store_true", help="train step includes a (fused on CUDA) AdamW step")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON ('-' for stdout)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    sd = args.preset == "sd-v1"
    batch = args.batch or (8 if sd else 16)
    size = args.size or (64 if sd else 16)
    tokens = args.tokens or (77 if sd else 8)
    config = PRESETS[args.preset]
    device = torch.device(args.device)
    precision = args.precision or ("bf16" if device.type == "cuda" else "fp32")

    reference, ours = build_models(config=config)
    reference, ours = reference.to(device), ours.to(device)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 4, size, size, generator=generator).to(device)
    t = torch.randint(0, 1000, (batch,), generator=generator).to(device)
    context = torch.randn(batch, tokens, config["cross_attention_dim"], generator=generator).to(device)

    runs = {
        "diffusers": lambda: reference(x, t, encoder_hidden_states=context).sample,
        "minildm": lambda: ours(x, t, context),
    }
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # exact fp32 for the check
    with torch.no_grad():
        max_diff = (runs["diffusers"]() - runs["minildm"]()).abs().max().item()
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    if max_diff > 1e-4 * (100 if sd else 1):
        raise SystemExit(f"outputs differ (max abs diff {max_diff:.2e}); the comparison would be meaningless")
    if precision == "bf16":
        runs = {name: _autocast(run, device) for name, run in runs.items()}
    models = {"diffusers": reference, "minildm": ours}
    if args.compile:
        compiled = torch.compile(ours)
        models["minildm-compiled"] = ours
        runs["minildm-compiled"] = _autocast(lambda: compiled(x, t, context), device) if precision == "bf16" \
            else (lambda: compiled(x, t, context))
    optimizers = {name: torch.optim.AdamW(model.parameters(), lr=1e-6, fused=device.type == "cuda")
                  for name, model in models.items()} if args.optimizer else {}

    def train_step(model: torch.nn.Module, forward: Callable[[], torch.Tensor], name: str) -> Callable[[], None]:
        def step() -> None:
            forward().float().square().mean().backward()
            if name in optimizers:
                optimizers[name].step()
            model.zero_grad(set_to_none=True)

        return step

    def sample_step(forward: Callable[[], torch.Tensor]) -> Callable[[], None]:
        def step() -> None:
            with torch.no_grad():
                forward()

        return step

    best: dict[str, dict[str, float]] = {"train": {}, "sample": {}}
    warmup = 3 if args.compile else 1  # compilation happens in the first calls
    for repeat in range(args.repeats):
        order = list(runs) if repeat % 2 == 0 else list(runs)[::-1]  # alternate who goes first
        for mode in ("train", "sample"):
            for name in order:
                models[name].train(mode == "train")
                step = train_step(models[name], runs[name], name) if mode == "train" else sample_step(runs[name])
                seconds = median_step_time(step, args.iters, device, warmup=warmup if repeat == 0 else 1)
                best[mode][name] = min(best[mode].get(name, float("inf")), seconds)

    flops = _train_flops(runs["minildm"], ours) if device.type == "cuda" else None
    results = {
        "config": {**config, "batch": batch, "latent": [4, size, size], "tokens": tokens},
        "preset": args.preset,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine()),
        "precision": precision,
        "optimizer_in_train_step": args.optimizer,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "max_abs_diff": max_diff,
        "train_flop_per_image": flops / batch if flops else None,
        "steps": {
            mode: {
                "minildm_ms": 1000 * best[mode]["minildm"],
                "diffusers_ms": 1000 * best[mode]["diffusers"],
                "ratio": best[mode]["minildm"] / best[mode]["diffusers"],
                **({"minildm_compiled_ms": 1000 * best[mode]["minildm-compiled"]} if args.compile else {}),
            }
            for mode in ("train", "sample")
        },
    }
    if flops:
        results["train_tflop_per_s"] = {name: flops / best["train"][name] / 1e12 for name in best["train"]}
    print(f"UNet speed ({args.preset}, {results['device']}, {precision}), batch {batch} x 4x{size}x{size}, "
          f"{tokens} context tokens, {results['threads']} threads (fp32 outputs match: max abs diff {max_diff:.1e})")
    print(f"{'step':<10}{'minildm ms':>12}{'diffusers ms':>14}{'ratio':>8}" + (f"{'compiled ms':>13}" if args.compile else ""))
    for mode, row in results["steps"].items():
        print(f"{mode:<10}{row['minildm_ms']:>12.1f}{row['diffusers_ms']:>14.1f}{row['ratio']:>8.3f}"
              + (f"{row['minildm_compiled_ms']:>13.1f}" if args.compile else ""))
    if flops:
        print(f"train FLOP per image {flops / batch / 1e12:.2f} T; achieved TFLOP/s: "
              + ", ".join(f"{k} {v:.0f}" for k, v in results["train_tflop_per_s"].items()))
    if args.json == "-":
        json.dump(results, sys.stdout, indent=2)
        print()
    elif args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


def _autocast(run: Callable[[], torch.Tensor], device: torch.device) -> Callable[[], torch.Tensor]:
    def wrapped() -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            return run()

    return wrapped


def _train_flops(forward: Callable[[], torch.Tensor], model: torch.nn.Module) -> float:
    """FLOPs of one forward + backward (torch.utils.flop_counter), for the achieved-rate column."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        forward().float().square().mean().backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


if __name__ == "__main__":
    main()
