"""Stage-1 compression trade-off: KL vs VQ autoencoders at f = 2, 4, 8 (the course's paper Tab. 8).

Sweep mode (default): for every dataset x kind x f, train an autoencoder from the packaged
config autoencoder/<dataset>-<kind>-f4 with ch_mult cut or extended to give f = 2^(len-1)
([1, 2], [1, 2, 2], [1, 2, 2, 4]; z_channels / embed_dim / codebook size as in the f4 config),
all for the SAME number of steps, then evaluate on held-out images: PSNR, SSIM, LPIPS (real or
the named fallback, see the lpips column), codebook usage over the whole evaluation set and
perplexity (VQ), latent numbers per image (c*h*w), compression vs pixels, encode+decode images/s.

Checkpoint mode (--checkpoints): the same metrics for the shipped course checkpoints
(minildm.pretrained.load("shapes-kl-f4"), ...) or run folders, checked against the acceptance
bars (shapes KL-f4 >= 30 dB, shapes VQ-f4 >= 27 dB with >= 50% of codes used, digits KL-f4 >= 26 dB).

    OMP_NUM_THREADS=1 python benchmarks/stage1.py --json benchmarks/results/stage1.json
    OMP_NUM_THREADS=1 python benchmarks/stage1.py --datasets shapes --kinds vq --factors 4 --steps 100
    OMP_NUM_THREADS=1 python benchmarks/stage1.py --checkpoints [NAME_OR_RUN_DIR ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from minildm.data import get_dataset, images_to_png, stack_items
from minildm.losses import LPIPS
from minildm.metrics import evaluate_autoencoder, reconstruct
from minildm.train import train_from_config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_with_data, machine_info  # noqa: E402  (benchmarks/common.py)

CH_MULT = {2: [1, 2], 4: [1, 2, 2], 8: [1, 2, 2, 4]}
NUM_EXAMPLES = 6  # held-out images whose reconstructions are stored (as PNG text) for notebook 04
DATASETS, KINDS = ("shapes", "digits"), ("kl", "vq")
SHIPPED = ("shapes-kl-f4", "shapes-vq-f4", "digits-kl-f4", "digits-vq-f4")
# acceptance bars for the shipped checkpoints: (minimum PSNR in dB, minimum codebook usage or None)
BARS = {"shapes-kl-f4": (30.0, None), "shapes-vq-f4": (27.0, 0.5), "digits-kl-f4": (26.0, None)}


def eval_images(dataset: str, count: int, size: int = 32, options: dict[str, Any] | None = None) -> tuple[torch.Tensor, str]:
    """`count` held-out images (N, C, size, size): the test split, then the val split if the test split is shorter."""
    images, used = [], []
    for split in ("test", "val"):
        data = get_dataset(dataset, split=split, size=size, **(options or {}))
        take = min(len(data), count - sum(len(x) for x in images))
        images.append(stack_items(data, take, keys=("image",))["image"])
        used.append(f"{split}[:{take}]")
        if sum(len(x) for x in images) >= count:
            break
    return torch.cat(images), "+".join(used)


def train_autoencoder(dataset: str, kind: str, f: int, width: int, steps: int, seed: int) -> tuple[torch.nn.Module, float, float]:
    """Train <dataset>-<kind>-f4 with ch_mult for factor f and base width `width`; returns (model, seconds, CPU seconds)."""
    if f not in CH_MULT:
        raise ValueError(f"unsupported factor f={f}; accepted: {sorted(CH_MULT)}")
    overrides = [f"model.params.autoencoder.ch_mult={CH_MULT[f]}", f"model.params.autoencoder.ch={width}",
                 f"train.steps={steps}", f"train.warmup_steps={max(1, steps // 10)}", f"train.seed={seed}",
                 f"train.log_every={max(1, steps // 10)}", f"train.checkpoint_every={steps}",
                 "model.params.num_scale_batches=5"]
    start, cpu_start = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory(prefix="minildm-stage1-") as out_dir:
        trainer = train_from_config(f"autoencoder/{dataset}-{kind}-f4", overrides, out_dir=out_dir, progress=False)
    return trainer.model.eval(), time.perf_counter() - start, time.process_time() - cpu_start


def run_sweep(args: argparse.Namespace, lpips: LPIPS, on_row: Callable[[list[dict[str, Any]]], None],
              examples: dict[str, str]) -> list[dict[str, Any]]:
    """Train and evaluate every requested (dataset, kind, f, width); one result row each, passed to `on_row` as they come.

    `examples` receives, per dataset, the first NUM_EXAMPLES evaluation images as PNG text; each row
    holds their reconstructions the same way ("examples_png").
    """
    rows = []
    for dataset in args.datasets:
        images, split = eval_images(dataset, args.eval_images)
        examples[dataset] = images_to_png(images[:NUM_EXAMPLES])
        for width in args.widths:
            for kind in args.kinds:
                for f in args.factors:
                    model, seconds, cpu_seconds = train_autoencoder(dataset, kind, f, width, args.steps, args.seed)
                    row = {"dataset": dataset, "kind": kind, "f": f, "ch": width, "ch_mult": CH_MULT[f],
                           "steps": args.steps, "train_s": round(seconds, 1), "train_cpu_s": round(cpu_seconds, 1),
                           "eval_split": split,
                           **evaluate_autoencoder(model, images, lpips, batch_size=64, speed_repeats=3),
                           "examples_png": images_to_png(reconstruct(model, images[:NUM_EXAMPLES])[0])}
                    rows.append(row)
                    on_row(rows)
                    print(f"  done {dataset} {kind}-f{f} ch{width}: {row['psnr_db']:.2f} dB in {seconds:.0f} s",
                          file=sys.stderr, flush=True)
    return rows


def run_checkpoints(args: argparse.Namespace, lpips: LPIPS) -> list[dict[str, Any]]:
    """Evaluate shipped checkpoints (or run folders); missing shipped names are reported and skipped."""
    from minildm import pretrained

    names = args.checkpoints or list(SHIPPED)
    rows = []
    for name in names:
        if not Path(name).is_dir() and name not in pretrained.available():
            print(f"  {name}: not shipped yet (available: {', '.join(pretrained.available()) or 'none'}); skipped",
                  file=sys.stderr)
            continue
        model, data = load_with_data(name)
        label = Path(name).name if Path(name).is_dir() else name
        dataset = data["name"]
        images, split = eval_images(dataset, args.eval_images, data.get("size", 32), data.get("options"))
        metrics = evaluate_autoencoder(model, images, lpips, batch_size=64, speed_repeats=3)
        f = getattr(model, "autoencoder", model).downsampling_factor
        row = {"checkpoint": label, "dataset": dataset, "kind": "vq" if "n_embed" in metrics else "kl", "f": f,
               "eval_split": split, "eval_options": data.get("options") or {}, **metrics}
        bar = BARS.get(label)
        if bar is not None:
            min_psnr, min_usage = bar
            row["bar"] = f">= {min_psnr:g} dB" + (f", >= {min_usage:.0%} codes" if min_usage else "")
            row["passes"] = row["psnr_db"] >= min_psnr and (min_usage is None or row["codebook_usage"] >= min_usage)
        rows.append(row)
    return rows


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(rows: list[dict[str, Any]], checkpoints: bool) -> None:
    """A markdown table of the rows."""
    first = ["checkpoint"] if checkpoints else ["dataset", "kind", "f", "ch"]
    header = first + ["latent", "numbers", "ratio", "PSNR dB", "SSIM", "LPIPS", "lpips variant",
                      "codes used", "perplexity", "enc+dec img/s"]
    header += ["bar", "pass"] if checkpoints else ["train s"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        cells = [r["checkpoint"]] if checkpoints else [r["dataset"], r["kind"].upper(), str(r["f"]), str(r["ch"])]
        usage = None if r.get("codebook_usage") is None else f"{r['codebook_usage']:.0%} of {r['n_embed']}"
        cells += ["x".join(map(str, r["latent_shape"])), str(r["latent_numbers"]), f"{r['compression']:.3g}x",
                  f"{r['psnr_db']:.2f}", f"{r['ssim']:.3f}", _fmt(r.get("lpips"), ".4f"), str(r.get("lpips_variant")),
                  usage or "-", _fmt(r.get("perplexity"), ".1f"), f"{r['images_per_s']:.0f}"]
        if checkpoints:
            cells += [r.get("bar", "-"), {True: "PASS", False: "FAIL"}.get(r.get("passes"), "-")]
        else:
            cells += [f"{r['train_s']:.0f} ({r['train_cpu_s']:.0f} CPU)"]
        print("| " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="training steps per autoencoder, the same for all (default 300)")
    parser.add_argument("--widths", type=int, nargs="+", default=[16],
                        help="base channel widths `ch` to sweep (default 16; the shipped f4 checkpoints use 32)")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    parser.add_argument("--factors", type=int, nargs="+", default=sorted(CH_MULT), choices=sorted(CH_MULT))
    parser.add_argument("--eval-images", type=int, default=512, help="held-out images per dataset (default 512)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoints", nargs="*", default=None, metavar="NAME_OR_RUN_DIR",
                        help=f"evaluate shipped checkpoints instead of training (default: {' '.join(SHIPPED)})")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the results to PATH as JSON (rewritten after every model)")
    args = parser.parse_args()
    if args.steps < 1 or args.eval_images < 1:
        parser.error(f"--steps and --eval-images must be >= 1, got {args.steps} and {args.eval_images}")
    start = time.perf_counter()
    lpips = LPIPS()
    checkpoints = args.checkpoints is not None

    def write_json(rows: list[dict[str, Any]], complete: bool = False) -> None:
        if args.json is None:
            return
        args.json.parent.mkdir(parents=True, exist_ok=True)
        meta = {**machine_info(), "command": " ".join(["python", *sys.argv]),
                "wall_s": round(time.perf_counter() - start, 1), "mode": "checkpoints" if checkpoints else "sweep",
                "complete": complete}
        originals = {"count": NUM_EXAMPLES, "images_png": examples} if examples else None
        args.json.write_text(json.dumps({"meta": meta, "examples": originals, "rows": rows}, indent=2) + "\n")

    examples: dict[str, str] = {}
    rows = run_checkpoints(args, lpips) if checkpoints else run_sweep(args, lpips, write_json, examples)
    write_json(rows, complete=True)
    info = machine_info()
    print(f"torch {info['torch']}, {info['threads']} thread(s), {info['machine']}, {info['date_utc']} UTC, "
          f"{time.perf_counter() - start:.0f} s")
    print_table(rows, checkpoints)


if __name__ == "__main__":
    main()
