"""Fast mode: `MINILDM_FAST=1` shrinks steps and sizes so every notebook runs in a minute or two on a CPU."""

from __future__ import annotations

import os
from typing import TypeVar

T = TypeVar("T")


def fast_mode() -> bool:
    """True when the environment variable MINILDM_FAST is set to 1/true/yes (CI sets it)."""
    return os.environ.get("MINILDM_FAST", "").strip().lower() in {"1", "true", "yes", "on"}


def pick(full: T, fast: T) -> T:
    """`full` normally, `fast` in fast mode: `steps = pick(2000, 50)`."""
    return fast if fast_mode() else full
