"""Training configs: YAML files with `model`, `data` and `train` sections, plus `key=value` overrides.

A config is plain data (nanoGPT style). `load_config` reads it, applies command-line
overrides such as `train.lr=3e-4` or `model.params.ch=64` (values parsed as YAML
scalars), fills in the defaults of the `train:` section (`TrainConfig`) and checks every
key and type, so a typo fails at once with the name of the key and the valid ones
instead of being silently ignored. The schema is documented in minildm/configs/README.md.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from minildm.pretrained.build import ConfigError, config_path

LR_SCHEDULES = ("constant", "cosine")
PRECISIONS = ("auto", "fp32", "bf16", "bf16-if-native")
SECTIONS = {"model": ("target", "params"), "data": ("name", "size", "split", "options", "cache_latents"), "train": (),
            "gpu": ()}


@dataclass
class TrainConfig:
    """The `train:` section: optimisation, logging and checkpointing of one run.

    `batch_size` is per process and per micro-batch: one optimizer step sees
    batch_size * grad_accum * world_size examples. `lr` is used as given (not scaled by the
    batch size as in the CompVis code); `lr_groups` overrides it per optimizer group.
    `fsdp` shards the model over the processes of a torchrun job (ignored in a single process).
    """

    seed: int = 0
    steps: int = 2000
    batch_size: int = 32
    grad_accum: int = 1
    lr: float = 1.0e-3
    lr_groups: dict[str, float] = field(default_factory=dict)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.0
    warmup_steps: int = 0
    lr_schedule: str = "constant"
    grad_clip: float = 1.0
    ema_decay: float = 0.0
    precision: str = "auto"
    channels_last: bool = False
    compile: bool = False
    fsdp: bool = False
    log_every: int = 50
    sample_every: int = 0
    num_samples: int = 16
    checkpoint_every: int = 500
    num_workers: int = 0
    device: str = "auto"
    out_dir: str | None = None

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, _check_field(f.name, getattr(self, f.name)))

    @classmethod
    def from_dict(cls, section: Mapping[str, Any] | None) -> TrainConfig:
        """Build from a `train:` dict; unknown keys raise ConfigError listing the valid ones."""
        section = dict(section or {})
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(section) - set(valid))
        if unknown:
            raise ConfigError(f"unknown key(s) {', '.join('train.' + k for k in unknown)}; valid train keys: "
                              f"{', '.join(valid)}")
        return cls(**section)

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (YAML/JSON friendly) of every field."""
        return dataclasses.asdict(self)


_INT_FIELDS = {"seed", "steps", "batch_size", "grad_accum", "warmup_steps", "log_every", "sample_every",
               "num_samples", "checkpoint_every", "num_workers"}
_FLOAT_FIELDS = {"lr", "weight_decay", "grad_clip", "ema_decay"}
_POSITIVE = {"steps", "batch_size", "grad_accum", "log_every", "checkpoint_every", "num_samples"}


def _as_float(key: str, value: Any) -> float:
    """int/float, or a string such as "1e-3" (which YAML 1.1 reads as a string), as a float."""
    if isinstance(value, bool):
        raise ConfigError(f"{key} must be a number, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise ConfigError(f"{key} must be a number, got {value!r} ({type(value).__name__})")


def _check_field(name: str, value: Any) -> Any:
    """Type- and range-check one `train:` field; returns the normalised value."""
    key = f"train.{name}"
    if name in _INT_FIELDS:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {value!r} ({type(value).__name__})")
        if value < (1 if name in _POSITIVE else 0):
            raise ConfigError(f"{key} must be >= {1 if name in _POSITIVE else 0}, got {value}")
        return value
    if name in _FLOAT_FIELDS:
        value = _as_float(key, value)
        if value < 0 or (name == "ema_decay" and value >= 1):
            raise ConfigError(f"{key} must be >= 0{' and < 1' if name == 'ema_decay' else ''}, got {value}")
        return value
    if name == "lr_groups":
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key} must be a mapping group name -> learning rate, got {value!r}")
        return {str(k): _as_float(f"{key}.{k}", v) for k, v in value.items()}
    if name == "betas":
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise ConfigError(f"{key} must be a list of two numbers [beta1, beta2], got {value!r}")
        betas = [_as_float(key, b) for b in value]
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ConfigError(f"{key} must lie in [0, 1), got {betas}")
        return betas
    if name == "lr_schedule" and value not in LR_SCHEDULES:
        raise ConfigError(f"{key} must be one of {', '.join(LR_SCHEDULES)}, got {value!r}")
    if name == "precision" and value not in PRECISIONS:
        raise ConfigError(f"{key} must be one of {', '.join(PRECISIONS)}, got {value!r}")
    if name in ("channels_last", "compile", "fsdp") and not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if name == "device" and not isinstance(value, str):
        raise ConfigError(f"{key} must be a string such as auto, cpu, cuda, cuda:1, got {value!r}")
    if name == "out_dir" and value is not None and not isinstance(value, (str, Path)):
        raise ConfigError(f"{key} must be a path, got {value!r}")
    return str(value) if name == "out_dir" and value is not None else value


