"""Load Stable Diffusion / CompVis and diffusers VAE weights into `minildm.autoencoder.AutoencoderKL`.

minildm keeps the original CompVis module names, so an original checkpoint's
`first_stage_model.*` keys load after stripping the prefix. diffusers renames almost
everything and differs in two ways that matter:

- decoder levels are stored in the opposite order: diffusers `up_blocks.i` is the
  original `up.{N-1-i}` (diffusers counts from the lowest resolution);
- the mid-block attention's q/k/v/out projections are linear layers (C, C) in
  diffusers and 1x1 convolutions (C, C, 1, 1) in the original.

Loading never unpickles: .safetensors files are read directly; .ckpt/.pt/.pth only
through torch.load(weights_only=True).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from minildm.autoencoder.kl import AutoencoderKL
from minildm.pretrained.weights import read_weights

SOURCES = ("compvis", "diffusers")
SD_V1_SCALE_FACTOR = 0.18215
COMPVIS_PREFIX = "first_stage_model."
_ATTN_LEAVES = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out",
                "query": "q", "key": "k", "value": "v", "proj_attn": "proj_out"}  # the last four: older diffusers names
_ATTN_LEAVES_BACK = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}


def _rename(key: str, rules: list[tuple[str, Callable[[re.Match], str]]]) -> str:
    for pattern, replace in rules:
        key, count = re.subn(pattern, replace, key)
        if count:
            break
    return key


def _diffusers_to_compvis_key(key: str, num_levels: int) -> str:
    """One diffusers VAE key -> the original (= minildm) name."""
    flip = lambda i: str(num_levels - 1 - int(i))  # noqa: E731  decoder level order is reversed
    key = _rename(key, [
        (r"^(encoder|decoder)\.conv_norm_out\.", lambda m: f"{m[1]}.norm_out."),
        (r"^encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.", lambda m: f"encoder.down.{m[1]}.block.{m[2]}."),
        (r"^encoder\.down_blocks\.(\d+)\.attentions\.(\d+)\.", lambda m: f"encoder.down.{m[1]}.attn.{m[2]}."),
        (r"^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", lambda m: f"encoder.down.{m[1]}.downsample."),
        (r"^decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.", lambda m: f"decoder.up.{flip(m[1])}.block.{m[2]}."),
        (r"^decoder\.up_blocks\.(\d+)\.attentions\.(\d+)\.", lambda m: f"decoder.up.{flip(m[1])}.attn.{m[2]}."),
        (r"^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.", lambda m: f"decoder.up.{flip(m[1])}.upsample."),
        (r"^(encoder|decoder)\.mid_block\.resnets\.(\d+)\.", lambda m: f"{m[1]}.mid.block_{int(m[2]) + 1}."),
        (r"^(encoder|decoder)\.mid_block\.attentions\.0\.", lambda m: f"{m[1]}.mid.attn_1."),
    ])
    key = re.sub(r"\.conv_shortcut\.(weight|bias)$", r".nin_shortcut.\1", key)
    if ".attn" in key:
        key = re.sub(r"\.(group_norm|to_q|to_k|to_v|to_out\.0|query|key|value|proj_attn)\.(weight|bias)$",
                     lambda m: f".{_ATTN_LEAVES[m[1]]}.{m[2]}", key)
    return key


def _compvis_to_diffusers_key(key: str, num_levels: int) -> str:
    """One original (= minildm) VAE key -> the diffusers name."""
    flip = lambda i: str(num_levels - 1 - int(i))  # noqa: E731
    key = _rename(key, [
        (r"^(encoder|decoder)\.norm_out\.", lambda m: f"{m[1]}.conv_norm_out."),
        (r"^encoder\.down\.(\d+)\.block\.(\d+)\.", lambda m: f"encoder.down_blocks.{m[1]}.resnets.{m[2]}."),
        (r"^encoder\.down\.(\d+)\.attn\.(\d+)\.", lambda m: f"encoder.down_blocks.{m[1]}.attentions.{m[2]}."),
        (r"^encoder\.down\.(\d+)\.downsample\.", lambda m: f"encoder.down_blocks.{m[1]}.downsamplers.0."),
        (r"^decoder\.up\.(\d+)\.block\.(\d+)\.", lambda m: f"decoder.up_blocks.{flip(m[1])}.resnets.{m[2]}."),
        (r"^decoder\.up\.(\d+)\.attn\.(\d+)\.", lambda m: f"decoder.up_blocks.{flip(m[1])}.attentions.{m[2]}."),
        (r"^decoder\.up\.(\d+)\.upsample\.", lambda m: f"decoder.up_blocks.{flip(m[1])}.upsamplers.0."),
        (r"^(encoder|decoder)\.mid\.block_(\d+)\.", lambda m: f"{m[1]}.mid_block.resnets.{int(m[2]) - 1}."),
        (r"^(encoder|decoder)\.mid\.attn_1\.", lambda m: f"{m[1]}.mid_block.attentions.0."),
    ])
    key = re.sub(r"\.nin_shortcut\.(weight|bias)$", r".conv_shortcut.\1", key)
    if ".attentions." in key:
        key = re.sub(r"\.(norm|q|k|v|proj_out)\.(weight|bias)$", lambda m: f".{_ATTN_LEAVES_BACK[m[1]]}.{m[2]}", key)
    return key


def _is_attention_projection(key: str) -> bool:
    return bool(re.search(r"\.attn(_1|\.\d+)\.(q|k|v|proj_out)\.weight$", key))


def _num_levels(keys: list[str], pattern: str) -> int:
    levels = {int(m[1]) for k in keys if (m := re.match(pattern, k))}
    if not levels:
        raise ValueError(f"no keys match {pattern!r}: this does not look like a VAE state dict")
    return max(levels) + 1


def convert_vae_state_dict(state_dict: dict[str, torch.Tensor], source: str = "compvis") -> dict[str, torch.Tensor]:
    """Rename a CompVis/SD ("compvis") or diffusers ("diffusers") VAE state dict to minildm's AutoencoderKL names.

    CompVis: keeps `first_stage_model.*` keys (prefix stripped) when present and drops the
    training loss (`loss.*`). diffusers: renames keys, flips decoder level order and turns
    linear attention projections (C, C) into 1x1 convs (C, C, 1, 1).
    """
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; accepted: {list(SOURCES)}")
    if source == "compvis":
        if any(k.startswith(COMPVIS_PREFIX) for k in state_dict):
            state_dict = {k[len(COMPVIS_PREFIX):]: v for k, v in state_dict.items() if k.startswith(COMPVIS_PREFIX)}
        return {k: v for k, v in state_dict.items() if not k.startswith("loss.")}
    num_levels = _num_levels(list(state_dict), r"^decoder\.up_blocks\.(\d+)\.")
    converted = {}
    for key, value in state_dict.items():
        new_key = _diffusers_to_compvis_key(key, num_levels)
        if _is_attention_projection(new_key) and value.dim() == 2:
            value = value[:, :, None, None]  # linear (C, C) -> 1x1 conv (C, C, 1, 1)
        converted[new_key] = value
    return converted


def vae_state_dict_to_diffusers(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of `convert_vae_state_dict(..., "diffusers")`: minildm names -> diffusers names and shapes."""
    num_levels = _num_levels(list(state_dict), r"^decoder\.up\.(\d+)\.")
    converted = {}
    for key, value in state_dict.items():
        if key == "scale_factor":
            continue
        if _is_attention_projection(key):
            value = value[:, :, 0, 0]  # 1x1 conv (C, C, 1, 1) -> linear (C, C)
        converted[_compvis_to_diffusers_key(key, num_levels)] = value.contiguous()
    return converted


