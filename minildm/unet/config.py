"""UNet architecture configs: plain YAML under minildm/configs/unet/, one file per model size."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs" / "unet"


def available_unet_configs() -> list[str]:
    """Names accepted by `load_unet_config`, e.g. ["sd-v1", "tiny-crossattn", ...]."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def load_unet_config(name_or_path: str | Path) -> dict[str, Any]:
    """A shipped config by name ("sd-v1") or any YAML file path -> dict of UNetModel keyword arguments."""
    path = Path(name_or_path)
    if path.suffix not in {".yaml", ".yml"}:
        path = CONFIG_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise ValueError(f"no UNet config {str(name_or_path)!r}; shipped configs: {', '.join(available_unet_configs())}")
    with open(path) as f:
        config = yaml.safe_load(f)
    if not isinstance(config, dict):
        raise ValueError(f"UNet config {path} must be a YAML mapping of UNetModel arguments")
    return config