def parse_override(text: str) -> tuple[list[str], Any]:
    """"train.lr=3e-4" -> (["train", "lr"], 3e-4); the value is read as a YAML scalar."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip() or any(not part for part in key.strip().split(".")):
        raise ConfigError(f"override {text!r} must look like section.key=value, e.g. train.lr=3e-4")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as error:
        raise ConfigError(f"override {text!r}: cannot parse value {raw!r} as YAML ({error})") from None
    return key.strip().split("."), value


def apply_overrides(config: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """A copy of `config` with every `dotted.key=value` override set (nested dicts created as needed)."""
    config = copy.deepcopy(config)
    for text in overrides:
        keys, value = parse_override(text)
        node = config
        for depth, key in enumerate(keys[:-1]):
            child = node.setdefault(key, {})
            if child is None:
                child = node[key] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {'.'.join(keys[:depth + 1])} is {child!r}, not a section")
            node = child
        node[keys[-1]] = value
    return config


_TYPE_CHECKS = {bool: lambda v: isinstance(v, bool),
                int: lambda v: isinstance(v, int) and not isinstance(v, bool),
                float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
                str: lambda v: isinstance(v, str)}


def _expected_type(parameter: inspect.Parameter) -> type | None:
    """bool/int/float/str from the annotation when it is exactly one of them, else from the default.

    A default of 0 for a parameter annotated only by its default could be meant as a float,
    so an int default (without annotation) also accepts floats.
    """
    if parameter.annotation in _TYPE_CHECKS:
        return parameter.annotation
    default = parameter.default
    if default is None or default is parameter.empty or type(default) not in _TYPE_CHECKS:
        return None
    return float if type(default) is int else type(default)


def check_params(cls: type, params: Mapping[str, Any], prefix: str) -> None:
    """Check `params` against `cls.__init__`: unknown or missing names, and simple types (bool/int/float/str)."""
    try:
        signature = inspect.signature(cls.__init__, eval_str=True)
    except (NameError, TypeError, SyntaxError):
        signature = inspect.signature(cls.__init__)
    accepted = {name: p for name, p in signature.parameters.items()
                if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    takes_any = any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values())
    unknown = sorted(set(params) - set(accepted))
    if unknown and not takes_any:
        raise ConfigError(f"unknown key(s) {', '.join(prefix + k for k in unknown)} for {cls.__name__}; "
                          f"valid keys: {', '.join(accepted) or 'none'}")
    missing = [name for name, p in accepted.items() if p.default is p.empty and name not in params]
    if missing:
        raise ConfigError(f"missing key(s) {', '.join(prefix + k for k in missing)} required by {cls.__name__}")
    for name, value in params.items():
        expected = _expected_type(accepted[name]) if name in accepted else None
        if value is not None and expected is not None and not _TYPE_CHECKS[expected](value):
            raise ConfigError(f"{prefix}{name} must be {expected.__name__}, got {value!r} ({type(value).__name__})")


def _check_sections(config: Mapping[str, Any]) -> None:
    unknown = sorted(set(config) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"unknown top-level key(s) {', '.join(unknown)}; valid: {', '.join(SECTIONS)}")
    if "model" not in config:
        raise ConfigError("the config has no model section (model: {target: ..., params: {...}})")
    for section, keys in SECTIONS.items():
        value = config.get(section)
        if value is None:
            continue
        if not isinstance(value, Mapping):
            raise ConfigError(f"{section} must be a mapping, got {value!r}")
        bad = sorted(set(value) - set(keys)) if keys else []
        if bad:
            raise ConfigError(f"unknown key(s) {', '.join(f'{section}.{k}' for k in bad)}; valid {section} keys: "
                              f"{', '.join(keys)}")


def _check_data(data: dict[str, Any]) -> dict[str, Any]:
    """Fill defaults of the data section and check its types (options are checked by the dataset)."""
    data = {"name": data.get("name"), "size": data.get("size", 32), "split": data.get("split", "train"),
            "options": dict(data.get("options") or {}), "cache_latents": data.get("cache_latents", 0)}
    if not isinstance(data["name"], str) or not data["name"]:
        raise ConfigError(f"data.name must be a dataset name such as shapes (or package.module:Class), "
                          f"got {data['name']!r}")
    if isinstance(data["size"], bool) or not isinstance(data["size"], int):
        raise ConfigError(f"data.size must be an integer, got {data['size']!r}")
    if isinstance(data["cache_latents"], bool) or not isinstance(data["cache_latents"], int) or data["cache_latents"] < 0:
        raise ConfigError(f"data.cache_latents must be 0 (encode every batch) or the number of images to encode once "
                          f"with the frozen first stage, got {data['cache_latents']!r}")
    if not isinstance(data["split"], str):
        raise ConfigError(f"data.split must be a string such as train, got {data['split']!r}")
    if ":" not in data["name"]:
        try:
            from minildm.data import available_datasets, dataset_options
        except ImportError:
            return data
        if data["name"] not in available_datasets():
            raise ConfigError(f"data.name {data['name']!r} is not a dataset; valid: {', '.join(available_datasets())}")
        valid = dataset_options(data["name"])
        unknown = sorted(set(data["options"]) - set(valid))
        if unknown:
            raise ConfigError(f"unknown key(s) {', '.join('data.options.' + k for k in unknown)} for dataset "
                              f"{data['name']!r}; valid: {', '.join(valid) or 'none'}")
    return data


def _apply_gpu_section(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply the config's `gpu:` overrides when the run's device is CUDA; the user's overrides still win.

    `gpu:` maps dotted keys to values, e.g. {train.batch_size: 256, train.num_workers: 4}: the
    settings that keep a GPU busy (bigger batches, workers) without changing the CPU recipe.
    """
    section = raw.pop("gpu", None) or {}
    if not isinstance(section, Mapping):
        raise ConfigError(f"gpu must be a mapping of dotted keys to values (e.g. train.batch_size: 256), got {section!r}")
    if not section:
        return raw
    from minildm.utils import resolve_device

    device = (raw.get("train") or {}).get("device", "auto")
    if resolve_device(device).type != "cuda":
        return raw
    gpu = [f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"
           for key, value in section.items()]
    return apply_overrides(raw, [*gpu, *overrides])


