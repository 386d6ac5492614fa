"""How fast each built-in dataset produces items: images per second at 32 px on ONE CPU thread.

    python benchmarks/data_speed.py            # a table
    python benchmarks/data_speed.py --json     # the same numbers as JSON

Datasets whose files are on disk (mnist, cifar10, ...) are measured too with --all.
The shapes target is >= 2,000 images/s (fast enough to never starve a CPU training loop).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from minildm.data import dataset_info, get_dataset

BUILTIN_CASES: list[tuple[str, dict]] = [
    ("shapes", {}),
    ("shapes", {"num_objects": 1}),
    ("shapes", {"background": "textured"}),
    ("digits", {}),
    ("photos", {}),
    ("faces", {}),
]
ON_DISK = ("mnist", "fashion_mnist", "cifar10", "celeba", "flowers102")


def measure(name: str, options: dict, size: int, seconds: float) -> dict:
    """Items per second for `get_dataset(name, size=size, **options)`, cycling through its items."""
    dataset = get_dataset(name, split="train", size=size, **options)
    dataset[0]  # warm-up (lazy imports, caches)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(50):
            dataset[count % len(dataset)]
            count += 1
    elapsed = time.perf_counter() - start
    label = name + "".join(f" {k}={v}" for k, v in options.items())
    return {"dataset": label, "size": size, "images_per_s": round(count / elapsed, 1), "items": count}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=32, help="image side in pixels (default 32)")
    parser.add_argument("--seconds", type=float, default=2.0, help="time spent per dataset (default 2)")
    parser.add_argument("--all", action="store_true", help="also measure downloaded datasets found on disk")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cases = list(BUILTIN_CASES)
    if args.all:
        cases += [(name, {}) for name in ON_DISK if dataset_info(name)["local"]]
    results = [measure(name, options, args.size, args.seconds) for name, options in cases]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{'dataset':<32} {'size':>4} {'images/s':>10}")
    for row in results:
        print(f"{row['dataset']:<32} {row['size']:>4} {row['images_per_s']:>10,.0f}")


if __name__ == "__main__":
    main()
