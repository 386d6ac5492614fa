"""One trainer for every model of the course.

A model is an nn.Module with
    training_step(batch, group, step) -> (loss, {name: value})   required (values: 0-d tensors or floats)
    optimizer_groups() -> {group: [params]}                       optional (default: one group "model")
    sample_images(n, generator=None) -> (N, C, H, W) in [-1, 1]   optional (periodic sample grids)
    on_fit_start(trainer) / on_fit_end(trainer)                   optional hooks
    fsdp_modules() -> [modules]                                    optional (train.fsdp: what to shard; default the
                                                                   model; training_step and sample_images must
                                                                   reach them through their forward)

One optimizer step s (0-based) does, for each group in order: zero all gradients, run
`training_step` on `grad_accum` micro-batches and backpropagate loss / grad_accum,
average gradients over processes, flag a NaN/inf loss (on the device), clip, AdamW step;
then the EMA update. The host reads values back only every `log_every` steps and before
sample grids and checkpoints; a flagged step stops training there, before anything is
written. Everything that decides what happens next (weights, AdamW moments, EMA, RNG
states, the data position) is in the checkpoint, so `fit(resume=True)` continues the
same run exactly.

With `train.fsdp` under torchrun the model is sharded (minildm.train.distributed.shard_model): each
process keeps a piece of every weight, gradient, AdamW moment and EMA shadow. The backward pass
reduce-scatters the gradients, so the trainer averages only what is not sharded; clipping sums the
pieces' squares over processes; checkpoints hold the whole tensors (gathered, written by rank 0 in
the same format as without sharding) and resuming hands each process its piece again. Sampling runs
on every process (a sharded forward needs them all); rank 0 saves the grid.
"""

from __future__ import annotations

import contextlib
import math
import random
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from minildm.train import checkpoint as ckpt
from minildm.train.config import ConfigError, TrainConfig, load_config
from minildm.train.data import ResumableLoader, make_dataloader
from minildm.train.distributed import (DistInfo, average_gradients, broadcast_state, clip_grad_norm,
                                       full_optimizer_state, full_tensors, gather_objects, init_distributed,
                                       is_sharded, model_checksum, shard_model, shard_state, shutdown)
from minildm.train.ema import EMA
from minildm.train.logs import RunLogger
from minildm.train.optim import build_optimizers, learning_rate, parameter_groups
from minildm.utils import has_native_bf16, resolve_device


class TrainingDivergedError(RuntimeError):
    """A loss became NaN or infinite; training stopped and the last good checkpoint was kept."""


def _to_device(batch: Any, device: torch.device, channels_last: bool = False) -> Any:
    """Move every tensor of a (nested) batch to `device`."""
    if isinstance(batch, torch.Tensor):
        batch = batch.to(device, non_blocking=True)
        if channels_last and batch.ndim == 4 and batch.is_floating_point():
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch
    if isinstance(batch, Mapping):
        return {k: _to_device(v, device, channels_last) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device, channels_last) for v in batch)
    return batch


def _split_config(config: TrainConfig | Mapping[str, Any]) -> tuple[TrainConfig, dict[str, Any]]:
    """(TrainConfig, full config dict) from a TrainConfig, a full config, or a `train:` section dict."""
    if isinstance(config, TrainConfig):
        return config, {"model": None, "data": None, "train": config.to_dict()}
    if "model" in config:
        full = load_config(config)
        return TrainConfig.from_dict(full["train"]), full
    if "train" in config:
        train = TrainConfig.from_dict(config["train"])
        return train, {"model": None, "data": dict(config.get("data") or {}) or None, "train": train.to_dict()}
    train = TrainConfig.from_dict(config)
    return train, {"model": None, "data": None, "train": train.to_dict()}


