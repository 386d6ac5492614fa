"""Stable Diffusion v1 text-to-image from local files: a LatentDiffusion with SD's UNet, VAE and frozen CLIP.

Stable Diffusion v1 is the paper's text-to-image LDM (Sec. 4.3.1) scaled up by CompVis, Stability AI
and Runway: KL-f8 first stage (83,653,863 parameters, latents 4 x 64 x 64 for 512 x 512 images,
scale 0.18215), the 859,520,964-parameter UNet (minildm/configs/unet/sd-v1.yaml) and, as tau_theta,
the frozen text transformer of CLIP ViT-L/14 (123,060,480 parameters). In minildm it is the same
`LatentDiffusion` as every course model, with a `FrozenCLIPTextConditioner`:

    ldm = load_stable_diffusion("weights/sd-v1")
    images = ldm.sample(cond={"caption": ["a photograph of an astronaut riding a horse"]})

Two published layouts hold the same weights; both load:

    single file    v1-5-pruned-emaonly.safetensors (.safetensors only: a .ckpt is a pickle, never read here):
                   model.diffusion_model.*  UNet,  first_stage_model.*  VAE,
                   cond_stage_model.transformer.*  CLIP text encoder (transformers' names).
                   The tokenizer is not in the file: a tokenizer/ folder beside it (vocab.json + merges.txt
                   of openai/clip-vit-large-patch14), or tokenizer=.
    diffusers      a pipeline folder: unet/, vae/, text_encoder/ (config.json + model.safetensors; the .bin
                   pickles are not read), tokenizer/ (vocab.json + merges.txt, or tokenizer.json),
                   scheduler/ (optional).

Nothing is downloaded: copy the files from a machine with internet (MISSING_WEIGHTS_HELP says which).
The sampling defaults are Stable Diffusion's: the scheduler folder's settings when present, else
PNDM without Runge-Kutta warm-up (= PLMS), leading timestep spacing with steps_offset 1, 50 steps,
guidance scale 7.5, as diffusers' StableDiffusionPipeline runs it.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from minildm.autoencoder.kl import AutoencoderKL
from minildm.conditioning.clip_text import VIT_L_14_TEXT, FrozenCLIPTextConditioner
from minildm.diffusion.diffusers_schedulers import (BETA_SCHEDULES, diffusers_config, diffusers_options,
                                                    diffusers_sampler)
from minildm.ldm import LatentDiffusion
from minildm.pretrained.unet import (convert_unet_state_dict, unet_config_from_diffusers, unet_config_from_state_dict,
                                     unet_from_state_dict)
from minildm.pretrained.vae import config_from_diffusers, config_from_state_dict, convert_vae_state_dict
from minildm.pretrained.weights import read_weights

TEXT_PREFIX = "cond_stage_model.transformer."
SD_V1_IMAGE_SIZE = 512
SD_V1_SCHEDULER = {"_class_name": "PNDMScheduler", "num_train_timesteps": 1000, "beta_start": 0.00085,
                   "beta_end": 0.012, "beta_schedule": "scaled_linear", "skip_prk_steps": True,
                   "set_alpha_to_one": False, "steps_offset": 1, "clip_sample": False, "prediction_type": "epsilon"}
"""Stable Diffusion v1's scheduler_config.json (runwayml/stable-diffusion-v1-5): the defaults for a single file."""
SD_V1_SAMPLING = {"sample_steps": 50, "guidance_scale": 7.5}
GRID_OPTIONS = ("spacing", "steps_offset", "final_sigma", "karras", "karras_range", "interpolation", "quantize",
                "start_noise")
