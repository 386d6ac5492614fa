"""`minildm convert SRC DST [--part vae|unet] [--to minildm|diffusers]`: convert CompVis / diffusers weights.

Each part lives in its own module, imported only when asked for:
`minildm.pretrained.vae` (load_vae / save_vae) and `minildm.pretrained.unet` (load_unet / save_unet).
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

PARTS = ("vae", "unet")
FORMATS = ("minildm", "diffusers")
SOURCES = "an SD/CompVis checkpoint file (.safetensors, .ckpt) or a diffusers / minildm folder"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `minildm convert`."""
    parser.add_argument("src", help=SOURCES)
    parser.add_argument("dst", help="output folder")
    parser.add_argument("--part", choices=PARTS, default="vae", help="which model to convert (default: vae)")
    parser.add_argument("--to", choices=FORMATS, default="minildm", help="output format (default: minildm)")


def run(args: argparse.Namespace) -> int:
    """Load `args.src` as `args.part` and write it to `args.dst` in format `args.to`."""
    if args.part not in PARTS:
        raise ValueError(f"unknown part {args.part!r}; accepted: {list(PARTS)}")
    if not Path(args.src).exists():
        raise FileNotFoundError(f"{args.src} does not exist; accepted: {SOURCES}")
    module = importlib.import_module(f"minildm.pretrained.{args.part}")
    model = getattr(module, f"load_{args.part}")(args.src)
    out = getattr(module, f"save_{args.part}")(model, args.dst, to=args.to)
    print(f"wrote {args.part} ({sum(p.numel() for p in model.parameters()):,} parameters) to {out} [{args.to}]")
    return 0
