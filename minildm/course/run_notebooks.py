"""Execute notebooks in place to refresh their committed outputs.

    python -m minildm.course.run_notebooks                 # every notebooks/NN_*.ipynb, full mode
    python -m minildm.course.run_notebooks --fast PATH...  # MINILDM_FAST=1, chosen notebooks

Lecture notebooks are committed with the outputs of a FULL run, so the default is full
mode (MINILDM_FAST removed from the kernel's environment). Each notebook runs top to
bottom in a fresh kernel whose working directory is the notebook's folder; a notebook is
written back only if every cell succeeded, so a failed run never replaces good outputs.

Widget outputs (progress bars, explorers) only render with a live kernel in a trusted
notebook; `add_static_views` gives each a plain twin from the widget state saved by the same
run: a progress bar's final text, an explorer's settings and its first drawing as image/png.
Untrusted notebooks and static viewers (GitHub, nbviewer) show those instead of
``VBox(children=(...`` or a bar frozen at 0%.
"""

from __future__ import annotations

import argparse
import html
import os
import re
import sys
import time
from pathlib import Path

import nbformat

from minildm.course.exercises import NOTEBOOK_PATTERN


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def _widget_summary(model_id: str, state: dict) -> tuple[str, str | None]:
    """(text, base64 PNG or None) describing the saved widget `model_id` and its children."""
    model = state.get(model_id, {})
    name, values = model.get("model_name", ""), model.get("state", {})
    children = [c.removeprefix("IPY_MODEL_") for c in values.get("children", []) if isinstance(c, str)]
    if name == "HBoxModel" and [state.get(c, {}).get("model_name") for c in children] == [
            "HTMLModel", "FloatProgressModel", "HTMLModel"]:  # a tqdm bar: description, bar, counts
        left, bar, right = (state[c]["state"] for c in children)
        done = int(10 * float(bar.get("value", 0)) / max(float(bar.get("max", 1)), 1e-9))
        text = f"{left.get('value', '')}|{'█' * done}{' ' * (10 - done)}|{right.get('value', '')}"
        return html.unescape(re.sub(r"<[^>]+>", "", text)).replace("\u2007", " "), None
    if name == "OutputModel":
        outputs = values.get("outputs", [])
        image = next((o["data"]["image/png"] for o in outputs if "image/png" in o.get("data", {})), None)
        text = " ".join(o.get("data", {}).get("text/plain", "") if "data" in o else o.get("text", "") for o in outputs)
        return ("" if image else text.strip()), image
    if children:
        parts = [_widget_summary(c, state) for c in children]
        image = next((png for _, png in parts if png), None)
        return "; ".join(text for text, _ in parts if text), image
    label = values.get("description", "")
    if "_options_labels" in values and isinstance(values.get("index"), int):
        value = values["_options_labels"][values["index"]]
    else:
        value = values.get("value", "")
    return (f"{label} = {value}" if label else str(value)) if value != "" else "", None


def add_static_views(nb: nbformat.NotebookNode) -> int:
    """Add a plain text/plain (and image/png) twin to every widget output; return how many changed."""
    state = nb.get("metadata", {}).get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    changed = 0
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            model_id = data.get(WIDGET_VIEW, {}).get("model_id")
            if model_id not in state:
                continue
            text, image = _widget_summary(model_id, state)
            if image:
                data["image/png"] = image
                text = f"interactive explorer (run the notebook to use it): {text}".strip()
            if text and data.get("text/plain") != text:
                data["text/plain"] = text
                changed += 1
    return changed


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
    add_static_views(nb)
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