def load_config(path_or_dict: str | Path | Mapping[str, Any], overrides: Iterable[str] = ()) -> dict[str, Any]:
    """Read a config (file, packaged name or dict), apply overrides, fill defaults and validate it.

    Returns a plain dict {"model": {target, params}, "data": {...} or None, "train": {every
    TrainConfig field}}. Raises ConfigError naming the offending key and the valid ones.
    """
    from minildm.pretrained.build import resolve_target

    name = None
    if isinstance(path_or_dict, Mapping):
        raw = copy.deepcopy(dict(path_or_dict))
    else:
        path = config_path(path_or_dict)
        name = path.stem
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f) or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: a config must be a mapping with model/data/train sections")
    overrides = list(overrides)
    raw = apply_overrides(raw, overrides)
    _check_sections(raw)
    raw = _apply_gpu_section(raw, overrides)

    model = raw["model"]
    if not isinstance(model.get("target"), str):
        raise ConfigError(f"model.target must be a registered model name or package.module:Class, "
                          f"got {model.get('target')!r}")
    params = model.get("params") or {}
    if not isinstance(params, Mapping):
        raise ConfigError(f"model.params must be a mapping of keyword arguments, got {params!r}")
    check_params(resolve_target(model["target"]), params, "model.params.")

    train = TrainConfig.from_dict(raw.get("train"))
    if train.out_dir is None and name is not None:
        train.out_dir = str(Path("runs") / name)
    data = _check_data(raw["data"]) if raw.get("data") is not None else None
    return {"model": {"target": model["target"], "params": dict(params)}, "data": data, "train": train.to_dict()}
