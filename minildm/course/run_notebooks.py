"""Execute notebooks in place to refresh their committed outputs.

    python -m minildm.course.run_notebooks                 # every notebooks/NN_*.ipynb, full mode
    python -m minildm.course.run_notebooks --fast PATH...  # MINILDM_FAST=1, chosen notebooks

Lecture notebooks are committed with the outputs of a FULL run, so the default is full
mode (MINILDM_FAST removed from the kernel's environment). Each notebook runs top to
bottom in a fresh kernel whose working directory is the notebook's folder; a notebook is
written back only if every cell succeeded, so a failed run never replaces good outputs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat

from minildm.course.exercises import NOTEBOOK_PATTERN


def execute_notebook(path: str | Path, fast: bool = False, timeout: float | None = None) -> float:
    """Run the notebook at `path` top to bottom and save it with its new outputs; return seconds taken.

    Raises nbclient's CellExecutionError (naming the cell) when a cell fails; the file is then untouched.
    """
    from nbclient import NotebookClient

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    env = dict(os.environ)
    if fast:
        env["MINILDM_FAST"] = "1"
    else:
        env.pop("MINILDM_FAST", None)
    start = time.perf_counter()
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": str(path.resolve().parent)}})
    client.execute(env=env)
    path.write_text(nbformat.writes(nb, version=4) + "\n", encoding="utf-8")
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the number of notebooks that failed."""
    parser = argparse.ArgumentParser(prog="python -m minildm.course.run_notebooks", description=__doc__.split("\n")[1])
    parser.add_argument("paths", nargs="*", help="notebooks or folders (default: notebooks/)")
    parser.add_argument("--fast", action="store_true", help="run with MINILDM_FAST=1 (default: full mode)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per cell (default: no limit)")
    args = parser.parse_args(argv)
    paths: list[Path] = []
    for raw in args.paths or ["notebooks"]:
        path = Path(raw)
        if path.is_dir():
            paths += sorted(path.glob(NOTEBOOK_PATTERN))
        elif path.suffix == ".ipynb" and path.is_file():
            paths.append(path)
        else:
            parser.error(f"{raw!r} is neither a notebook nor a folder of NN_*.ipynb notebooks")
    failures = 0
    for path in paths:
        print(f"running {path} ({'fast' if args.fast else 'full'} mode) ...", flush=True)
        try:
            seconds = execute_notebook(path, fast=args.fast, timeout=args.timeout)
        except Exception as error:  # report and go on with the next notebook
            failures += 1
            print(f"FAILED {path}: {str(error).strip().splitlines()[-1] if str(error).strip() else error!r}",
                  file=sys.stderr)
            continue
        print(f"  saved {path} after {seconds:.0f} s", flush=True)
    return failures


if __name__ == "__main__":
    raise SystemExit(main())
