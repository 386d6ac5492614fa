"""Image-to-image LDMs against their baselines: inpainting, 4x super-resolution, semantic synthesis (LDM Sec. 4.3-4.5).

The task follows the checkpoint's conditioner; every measure comes from minildm.metrics.image_to_image,
on the first `--num-items` items of the test split of the checkpoint's dataset, one sample each
(DPM-Solver++(2M), `--steps` steps, no guidance).

    inpainting (--checkpoint shapes-inpaint): three cases of holes (inpainting_masks_for_bars):
        training-style masks (boxes and strokes): PSNR of the known region of the raw decoded output and
            after paste-back (the model's own output vs what the paper's sampling script ships), and inside
            the hole;
        background-only holes (a quarter of the image wide, away from every object): PSNR inside the hole;
        holes over half of the main object: completed in the object's colour (majority palette colour of the
        hole's object pixels).
        Rows: the model; replacement sampling (no training, minildm.diffusion.replacement) with each of
        `--replacement` (unconditional use of a class / layout course LDM: its null condition); the masked
        input itself; the real image (the ceiling of the colour check).
    super-resolution (--checkpoint shapes-sr4): PSNR against the 32 px original, and LPIPS (or its named
        random-feature fallback) of the model, of bicubic upsampling and of each `--compare` model (e.g. the
        pixel-space ldm/shapes-sr4-pixels trained for the same CPU-minutes).
    semantic synthesis (--checkpoint shapes-semantic): the fraction of object pixels drawn in their class
        colour (nearest palette colour), all object pixels and without their borders, at each of `--sizes`
        (the model trained at 32 px samples larger maps: it is convolutional); the same measure on the real
        images is the ceiling row.

    OMP_NUM_THREADS=1 python benchmarks/image_to_image.py --checkpoint shapes-inpaint --json inpaint.json
    OMP_NUM_THREADS=1 python benchmarks/image_to_image.py --checkpoint shapes-sr4 --compare RUN_FOLDER
    OMP_NUM_THREADS=1 python benchmarks/image_to_image.py --checkpoint shapes-semantic --sizes 32,64,128
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from minildm.conditioning import bicubic_downsample
from minildm.losses import LPIPS
from minildm.metrics.image_to_image import (colour_match_fraction, evaluate_semantic, evaluate_super_resolution,
                                            image_to_image_task, inpainting_masks_for_bars, inpainting_scores,
                                            ldm_inpainter, masked_input, replacement_inpainter, shapes_items,
                                            sr_scores)
from minildm.pretrained import resolve

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_with_data, machine_info  # noqa: E402  (benchmarks/common.py)

BARS = {"known_psnr": 35.0, "background_hole_psnr": 25.0, "object_completion": 0.90, "psnr_gain": 3.0,
        "colour_match_32": 0.85, "colour_match_larger": 0.80}


def _timed(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """fn()'s dict with the CPU seconds it took (this process; one thread = one dedicated core)."""
    start = time.process_time()
    out = fn()
    return {**out, "cpu_seconds": time.process_time() - start}


