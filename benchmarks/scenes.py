"""Text-to-image caption faithfulness and layout-to-image fidelity, judged by the scene judge.

The scene judge (minildm.metrics.scene_judge) finds the objects of an image by colour segmentation
and names each one with the course's shapes judge on a crop around it.

    text-to-image (--checkpoint shapes-txt2img): one sample per caption of the test split (drawn
        without the training exclusions). Single-object captions: colour and kind right. Two-object
        captions: both colours there, both colour-and-kind there, and the stated relation right, between
        the objects of the named colours and (stricter) between the objects of the named colour and kind.
        Captions that name a colour-shape pair held out of training are reported apart.
    layout-to-image (--checkpoint shapes-layout): one sample per layout of the test split; for every
        requested box the found object overlapping it most: class right (per-box accuracy), and IoU.

The same judge on the real test images gives the ceiling row ("real images").

    OMP_NUM_THREADS=1 python benchmarks/scenes.py --checkpoint shapes-txt2img --json txt2img.json
    OMP_NUM_THREADS=1 python benchmarks/scenes.py --checkpoint shapes-layout --json layout.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from minildm.data import get_dataset
from minildm.metrics.scene_judge import (caption_faithfulness, layout_fidelity, names_held_out,
                                         sample_and_judge_captions, sample_and_judge_layouts)
from minildm.pretrained import resolve

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_with_data, machine_info  # noqa: E402  (benchmarks/common.py)

BARS = {"single_objects": 0.90, "multi_colours": 0.80, "multi_relation": 0.70, "box_accuracy": 0.85,
        "mean_iou": 0.60}


def test_items(data: dict[str, Any], num_items: int) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """(the first `num_items` test items, their class names, the held-out pairs) of a config's `data` section;
    the test split is drawn without the training exclusions, so held-out pairs appear."""
    options = dict(data.get("options") or {})
    held_out = list(options.pop("exclude", []))
    dataset = get_dataset(data["name"], split="test", size=data.get("size", 32), **options)
    return [dataset[i] for i in range(min(num_items, len(dataset)))], dataset.class_names, held_out


def run_text(ldm: torch.nn.Module, judge: torch.nn.Module, items: list[dict[str, Any]], class_names: list[str],
             held_out: list[str], guidance_scale: float, steps: int, seed: int) -> list[dict[str, Any]]:
    """Rows: real images (the judge's ceiling), then samples of seen and held-out captions."""
    captions = [item["caption"] for item in items]
    real = torch.stack([item["image"] for item in items])
    rows = []
    for group, keep in (("real images, seen captions", False), ("real images, held-out pairs", True)):
        index = [i for i, c in enumerate(captions) if names_held_out(c, held_out) == keep]
        rows.append({"images": group, **caption_faithfulness(judge, real[index], [captions[i] for i in index],
                                                             class_names)})
    start, cpu_start = time.perf_counter(), time.process_time()
    scores = sample_and_judge_captions(ldm, judge, captions, class_names, held_out, steps=steps,
                                       guidance_scale=guidance_scale, seed=seed)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    for group, name in (("seen", "samples, seen captions"), ("held_out", "samples, held-out pairs")):
        rows.append({"images": name, **{k.split("/", 1)[1]: v for k, v in scores.items() if k.startswith(group + "/")},
                     "guidance_scale": guidance_scale, "steps": steps, "seconds": seconds,
                     "cpu_seconds": cpu_seconds})
    return rows


def run_layout(ldm: torch.nn.Module, judge: torch.nn.Module, items: list[dict[str, Any]], class_names: list[str],
               guidance_scale: float, steps: int, seed: int) -> list[dict[str, Any]]:
    """Rows: real images (the judge's ceiling), then samples of the same layouts."""
    boxes = torch.stack([item["boxes"] for item in items])
    box_labels = torch.stack([item["box_labels"] for item in items])
    real = torch.stack([item["image"] for item in items])
    rows = [{"images": "real images", **layout_fidelity(judge, real, boxes, box_labels, class_names)}]
    start, cpu_start = time.perf_counter(), time.process_time()
    scores = sample_and_judge_layouts(ldm, judge, boxes, box_labels, class_names, steps=steps,
                                      guidance_scale=guidance_scale, seed=seed)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    rows.append({"images": "samples", **scores, "seconds": seconds, "cpu_seconds": cpu_seconds})
    return rows


def _percent(value: float | None) -> str:
    return "-" if value is None or value != value else f"{100 * value:.1f}%"


def format_table(rows: list[dict[str, Any]]) -> str:
    """A markdown table: caption rows (single / two-object rates) or layout rows (box accuracy, IoU)."""
    if "box_accuracy" in rows[0]:
        lines = ["| images | boxes | per-box class accuracy | mean IoU |", "|---|---:|---:|---:|"]
        lines += [f"| {r['images']} | {r['boxes']} | {_percent(r['box_accuracy'])} | {r['mean_iou']:.3f} |"
                  for r in rows]
        lines.append(f"| bar | | >= {_percent(BARS['box_accuracy'])} | >= {BARS['mean_iou']} |")
        return "\n".join(lines)
    lines = ["| images | single-object captions | colour and kind right | two-object captions | both colours there "
             "| both colour and kind there | relation right (objects of the named colours) "
             "| relation right (objects of the named colour and kind) |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['images']} | {r['single_count']} | {_percent(r['single_objects'])} | {r['multi_count']} "
              f"| {_percent(r['multi_colours'])} | {_percent(r['multi_objects'])} "
              f"| {_percent(r['multi_relation_colours'])} | {_percent(r['multi_relation'])} |" for r in rows]
    lines.append(f"| bar (seen captions) | | >= {_percent(BARS['single_objects'])} | | "
                 f">= {_percent(BARS['multi_colours'])} | | >= {_percent(BARS['multi_relation'])} | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True, help="text- or layout-conditioned LDM: course checkpoint "
                        "name (shapes-txt2img, shapes-layout) or training run folder")
    parser.add_argument("--judge", default="judge-shapes", help="the single-object judge (course name or folder)")
    parser.add_argument("--num-items", type=int, default=400, help="test captions / layouts, one sample each")
    parser.add_argument("--guidance-scale", type=float, default=3.0)
    parser.add_argument("--steps", type=int, default=20, help="DPM-Solver++(2M) steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write meta + rows to this file")
    args = parser.parse_args(argv)
    ldm, data = load_with_data(args.checkpoint)
    kind = type(ldm.conditioner).__name__
    if kind not in ("TextConditioner", "LayoutConditioner"):
        parser.error(f"--checkpoint must be a text- or layout-conditioned LDM; {args.checkpoint!r} has a {kind}")
    judge = resolve(args.judge).eval()
    items, class_names, held_out = test_items(data, args.num_items)
    if kind == "TextConditioner":
        rows = run_text(ldm, judge, items, class_names, held_out, args.guidance_scale, args.steps, args.seed)
    else:
        rows = run_layout(ldm, judge, items, class_names, args.guidance_scale, args.steps, args.seed)
    meta = {**machine_info(), "checkpoint": args.checkpoint, "judge": args.judge, "held_out_pairs": held_out,
            "sampler": "dpmpp_2m", "steps": args.steps, "guidance_scale": args.guidance_scale,
            "command": "python benchmarks/scenes.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    print(format_table(rows))
    print(f"held-out pairs: {', '.join(held_out) or 'none'}; DPM-Solver++(2M) {args.steps} steps, CFG "
          f"{args.guidance_scale}; {meta['date_utc']} UTC, torch {meta['torch']}, {meta['threads']} thread(s)")
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
