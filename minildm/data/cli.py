"""`minildm data list | show NAME | download NAME`: look at and fetch the course datasets."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `data` subcommand's actions to `parser`."""
    actions = parser.add_subparsers(dest="data_action", metavar="ACTION")
    actions.add_parser("list", help="list datasets: sizes, keys, whether their files are here")
    show = actions.add_parser("show", help="save a grid of examples as a PNG")
    show.add_argument("name", help="dataset name (see `minildm data list`)")
    show.add_argument("--out", default=None, help="PNG file to write (default: outputs/data_NAME.png)")
    show.add_argument("--n", type=int, default=16, help="number of examples (default 16)")
    show.add_argument("--split", default="train", help="train, val or test (default train)")
    show.add_argument("--size", type=int, default=32, help="image side in pixels (default 32)")
    download = actions.add_parser("download", help="download a dataset's files (needs internet)")
    download.add_argument("name", help="dataset name (see `minildm data list`)")
    download.add_argument("--root", default=None, help="data root (default: $MINILDM_DATA or <repo>/datasets)")


def run(args: argparse.Namespace) -> int:
    """Do the chosen action; returns the process exit code."""
    from minildm.data import DatasetNotFoundError

    action = getattr(args, "data_action", None)
    try:
        if action == "list":
            return _list()
        if action == "show":
            return _show(args.name, args.out, args.n, args.split, args.size)
        if action == "download":
            return _download(args.name, args.root)
    except (ValueError, DatasetNotFoundError) as error:
        print(f"minildm data: {error}", file=sys.stderr)
        return 2
    print("usage: minildm data {list, show NAME [--out FILE.png] [--n 16], download NAME [--root DIR]}")
    return 2


def _list() -> int:
    from minildm.data import available_datasets, data_root, dataset_info

    print(f"data root: {data_root()}")
    print(f"{'name':<14} {'train/val/test':<22} {'ch':>2} {'classes':>7}  {'files':<9} keys")
    for name in available_datasets():
        info = dataset_info(name)
        sizes = "/".join(f"{info['splits'][s]:,}" for s in ("train", "val", "test"))
        where = "built in" if info["builtin"] else ("here" if info["local"] else "missing")
        print(f"{name:<14} {sizes:<22} {info['channels']:>2} {info['num_classes']:>7}  {where:<9} "
              f"{', '.join(info['keys'])}")
    return 0


def _show(name: str, out: str | None, n: int, split: str, size: int) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from minildm.data import get_dataset, image_grid

    if n < 1:
        raise ValueError(f"--n must be a positive number of examples, got {n}")
    dataset = get_dataset(name, split=split, size=size)
    items = [dataset[i] for i in range(min(n, len(dataset)))]
    grid = image_grid(torch.stack([item["image"] for item in items]))  # (H', W', C) uint8
    path = Path(out) if out else Path("outputs") / f"data_{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.imshow(grid[..., 0] if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0, vmax=255)
    ax.set_axis_off()
    ax.set_title(f"{name} ({split}, {size}x{size}): first {len(items)} examples")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    print(f"wrote {path}")
    if "caption" in items[0]:
        for k, item in enumerate(items):
            print(f"{k:3d}: {item['caption']}")
    return 0


def _download(name: str, root: str | None) -> int:
    from minildm.data import dataset_info, download

    if dataset_info(name)["builtin"]:
        print(f"{name!r} is built in (ships with minildm or its dependencies): nothing to download")
        return 0
    folder = download(name, root)
    print(f"downloaded {name} into {folder}")
    return 0
