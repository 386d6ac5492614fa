"""What the full configs cost: parameters, training FLOPs and memory per image, and (on a GPU) step times.

    python benchmarks/scaling.py                                 # counts on the meta device: any machine, ~1 minute
    python benchmarks/scaling.py --device cuda --batches 8,16,32 --json results/scaling.json

For each full config (ldm/sd-v1, ldm/txt2img-kl-f8, ldm/cin256-ldm4) the UNet is built on PyTorch's meta
device (no memory, no arithmetic) to count its parameters, the FLOPs of one training image (forward +
backward, torch.utils.flop_counter) and the activations autograd keeps per image (fused attention), with
and without gradient checkpointing. With --device cuda it also trains the UNet with random weights at
each batch size (AdamW, bf16 autocast, the config's gradient checkpointing): milliseconds per step, images/s,
achieved TFLOP/s and peak memory. Prints one Markdown table; --json writes the rows and the machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_info  # noqa: E402

from minildm.metrics.speed import saved_activation_bytes, training_state_bytes, unet_training_flops  # noqa: E402
from minildm.pretrained import build_model, resolve_config  # noqa: E402
from minildm.unet import UNetModel  # noqa: E402
from minildm.utils import count_parameters  # noqa: E402

CONFIGS = ("ldm/sd-v1", "ldm/txt2img-kl-f8", "ldm/cin256-ldm4")
CONTEXT_TOKENS = {"clip": 77, "text": 77, "class": 1}


def set_checkpointing(unet: UNetModel, on: bool) -> None:
    """Switch gradient checkpointing on every block of an existing UNet."""
    for module in unet.modules():
        if hasattr(module, "use_checkpoint"):
            module.use_checkpoint = on


def unet_inputs(unet: UNetModel, latent: tuple[int, ...], batch: int, tokens: int,
                device: str | torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random (x, t, context) for one training step of `unet`."""
    return (torch.randn(batch, *latent, device=device), torch.randint(0, 1000, (batch,), device=device),
            torch.randn(batch, tokens, unet.context_dim, device=device))


def counts(name: str) -> dict:
    """Parameters, FLOPs and memory per image of config `name`, on the meta device."""
    config = resolve_config(name)
    with torch.device("meta"):
        ldm = build_model(config)
    unet, latent = ldm.unet.train(), ldm.latent_shape
    tokens = CONTEXT_TOKENS[config["model"]["params"]["conditioner"]["type"]]
    row = {"config": name, "latent": list(latent),
           "parameters": {part: count_parameters(getattr(ldm, part))
                          for part in ("unet", "first_stage", "conditioner")},
           "state_gib": sum(training_state_bytes(unet).values()) / 2**30}
    for checkpointing in (False, True):
        set_checkpointing(unet, checkpointing)
        x, t, context = unet_inputs(unet, latent, 1, tokens, "meta")
        suffix = "_checkpointing" if checkpointing else ""
        row["train_tflop_per_image" + suffix] = unet_training_flops(unet, latent, context=context)["total"] / 1e12
        kept = saved_activation_bytes(lambda: unet(x, t, context=context), unet)
        row["activation_gib_per_image" + suffix] = kept / 2**30
    row["checkpointing"] = bool(config["model"]["params"]["unet"].get("use_checkpoint", False))
    return row


def timed(name: str, batch: int, device: torch.device, steps: int = 5) -> dict:
    """Milliseconds per training step of the config's UNet at `batch`, on a CUDA device (random weights)."""
    config = resolve_config(name)
    unet_config = dict(config["model"]["params"]["unet"])
    unet = UNetModel.from_config(unet_config).to(device).train()
    with torch.device("meta"):
        latent = build_model(config).latent_shape
    tokens = CONTEXT_TOKENS[config["model"]["params"]["conditioner"]["type"]]
    x, t, context = unet_inputs(unet, latent, batch, tokens, device)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-5, fused=True)
    torch.cuda.reset_peak_memory_stats(device)

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = unet(x, t, context=context).float().square().mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # warm-up
    torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize(device)
    ms = 1000 * (time.perf_counter() - start) / steps
    return {"config": name, "batch": batch, "ms_per_step": ms, "images_per_s": 1000 * batch / ms,
            "peak_gib": torch.cuda.max_memory_allocated(device) / 2**30}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated (default: {','.join(CONFIGS)})")
    parser.add_argument("--device", default="cpu", help="cpu: counts only; cuda: also timed training steps")
    parser.add_argument("--batches", default="8,16,32", help="batch sizes to time on a GPU (default 8,16,32)")
    parser.add_argument("--json", default=None, help="write the rows and the machine to this file")
    args = parser.parse_args(argv)
    names = [n for n in args.configs.split(",") if n]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        raise SystemExit(f"unknown config(s) {', '.join(unknown)}; accepted: {', '.join(CONFIGS)}")
    device = torch.device(args.device)
    if device.type not in ("cpu", "cuda") or (device.type == "cuda" and not torch.cuda.is_available()):
        raise SystemExit(f"--device {args.device}: accepted are cpu (counts only) and cuda (when a GPU is present)")
    rows = [counts(name) for name in names]
    print("| config | UNet params | TFLOP/train image (ckpt) | activations GiB/image (ckpt) | state GiB |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['config']} | {r['parameters']['unet']:,} | {r['train_tflop_per_image']:.2f} "
              f"({r['train_tflop_per_image_checkpointing']:.2f}) | {r['activation_gib_per_image']:.2f} "
              f"({r['activation_gib_per_image_checkpointing']:.2f}) | {r['state_gib']:.1f} |")
    timings = []
    if device.type == "cuda":
        print("\n| config | batch | ms/step | images/s | TFLOP/s | peak GiB |\n|---|---:|---:|---:|---:|---:|")
        for r in rows:
            per_image = r["train_tflop_per_image_checkpointing" if r["checkpointing"] else "train_tflop_per_image"]
            for batch in (int(b) for b in args.batches.split(",")):
                timing = timed(r["config"], batch, device)
                timing["achieved_tflop_per_s"] = per_image * timing["images_per_s"]
                timings.append(timing)
                print(f"| {r['config']} | {batch} | {timing['ms_per_step']:.0f} | {timing['images_per_s']:.1f} "
                      f"| {timing['achieved_tflop_per_s']:.0f} | {timing['peak_gib']:.1f} |")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"meta": {**machine_info(device), "command": " ".join(sys.argv)},
                                               "counts": rows, "timings": timings}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