"""Options of minildm.diffusion.sample that describe the noise-level grid (any sampler takes them)."""
WEIGHTS_ENV = "MINILDM_SD_V1"
FOLDER_PARTS = {"unet": "diffusion_pytorch_model", "vae": "diffusion_pytorch_model", "text_encoder": "model"}
"""The networks of a diffusers Stable Diffusion folder: subfolder -> weights file stem (beside a config.json).
The weights are <stem>.safetensors or <stem>.fp16.safetensors; tokenizer/ holds vocab.json + merges.txt
(or tokenizer.json); scheduler/ is optional."""
MISSING_WEIGHTS_HELP = (
    "Stable Diffusion v1 weights are not shipped with minildm and never downloaded by it. On a machine with "
    "internet, fetch either the single file v1-5-pruned-emaonly.safetensors (Hugging Face "
    "stable-diffusion-v1-5/stable-diffusion-v1-5) plus the tokenizer files vocab.json and merges.txt of "
    "openai/clip-vit-large-patch14 into a tokenizer/ folder beside it, or the whole diffusers folder of that "
    f"repository (unet/, vae/, text_encoder/, tokenizer/, scheduler/); copy them to weights/sd-v1/ (or set "
    f"${WEIGHTS_ENV}, or pass --weights PATH)")


def default_weights() -> Path:
    """Where `minildm sample sd-v1` looks without --weights: $MINILDM_SD_V1, else ./weights/sd-v1."""
    return Path(os.environ.get(WEIGHTS_ENV, "weights/sd-v1")).expanduser()


def _first_file(folder: Path, names: tuple[str, ...]) -> Path | None:
    return next((folder / n for n in names if (folder / n).is_file()), None)


def _weights_file(folder: Path, stem: str) -> Path | None:
    return _first_file(folder, (f"{stem}.safetensors", f"{stem}.fp16.safetensors"))


def missing_files(path: str | Path) -> list[str]:
    """The files a Stable Diffusion location lacks ([] when it is complete): a checkpoint file or a diffusers folder."""
    path = Path(path)
    if path.is_file():
        tokenizer = path.parent / "tokenizer"
        return [] if _tokenizer_files(tokenizer) else [f"{tokenizer}/vocab.json", f"{tokenizer}/merges.txt"]
    if not path.is_dir():
        return [f"{path} (a checkpoint file such as v1-5-pruned-emaonly.safetensors, or a diffusers folder)"]
    missing = []
    for part, stem in FOLDER_PARTS.items():
        if not (path / part / "config.json").is_file():
            missing.append(f"{path / part}/config.json")
        if _weights_file(path / part, stem) is None:
            missing.append(f"{path / part}/{stem}.safetensors")
    if not _tokenizer_files(path / "tokenizer"):
        missing += [f"{path}/tokenizer/vocab.json", f"{path}/tokenizer/merges.txt"]
    return missing


def _tokenizer_files(folder: Path) -> bool:
    return (folder / "tokenizer.json").is_file() or ((folder / "vocab.json").is_file() and
                                                     (folder / "merges.txt").is_file())


def load_tokenizer(folder: str | Path) -> Any:
    """A transformers CLIPTokenizer from a local folder (vocab.json + merges.txt, or tokenizer.json)."""
    from transformers import CLIPTokenizer

    folder = Path(folder)
    if not _tokenizer_files(folder):
        raise FileNotFoundError(f"no CLIP tokenizer in {folder}: put vocab.json and merges.txt there (the tokenizer "
                                "files of openai/clip-vit-large-patch14, or a Stable Diffusion folder's tokenizer/)")
    return CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)


