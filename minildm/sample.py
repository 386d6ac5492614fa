"""`minildm sample`: draw images from a course checkpoint (by name) or a training run folder."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `minildm sample`."""
    parser.add_argument("checkpoint", help="a course checkpoint name (see `minildm sample --list`) or a run folder")
    parser.add_argument("--out", default="outputs/samples.png", help="PNG file to write (default outputs/samples.png)")
    parser.add_argument("--n", type=int, default=16, help="number of images (unconditional models)")
    parser.add_argument("--labels", default=None,
                        help="class ids, comma-separated (e.g. 0,3,3,7), or 'all' for --per-class of every class")
    parser.add_argument("--per-class", type=int, default=4, help="samples per class with --labels all")
    parser.add_argument("--sampler", default=None, help="ddpm, ddim, plms, dpmpp_2m, euler, euler_ancestral, heun")
    parser.add_argument("--steps", type=int, default=None, help="number of sampling steps")
    parser.add_argument("--guidance-scale", type=float, default=None, help="classifier-free guidance scale")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    parser.add_argument("--no-ema", action="store_true", help="use the raw weights of a run, not its EMA")


def load_sampler_model(checkpoint: str, device: str = "auto", ema: bool = True) -> torch.nn.Module:
    """A LatentDiffusion from a course checkpoint name or a run/checkpoint folder."""
    from minildm.pretrained import available, load
    from minildm.train import load_model
    from minildm.utils import resolve_device

    device = resolve_device(device)
    if Path(checkpoint).exists():
        model = load_model(checkpoint, ema=ema, device=device)
    elif checkpoint in available():
        model = load(checkpoint, device=device)
    else:
        raise ValueError(f"{checkpoint!r} is neither a folder nor a course checkpoint; "
                         f"course checkpoints: {', '.join(available()) or '(none)'}")
    if not hasattr(model, "sample"):
        raise ValueError(f"{checkpoint!r} holds a {type(model).__name__}, which cannot sample; "
                         "give a latent diffusion checkpoint")
    return model


def run(args: argparse.Namespace) -> int:
    """Sample and save a grid PNG."""
    from PIL import Image

    from minildm.data import image_grid

    model = load_sampler_model(args.checkpoint, args.device, ema=not args.no_ema)
    labels = None
    conditioner = getattr(model, "conditioner", None)
    if args.labels == "all":
        if conditioner is None:
            raise ValueError("--labels all needs a class-conditional model")
        labels = torch.arange(conditioner.num_classes).repeat_interleave(args.per_class)
    elif args.labels:
        labels = torch.tensor([int(v) for v in args.labels.split(",")])
    generator = torch.Generator().manual_seed(args.seed)
    images = model.sample(n=args.n, labels=labels, sampler=args.sampler, steps=args.steps,
                          guidance_scale=args.guidance_scale, generator=generator)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    ncols = args.per_class if args.labels == "all" else None
    Image.fromarray(image_grid(images.cpu(), ncols=ncols).squeeze()).save(out)
    print(f"wrote {images.shape[0]} samples to {out}")
    return 0
