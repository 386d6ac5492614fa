"""What the benchmarks share: loading a model with the data it was trained on, and the run's metadata.

Benchmarks import the library only (never minildm.course): the numbers a student should find by
paper section (metrics, timers, held-out images, judging) live in the library and are imported
from there. This file holds the little that is benchmark glue. Every benchmark script puts this
folder on sys.path (as Python does for the script it runs), so `from common import ...` works
both as `python benchmarks/X.py` and when the tests load a benchmark by file.
"""

from __future__ import annotations

import datetime
import platform
from typing import Any

import torch
from torch import nn


def load_with_data(spec: str, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """(model, the `data` section it was trained on) of a course checkpoint name, its folder or a run folder."""
    from minildm.pretrained import resolve, resolve_config

    return resolve(spec, device=device), resolve_config(spec)["data"]


def machine_info(device: str | torch.device = "cpu") -> dict[str, Any]:
    """Date, torch version, threads, CPU and device: what a results table must name."""
    return {"date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "machine": platform.processor() or platform.machine(), "device": str(device)}
