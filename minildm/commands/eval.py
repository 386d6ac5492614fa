"""`minildm eval MODEL [--n 1000] [--metrics fd,kid,is,pr,dc,memorization] [--features NAME] [--json [FILE]]`.

Compares the first `--n` real images of the `--split` (test) split of the model's dataset with as many
samples of a latent diffusion model (a course checkpoint name such as shapes-ldm or digits-ldm, a copied
checkpoint folder or a training run) through `minildm.metrics.evaluate_samples`. Sample i is
conditioned as item i of the `--cond-split` (val) split is: its class label today, and any conditioning
whose conditioner names its dataset item keys (see `minildm.metrics.sample_like`); a concat conditioner
makes its condition from the item as in training (inpainting: a random mask, drawn under `--seed`;
super-resolution: the bicubic low-res image). Conditions and reference images come from different
splits, so the two sets are independent. Image-to-image models (inpainting, super-resolution, semantic
synthesis) also get their task's scores (`minildm.metrics.evaluate_image_to_image`, on up to 256
items of `--split`), under keys "inpainting/...", "super_resolution/...", "semantic/...". Memorization statistics
compare both sets with the training images the model learned from (the first `data.cache_latents`
items of its training split). The JSON file holds every number with the feature extractor's name.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

DEFAULT_METRICS = "fd,kid,is,pr,dc,memorization"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `minildm eval`."""
    parser.add_argument("checkpoint", metavar="MODEL",
                        help="a latent diffusion model: a course checkpoint name (shapes-ldm, digits-ldm), a course "
                             "checkpoint folder or a run folder")
    parser.add_argument("--n", type=int, default=1000, help="number of real held-out images and of samples (at most "
                                                            "the split's size; default 1000)")
    parser.add_argument("--metrics", default=DEFAULT_METRICS, help=f"comma-separated (default {DEFAULT_METRICS})")
    parser.add_argument("--features", default=None,
                        help="feature extractor: judge-shapes, judge-digits, pixels or inception-v3:PATH "
                             "(default: the course judge of the model's dataset)")
    parser.add_argument("--split", default="test", help="real held-out split to compare with (default test)")
    parser.add_argument("--cond-split", default="val",
                        help="split whose items give the samples' conditions, e.g. labels (default val)")
    parser.add_argument("--train-n", type=int, default=None,
                        help="training images for memorization (default: all the model trained on)")
    parser.add_argument("--sampler", default=None, help="sampler name (default: the model's)")
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's)")
    parser.add_argument("--guidance-scale", type=float, default=None, help="classifier-free guidance scale")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise and of KID's subsets")
    parser.add_argument("--batch-size", type=int, default=250, help="images per sampling batch")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    parser.add_argument("--json", nargs="?", const="", default=None, metavar="FILE",
                        help="write the results as JSON to FILE (without FILE: outputs/eval/MODEL.json)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def load_items(data: Mapping[str, Any], num_items: int, split: str, keys: Sequence[str]) -> dict[str, Any]:
    """The first `num_items` items of `split` of a config's dataset: "image" and `keys` stacked (strings as lists)."""
    from minildm.data import get_dataset

    dataset = get_dataset(data["name"], split=split, size=data.get("size", 32), **dict(data.get("options") or {}))
    items = [dataset[i] for i in range(min(num_items, len(dataset)))]
    batch: dict[str, Any] = {}
    for key in ("image", *keys):
        values = [item[key] for item in items]
        batch[key] = values if isinstance(values[0], str) else torch.stack([torch.as_tensor(v) for v in values])
    return batch


def condition_items(model: torch.nn.Module, data: Mapping[str, Any], num_items: int, split: str,
                    seed: int) -> dict[str, Any]:
    """The conditions of the first `num_items` items of `split`, made as training makes them (the conditioner's
    `training_cond` on its `dataset_keys`; random draws such as inpainting masks under `seed`); {} if unconditional."""
    conditioner = getattr(model, "conditioner", None)
    if conditioner is None:
        return {}
    items = load_items(data, num_items, split, conditioner.dataset_keys)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return dict(conditioner.training_cond(items))


def default_features(data: Mapping[str, Any]) -> str:
    """The course judge of the dataset a model was trained on (e.g. judge-shapes for shapes)."""
    from minildm.pretrained.evaluate import JUDGES

    if data["name"] not in JUDGES:
        raise ValueError(f"no course judge for dataset {data['name']!r} (judges exist for {', '.join(JUDGES)}); "
                         "choose --features pixels or inception-v3:PATH")
    return JUDGES[data["name"]]


def format_table(result: Mapping[str, Any]) -> str:
    """The numbers of an evaluation as a two-column Markdown table."""
    rows = [f"| {key} | {value:.4g} |" if isinstance(value, float) else f"| {key} | {value} |"
            for key, value in result.items() if not isinstance(value, (dict, list))]
    return "\n".join(["| metric | value |", "|---|---|", *rows])


def run(args: argparse.Namespace) -> int:
    """Sample, evaluate, print a table and write the JSON file."""
    from minildm.metrics import evaluate_samples, sample_like
    from minildm.metrics.evaluate import check_metrics
    from minildm.metrics.image_to_image import evaluate_image_to_image, image_to_image_task
    from minildm.pretrained import resolve, resolve_config
    from minildm.utils import resolve_device

    metrics = check_metrics(args.metrics)
    if args.n < 10:
        raise ValueError(f"--n must be at least 10 (k-NN metrics and IS splits need a few samples), got {args.n}")
    device = resolve_device(args.device)
    model = resolve(args.checkpoint, device=device)
    if not hasattr(model, "sample"):
        raise ValueError(f"{args.checkpoint!r} holds a {type(model).__name__}, which cannot sample; "
                         "give a latent diffusion model (e.g. shapes-ldm)")
    data = resolve_config(args.checkpoint)["data"]
    features = args.features or default_features(data)
    real = load_items(data, args.n, args.split, ())["image"]
    n = real.shape[0]  # as many samples as real images: k-NN radii depend on the set size (Kynkäänniemi et al.)
    if n < args.n:
        print(f"the {args.split} split has {n} images: evaluating {n} samples against them")
    conditions = condition_items(model, data, n, args.cond_split, args.seed)
    progress = not args.no_progress
    start, cpu_start = time.perf_counter(), time.process_time()
    fake = sample_like(model, conditions, n, batch_size=args.batch_size, progress=progress,
                       generator=torch.Generator().manual_seed(args.seed), sampler=args.sampler, steps=args.steps,
                       guidance_scale=args.guidance_scale)
    sampling = (time.perf_counter() - start, time.process_time() - cpu_start)
    train = None
    if "memorization" in metrics:
        seen = data.get("cache_latents") or n
        train = load_items(data, args.train_n or seen, data.get("split", "train"), ())["image"]
    result = evaluate_samples(real, fake, features=features, metrics=metrics, train=train, seed=args.seed,
                              device=device, progress=progress)
    result = {"checkpoint": str(args.checkpoint), **result, "real_split": args.split, "cond_split": args.cond_split,
              "sampler": args.sampler or model.sampler, "steps": args.steps or model.sample_steps,
              "guidance_scale": model.guidance_scale if args.guidance_scale is None else args.guidance_scale,
              "seed": args.seed, "sampling_s": sampling[0], "sampling_cpu_s": sampling[1],
              "total_s": time.perf_counter() - start, "total_cpu_s": time.process_time() - cpu_start}
    task = image_to_image_task(model)
    if task is not None:
        scores = evaluate_image_to_image(model, data, args.split, min(n, 256), args.steps, args.seed)
        result.update({f"{task}/{key}": value for key, value in scores.items() if key != "task"})
    print(format_table(result))
    if args.json is not None:
        out = Path(args.json or f"outputs/eval/{Path(str(args.checkpoint)).name}.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {out}")
    return 0
