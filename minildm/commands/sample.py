"""`minildm sample MODEL`: draw a grid of images from a latent diffusion model, by name or folder.

MODEL is anything `minildm.pretrained.resolve` accepts: a course checkpoint name ("shapes-ldm"),
a copy of a course checkpoint folder, or a training run folder; or `sd-v1`, Stable Diffusion v1
read from local files (`--weights PATH`: a single checkpoint file or a diffusers folder, see
minildm.pretrained.stable_diffusion):

    minildm sample sd-v1 --weights weights/sd-v1 --prompt "a watercolour fox" --steps 50

Conditions come from the command line (--labels, --prompt), from image files for the concat models
(--image + --mask, --low-res, --segmentation), or from the first N items of the model's validation data
(--val N: captions, layouts, masks of real images, ...), which works for every conditioning:

    minildm sample shapes-inpaint --image photo.png --mask hole.png     (mask: white = fill)
    minildm sample shapes-sr4 --low-res small.png
    minildm sample shapes-layout --val 8
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch


STABLE_DIFFUSION = "sd-v1"
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `minildm sample`."""
    from minildm.diffusion import SAMPLER_NAMES

    parser.add_argument("checkpoint", metavar="MODEL",
                        help="a course checkpoint name (e.g. shapes-ldm), a course checkpoint folder, a run folder, "
                             "or sd-v1 (Stable Diffusion v1 from --weights)")
    parser.add_argument("--weights", default=None,
                        help="sd-v1: a checkpoint file (.safetensors) or a diffusers folder "
                             "(default: $MINILDM_SD_V1, else weights/sd-v1)")
    parser.add_argument("--prompt", action="append", default=None,
                        help="a caption for a text-to-image model; repeat for several images")
    parser.add_argument("--dtype", choices=("auto", "fp32", "fp16", "bf16"), default="auto",
                        help="sd-v1 weights' precision (auto: fp16 on CUDA, fp32 elsewhere)")
    parser.add_argument("--out", default="outputs/samples.png", help="PNG file to write (default outputs/samples.png)")
    parser.add_argument("--n", type=int, default=16, help="number of images (unconditional models)")
    parser.add_argument("--labels", default=None,
                        help="class ids, comma-separated (e.g. 0,3,3,7), or 'all' for --per-class of every class")
    parser.add_argument("--per-class", type=int, default=4, help="samples per class with --labels all")
    parser.add_argument("--image", default=None, help="inpainting: the image to complete (PNG/JPEG, RGB)")
    parser.add_argument("--mask", default=None, help="inpainting: the hole, a greyscale image of the same size "
                                                     "(white = fill, black = keep)")
    parser.add_argument("--low-res", default=None, help="super-resolution: the low-resolution image (RGB)")
    parser.add_argument("--segmentation", default=None,
                        help="semantic synthesis: a greyscale PNG of class ids (0 = background, 1 + class id)")
    parser.add_argument("--val", type=int, default=None, metavar="N",
                        help="sample with the conditions of the first N validation items of the model's data "
                             "(any conditioning); the grid shows the real images below the samples")
    parser.add_argument("--sampler", default=None, help=f"one of {', '.join(SAMPLER_NAMES)} (default: the model's)")
    parser.add_argument("--steps", type=int, default=None, help="number of sampling steps")
    parser.add_argument("--guidance-scale", type=float, default=None, help="classifier-free guidance scale")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    parser.add_argument("--no-ema", action="store_true", help="use the raw weights of a run, not its EMA")


