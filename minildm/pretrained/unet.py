"""Load Stable Diffusion v1 UNet weights into `minildm.unet.UNetModel`.

Two published layouts hold the same numbers:

- original CompVis / Stable Diffusion checkpoints (`.safetensors`, or `.ckpt`): the UNet lives
  under `model.diffusion_model.` with the ADM names (input_blocks.i.j, middle_block,
  output_blocks, time_embed, out). minildm uses exactly these names, so conversion only
  strips the prefix (or, with `ema=True`, reads the EMA copy `model_ema.diffusion_model*`).
- diffusers `UNet2DConditionModel` folders (config.json + diffusion_pytorch_model.safetensors):
  down_blocks.b.{resnets,attentions,downsamplers}, mid_block, up_blocks, conv_in/conv_out,
  with ResBlock layers renamed (norm1, conv1, time_emb_proj, ...). The transformer blocks
  keep the original names in both layouts.

Loading never unpickles arbitrary objects: `.ckpt` files go through
`torch.load(weights_only=True)`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from minildm.unet import UNetModel, load_unet_config
from minildm.pretrained.weights import read_weights

COMPVIS_PREFIX = "model.diffusion_model."
COMPVIS_EMA_PREFIX = "model_ema.diffusion_model"
SOURCES = ("compvis", "diffusers")

# diffusers ResnetBlock2D name -> original ResBlock name
_RESNET_RENAMES = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
# diffusers top-level name -> original name
_TOP_LEVEL_RENAMES = {
    "conv_in": "input_blocks.0.0",
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "class_embedding": "label_emb",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}


def convert_unet_state_dict(
    state_dict: dict[str, torch.Tensor], source: str = "compvis", ema: bool = False
) -> dict[str, torch.Tensor]:
    """A UNet state dict in `source` layout ("compvis" or "diffusers") -> minildm `UNetModel` keys.

    "compvis" accepts a full SD checkpoint (keys under `model.diffusion_model.`; other keys,
    e.g. the VAE and text encoder, are ignored) or a bare UNet state dict. `ema=True` reads the
    EMA weights `model_ema.diffusion_model<name without dots>` instead (compvis only).
    """
    if source == "compvis":
        return _from_compvis(state_dict, ema)
    if source == "diffusers":
        if ema:
            raise ValueError("ema=True only applies to source='compvis' (diffusers folders hold one set of weights)")
        return _from_diffusers(state_dict)
    raise ValueError(f"unknown source {source!r}; valid sources: {', '.join(SOURCES)}")


def _from_compvis(state_dict: dict[str, torch.Tensor], ema: bool) -> dict[str, torch.Tensor]:
    unet = {k[len(COMPVIS_PREFIX) :]: v for k, v in state_dict.items() if k.startswith(COMPVIS_PREFIX)}
    if not unet:
        if not any(k.startswith(("input_blocks.", "time_embed.")) for k in state_dict):
            raise ValueError(
                f"no UNet weights found: expected keys under {COMPVIS_PREFIX!r} (a full SD checkpoint) "
                "or a bare UNet state dict (input_blocks.*, time_embed.*, ...)"
            )
        unet = dict(state_dict)
    if not ema:
        return unet
    # EMA copies drop the dots from the names: model_ema.diffusion_modelinput_blocks00weight
    missing = [k for k in unet if COMPVIS_EMA_PREFIX + k.replace(".", "") not in state_dict]
    if missing:
        raise ValueError(f"ema=True but the checkpoint has no EMA copy of {len(missing)} weights, e.g. {missing[0]!r}")
    return {k: state_dict[COMPVIS_EMA_PREFIX + k.replace(".", "")] for k in unet}


def _from_diffusers(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    down_resnets = {int(m.group(1)) for k in state_dict if (m := re.match(r"down_blocks\.0\.resnets\.(\d+)\.", k))}
    if not down_resnets:
        raise ValueError("not a diffusers UNet2DConditionModel state dict: no down_blocks.0.resnets.* keys")
    per_level = len(down_resnets) + 1  # original blocks per level: num_res_blocks (+ a Downsample / an extra up ResBlock)
    up_with_attention = {int(m.group(1)) for k in state_dict if (m := re.match(r"up_blocks\.(\d+)\.attentions\.", k))}

    def rename(key: str) -> str:
        for old, new in _TOP_LEVEL_RENAMES.items():
            if key.startswith(old + "."):
                return new + key[len(old) :]
        if m := re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key):
            level, kind, j, rest = int(m.group(1)), m.group(2), int(m.group(3)), m.group(4)
            index = 1 + level * per_level + j
            return f"input_blocks.{index}." + (_resnet(rest) if kind == "resnets" else "1." + rest)
        if m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key):
            return f"input_blocks.{(int(m.group(1)) + 1) * per_level}.0.op.{m.group(2)}"
        if m := re.match(r"mid_block\.(resnets|attentions)\.(\d+)\.(.*)", key):
            kind, j, rest = m.group(1), int(m.group(2)), m.group(3)
            if kind == "attentions":
                return f"middle_block.1.{rest}"
            return f"middle_block.{2 * j}." + _resnet(rest).removeprefix("0.")  # ResBlock, attention, ResBlock
        if m := re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key):
            level, kind, j, rest = int(m.group(1)), m.group(2), int(m.group(3)), m.group(4)
            index = level * per_level + j
            return f"output_blocks.{index}." + (_resnet(rest) if kind == "resnets" else "1." + rest)
        if m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key):
            level = int(m.group(1))
            position = 2 if level in up_with_attention else 1  # the Upsample follows the ResBlock (and attention)
            return f"output_blocks.{level * per_level + per_level - 1}.{position}.conv.{m.group(2)}"
        raise ValueError(f"cannot map diffusers UNet key {key!r} (supported: UNet2DConditionModel with "
                         "CrossAttn/plain Down/Up blocks, UNetMidBlock2DCrossAttn, optional num_class_embeds)")

    return {rename(k): v for k, v in state_dict.items()}


def _resnet(rest: str) -> str:
    """'norm1.weight' -> '0.in_layers.0.weight': a ResBlock is layer 0 of its original block."""
    name, _, param = rest.rpartition(".")
    if name not in _RESNET_RENAMES:
        raise ValueError(f"unknown diffusers ResnetBlock2D parameter {rest!r}; known: {sorted(_RESNET_RENAMES)}")
    return f"0.{_RESNET_RENAMES[name]}.{param}"


def unet_config_from_diffusers(config: dict[str, Any]) -> dict[str, Any]:
    """A diffusers UNet2DConditionModel config.json dict -> minildm UNetModel keyword arguments.

    Raises ValueError for diffusers options that the ADM/SD UNet does not have.
    """
    expected = {
        "flip_sin_to_cos": True, "freq_shift": 0, "center_input_sample": False, "act_fn": "silu",
        "norm_eps": 1e-5, "downsample_padding": 1, "mid_block_scale_factor": 1, "only_cross_attention": False,
        "dual_cross_attention": False, "upcast_attention": False, "class_embed_type": None,
        "addition_embed_type": None, "time_embedding_type": "positional", "time_embedding_dim": None,
        "time_cond_proj_dim": None, "conv_in_kernel": 3, "conv_out_kernel": 3, "encoder_hid_dim": None,
        "mid_block_type": "UNetMidBlock2DCrossAttn", "resnet_skip_time_act": False, "resnet_out_scale_factor": 1.0,
        "time_embedding_act_fn": None, "timestep_post_act": None, "attention_type": "default",
        "class_embeddings_concat": False, "cross_attention_norm": None,
    }  # fmt: skip
    unsupported = {k: config[k] for k, v in expected.items() if k in config and config[k] != v}
    if unsupported:
        raise ValueError(f"diffusers UNet options not supported by minildm's UNetModel: {unsupported} (supported values: "
                         f"{ {k: expected[k] for k in unsupported} })")
    widths = list(config.get("block_out_channels", (320, 640, 1280, 1280)))
    down = list(config.get("down_block_types", ()))
    up = list(config.get("up_block_types", ()))
    valid_down, valid_up = {"CrossAttnDownBlock2D", "DownBlock2D"}, {"CrossAttnUpBlock2D", "UpBlock2D"}
    if set(down) - valid_down or set(up) - valid_up or len(down) != len(widths) or len(up) != len(widths):
        raise ValueError(f"down_block_types {down} / up_block_types {up}: one per block_out_channels entry "
                         f"({len(widths)}) from {sorted(valid_down)} / {sorted(valid_up)}")
    attention_levels = [i for i, kind in enumerate(down) if kind == "CrossAttnDownBlock2D"]
    if [len(up) - 1 - i for i, kind in enumerate(up) if kind == "CrossAttnUpBlock2D"][::-1] != attention_levels:
        raise ValueError(f"up_block_types {up} must mirror down_block_types {down} (attention at the same levels)")
    if any(w % widths[0] for w in widths):
        raise ValueError(f"block_out_channels {widths} must be multiples of the first width")
    layers = config.get("layers_per_block", 2)
    depth = config.get("transformer_layers_per_block", 1)
    if not isinstance(layers, int) or (not isinstance(depth, int) and len(set(depth)) != 1):
        raise ValueError(f"per-block layers_per_block={layers} / transformer_layers_per_block={depth} are not supported")
    # diffusers' `attention_head_dim` is, for SD v1, the number of heads (a known naming quirk);
    # `num_attention_heads` (when set) says so explicitly.
    heads = config.get("num_attention_heads") or config.get("attention_head_dim", 8)
    heads = [heads] * len(widths) if isinstance(heads, int) else list(heads)
    head_channels = None
    if len(set(heads)) != 1:
        per_head = {w // h for w, h in zip(widths, heads)}
        if len(per_head) != 1:
            raise ValueError(f"attention heads {heads} are neither constant nor a constant width per head")
        head_channels = per_head.pop()
    return {
        "in_channels": config.get("in_channels", 4),
        "out_channels": config.get("out_channels", 4),
        "model_channels": widths[0],
        "channel_mult": [w // widths[0] for w in widths],
        "num_res_blocks": layers,
        "attention_resolutions": [2**i for i in attention_levels],
        "num_heads": heads[0],
        "num_head_channels": head_channels,
        "transformer_depth": depth if isinstance(depth, int) else depth[0],
        "context_dim": config.get("cross_attention_dim", 1280),
        "num_classes": config.get("num_class_embeds"),
        "use_scale_shift_norm": config.get("resnet_time_scale_shift", "default") == "scale_shift",
        "dropout": config.get("dropout", 0.0),
        "norm_num_groups": config.get("norm_num_groups", 32),
        "use_linear_in_transformer": config.get("use_linear_projection", False),
    }


def unet_config_from_state_dict(state_dict: dict[str, torch.Tensor], num_heads: int = 8,
                                norm_num_groups: int = 32) -> dict[str, Any]:
    """UNetModel keyword arguments read off a minildm-named (= original-named) UNet state dict.

    Widths, levels, ResBlocks per level, attention levels, transformer depth, context width,
    classes and the projection kind are visible in the tensor shapes; the number of attention
    heads and of GroupNorm groups are not, so they are arguments (defaults: Stable Diffusion v1's).
    """
    if "input_blocks.0.0.weight" not in state_dict:
        raise ValueError("not a UNet state dict in the original layout: no input_blocks.0.0.weight")
    model_channels, in_channels = state_dict["input_blocks.0.0.weight"].shape[:2]
    blocks = sorted({int(m[1]) for k in state_dict if (m := re.match(r"input_blocks\.(\d+)\.", k))})
    levels: list[list[int]] = [[]]  # input block indices of each level's ResBlocks
    for i in blocks[1:]:
        if f"input_blocks.{i}.0.op.weight" in state_dict:
            levels.append([])
        else:
            levels[-1].append(i)
    widths = [state_dict[f"input_blocks.{level[0]}.0.in_layers.2.weight"].shape[0] for level in levels]
    attention = [2**n for n, level in enumerate(levels) if any(k.startswith(f"input_blocks.{level[0]}.1.")
                                                               for k in state_dict)]
    depth = len({m[1] for k in state_dict if (m := re.match(r"middle_block\.1\.transformer_blocks\.(\d+)\.", k))})
    context = state_dict.get("middle_block.1.transformer_blocks.0.attn2.to_k.weight")
    proj_in = state_dict.get("middle_block.1.proj_in.weight")
    emb = state_dict[f"input_blocks.{levels[0][0]}.0.emb_layers.1.weight"]
    return {
        "in_channels": int(in_channels),
        "out_channels": int(state_dict["out.2.weight"].shape[0]),
        "model_channels": int(model_channels),
        "channel_mult": [w // model_channels for w in widths],
        "num_res_blocks": len(levels[0]),
        "attention_resolutions": attention,
        "num_heads": num_heads,
        "transformer_depth": max(depth, 1),
        "context_dim": int(context.shape[1]) if context is not None else None,
        "num_classes": int(state_dict["label_emb.weight"].shape[0]) if "label_emb.weight" in state_dict else None,
        "use_scale_shift_norm": emb.shape[0] == 2 * widths[0],
        "norm_num_groups": norm_num_groups,
        "use_linear_in_transformer": proj_in is not None and proj_in.dim() == 2,
    }


def unet_from_state_dict(state_dict: dict[str, torch.Tensor], config: dict[str, Any],
                         dtype: torch.dtype | None = None, where: str = "the weights") -> UNetModel:
    """A UNetModel of `config` holding `state_dict` (minildm names), built on the meta device (no random init)."""
    with torch.device("meta"):  # no time spent on random init: every weight comes from the file
        model = UNetModel.from_config(config)
    try:
        model.load_state_dict(state_dict, strict=True, assign=True)
    except RuntimeError as err:
        raise ValueError(f"{where} do not fit UNet config {config}; pass the matching config=. "
                         f"Details: {err}") from err  # fmt: skip
    return model.to(dtype or torch.float32).eval()


def load_unet(
    path_or_folder: str | Path,
    config: dict[str, Any] | str | Path | None = None,
    ema: bool = False,
    dtype: torch.dtype | None = None,
) -> UNetModel:
    """Load Stable Diffusion v1 UNet weights (original or diffusers layout) -> UNetModel in eval mode.

    path_or_folder:
      - a diffusers folder with config.json + diffusion_pytorch_model.safetensors (or a
        pipeline folder with a `unet/` subfolder): the config is derived from config.json;
      - an original checkpoint file (.safetensors, or .ckpt/.pt/.pth/.bin read with
        torch.load(weights_only=True)): full SD checkpoint or bare UNet state dict.
    config: UNetModel arguments (dict, shipped config name or YAML path); default: from
        config.json for folders, "sd-v1" for files.
    ema: read the EMA weights of an original checkpoint.
    dtype: parameter dtype (default float32, whatever the file stores).
    """
    path = Path(path_or_folder)
    if path.is_dir():
        folder = path / "unet" if (path / "unet" / "config.json").is_file() else path
        if not (folder / "config.json").is_file():
            raise ValueError(f"{path} is not a diffusers UNet folder: no config.json (nor unet/config.json)")
        names = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors", "diffusion_pytorch_model.bin")
        weights = next((folder / n for n in names if (folder / n).is_file()), None)
        if weights is None:
            raise ValueError(f"{folder} has no diffusion_pytorch_model.safetensors (or .fp16.safetensors / .bin)")
        if config is None:
            config = unet_config_from_diffusers(json.loads((folder / "config.json").read_text()))
        state_dict = convert_unet_state_dict(read_weights(weights), "diffusers", ema)
    elif path.is_file():
        raw = read_weights(path)
        source = "diffusers" if any(k.startswith("down_blocks.") for k in raw) else "compvis"
        state_dict = convert_unet_state_dict(raw, source, ema)
    else:
        raise ValueError(f"{path} does not exist (expected a checkpoint file or a diffusers folder)")

    config = load_unet_config("sd-v1" if config is None else config) if not isinstance(config, dict) else config
    return unet_from_state_dict(state_dict, config, dtype, where=f"the weights in {path}")