def _without_text_model(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CLIP text weights named without the "text_model." prefix (released files have it, transformers 5 does not)."""
    return {k.removeprefix("text_model."): v for k, v in state_dict.items() if not k.endswith("position_ids")}


def text_config_from_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, Any]:
    """CLIPTextConfig arguments read off a CLIPTextModel state dict (heads: width / 64, CLIP's head width)."""
    state_dict = _without_text_model(state_dict)
    tokens = state_dict["embeddings.token_embedding.weight"]
    layers = {int(m[1]) for k in state_dict if (m := re.match(r"encoder\.layers\.(\d+)\.", k))}
    return {**VIT_L_14_TEXT, "vocab_size": tokens.shape[0], "hidden_size": tokens.shape[1],
            "intermediate_size": state_dict["encoder.layers.0.mlp.fc1.weight"].shape[0],
            "num_hidden_layers": len(layers), "num_attention_heads": max(1, tokens.shape[1] // 64),
            "max_position_embeddings": state_dict["embeddings.position_embedding.weight"].shape[0]}


def _text_encoder(state_dict: dict[str, torch.Tensor], config: dict[str, Any], where: str) -> nn.Module:
    from transformers import CLIPTextConfig, CLIPTextModel

    model = CLIPTextModel(CLIPTextConfig(**config))
    state_dict = _without_text_model(state_dict)  # position_ids (a buffer, stored by old files) dropped too
    if any(k.startswith("text_model.") for k in model.state_dict()):  # transformers 4 names its weights so
        state_dict = {"text_model." + k: v for k, v in state_dict.items()}
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    if missing or unexpected:
        raise ValueError(f"the text encoder weights in {where} do not fit CLIP text config {config}: missing "
                         f"{missing[:5]}, unexpected {unexpected[:5]}; pass text_encoder_config=")
    return model.eval()


def _vae(state_dict: dict[str, torch.Tensor], params: dict[str, Any], where: str) -> AutoencoderKL:
    with torch.device("meta"):  # every weight comes from the file
        model = AutoencoderKL(**params)
    state_dict = {k: v for k, v in state_dict.items() if k != "scale_factor"}
    state_dict["scale_factor"] = torch.tensor(float(params.get("scale_factor", 1.0)))
    try:
        model.load_state_dict(state_dict, strict=True, assign=True)
    except RuntimeError as err:
        raise ValueError(f"the VAE weights in {where} do not fit VAE config {params}. Details: {err}") from err
    return model.float().eval()


def scheduler_settings(config: dict[str, Any] | None = None) -> dict[str, Any]:
    """LatentDiffusion's schedule, sampler and sampler_options for a diffusers scheduler_config.json dict.

    None -> Stable Diffusion v1's (SD_V1_SCHEDULER). A scheduler minildm does not reproduce falls
    back to SD v1's with a warning.
    """
    config = dict(SD_V1_SCHEDULER if config is None else config)
    name = config.pop("_class_name", "PNDMScheduler")
    try:
        merged = diffusers_config(name, config)
    except ValueError as error:
        warnings.warn(f"scheduler {name}: {error}; using Stable Diffusion v1's PNDM settings instead", stacklevel=3)
        return scheduler_settings(None)
    options = diffusers_options(name, config)
    if options.pop("objective") != "eps":
        raise ValueError(f"this loader reads Stable Diffusion v1 (epsilon prediction); the scheduler config says "
                         f"prediction_type={merged['prediction_type']!r}")
    schedule = {"name": BETA_SCHEDULES[merged["beta_schedule"]], "num_timesteps": merged["num_train_timesteps"],
                "beta_start": merged["beta_start"], "beta_end": merged["beta_end"]}
    return {"schedule": schedule, "sampler": diffusers_sampler(name, config),
            "sampler_options": {k: v for k, v in options.items() if k in GRID_OPTIONS}}


def _from_folder(folder: Path, tokenizer: Any) -> dict[str, Any]:
    missing = [m for m in missing_files(folder) if tokenizer is None or "/tokenizer/" not in m]
    if missing:
        raise FileNotFoundError(f"{folder} is not a complete Stable Diffusion folder: missing {', '.join(missing)}. "
                                + MISSING_WEIGHTS_HELP)
    from transformers import CLIPTextConfig

    unet_config = unet_config_from_diffusers(json.loads((folder / "unet" / "config.json").read_text()))
    unet_weights = read_weights(_weights_file(folder / "unet", "diffusion_pytorch_model"))
    unet = unet_from_state_dict(convert_unet_state_dict(unet_weights, "diffusers"), unet_config,
                                where=f"the weights in {folder / 'unet'}")
    vae_config = json.loads((folder / "vae" / "config.json").read_text())
    vae_weights = read_weights(_weights_file(folder / "vae", "diffusion_pytorch_model"))
    vae = _vae(convert_vae_state_dict(vae_weights, "diffusers"), config_from_diffusers(vae_config), str(folder / "vae"))
    text_config = CLIPTextConfig.from_pretrained(str(folder / "text_encoder"), local_files_only=True).to_dict()
    text_config = {k: text_config[k] for k in VIT_L_14_TEXT if k in text_config}
    text_encoder = _text_encoder(read_weights(_weights_file(folder / "text_encoder", "model")), text_config,
                                 str(folder / "text_encoder"))
    scheduler_file = folder / "scheduler" / "scheduler_config.json"
    scheduler = json.loads(scheduler_file.read_text()) if scheduler_file.is_file() else None
    image_size = int(json.loads((folder / "unet" / "config.json").read_text()).get("sample_size", 64)) \
        * vae.downsampling_factor
    tokenizer = tokenizer or load_tokenizer(folder / "tokenizer")
    return dict(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                image_size=image_size, **scheduler_settings(scheduler))


def _from_file(path: Path, tokenizer: Any, ema: bool, text_encoder_config: dict[str, Any] | None,
               unet_config: dict[str, Any] | None) -> dict[str, Any]:
    if path.suffix != ".safetensors":
        raise ValueError(f"{path.name}: minildm reads Stable Diffusion checkpoints as .safetensors only (a "
                         f"{path.suffix or 'suffix-less'} file may be a pickle, which can run code when loaded); "
                         "use the .safetensors release (v1-5-pruned-emaonly.safetensors) or convert it with a tool "
                         "you trust")
    if tokenizer is None:
        if not _tokenizer_files(path.parent / "tokenizer"):
            raise FileNotFoundError(f"no tokenizer for {path.name}: a single checkpoint file holds no tokenizer; put "
                                    f"vocab.json and merges.txt (openai/clip-vit-large-patch14's) in "
                                    f"{path.parent / 'tokenizer'}/, or pass tokenizer=")
        tokenizer = path.parent / "tokenizer"
    raw = read_weights(path)
    unet_weights = convert_unet_state_dict(raw, "compvis", ema)
    unet = unet_from_state_dict(unet_weights, unet_config or unet_config_from_state_dict(unet_weights),
                                where=f"the UNet weights in {path}")
    vae_weights = convert_vae_state_dict({k: v for k, v in raw.items() if k.startswith("first_stage_model.")})
    if not vae_weights:
        raise ValueError(f"{path} holds no VAE weights (first_stage_model.*): not a full Stable Diffusion checkpoint")
    vae_params = {**config_from_state_dict(vae_weights), "scale_factor": 0.18215}
    vae = _vae(vae_weights, vae_params, str(path))
    text = {k[len(TEXT_PREFIX):]: v for k, v in raw.items() if k.startswith(TEXT_PREFIX)}
    if not text:
        raise ValueError(f"{path} holds no text encoder weights ({TEXT_PREFIX}*): not a Stable Diffusion v1 "
                         "checkpoint (SD 2 uses OpenCLIP, which this loader does not read)")
    text_encoder = _text_encoder(text, text_encoder_config or text_config_from_state_dict(text), str(path))
    tokenizer = load_tokenizer(tokenizer) if isinstance(tokenizer, (str, Path)) else tokenizer
    return dict(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, image_size=SD_V1_IMAGE_SIZE,
                **scheduler_settings(None))


def load_stable_diffusion(
    path: str | Path | None = None,
    tokenizer: Any = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    ema: bool = False,
    image_size: int | None = None,
    text_encoder_config: dict[str, Any] | None = None,
    unet_config: dict[str, Any] | None = None,
) -> LatentDiffusion:
    """Stable Diffusion v1 as a minildm LatentDiffusion (eval mode), from one checkpoint file or a diffusers folder.

    path: the file or folder (default: `default_weights()`); tokenizer: a CLIPTokenizer or a folder with
    vocab.json + merges.txt (default: the folder's tokenizer/, or tokenizer/ beside a single file);
    dtype: torch.float16 / torch.bfloat16 for half-precision inference (the sampler keeps its state in
    float32, LatentDiffusion casts at the network); ema: read the EMA weights of a training checkpoint;
    image_size: pixels (default 512 for a single file, the UNet's sample_size x 8 for a folder);
    text_encoder_config / unet_config: for single files whose text encoder is not CLIP ViT-L/14-shaped
    (heads = width / 64 is assumed) or whose UNet does not use 8 heads and 32 GroupNorm groups.
    Missing files raise FileNotFoundError naming them and where to put them.
    """
    path = default_weights() if path is None else Path(path).expanduser()
    if path.is_dir():
        if ema:
            raise ValueError("ema=True reads the EMA copy of an original training checkpoint; a diffusers folder "
                             "holds one set of weights")
        parts = _from_folder(path, tokenizer)
    elif path.is_file():
        parts = _from_file(path, tokenizer, ema, text_encoder_config, unet_config)
    else:
        raise FileNotFoundError(f"no Stable Diffusion v1 weights at {path}. " + MISSING_WEIGHTS_HELP)
    conditioner = FrozenCLIPTextConditioner(parts["text_encoder"], parts["tokenizer"])
    if parts["unet"].context_dim != conditioner.context_dim:
        raise ValueError(f"the UNet attends to {parts['unet'].context_dim}-wide context, the text encoder gives "
                         f"{conditioner.context_dim}: these files do not belong together")
    ldm = LatentDiffusion(unet=parts["unet"], first_stage=parts["vae"], conditioner=conditioner,
                          image_size=image_size or parts["image_size"], schedule=parts["schedule"],
                          sampler=parts["sampler"], sampler_options=parts["sampler_options"], **SD_V1_SAMPLING)
    return ldm.to(device=device, dtype=dtype or torch.float32).eval()


def save_stable_diffusion(ldm: LatentDiffusion, path: str | Path) -> Path:
    """Write `ldm` (UNet, KL first stage, CLIP conditioner) as one original-layout .safetensors checkpoint.

    Keys: model.diffusion_model.* (UNet), first_stage_model.* (VAE), cond_stage_model.transformer.*
    (CLIP text encoder): the layout of the released v1 files, readable by `load_stable_diffusion`
    and by diffusers' `StableDiffusionPipeline.from_single_file`. The tokenizer is saved beside it, in tokenizer/.
    """
    from safetensors.torch import save_file

    if not isinstance(ldm.conditioner, FrozenCLIPTextConditioner) or not isinstance(ldm.first_stage, AutoencoderKL):
        raise ValueError("save_stable_diffusion writes a Stable Diffusion v1 layout: a LatentDiffusion with an "
                         "AutoencoderKL first stage and a FrozenCLIPTextConditioner")
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"write Stable Diffusion checkpoints as .safetensors, got {path.name}")
    tensors = {f"model.diffusion_model.{k}": v for k, v in ldm.unet.state_dict().items()}
    tensors |= {f"first_stage_model.{k}": v for k, v in ldm.first_stage.state_dict().items() if k != "scale_factor"}
    text = _without_text_model(ldm.conditioner.text_encoder.state_dict())
    tensors |= {f"{TEXT_PREFIX}text_model.{k}": v for k, v in text.items()}  # the released files' names
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(path))
    if ldm.conditioner.tokenizer is not None:
        ldm.conditioner.tokenizer.save_pretrained(str(path.parent / "tokenizer"))
    return path
