"""The summary table of benchmarks/gpu_check.sh: what ran on the GPU, against its targets.

    python benchmarks/gpu_summary.py OUT_DIR [--json FILE]

Reads OUT_DIR/{gpu.txt, unit.xml, unit_ms.txt, demo/results.json, demo/*/config.yaml,
demo_ms.txt, unet_sd.json} (whatever is there) and prints one Markdown table; missing parts
show as "not run".
"""

from __future__ import annotations

import argparse
import json
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import yaml

TARGETS = {
    "unit": "all pass",
    "demo_seconds": "<= 90 s",
    "demo_judge": ">= 85% (bar 80%)",
    "ldm_images_per_s": ">= 20,000",
    "ae_images_per_s": ">= 5,000",
    "unet_train_ms": "<= 60 ms",
    "unet_ratio": "<= 0.8",
}


def _read(path: Path) -> str | None:
    return path.read_text().strip() if path.is_file() else None


def _unit(out: Path) -> dict | None:
    if not (out / "unit.xml").is_file():
        return None
    root = ElementTree.parse(out / "unit.xml").getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    failed = [f"{case.get('classname')}::{case.get('name')}" for case in suite.iter("testcase")
              if case.find("failure") is not None or case.find("error") is not None]
    ms = _read(out / "unit_ms.txt")
    return {**counts, "passed": counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"],
            "failed_tests": failed, "seconds": int(ms) / 1000 if ms else None}


def _images_per_second(run: Path, seconds: float | None) -> float | None:
    config = run / "config.yaml"
    if seconds is None or not config.is_file():
        return None
    train = yaml.safe_load(config.read_text())["train"]
    return train["steps"] * train["batch_size"] * train.get("grad_accum", 1) / seconds


def _demo(out: Path) -> dict | None:
    results = out / "demo" / "results.json"
    if not results.is_file():
        return None
    r = json.loads(results.read_text())
    ms = _read(out / "demo_ms.txt")
    seconds = r["seconds"]
    return {"seconds_end_to_end": int(ms) / 1000 if ms else None, "seconds": seconds,
            "judge_accuracy": r["judge_accuracy_on_samples"], "autoencoder_psnr_db": r["autoencoder_val_psnr_db"],
            "ldm_images_per_s": _images_per_second(out / "demo" / "ldm", seconds.get("ldm")),
            "ae_images_per_s": _images_per_second(out / "demo" / "autoencoder", seconds.get("autoencoder"))}


def summarize(out: Path) -> tuple[str, dict]:
    """(Markdown table, the same numbers as a dict) for a gpu_check output folder."""
    unit, demo = _unit(out), _demo(out)
    unet = json.loads((out / "unet_sd.json").read_text()) if (out / "unet_sd.json").is_file() else None
    data = {"gpu": _read(out / "gpu.txt"), "unit": unit, "demo": demo, "unet_sd": unet}
    rows = []
    if unit:
        rows.append(("unit suite on CUDA", f"{unit['passed']} passed, {unit['failures'] + unit['errors']} failed, "
                     f"{unit['skipped']} skipped in {unit['seconds']:.0f} s", TARGETS["unit"]))
        rows += [("  failed", name, "") for name in unit["failed_tests"][:15]]
    else:
        rows.append(("unit suite on CUDA", "not run", TARGETS["unit"]))
    if demo:
        rows.append(("`minildm demo` end to end", f"{demo['seconds_end_to_end']:.0f} s "
                     f"(autoencoder {demo['seconds']['autoencoder']:.0f}, "
                     f"LDM {demo['seconds']['ldm']:.0f}, sampling {demo['seconds']['sampling']:.0f})",
                     TARGETS["demo_seconds"]))
        rows.append(("demo: judge accuracy on samples", f"{100 * demo['judge_accuracy']:.1f}% "
                     f"(autoencoder {demo['autoencoder_psnr_db']:.2f} dB)", TARGETS["demo_judge"]))
        for key, label in (("ldm_images_per_s", "demo LDM training, latent images/s"),
                           ("ae_images_per_s", "demo autoencoder training, images/s")):
            value = demo[key]
            rows.append((label, f"{value:,.0f}" if value else "n/a", TARGETS[key]))
    else:
        rows.append(("`minildm demo`", "not run", TARGETS["demo_seconds"]))
    if unet:
        train, sample = unet["steps"]["train"], unet["steps"]["sample"]
        rows.append(("SD-v1 UNet fp32 equality (max abs diff)", f"{unet['max_abs_diff']:.1e}", "~0"))
        rows.append((f"SD-v1 UNet {unet['precision']} train step, batch {unet['config']['batch']}",
                     f"minildm {train['minildm_ms']:.1f} ms, diffusers {train['diffusers_ms']:.1f} ms"
                     + (f", compiled {train['minildm_compiled_ms']:.1f} ms" if "minildm_compiled_ms" in train else ""),
                     TARGETS["unet_train_ms"]))
        rows.append(("  ratio minildm / diffusers (train)", f"{train['ratio']:.3f}", TARGETS["unet_ratio"]))
        rows.append(("SD-v1 UNet sampling step", f"minildm {sample['minildm_ms']:.1f} ms, diffusers "
                     f"{sample['diffusers_ms']:.1f} ms (ratio {sample['ratio']:.3f})", ""))
        if unet.get("train_tflop_per_s"):
            rates = ", ".join(f"{k} {v:.0f}" for k, v in unet["train_tflop_per_s"].items())
            rows.append(("  achieved TFLOP/s (train)", f"{rates}; {unet['train_flop_per_image'] / 1e12:.2f} "
                         f"TFLOP per image", ""))
    else:
        rows.append(("SD-v1 UNet vs diffusers", "not run", TARGETS["unet_train_ms"]))
    lines = [f"GPU: {data['gpu'] or 'unknown'}", "", "| check | measured | target |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines), data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="the gpu_check output folder")
    parser.add_argument("--json", metavar="FILE", help="also write the numbers as JSON ('-' for stdout)")
    args = parser.parse_args(argv)
    table, data = summarize(args.out)
    print(table)
    if args.json == "-":
        json.dump(data, sys.stdout, indent=2)
    elif args.json:
        Path(args.json).write_text(json.dumps(data, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
