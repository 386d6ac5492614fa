"""Weight interop: minildm UNetModel vs diffusers UNet2DConditionModel on the same (random) weights.

No downloads: diffusers models are built from configs with random weights.
"""

from __future__ import annotations

import pytest
import torch

from minildm.pretrained.unet import convert_unet_state_dict, load_unet, unet_config_from_diffusers
from minildm.unet import UNetModel

diffusers = pytest.importorskip("diffusers")

# A reduced Stable Diffusion layout (SD v1 block types and head count at small widths).
SD_LIKE = dict(
    sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=2,
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=32, attention_head_dim=8, norm_num_groups=8,
)  # fmt: skip


def randomize(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights everywhere (the zero-initialised layers too), so a wrong mapping shows."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.2)
    return module


def inputs(batch: int = 2, size: int = 8, context_dim: int = 32, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(batch, 4, size, size, generator=g),
        torch.tensor([17, 843][:batch]),
        torch.randn(batch, 6, context_dim, generator=g),
    )


def diffusers_unet(**overrides) -> torch.nn.Module:
    config = dict(SD_LIKE, **overrides)
    return randomize(diffusers.UNet2DConditionModel(**config)).eval()


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        # SD2 style: linear proj_in/out, a constant head width (attention_head_dim per block), depth 2
        dict(use_linear_projection=True, attention_head_dim=(4, 8), transformer_layers_per_block=2, layers_per_block=1,
             down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
             up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D")),
    ],
    ids=["sd-v1-like", "sd-v2-like"],
)  # fmt: skip
def test_diffusers_folder_loads_and_matches(tmp_path, overrides):
    reference = diffusers_unet(**overrides)
    reference.save_pretrained(tmp_path)
    model = load_unet(tmp_path)
    assert isinstance(model, UNetModel) and not model.training
    x, t, ctx = inputs()
    with torch.no_grad():
        expected = reference(x, t, encoder_hidden_states=ctx).sample
        out = model(x, t, ctx)
    assert expected.abs().max() > 0.1  # a meaningful comparison, not zeros against zeros
    assert (out - expected).abs().max() < 1e-4


def test_pipeline_folder_with_unet_subfolder(tmp_path):
    reference = diffusers_unet()
    reference.save_pretrained(tmp_path / "unet")
    model = load_unet(tmp_path)
    x, t, ctx = inputs()
    with torch.no_grad():
        assert (model(x, t, ctx) - reference(x, t, encoder_hidden_states=ctx).sample).abs().max() < 1e-4


def original_layout(model: UNetModel, prefix: str = "model.diffusion_model.") -> dict[str, torch.Tensor]:
    """minildm's state dict IS the original layout; a full SD checkpoint only adds a prefix."""
    return {prefix + k: v.clone() for k, v in model.state_dict().items()}


def test_original_layout_through_diffusers_converter_matches(tmp_path):
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    config = unet_config_from_diffusers(SD_LIKE)
    model = randomize(UNetModel.from_config(config)).eval()
    checkpoint = original_layout(model)
    checkpoint["first_stage_model.decoder.conv_in.weight"] = torch.zeros(1)  # other parts of an SD file are ignored
    reference = diffusers.UNet2DConditionModel(**SD_LIKE).eval()
    reference.load_state_dict(convert_ldm_unet_checkpoint(checkpoint, SD_LIKE), strict=True)
    x, t, ctx = inputs()
    with torch.no_grad():
        assert (model(x, t, ctx) - reference(x, t, encoder_hidden_states=ctx).sample).abs().max() < 1e-4

    # and back: the same original-layout file loads into minildm unchanged
    from safetensors.torch import save_file

    save_file(checkpoint, str(tmp_path / "sd.safetensors"))
    loaded = load_unet(tmp_path / "sd.safetensors", config=config)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_class_conditional_adm_with_scale_shift_matches_diffusers():
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    config = dict(SD_LIKE, num_class_embeds=10, resnet_time_scale_shift="scale_shift")
    ours_config = unet_config_from_diffusers(config)
    assert ours_config["num_classes"] == 10 and ours_config["use_scale_shift_norm"] is True
    model = randomize(UNetModel.from_config(ours_config)).eval()
    reference = diffusers.UNet2DConditionModel(**config).eval()
    reference.load_state_dict(convert_ldm_unet_checkpoint(original_layout(model), config), strict=True)
    x, t, ctx = inputs()
    y = torch.tensor([3, 9])
    with torch.no_grad():
        out = model(x, t, ctx, y)
        expected = reference(x, t, encoder_hidden_states=ctx, class_labels=y).sample
    assert (out - expected).abs().max() < 1e-4
    # and the diffusers -> minildm direction of the same weights
    back = convert_unet_state_dict(reference.state_dict(), source="diffusers")
    assert back.keys() == model.state_dict().keys()
    assert all(torch.equal(back[k], v) for k, v in model.state_dict().items())


def test_ema_weights_and_ckpt_files(tmp_path):
    config = unet_config_from_diffusers(SD_LIKE)
    model = randomize(UNetModel.from_config(config))
    checkpoint = original_layout(model)
    ema = {"model_ema.diffusion_model" + k.replace(".", ""): v + 1 for k, v in model.state_dict().items()}
    converted = convert_unet_state_dict({**checkpoint, **ema}, source="compvis", ema=True)
    assert all(torch.equal(converted[k], v + 1) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="no EMA copy"):
        convert_unet_state_dict(checkpoint, source="compvis", ema=True)

    torch.save({"state_dict": checkpoint, "global_step": 7}, tmp_path / "sd.ckpt")  # Lightning-style wrapper
    loaded = load_unet(tmp_path / "sd.ckpt", config=config)
    assert torch.equal(loaded.out[2].weight, model.out[2].weight)


class NotATensor:
    pass


def test_refuses_pickled_objects_and_bad_inputs(tmp_path):
    torch.save({"state_dict": {}, "callback": NotATensor()}, tmp_path / "unsafe.ckpt")
    with pytest.raises(ValueError, match="never unpickles"):
        load_unet(tmp_path / "unsafe.ckpt")
    with pytest.raises(ValueError, match="valid sources"):
        convert_unet_state_dict({}, source="kohya")
    with pytest.raises(ValueError, match="does not exist"):
        load_unet(tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="not supported"):
        unet_config_from_diffusers(dict(SD_LIKE, time_embedding_type="fourier"))
    with pytest.raises(ValueError, match="no UNet weights"):
        convert_unet_state_dict({"cond_stage_model.x": torch.zeros(1)}, source="compvis")


def test_wrong_config_for_weights_says_so(tmp_path):
    from safetensors.torch import save_file

    model = UNetModel.from_config(unet_config_from_diffusers(SD_LIKE))
    save_file(original_layout(model), str(tmp_path / "small.safetensors"))
    narrower = dict(unet_config_from_diffusers(SD_LIKE), model_channels=16)
    with pytest.raises(ValueError, match="do not fit UNet config"):
        load_unet(tmp_path / "small.safetensors", config=narrower)