class Trainer:
    """Train `model` on `dataset` with the `train:` settings of `config`; `fit()` runs it.

    `config` is a full config (model/data/train, as from `load_config`), a TrainConfig, or a
    `train:` dict. Outputs go to `out_dir` (default: train.out_dir, else runs/<ModelClass>).
    Attributes the model's hooks may use: dataset, train_dataloader, config, device, step,
    out_dir, rank, world_size, optimizers, ema, history.
    """

    def __init__(self, model: nn.Module, dataset: Dataset, config: TrainConfig | Mapping[str, Any],
                 out_dir: str | Path | None = None, progress: bool = True):
        if not callable(getattr(model, "training_step", None)):
            raise TypeError(f"{type(model).__name__} has no training_step(batch, group, step) -> (loss, logs); "
                            f"the trainer needs it (see minildm.train.trainer)")
        self.model, self.dataset = model, dataset
        self.config, self.full_config = _split_config(config)
        out_dir = out_dir or self.config.out_dir or Path("runs") / type(model).__name__
        self.out_dir = Path(out_dir)
        self.config.out_dir = self.full_config["train"]["out_dir"] = str(self.out_dir)
        self.progress = progress
        self.step = 0
        self.dist = DistInfo()
        self.device = resolve_device(self.config.device)
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.ema: EMA | None = None
        self.train_dataloader = None
        self.logger: RunLogger | None = None
        self._stream: ResumableLoader | None = None
        self.sharded = False

    # ------------------------------------------------------------------ properties

    @property
    def rank(self) -> int:
        """This process's rank (0 without torchrun)."""
        return self.dist.rank

    @property
    def world_size(self) -> int:
        """Number of processes (1 without torchrun)."""
        return self.dist.world_size

    @property
    def checkpoint_dir(self) -> Path:
        """Where the trainer keeps its checkpoint: <out_dir>/checkpoints/last."""
        return self.out_dir / "checkpoints" / "last"

    @property
    def history(self) -> list[dict[str, Any]]:
        """Logged rows so far (step and values), the same as log.csv."""
        return self.logger.history if self.logger is not None else []

    # ------------------------------------------------------------------ setup

    def _setup(self) -> None:
        cfg = self.config
        self.dist = init_distributed(resolve_device(cfg.device).type)
        device = resolve_device(cfg.device)
        if device.type == "cuda" and device.index is None and self.dist.world_size > 1:
            device = torch.device("cuda", self.dist.local_rank)
        self.device = device
        self.model.to(device)
        if cfg.channels_last:
            self.model.to(memory_format=torch.channels_last)
        use_bf16 = (cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda")
                    or (cfg.precision == "bf16-if-native" and has_native_bf16(device)))
        self._autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if use_bf16 \
            else contextlib.nullcontext
        seed = cfg.seed + self.dist.rank
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)
        broadcast_state(self.model, self.dist.world_size)
        if callable(getattr(self.dataset, "get_batch", None)) and callable(getattr(self.dataset, "to", None)):
            self.dataset = self.dataset.to(device)  # in-memory tensors (cached latents) live beside the model
        self.train_dataloader = make_dataloader(self.dataset, cfg.batch_size, seed=cfg.seed, rank=self.dist.rank,
                                                world_size=self.dist.world_size, num_workers=cfg.num_workers,
                                                pin_memory=device.type == "cuda")
        self.sharded = self._shard()
        self._groups = parameter_groups(self.model)
        # sharded parameters are averaged by FSDP's reduce-scatter in backward; the trainer averages the rest
        self._replicated = {group: [p for p in params if not is_sharded(p)] for group, params in self._groups.items()}
        self._training_step = self.model.training_step
        if cfg.compile:  # opt-in: the first steps pay for compilation
            self._training_step = torch.compile(self.model.training_step)
        self._window, self._window_steps = {}, 0
        self._group_ids = list(self._groups)
        self._diverged_at = torch.full((), -1, dtype=torch.long, device=device)  # first bad step, -1 = none
        self._diverged_group_id = torch.full((), -1, dtype=torch.long, device=device)
        self.optimizers = build_optimizers(self._groups, cfg)
        self.ema = EMA(self.model, cfg.ema_decay) if cfg.ema_decay > 0 else None

    def _shard(self) -> bool:
        """With train.fsdp under torchrun, shard the model's `fsdp_modules()` (default: the model); True if sharded."""
        if not self.config.fsdp or self.dist.world_size <= 1:
            return False
        model, device = self.model, self.device
        if device.type not in ("cuda", "cpu"):
            raise ConfigError(f"train.fsdp=true shards over CUDA (NCCL) or CPU (gloo) processes, not device {device}: "
                              f"set train.device=cuda or cpu, or train.fsdp=false")
        groups = parameter_groups(model)
        if len(groups) > 1:
            raise ConfigError(f"train.fsdp=true shards models with one optimizer group (a diffusion UNet); "
                              f"{type(model).__name__} steps {len(groups)} ({', '.join(groups)}): set train.fsdp=false")
        modules = list(model.fsdp_modules()) if callable(getattr(model, "fsdp_modules", None)) else [model]
        if not any(p.requires_grad for module in modules for p in module.parameters()):
            raise ConfigError(f"train.fsdp=true: {type(model).__name__}.fsdp_modules() has no trainable parameters "
                              f"to shard: set train.fsdp=false")
        for module in modules:
            shard_model(module, device_type=device.type)
        return True

    def _restore(self, folder: Path) -> list[dict[str, Any]]:
        """Load weights, optimizer/EMA state, RNG and data position from a checkpoint; returns the log history."""
        state = ckpt.read_state(folder)
        if self.sharded:  # whole tensors in the checkpoint: each process keeps its piece
            like = self.model.state_dict()
            self.model.load_state_dict(shard_state(ckpt.read_tensors(folder, ckpt.MODEL_FILE), like))
        else:
            ckpt.load_weights(self.model, folder, ema=False)
        tensors = ckpt.read_tensors(folder, ckpt.OPTIM_FILE)
        saved_groups = state.get("optimizers", {})
        if list(saved_groups) != list(self.optimizers):
            raise ckpt.CheckpointError(f"{folder / ckpt.STATE_FILE} has optimizer groups {list(saved_groups)}, "
                                       f"but the model has {list(self.optimizers)}")
        if self.sharded:
            tensors = shard_state(tensors, self._optimizer_tensor_layout(tensors))
        for group, optimizer in self.optimizers.items():
            ckpt.load_optimizer_state(optimizer, group, tensors, saved_groups[group])
        if self.ema is not None:
            if (folder / ckpt.EMA_FILE).is_file():
                shadow = ckpt.read_tensors(folder, ckpt.EMA_FILE)
                shadow = shard_state(shadow, self.ema.shadow) if self.sharded else shadow
                self.ema.load_state_dict(shadow, state["ema_num_updates"])
            else:
                warnings.warn(f"{folder} has no {ckpt.EMA_FILE}: EMA restarts from the current weights", stacklevel=3)
        self.step = int(state["step"])
        rank_key = f"rank{self.dist.rank}"
        rng_tensors = {k.split("/")[-1]: v for k, v in tensors.items() if k.startswith(f"rng/{rank_key}/")}
        if state.get("world_size", 1) == self.dist.world_size and rng_tensors:
            ckpt.restore_rng_state(rng_tensors, state["rng"][rank_key])
        else:
            warnings.warn(f"{folder} was saved with {state.get('world_size', 1)} process(es), this run has "
                          f"{self.dist.world_size}: RNG streams are reseeded, so the continuation is not bitwise "
                          f"identical", stacklevel=3)
            torch.manual_seed(self.config.seed + self.dist.rank + 7919 * self.step)
        position = state.get("data", {"epoch": 0, "batch_in_epoch": 0})
        self._stream = ResumableLoader(self.train_dataloader, position["epoch"], position["batch_in_epoch"])
        return list(state.get("logs", []))

    def _optimizer_tensor_layout(self, tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """For each saved optimizer tensor "<group>/<index>/<name>" shaped like its parameter (AdamW's moments),
        that parameter: the moments are sharded as the weights are (the step counters are not)."""
        layout = {}
        for key, tensor in tensors.items():
            group, index, _ = (key.split("/", 2) + ["", ""])[:3]
            params = self._groups.get(group, [])
            if index.isdigit() and int(index) < len(params) and tensor.shape == params[int(index)].shape:
                layout[key] = params[int(index)]
        return layout

    # ------------------------------------------------------------------ checkpoints

    def save_checkpoint(self) -> Path | None:
        """Write <out_dir>/checkpoints/last (rank 0 only; every process must call it)."""
        rng_tensors, rng_state = ckpt.capture_rng_state()
        gathered = gather_objects((rng_tensors, rng_state), self.dist.world_size)
        model, optimizers, ema_state, checksums = self.model, self.optimizers, None, None
        if self.sharded:  # whole tensors: every process joins the gathers, rank 0 keeps them
            keep = self.dist.is_main
            model = full_tensors(self.model.state_dict(), keep)
            optimizers = {group: full_optimizer_state(opt, keep) for group, opt in self.optimizers.items()}
            ema_state = full_tensors(self.ema.state_dict(), keep) if self.ema is not None else None
        elif self.dist.world_size > 1:
            checksums = gather_objects(model_checksum(self.model), self.dist.world_size)
            if len(set(checksums)) > 1:
                warnings.warn(f"replicas differ at step {self.step}: checksums {checksums}", stacklevel=2)
        if not self.dist.is_main:
            return None
        extra_tensors = {f"rng/rank{r}/{k}": v for r, (tensors, _) in enumerate(gathered) for k, v in tensors.items()}
        extra_state = {"rng": {f"rank{r}": s for r, (_, s) in enumerate(gathered)},
                       "data": self._stream.position() if self._stream is not None else None,
                       "world_size": self.dist.world_size, "replica_checksums": checksums, "logs": self.history}
        return ckpt.save_checkpoint(self.checkpoint_dir, model, self.full_config, self.step,
                                    optimizers=optimizers, ema=self.ema, extra_tensors=extra_tensors,
                                    extra_state=extra_state, ema_state=ema_state)

    # ------------------------------------------------------------------ the loop

    def _optimizer_step(self, batches: list[Any], step: int) -> dict[str, torch.Tensor | float]:
        """One optimizer step over every group (see the module docstring); returns the values to log.

        Nothing here waits for the GPU: logged values stay tensors on the device, and a
        non-finite loss only raises a flag on the device (`_diverged_at`), read at the next
        sync point (`_check_divergence`), always before a checkpoint is written.
        """
        cfg, logs = self.config, {}
        several = len(self.optimizers) > 1
        for group, optimizer in self.optimizers.items():
            lr = learning_rate(cfg.lr_groups.get(group, cfg.lr), step, cfg.steps, cfg.warmup_steps, cfg.lr_schedule)
            for param_group in optimizer.param_groups:
                param_group["lr"] = lr
            self.model.zero_grad(set_to_none=True)
            named: dict[str, torch.Tensor | float] = {}
            finite = torch.ones((), dtype=torch.bool, device=self.device)
            for batch in batches:
                with self._autocast():
                    loss, values = self._training_step(batch, group, step)
                loss_value = loss.detach().float()
                values = dict(values)
                values.setdefault(f"loss/{group}" if several else "loss", loss_value)
                finite &= torch.isfinite(loss_value)
                if loss.requires_grad:
                    (loss / len(batches)).backward()
                for key, value in values.items():
                    value = value.detach().float() if isinstance(value, torch.Tensor) else float(value)
                    named[key] = named.get(key, 0.0) + value / len(batches)
            params = self._groups[group]
            bad_anywhere = average_gradients(self._replicated[group], (~finite).float(), self.dist.world_size) > 0
            first = bad_anywhere & (self._diverged_at < 0)  # new_full: filled on the device, no host copy
            self._diverged_at = torch.where(first, self._diverged_at.new_full((), step), self._diverged_at)
            self._diverged_group_id = torch.where(first, self._diverged_at.new_full((), self._group_ids.index(group)),
                                                  self._diverged_group_id)
            if cfg.grad_clip > 0:  # clip first, then step: the update sees the clipped gradient
                clip = clip_grad_norm if self.sharded else torch.nn.utils.clip_grad_norm_
                named[f"grad_norm/{group}"] = clip(params, cfg.grad_clip).detach()
            optimizer.step()
            named[f"lr/{group}"] = lr
            logs.update({(f"{group}/{k}" if k in logs else k): v for k, v in named.items()})
        if self.ema is not None:
            self.ema.update(self.model)
        broadcast_state(self.model, self.dist.world_size, buffers_only=True)
        return logs

    def _accumulate(self, logs: dict[str, torch.Tensor | float]) -> None:
        """Add one step's values to the running sums of the current log window (on the device)."""
        for key, value in logs.items():
            if key.startswith("lr/"):
                self._window[key] = value  # the learning rate is logged as is, not averaged
            else:
                self._window[key] = self._window.get(key, 0.0) + value
        self._window_steps += 1

    def _read_window(self) -> dict[str, float]:
        """The mean of each logged value over the window (one device-to-host copy), then a new window."""
        tensors = [k for k, v in self._window.items() if isinstance(v, torch.Tensor)]
        numbers = dict(zip(tensors, torch.stack([self._window[k] for k in tensors]).tolist())) if tensors else {}
        means = {}
        for key, value in self._window.items():
            value = numbers.get(key, value)
            means[key] = value if key.startswith("lr/") else value / self._window_steps
        self._window, self._window_steps = {}, 0
        return means

    def _check_divergence(self, values: Mapping[str, float] | None = None) -> None:
        """Sync point: raise TrainingDivergedError if any step since the last check had a non-finite loss."""
        step = int(self._diverged_at.item())
        if step >= 0:
            group = self._group_ids[int(self._diverged_group_id.item())]
            self._diverged(step, group, values or {})

    def _diverged(self, step: int, group: str, values: Mapping[str, float]) -> None:
        others = [f"{k}={v}" for k, v in values.items() if not math.isfinite(float(v))]
        where = "was nan or inf" + (f" (non-finite logged values: {', '.join(others)})" if others else "")
        saved = f"the last good checkpoint {self.checkpoint_dir} was kept" if self.checkpoint_dir.exists() \
            else "no checkpoint had been written yet"
        raise TrainingDivergedError(f"training diverged at step {step}: the loss of optimizer group {group!r} "
                                    f"{where}; stopped without saving, {saved}. Try a lower train.lr, "
                                    f"train.grad_clip, or train.precision=fp32.")

    @torch.no_grad()
    def write_samples(self) -> Path | None:
        """Save a grid of `model.sample_images` (EMA weights when kept) for the current step.

        Rank 0 samples and saves; a sharded model samples on every process (each forward gathers the
        weights from all of them), with the same seed, and rank 0 saves.
        """
        if not ((self.dist.is_main or self.sharded) and callable(getattr(self.model, "sample_images", None))):
            return None
        generator = torch.Generator(self.device).manual_seed(self.config.seed)
        was_training = self.model.training
        self.model.eval()
        swap = self.ema.average_parameters(self.model) if self.ema is not None else contextlib.nullcontext()
        with swap:
            images = self.model.sample_images(self.config.num_samples, generator=generator)
        self.model.train(was_training)
        return self.logger.images(self.step, images) if images is not None else None

    def fit(self, resume: bool = False) -> Trainer:
        """Train for `config.steps` optimizer steps (continuing from <out_dir>/checkpoints/last when `resume`).

        The host reads values back from the device only at sync points: every `log_every`
        steps (the logged row is the mean over those steps), before each sample grid and
        each checkpoint, and at the end. A non-finite loss is caught at the next sync point,
        before anything is written, so the last good checkpoint stays.
        """
        cfg = self._setup_and_restore(resume)
        start = self.step
        bar = tqdm(total=cfg.steps, initial=start, desc=f"train {self.out_dir.name}",
                   disable=not (self.progress and self.dist.is_main), dynamic_ncols=True)
        try:
            while self.step < cfg.steps:
                batches = [_to_device(self._stream.next(), self.device, cfg.channels_last)
                           for _ in range(cfg.grad_accum)]
                self._accumulate(self._optimizer_step(batches, self.step))
                self.step += 1
                bar.update(1)
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    row = self._read_window()
                    self._check_divergence(row)
                    self.logger.log(self.step, row)
                    bar.set_postfix({k: f"{v:.4g}" for k, v in row.items()
                                     if not k.startswith(("lr/", "grad_norm/"))}, refresh=False)
                if cfg.sample_every and self.step % cfg.sample_every == 0:
                    self._check_divergence()
                    self.write_samples()
                if self.step % cfg.checkpoint_every == 0 and self.step < cfg.steps:
                    self._check_divergence()
                    self.save_checkpoint()
            if self.step > start:
                self._check_divergence()
                if callable(getattr(self.model, "on_fit_end", None)):
                    self.model.on_fit_end(self)
                    broadcast_state(self.model, self.dist.world_size, buffers_only=True)
                self.save_checkpoint()
        finally:
            bar.close()
            self.logger.close()
            shutdown(self.dist)
        return self

    def _setup_and_restore(self, resume: bool) -> TrainConfig:
        cfg = self.config
        self._setup()
        self.model.train()
        if callable(getattr(self.model, "on_fit_start", None)):
            self.model.on_fit_start(self)
        history: list[dict[str, Any]] = []
        self.step = 0
        self._stream = ResumableLoader(self.train_dataloader)
        if resume:
            try:
                folder = ckpt.find_checkpoint(self.out_dir)
            except ckpt.CheckpointError:
                folder = None
                if self.dist.is_main:
                    print(f"resume: no checkpoint in {self.out_dir}, starting from step 0")
            if folder is not None:
                history = [row for row in self._restore(folder) if row["step"] <= self.step]
        if self.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            with open(self.out_dir / "config.yaml", "w", encoding="utf-8") as f:
                yaml.safe_dump(self.full_config, f, sort_keys=False)
        self.logger = RunLogger(self.out_dir, enabled=self.dist.is_main, history=history, start_step=self.step)
        return cfg
