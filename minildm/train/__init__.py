"""minildm.train: one trainer for every model of the course (configs, EMA, checkpoints, torchrun).

    config.py       YAML configs, key=value overrides, validation (TrainConfig, load_config)
    registry.py     build_dataset, seeded_build_model (model names and build_model: minildm.pretrained.build)
    trainer.py      Trainer: AdamW per optimizer group, schedule, accumulation, clipping, bf16, NaN stop
    optim.py        optimizer groups and the learning-rate schedule
    ema.py          EMA of the weights with warm-up
    checkpoint.py   safetensors + JSON checkpoints, written atomically (read back by minildm.pretrained.runs)
    data.py         deterministic, resumable, sharded data order
    distributed.py  torchrun process group, gradient averaging
    logs.py         log.csv, TensorBoard, sample grids
    toy.py          tiny example models (ToyRegressor, ToyGAN)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from minildm.pretrained.build import available_configs
from minildm.train.checkpoint import CheckpointError, load_model, load_weights, save_checkpoint
from minildm.train.config import ConfigError, TrainConfig, load_config
from minildm.train.ema import EMA
from minildm.train.registry import MODELS, build_dataset, build_model, seeded_build_model
from minildm.train.trainer import Trainer, TrainingDivergedError


def train_from_config(config: str | Path | Mapping[str, Any], overrides: Iterable[str] = (),
                      out_dir: str | Path | None = None, resume: bool = False, progress: bool = True) -> Trainer:
    """Load and validate `config` (path, packaged name or dict), build model and data, train; returns the Trainer."""
    full = load_config(config, overrides)
    if out_dir is not None:
        full["train"]["out_dir"] = str(out_dir)
    model = seeded_build_model(full)
    dataset = build_dataset(full)
    if full["data"]["cache_latents"]:  # stage 2: encode the images once with the frozen first stage
        if not hasattr(model, "encode_dataset"):
            raise ConfigError(f"data.cache_latents needs a model with a first stage (latent_diffusion), "
                              f"not {full['model']['target']!r}")
        dataset = model.encode_dataset(dataset, num_items=full["data"]["cache_latents"])
    return Trainer(model, dataset, full, progress=progress).fit(resume=resume)


__all__ = [
    "EMA",
    "MODELS",
    "CheckpointError",
    "ConfigError",
    "TrainConfig",
    "Trainer",
    "TrainingDivergedError",
    "available_configs",
    "build_dataset",
    "build_model",
    "load_config",
    "load_model",
    "load_weights",
    "save_checkpoint",
    "train_from_config",
]
