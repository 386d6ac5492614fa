"""What a run writes besides checkpoints: `log.csv`, TensorBoard events and sample grids.

`log.csv` has one row per logged step (columns: step, then every name the model logged,
plus lr/<group>); it is rewritten from the checkpoint's history on resume, so it never
holds rows from steps that were undone by a restart.
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path
from typing import Any

import torch


class RunLogger:
    """CSV + TensorBoard logging for the main process (all methods are cheap no-ops when disabled)."""

    def __init__(self, out_dir: str | Path, enabled: bool = True, history: list[dict[str, Any]] | None = None,
                 start_step: int = 0, tensorboard: bool = True):
        self.out_dir = Path(out_dir)
        self.enabled = enabled
        self.history: list[dict[str, Any]] = list(history or [])
        self._columns: list[str] = []
        self._writer = None
        if not enabled:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._rewrite_csv()
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                warnings.warn("tensorboard is not installed: only log.csv is written", stacklevel=2)
            else:
                self._writer = SummaryWriter(str(self.out_dir / "tensorboard"), purge_step=start_step or None)

    @property
    def csv_path(self) -> Path:
        """<out_dir>/log.csv."""
        return self.out_dir / "log.csv"

    def _rewrite_csv(self) -> None:
        columns = ["step"]
        for row in self.history:
            columns += [k for k in row if k not in columns]
        self._columns = columns
        with open(self.csv_path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(self.history)

    def log(self, step: int, values: dict[str, float]) -> None:
        """Record one row (all processes keep the history; only the enabled one writes files)."""
        row = {"step": step, **values}
        self.history.append(row)
        if not self.enabled:
            return
        if any(k not in self._columns for k in row):
            self._rewrite_csv()
        else:
            with open(self.csv_path, "a", newline="", encoding="utf-8") as f:
                csv.DictWriter(f, fieldnames=self._columns).writerow(row)
        if self._writer is not None:
            for key, value in values.items():
                self._writer.add_scalar(key, value, step)

    def images(self, step: int, images: torch.Tensor, ncols: int | None = None) -> Path | None:
        """Save a (B, C, H, W) batch in [-1, 1] as samples/step_XXXXXXX.png (and to TensorBoard)."""
        if not self.enabled:
            return None
        from PIL import Image

        from minildm.data.transforms import image_grid

        grid = image_grid(images.detach().float().cpu().clamp(-1, 1), ncols=ncols)  # (H', W', C) uint8
        path = self.out_dir / "samples" / f"step_{step:07d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(path)
        if self._writer is not None:
            self._writer.add_image("samples", grid, step, dataformats="HWC")
        return path

    def close(self) -> None:
        """Flush and close the TensorBoard writer."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
