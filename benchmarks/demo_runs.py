"""Run `minildm demo` several times, fresh, with given thread counts; print a table of the runs.

Each run is a new process, `python -m minildm demo --out OUT/run-K`, with OMP_NUM_THREADS set to
its thread count (torch.set_num_threads follows it). Its cost is measured two ways: CPU-minutes
(user + system time of the process, what the run costs on free cores, even on a shared machine)
and wall minutes (what a user waits, meaningful only on a quiet machine). The quality bar of the
demo is `judge_accuracy_on_samples` in the run's results.json.

    python benchmarks/demo_runs.py --threads 1 2                  # one run with 1 thread, one with 2
    python benchmarks/demo_runs.py --threads 2 2 2 --json runs.json
    python benchmarks/demo_runs.py --threads 1 --fast             # seconds: a smoke test of this script
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BAR = 0.85  # the demo's quality bar: the judge labels >= 85% of the samples as the asked class


def run_demo(threads: int, out: Path, fast: bool = False) -> dict[str, Any]:
    """One fresh `minildm demo` with `threads` threads; its results.json plus cost and exit status."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    command = [sys.executable, "-m", "minildm", "demo", "--out", str(out), *(["--fast"] if fast else [])]
    before, start = _children_cpu_seconds(), time.perf_counter()
    process = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall, cpu = time.perf_counter() - start, _children_cpu_seconds() - before
    row: dict[str, Any] = {"threads": threads, "out": str(out), "returncode": process.returncode,
                           "cpu_minutes": round(cpu / 60, 2), "wall_minutes": round(wall / 60, 2)}
    if process.returncode != 0:
        row["error"] = process.stderr[-2000:]
        return row
    row.update(json.loads((out / "results.json").read_text()))
    return row


def _children_cpu_seconds() -> float:
    """User + system CPU time of this process's finished children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def table(rows: list[dict[str, Any]]) -> str:
    """The runs as a Markdown table."""
    lines = ["| run | threads | judge accuracy | autoencoder PSNR | scale factor | CPU-minutes | wall minutes |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for k, r in enumerate(rows, 1):
        if r["returncode"] != 0:
            lines.append(f"| {k} | {r['threads']} | failed (exit {r['returncode']}) | | | | {r['wall_minutes']:.1f} |")
            continue
        lines.append(f"| {k} | {r['threads']} | {100 * r['judge_accuracy_on_samples']:.1f}% | "
                     f"{r['autoencoder_val_psnr_db']:.2f} dB | {r['latent_scale_factor']:.3f} | "
                     f"{r['cpu_minutes']:.1f} | {r['wall_minutes']:.1f} |")
    done = [r["judge_accuracy_on_samples"] for r in rows if r["returncode"] == 0]
    if done:
        lines.append(f"\njudge accuracy: min {100 * min(done):.1f}%, max {100 * max(done):.1f}%, "
                     f"{sum(a >= BAR for a in done)}/{len(done)} runs >= {100 * BAR:.0f}%")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="one run per entry (default: 1 2)")
    parser.add_argument("--out", type=Path, default=Path("outputs/demo-runs"), help="runs go to OUT/run-K")
    parser.add_argument("--fast", action="store_true", help="fast-mode demos (a smoke test, not a result)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the rows to PATH as JSON")
    args = parser.parse_args()

    rows = []
    for k, threads in enumerate(args.threads, 1):
        print(f"run {k}/{len(args.threads)}: {threads} thread(s) -> {args.out / f'run-{k}'}", flush=True)
        rows.append(run_demo(threads, args.out / f"run-{k}", args.fast))
        if args.json is not None:
            meta = {"date": datetime.date.today().isoformat(), "machine": platform.machine(),
                    "cpus": os.cpu_count(), "command": " ".join(sys.argv)}
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({"meta": meta, "runs": rows}, indent=2) + "\n")
    print(table(rows))
    return 0 if all(r["returncode"] == 0 for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