def config_from_state_dict(state_dict: dict[str, torch.Tensor], resolution: int = 256) -> dict[str, Any]:
    """AutoencoderKL keyword arguments read off a minildm-named state dict (num_groups cannot be: default 32)."""
    keys = list(state_dict)
    ch = state_dict["encoder.conv_in.weight"].shape[0]
    num_levels = _num_levels(keys, r"^encoder\.down\.(\d+)\.")
    ch_mult = [state_dict[f"encoder.down.{i}.block.0.conv1.weight"].shape[0] // ch for i in range(num_levels)]
    num_res_blocks = _num_levels(keys, r"^encoder\.down\.0\.block\.(\d+)\.")
    attn_levels = sorted({int(m[1]) for k in keys if (m := re.match(r"^encoder\.down\.(\d+)\.attn\.", k))})
    return dict(
        ch=ch, ch_mult=ch_mult, num_res_blocks=num_res_blocks, resolution=resolution,
        attn_resolutions=[resolution // 2**i for i in attn_levels],
        in_channels=state_dict["encoder.conv_in.weight"].shape[1],
        out_ch=state_dict["decoder.conv_out.weight"].shape[0],
        z_channels=state_dict["decoder.conv_in.weight"].shape[1],
        embed_dim=state_dict["post_quant_conv.weight"].shape[1],
    )


def config_from_diffusers(config: dict[str, Any]) -> dict[str, Any]:
    """AutoencoderKL keyword arguments from a diffusers AutoencoderKL config.json."""
    if config.get("use_quant_conv", True) is False or config.get("use_post_quant_conv", True) is False:
        raise ValueError("diffusers VAEs without quant_conv/post_quant_conv are not supported (minildm always has them)")
    widths = list(config["block_out_channels"])
    resolution = int(config.get("sample_size", 256))
    attn_levels = [i for i, t in enumerate(config.get("down_block_types", [])) if t.startswith("Attn")]
    return dict(
        ch=widths[0], ch_mult=[w // widths[0] for w in widths], num_res_blocks=int(config.get("layers_per_block", 2)),
        resolution=resolution, attn_resolutions=[resolution // 2**i for i in attn_levels],
        in_channels=int(config.get("in_channels", 3)), out_ch=int(config.get("out_channels", 3)),
        z_channels=int(config.get("latent_channels", 4)), embed_dim=int(config.get("latent_channels", 4)),
        num_groups=int(config.get("norm_num_groups", 32)),
        scale_factor=float(config.get("scaling_factor") or 1.0),
    )


def diffusers_config(model: AutoencoderKL, resolution: int = 256) -> dict[str, Any]:
    """A diffusers AutoencoderKL config.json describing `model` (`resolution` becomes its sample_size)."""
    encoder = model.encoder
    attn = [len(level.attn) > 0 for level in encoder.down]
    return {
        "_class_name": "AutoencoderKL",
        "in_channels": encoder.conv_in.weight.shape[1],
        "out_channels": model.decoder.conv_out.weight.shape[0],
        "down_block_types": ["AttnDownEncoderBlock2D" if a else "DownEncoderBlock2D" for a in attn],
        "up_block_types": ["AttnUpDecoderBlock2D" if a else "UpDecoderBlock2D" for a in reversed(attn)],
        "block_out_channels": [level.block[0].out_channels for level in encoder.down],
        "layers_per_block": encoder.num_res_blocks,
        "act_fn": "silu",
        "latent_channels": model.embed_dim,
        "norm_num_groups": encoder.norm_out.num_groups,
        "sample_size": resolution,
        "scaling_factor": float(model.scale_factor),
    }


def _detect_source(state_dict: dict[str, torch.Tensor]) -> str:
    if any(".down_blocks." in k or ".up_blocks." in k for k in state_dict):
        return "diffusers"
    if any(k.startswith(COMPVIS_PREFIX) or k.startswith("encoder.down.") for k in state_dict):
        return "compvis"
    raise ValueError("no VAE keys found: expected `first_stage_model.*` (CompVis/SD), `encoder.down.*` or `encoder.down_blocks.*`")


def load_vae(path_or_folder: str | Path, config: dict[str, Any] | None = None) -> AutoencoderKL:
    """An AutoencoderKL with weights from an SD/CompVis checkpoint, a diffusers folder or a minildm folder.

    Accepted: a .safetensors/.ckpt file holding `first_stage_model.*` (a full SD checkpoint)
    or bare VAE keys; a diffusers AutoencoderKL folder (config.json +
    diffusion_pytorch_model.safetensors), or a pipeline folder with it under vae/; a folder
    written by `save_vae` (config.json with "params" + model.safetensors). `config`
    overrides AutoencoderKL keyword arguments (otherwise read off the config/weights).
    The latent scale factor comes from the config (diffusers `scaling_factor`), the
    checkpoint's `scale_factor` entry, or, for a bare SD-v1-shaped VAE, SD v1's 0.18215.
    """
    path = Path(path_or_folder).expanduser()
    params: dict[str, Any]
    if path.is_dir():
        if (path / "vae" / "config.json").is_file():
            path = path / "vae"
        config_file = path / "config.json"
        if not config_file.is_file():
            raise FileNotFoundError(f"{path} has no config.json; expected a diffusers AutoencoderKL or minildm VAE folder")
        file_config = json.loads(config_file.read_text())
        weights = next((path / name for name in ("model.safetensors", "diffusion_pytorch_model.safetensors",
                                                 "diffusion_pytorch_model.bin") if (path / name).is_file()), None)
        if weights is None:
            raise FileNotFoundError(f"no model.safetensors / diffusion_pytorch_model.safetensors in {path}")
        raw = read_weights(weights)
        if "params" in file_config:  # a minildm folder
            params, state_dict = dict(file_config["params"]), raw
        else:
            params, state_dict = config_from_diffusers(file_config), convert_vae_state_dict(raw, "diffusers")
    elif path.is_file():
        raw = read_weights(path)
        source = _detect_source(raw)
        state_dict = convert_vae_state_dict(raw, source)
        params = config_from_state_dict(state_dict)
        if "scale_factor" in raw:
            params["scale_factor"] = float(raw["scale_factor"])
        elif params["ch"] == 128 and params["ch_mult"] == [1, 2, 4, 4] and params["embed_dim"] == 4:
            params["scale_factor"] = SD_V1_SCALE_FACTOR
    else:
        raise FileNotFoundError(f"{path} does not exist")
    params.update(config or {})
    model = AutoencoderKL(**params)
    state_dict = {k: v for k, v in state_dict.items() if k != "scale_factor"}
    state_dict["scale_factor"] = model.scale_factor.clone()
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    if missing or unexpected:
        raise ValueError(f"weights do not fit the VAE config {params}: missing {missing[:8]}, unexpected {unexpected[:8]}")
    return model


def save_vae(model: AutoencoderKL, folder: str | Path, to: str = "minildm", params: dict[str, Any] | None = None) -> Path:
    """Write `model` as a minildm folder (config.json {"target", "params"} + model.safetensors) or a diffusers folder."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if to == "diffusers":
        (folder / "config.json").write_text(json.dumps(diffusers_config(model), indent=2))
        save_file(vae_state_dict_to_diffusers(model.state_dict()), str(folder / "diffusion_pytorch_model.safetensors"))
    elif to == "minildm":
        if params is None:
            params = config_from_state_dict(model.state_dict())
            params.update(num_groups=model.encoder.norm_out.num_groups, scale_factor=float(model.scale_factor))
        config = {"target": "minildm.autoencoder:AutoencoderKL", "params": params}
        (folder / "config.json").write_text(json.dumps(config, indent=2))
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    else:
        raise ValueError(f"unknown target format {to!r}; accepted: 'minildm', 'diffusers'")
    return folder