def parse_labels(text: str | None, num_classes: int | None, per_class: int) -> torch.Tensor | None:
    """--labels: "0,3,7" -> tensor([0, 3, 7]); "all" -> every class `per_class` times; None -> None."""
    if text is None:
        return None
    if num_classes is None:
        raise ValueError(f"--labels {text} needs a class-conditional model; this one is unconditional (use --n)")
    if text == "all":
        return torch.arange(num_classes).repeat_interleave(per_class)
    try:
        labels = [int(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"--labels must be comma-separated class ids (e.g. 0,3,7) or 'all', got {text!r}") from None
    bad = [v for v in labels if not 0 <= v < num_classes]
    if bad:
        raise ValueError(f"--labels {bad} out of range: this model has classes 0..{num_classes - 1}")
    return torch.tensor(labels)


def read_image(path: str, grey: bool = False) -> torch.Tensor:
    """An image file -> (1, 3, H, W) in [-1, 1], or (1, 1, H, W) in [0, 1] with `grey` (masks)."""
    from PIL import Image

    if not Path(path).is_file():
        raise ValueError(f"no image file {path!r}")
    import numpy as np

    array = np.asarray(Image.open(path).convert("L" if grey else "RGB"), dtype=np.float32)  # (H, W) or (H, W, 3)
    image = torch.from_numpy(array.reshape(array.shape[0], array.shape[1], -1)).permute(2, 0, 1)[None]  # (1, C, H, W)
    return image / 255 if grey else image / 127.5 - 1


def file_condition(args: argparse.Namespace, keys: tuple[str, ...]) -> dict[str, torch.Tensor] | None:
    """The condition given as files (--image/--mask, --low-res, --segmentation); None when none is given."""
    given = {"image": args.image, "mask": args.mask, "low_res": args.low_res, "segmentation": args.segmentation}
    given = {k: v for k, v in given.items() if v is not None}
    if not given:
        return None
    missing, extra = [k for k in keys if k not in given], [k for k in given if k not in keys]
    if missing or extra:
        flags = ", ".join("--" + k.replace("_", "-") for k in keys) or "none"
        raise ValueError(f"this model reads {', '.join(keys) or 'no condition'}: give the files {flags} "
                         f"(got {', '.join('--' + k.replace('_', '-') for k in given)})")
    cond: dict[str, torch.Tensor] = {}
    for key, path in given.items():
        if key == "mask":
            cond[key] = (read_image(path, grey=True) > 0.5).float()
        elif key == "segmentation":
            cond[key] = (read_image(path, grey=True)[:, 0] * 255).round().long()  # (1, H, W) class ids
        else:
            cond[key] = read_image(path)
    return cond


def val_condition(checkpoint: str, keys: tuple[str, ...], n: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The conditions and images of the first n validation items of the model's data, inpainting masks drawn."""
    from minildm.data import get_dataset, random_masks, stack_items
    from minildm.pretrained import resolve_config

    data = resolve_config(checkpoint)["data"]
    options = {k: v for k, v in dict(data.get("options") or {}).items() if k != "exclude"}
    dataset = get_dataset(data["name"], split="val", size=data.get("size", 32), **options)
    tensors = [k for k in ("image", *keys) if k != "caption"]
    batch: dict = stack_items(dataset, n, keys=tensors)
    if "caption" in keys:  # strings stay a list
        batch["caption"] = [dataset[i]["caption"] for i in range(batch["image"].shape[0])]
    if "mask" in keys:  # a hole per image, the same for every run
        batch["mask"] = random_masks(len(batch["image"]), batch["image"].shape[-1],
                                     generator=torch.Generator().manual_seed(0))
    if "low_res" in keys:
        from minildm.conditioning import bicubic_downsample

        batch["low_res"] = bicubic_downsample(batch["image"], 4)
    return {k: batch[k] for k in keys}, batch["image"]


def run(args: argparse.Namespace) -> int:
    """Sample and save a grid PNG."""
    from PIL import Image

    from minildm.data import image_grid
    from minildm.diffusion import SAMPLER_NAMES
    from minildm.pretrained import resolve
    from minildm.utils import resolve_device

    if args.sampler is not None and args.sampler not in SAMPLER_NAMES:
        raise ValueError(f"unknown sampler {args.sampler!r}; accepted: {', '.join(SAMPLER_NAMES)}")
    device = resolve_device(args.device)
    if args.checkpoint == STABLE_DIFFUSION:
        from minildm.pretrained.stable_diffusion import load_stable_diffusion

        if not args.prompt:
            raise ValueError("sd-v1 is a text-to-image model: give at least one --prompt \"...\"")
        dtype = DTYPES[args.dtype] if args.dtype != "auto" else (torch.float16 if device.type == "cuda" else None)
        model = load_stable_diffusion(args.weights, device=device, dtype=dtype)
    else:
        model = resolve(args.checkpoint, ema=not args.no_ema, device=device)
    if not hasattr(model, "sample"):
        raise ValueError(f"{args.checkpoint!r} holds a {type(model).__name__}, which cannot sample; "
                         "give a latent diffusion model (e.g. shapes-ldm)")
    conditioner = getattr(model, "conditioner", None)
    labels = parse_labels(args.labels, getattr(conditioner, "num_classes", None), args.per_class)
    cond = None
    if args.prompt:
        if "caption" not in getattr(conditioner, "keys", ()):
            raise ValueError(f"--prompt needs a text-to-image model; {args.checkpoint!r} is not conditioned on "
                             "captions")
        cond = {"caption": list(args.prompt)}
    keys = tuple(getattr(conditioner, "keys", ()))
    files = file_condition(args, keys)
    if files is not None:
        cond = files
    real = None
    if args.val is not None:
        if args.val < 1:
            raise ValueError(f"--val takes a number of items >= 1, got {args.val}")
        cond, real = val_condition(args.checkpoint, keys, args.val)
    if conditioner is not None and cond is None and labels is None and not conditioner.concat_channels:
        flags = {"label": "--labels (e.g. 0,3 or all)", "caption": "--prompt \"...\""}
        options = [flags[k] for k in keys if k in flags] + ["--val N (the conditions of N validation items)"]
        raise ValueError(f"{args.checkpoint!r} is conditioned on {', '.join(keys)}: give {' or '.join(options)}")
    if getattr(conditioner, "concat_channels", 0) and cond is None:
        raise ValueError(f"{args.checkpoint!r} samples from an input ({', '.join(keys)}): give it as files "
                         f"({', '.join('--' + k.replace('_', '-') for k in keys)}) or take it from the data with --val N")
    generator = torch.Generator().manual_seed(args.seed)
    n = args.n if cond is None and labels is None else None  # else one image per label / prompt / input
    images = model.sample(n=n, labels=labels, cond=cond, sampler=args.sampler, steps=args.steps,
                          guidance_scale=args.guidance_scale, generator=generator).cpu()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    ncols = args.per_class if args.labels == "all" else None
    if real is not None:  # samples above, the real images of the same conditions below
        images, ncols = torch.cat([images, real]), images.shape[0]
    Image.fromarray(image_grid(images, ncols=ncols).squeeze()).save(out)
    print(f"wrote {images.shape[0]} samples to {out}")
    return 0
