"""Pixels vs latents: the cost side of the paper's central claim (LDM Sec. 3, Fig. 6), measured here.

The same UNet family (the demo's class-conditional cross-attention UNet) is trained on
3x32x32 shapes images (pixel-space DDPM = LatentDiffusion with an identity first stage) and
on the 3x8x8 latents of a KL-f4 autoencoder (LDM-4). Reported: training images/s (latents
cached, as in `minildm demo`, and encoded on the fly), and sampling seconds per image
(DPM-Solver++(2M), 20 steps, classifier-free guidance, decoding included).

    python benchmarks/pixels_vs_latents.py [--steps 10] [--batch 64] [--threads N] [--json]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from minildm.ldm import LatentDiffusion
from minildm.train import load_config


def _models() -> dict[str, LatentDiffusion]:
    ldm_params = load_config("demo/shapes-ldm", ["model.params.first_stage=null"])["model"]["params"]
    ae = load_config("demo/shapes-ae")["model"]
    torch.manual_seed(0)
    pixel = LatentDiffusion(**{**ldm_params, "first_stage": None})
    latent = LatentDiffusion(**{**ldm_params, "first_stage": {"target": ae["target"], "params": ae["params"]}})
    return {"pixel DDPM (3x32x32)": pixel, "LDM-f4 (3x8x8 latents)": latent}


def _train_rate(model: LatentDiffusion, batch: dict, steps: int) -> float:
    opt = torch.optim.AdamW(model.optimizer_groups()["model"], lr=1e-4)

    def step() -> None:
        loss, _ = model.training_step(batch, "model", 0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch[next(iter(batch))].shape[0] / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="timed training steps per model")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--samples", type=int, default=18, help="images sampled for the sampling time")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    images = torch.rand(args.batch, 3, 32, 32) * 2 - 1
    labels = torch.arange(args.batch) % 18
    rows = []
    for name, model in _models().items():
        model.train()
        row = {"model": name, "latent_shape": list(model.latent_shape)}
        row["train_img_per_s_on_the_fly"] = _train_rate(model, {"image": images, "label": labels}, args.steps)
        if not name.startswith("pixel"):
            latents = model.encode(images)
            row["train_img_per_s_cached"] = _train_rate(model, {"latent": latents, "label": labels}, args.steps)
        else:
            row["train_img_per_s_cached"] = row["train_img_per_s_on_the_fly"]
        model.eval()
        start = time.perf_counter()
        model.sample(labels=torch.arange(args.samples) % 18, steps=20, guidance_scale=3.0, progress=False,
                     generator=torch.Generator().manual_seed(0))
        row["sample_s_per_image"] = (time.perf_counter() - start) / args.samples
        rows.append(row)
    pixel, latent = rows
    speedup = {k: latent[k] / pixel[k] for k in ("train_img_per_s_cached", "train_img_per_s_on_the_fly")}
    speedup["sampling"] = pixel["sample_s_per_image"] / latent["sample_s_per_image"]
    if args.json:
        print(json.dumps({"rows": rows, "latent_speedup": speedup, "threads": torch.get_num_threads()}, indent=2))
        return
    print(f"torch threads: {torch.get_num_threads()}, batch {args.batch}")
    print("| model | train img/s (latents cached) | train img/s (encoding on the fly) | sampling s/image |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['train_img_per_s_cached']:.1f} | {r['train_img_per_s_on_the_fly']:.1f} "
              f"| {r['sample_s_per_image']:.3f} |")
    print(f"| LDM-f4 / pixels | {speedup['train_img_per_s_cached']:.1f}x | {speedup['train_img_per_s_on_the_fly']:.1f}x "
          f"| {speedup['sampling']:.1f}x faster |")


if __name__ == "__main__":
    main()