@torch.no_grad()
def reconstruct(model: nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """D(E(x)) through the model's first stage: the best a latent model's decoded output can be."""
    device = next(model.parameters()).device
    return torch.cat([model.decode(model.encode(x.to(device))).float().cpu() for x in images.split(batch_size)])


def run_inpainting(model: nn.Module, name: str, replacements: dict[str, nn.Module], items: list[dict[str, Any]],
                   steps: int | None, seed: int) -> list[dict[str, Any]]:
    """Rows: the inpainting model, replacement sampling with each model of `replacements`, the masked input,
    the real image; all on the same items and masks."""
    cases = inpainting_masks_for_bars(items, seed)
    methods = {f"{name} (concat, Sec. 4.5)": ldm_inpainter(model, steps, seed)}
    methods.update({f"replacement: {key}": replacement_inpainter(m, steps, seed) for key, m in replacements.items()})
    methods["masked input"] = masked_input
    methods["first-stage reconstruction (ceiling of raw outputs)"] = lambda image, mask: reconstruct(model, image)
    methods["real image (ceiling)"] = lambda image, mask: image
    return [{"method": method, **_timed(lambda: inpainting_scores(fn, cases))} for method, fn in methods.items()]


def run_super_resolution(model: nn.Module, name: str, compare: dict[str, nn.Module], images: torch.Tensor,
                         steps: int | None, seed: int, lpips: nn.Module | None) -> list[dict[str, Any]]:
    """Rows: bicubic upsampling, the model's first-stage reconstruction of the originals (the ceiling of a
    latent model), the model, each model of `compare`; PSNR and LPIPS against `images`."""
    low_res = bicubic_downsample(images, model.conditioner.scale)
    ceiling = sr_scores(reconstruct(model, images), low_res, images, model.conditioner.scale, lpips)
    rows = [{"method": "bicubic", "psnr": ceiling["psnr_bicubic"], "psnr_gain": 0.0,
             "lpips": ceiling.get("lpips_bicubic"), "lpips_variant": ceiling.get("lpips_variant"), "cpu_seconds": 0.0},
            {"method": "first-stage reconstruction (ceiling)", **ceiling, "cpu_seconds": 0.0}]
    for method, m in {name: model, **compare}.items():
        rows.append({"method": method, **_timed(lambda: evaluate_super_resolution(m, images, steps, seed,
                                                                                  lpips=lpips))})
    return rows


def run_semantic(model: nn.Module, data: dict[str, Any], sizes: list[int], num_items: int, steps: int | None,
                 seed: int) -> list[dict[str, Any]]:
    """Rows per size: the real images (ceiling), then the model's samples of the same maps."""
    rows = []
    for size in sizes:
        items = shapes_items(data, "test", num_items, size)
        seg = torch.stack([item["segmentation"] for item in items])
        real = torch.stack([item["image"] for item in items])
        rows.append({"method": "real images", "size": size, "images": len(items), "cpu_seconds": 0.0,
                     "colour_match": colour_match_fraction(real, seg),
                     "colour_match_eroded": colour_match_fraction(real, seg, erode=1)})
        batch = max(8, 256 * 32 * 32 // (size * size))
        rows.append({"method": "samples", **_timed(lambda: evaluate_semantic(model, seg, steps, seed, batch))})
    return rows


def _db(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value:.2f}"


def _percent(value: float | None) -> str:
    return "-" if value is None or value != value else f"{100 * value:.1f}%"


def format_table(task: str, rows: list[dict[str, Any]]) -> str:
    """A markdown table of one task's rows, with its bar."""
    if task == "inpainting":
        lines = ["| method | known-region PSNR, raw output (dB) | known-region PSNR, after paste-back (dB) "
                 "| hole PSNR, training-style masks (dB) | background-hole PSNR (dB) | half-object holes completed "
                 "in the object's colour | CPU s |", "|---|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {r['method']} | {_db(r['known_psnr_raw'])} | {_db(r['known_psnr_pasted'])} "
                  f"| {_db(r['hole_psnr_random'])} | {_db(r['background_hole_psnr'])} "
                  f"| {_percent(r['object_completion'])} | {r['cpu_seconds']:.0f} |" for r in rows]
        lines.append(f"| bar | >= {BARS['known_psnr']:.0f} | | | >= {BARS['background_hole_psnr']:.0f} "
                     f"| >= {_percent(BARS['object_completion'])} | |")
        return "\n".join(lines)
    if task == "super_resolution":
        variant = next((r["lpips_variant"] for r in rows if r.get("lpips_variant")), "LPIPS")
        lines = [f"| method | PSNR (dB) | gain over bicubic (dB) | {variant} | CPU s |", "|---|---:|---:|---:|---:|"]
        lines += [f"| {r['method']} | {_db(r['psnr'])} | {r['psnr_gain']:+.2f} "
                  f"| {'-' if r.get('lpips') is None else format(r['lpips'], '.4f')} | {r['cpu_seconds']:.0f} |"
                  for r in rows]
        lines.append(f"| bar | | >= +{BARS['psnr_gain']:.0f} | | |")
        return "\n".join(lines)
    lines = ["| size | images | object pixels in the class colour | same, borders left out | CPU s |",
             "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['size']} px, {r['method']} | {r['images']} | {_percent(r['colour_match'])} "
              f"| {_percent(r['colour_match_eroded'])} | {r['cpu_seconds']:.0f} |" for r in rows]
    lines.append(f"| bar | | >= {_percent(BARS['colour_match_32'])} at 32 px, "
                 f">= {_percent(BARS['colour_match_larger'])} at 64 and 128 px | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True, help="an inpainting, super-resolution or semantic LDM: "
                        "course checkpoint name (shapes-inpaint, shapes-sr4, shapes-semantic) or run folder")
    parser.add_argument("--num-items", type=int, default=256, help="test items, one sample each per case")
    parser.add_argument("--replacement", default="shapes-layout,shapes-ldm",
                        help="inpainting: comma-separated LDMs for replacement sampling (null condition)")
    parser.add_argument("--compare", default="", help="super-resolution: comma-separated other SR models "
                        "(e.g. a run folder of ldm/shapes-sr4-pixels)")
    parser.add_argument("--sizes", default="32,64,128", help="semantic synthesis: image sizes in pixels")
    parser.add_argument("--steps", type=int, default=None, help="DPM-Solver++(2M) steps (default: the model's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write meta + rows to this file")
    args = parser.parse_args(argv)
    model, data = load_with_data(args.checkpoint)
    task = image_to_image_task(model)
    if task is None:
        parser.error(f"--checkpoint must be an inpainting, super-resolution or semantic LDM; {args.checkpoint!r} "
                     f"has a {type(getattr(model, 'conditioner', None)).__name__}")
    name = Path(str(args.checkpoint)).name
    names = lambda text: [s for s in text.split(",") if s]  # noqa: E731
    if task == "inpainting":
        items = shapes_items(data, "test", args.num_items)
        replacements = {key: resolve(key) for key in names(args.replacement)}
        rows = run_inpainting(model, name, replacements, items, args.steps, args.seed)
    elif task == "super_resolution":
        images = torch.stack([item["image"] for item in shapes_items(data, "test", args.num_items)])
        compare = {Path(key).name: resolve(key) for key in names(args.compare)}
        rows = run_super_resolution(model, name, compare, images, args.steps, args.seed, LPIPS())
    else:
        rows = run_semantic(model, data, [int(s) for s in names(args.sizes)], args.num_items, args.steps, args.seed)
    meta = {**machine_info(), "checkpoint": str(args.checkpoint), "task": task, "num_items": args.num_items,
            "sampler": model.sampler, "steps": args.steps or model.sample_steps, "seed": args.seed,
            "command": "python benchmarks/image_to_image.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    print(format_table(task, rows))
    print(f"{task}: {args.checkpoint}, {args.num_items} test items, {meta['sampler']} {meta['steps']} steps; "
          f"{meta['date_utc']} UTC, torch {meta['torch']}, {meta['threads']} thread(s)")
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
