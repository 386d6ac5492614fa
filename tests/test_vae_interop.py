"""VAE weight interop: diffusers folders and original (CompVis / SD) checkpoints give the same outputs as the reference."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from safetensors.torch import save_file

diffusers = pytest.importorskip("diffusers")
from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint  # noqa: E402

from minildm.autoencoder import AutoencoderKL  # noqa: E402
from minildm.pretrained import cli  # noqa: E402
from minildm.pretrained.vae import convert_vae_state_dict, load_vae, save_vae, vae_state_dict_to_diffusers  # noqa: E402

DIFFUSERS_CONFIG = dict(
    in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
    block_out_channels=(32, 64, 64), layers_per_block=2, latent_channels=4, norm_num_groups=8, sample_size=32,
    scaling_factor=0.25,
)
MINILDM_CONFIG = dict(ch=32, ch_mult=(1, 2, 2), num_res_blocks=2, z_channels=4, embed_dim=4, resolution=32, num_groups=8)


def _reference_vae(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    vae = diffusers.AutoencoderKL(**DIFFUSERS_CONFIG).eval()
    with torch.no_grad():  # perturb the default init so norms/biases are not all 1/0
        for param in vae.parameters():
            param.add_(torch.randn_like(param) * 0.02)
    return vae


def _compare(ours: AutoencoderKL, reference: torch.nn.Module) -> None:
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        posterior = ours.encode(x)
        reference_posterior = reference.encode(x).latent_dist
        z = posterior.mean
        ours_decoded = ours.decode(z)
        reference_decoded = reference.decode(z).sample
    assert (posterior.mean - reference_posterior.mean).abs().max() < 1e-4
    assert (posterior.logvar - reference_posterior.logvar).abs().max() < 1e-4
    assert (ours_decoded - reference_decoded).abs().max() < 1e-4
    assert ours_decoded.abs().mean() > 1e-3  # a real signal, not two zero outputs


def test_diffusers_folder_loads_and_matches(tmp_path):
    reference = _reference_vae()
    reference.save_pretrained(tmp_path / "vae", safe_serialization=True)
    ours = load_vae(tmp_path / "vae").eval()
    assert ours.scale_factor.item() == pytest.approx(0.25)
    assert [level.block[0].out_channels for level in ours.encoder.down] == [32, 64, 64]
    _compare(ours, reference)
    # a pipeline folder with the VAE under vae/ works too
    assert torch.equal(load_vae(tmp_path).decoder.conv_out.weight, ours.decoder.conv_out.weight)


def test_original_layout_checkpoint_matches_diffusers_converter(tmp_path):
    torch.manual_seed(3)
    ours = AutoencoderKL(**MINILDM_CONFIG).eval()
    with torch.no_grad():
        for param in ours.parameters():
            param.add_(torch.randn_like(param) * 0.02)
    original = {f"first_stage_model.{k}": v for k, v in ours.state_dict().items() if k != "scale_factor"}
    original["scale_factor"] = torch.tensor(0.5)
    # the oracle: diffusers' own original -> diffusers converter
    reference = diffusers.AutoencoderKL(**DIFFUSERS_CONFIG).eval()
    reference.load_state_dict(convert_ldm_vae_checkpoint(original, dict(reference.config)))
    _compare(ours, reference)
    # our own diffusers writer agrees with diffusers' converter, key for key
    ours_as_diffusers = vae_state_dict_to_diffusers(ours.state_dict())
    assert set(ours_as_diffusers) == set(reference.state_dict())
    for key, value in reference.state_dict().items():
        assert torch.equal(ours_as_diffusers[key], value), key
    # and the original checkpoint file loads into minildm with its scale factor
    save_file({k: v.contiguous() for k, v in original.items()}, str(tmp_path / "sd.safetensors"))
    loaded = load_vae(tmp_path / "sd.safetensors", config={"num_groups": 8, "resolution": 32}).eval()
    assert loaded.scale_factor.item() == pytest.approx(0.5)
    _compare(loaded, reference)


def test_diffusers_conversion_round_trips_and_reshapes_attention():
    torch.manual_seed(0)
    ours = AutoencoderKL(**MINILDM_CONFIG)
    state = ours.state_dict()
    diffusers_state = vae_state_dict_to_diffusers(state)
    assert diffusers_state["encoder.mid_block.attentions.0.to_q.weight"].shape == (64, 64)
    assert torch.equal(diffusers_state["decoder.up_blocks.0.resnets.0.conv1.weight"], state["decoder.up.2.block.0.conv1.weight"])
    back = convert_vae_state_dict(diffusers_state, source="diffusers")
    assert set(back) == set(state) - {"scale_factor"}
    assert all(torch.equal(back[k], state[k]) for k in back)
    with pytest.raises(ValueError, match="accepted"):
        convert_vae_state_dict(state, source="ldm")


def test_pickled_checkpoint_is_refused_with_a_clear_error(tmp_path):
    # Lightning checkpoints often pickle an argparse.Namespace of hyper-parameters: not loadable with weights_only
    torch.save({"state_dict": {}, "hyper_parameters": argparse.Namespace(lr=1.0)}, tmp_path / "bad.ckpt")
    with pytest.raises(ValueError, match="weights_only"):
        load_vae(tmp_path / "bad.ckpt")
    ours = AutoencoderKL(**MINILDM_CONFIG)
    torch.save({"state_dict": {f"first_stage_model.{k}": v for k, v in ours.state_dict().items()}}, tmp_path / "ok.ckpt")
    loaded = load_vae(tmp_path / "ok.ckpt", config={"num_groups": 8, "resolution": 32})
    assert torch.equal(loaded.encoder.conv_in.weight, ours.encoder.conv_in.weight)


def test_convert_cli_writes_loadable_folders(tmp_path):
    reference = _reference_vae(seed=5)
    reference.save_pretrained(tmp_path / "src", safe_serialization=True)
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    assert cli.run(parser.parse_args([str(tmp_path / "src"), str(tmp_path / "mini")])) == 0
    assert json.loads((tmp_path / "mini" / "config.json").read_text())["params"]["num_groups"] == 8
    _compare(load_vae(tmp_path / "mini").eval(), reference)
    assert cli.run(parser.parse_args([str(tmp_path / "mini"), str(tmp_path / "back"), "--to", "diffusers"])) == 0
    _compare(load_vae(tmp_path / "mini").eval(), diffusers.AutoencoderKL.from_pretrained(tmp_path / "back").eval())


def test_save_vae_rejects_unknown_format(tmp_path):
    with pytest.raises(ValueError, match="accepted"):
        save_vae(AutoencoderKL(**MINILDM_CONFIG), tmp_path, to="onnx")
