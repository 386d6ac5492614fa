"""Stable Diffusion v1 end to end from local files: minildm's LatentDiffusion vs diffusers' StableDiffusionPipeline.

No downloads: tiny random-weight SD components (a CLIP text transformer with a hand-written BPE
vocabulary, an SD-shaped UNet and VAE) are built with transformers / diffusers, saved as a diffusers
folder and as one original-layout checkpoint, and both must give diffusers' image for the same seed,
scheduler and guidance scale.
"""

from __future__ import annotations

import json
import string
import subprocess
import sys

import pytest
import torch

from minildm.conditioning.clip_text import FrozenCLIPTextConditioner, clip_text_model
from minildm.pretrained.stable_diffusion import load_stable_diffusion, missing_files, save_stable_diffusion
from minildm.utils import count_parameters

diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")

PROMPTS = ["a red cat", "an cat"]
SD_SCHEDULER = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                    set_alpha_to_one=False, skip_prk_steps=True, steps_offset=1)  # SD v1's scheduler_config.json


def tiny_tokenizer(folder):
    """A CLIP BPE tokenizer with a 64-token vocabulary: letters, letters + </w>, a few merges, the two specials."""
    folder.mkdir(parents=True, exist_ok=True)
    letters = list(string.ascii_lowercase)
    merges = ["r e", "re d</w>", "c a", "ca t</w>", "a n"]
    tokens = ["<|startoftext|>", "<|endoftext|>", *letters, *(c + "</w>" for c in letters), "re", "red</w>", "ca",
              "cat</w>", "an"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return transformers.CLIPTokenizer(vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"),
                                      model_max_length=16)


def tiny_pipeline(tmp_path, scheduler="DDIMScheduler"):
    """diffusers' StableDiffusionPipeline on tiny random components (16 x 16 images, 4 x 8 x 8 latents)."""
    torch.manual_seed(0)
    text = clip_text_model(dict(vocab_size=64, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                                num_attention_heads=2, max_position_embeddings=16, bos_token_id=0, eos_token_id=1,
                                pad_token_id=1))
    unet = diffusers.UNet2DConditionModel(
        sample_size=8, block_out_channels=(32, 64), layers_per_block=1, cross_attention_dim=128,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        attention_head_dim=8, norm_num_groups=32)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # random everywhere (diffusers zero-initialises nothing here, but be sure)
        for p in unet.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.1)
    vae = diffusers.AutoencoderKL(block_out_channels=(32, 64), layers_per_block=1, latent_channels=4,
                                  norm_num_groups=32, sample_size=16, down_block_types=("DownEncoderBlock2D",) * 2,
                                  up_block_types=("UpDecoderBlock2D",) * 2)
    pipe = diffusers.StableDiffusionPipeline(
        vae=vae.eval(), text_encoder=text.eval(), tokenizer=tiny_tokenizer(tmp_path / "tokenizer-src"),
        unet=unet.eval(), scheduler=getattr(diffusers, scheduler).from_config(SD_SCHEDULER),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def reference_images(pipe, steps=4, guidance_scale=5.0):
    """diffusers' images in [0, 1], (B, 3, 16, 16)."""
    images = pipe(PROMPTS, num_inference_steps=steps, guidance_scale=guidance_scale,
                  generator=torch.Generator().manual_seed(0), output_type="pt").images
    inside = ((images > 0.01) & (images < 0.99)).float().mean()
    assert inside > 0.5 and images.std() > 0.05  # a real image to compare, not a saturated one
    return images


def minildm_images(ldm, steps=4, guidance_scale=5.0, **options):
    images = ldm.sample(cond={"caption": PROMPTS}, steps=steps, guidance_scale=guidance_scale,
                        generator=torch.Generator().manual_seed(0), progress=False, **options)
    return (images + 1) / 2


@pytest.mark.parametrize("scheduler", ["DDIMScheduler", "PNDMScheduler"])
def test_diffusers_folder_gives_diffusers_image(tmp_path, scheduler):
    pipe = tiny_pipeline(tmp_path, scheduler)
    pipe.save_pretrained(tmp_path / "sd")
    expected = reference_images(pipe)
    ldm = load_stable_diffusion(tmp_path / "sd")
    assert ldm.sampler == {"DDIMScheduler": "ddim", "PNDMScheduler": "plms"}[scheduler]
    assert ldm.latent_shape == (4, 8, 8) and ldm.conditioner.max_length == 16
    assert (minildm_images(ldm) - expected).abs().max() < 1e-4


def test_single_checkpoint_file_gives_diffusers_image(tmp_path):
    pipe = tiny_pipeline(tmp_path)
    pipe.save_pretrained(tmp_path / "sd")
    expected = reference_images(pipe)
    path = save_stable_diffusion(load_stable_diffusion(tmp_path / "sd"), tmp_path / "single" / "sd.safetensors")
    from safetensors.torch import load_file

    keys = list(load_file(str(path)))
    assert {k.split(".")[0] for k in keys} == {"model", "first_stage_model", "cond_stage_model"}
    assert "cond_stage_model.transformer.text_model.final_layer_norm.weight" in keys  # the released files' names
    # the layout is the original one: diffusers' own single-file reader gives the same image
    theirs = diffusers.StableDiffusionPipeline.from_single_file(
        str(path), config=str(tmp_path / "sd"), local_files_only=True, safety_checker=None,
        requires_safety_checker=False)
    theirs.set_progress_bar_config(disable=True)
    assert (reference_images(theirs) - expected).abs().max() < 1e-6
    ldm = load_stable_diffusion(path, image_size=16)  # tokenizer/ beside the file; architecture read off the weights
    assert ldm.sampler == "plms" and ldm.sampler_options["steps_offset"] == 1  # SD v1's defaults for a single file
    assert (minildm_images(ldm, sampler="ddim") - expected).abs().max() < 1e-4


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_inference_close_to_float32(tmp_path, dtype):
    pipe = tiny_pipeline(tmp_path)
    pipe.save_pretrained(tmp_path / "sd")
    full = minildm_images(load_stable_diffusion(tmp_path / "sd"))
    ldm = load_stable_diffusion(tmp_path / "sd", dtype=dtype)
    assert {p.dtype for p in ldm.parameters()} == {dtype}
    half = minildm_images(ldm)
    assert half.dtype == torch.float32  # the sampler keeps float32; the networks run in 16 bits
    assert 0 < (half - full).abs().mean() < 0.02


def test_missing_weights_name_the_files_and_where_to_put_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="v1-5-pruned-emaonly.safetensors.*weights/sd-v1"):
        load_stable_diffusion(tmp_path / "nothing-here")
    pipe = tiny_pipeline(tmp_path)
    pipe.save_pretrained(tmp_path / "sd")
    for f in (tmp_path / "sd" / "text_encoder").iterdir():
        f.unlink()
    assert missing_files(tmp_path / "sd") == [f"{tmp_path}/sd/text_encoder/config.json",
                                              f"{tmp_path}/sd/text_encoder/model.safetensors"]
    with pytest.raises(FileNotFoundError, match="missing .*text_encoder/model.safetensors"):
        load_stable_diffusion(tmp_path / "sd")
    lonely = tmp_path / "lonely" / "sd.safetensors"
    lonely.parent.mkdir()
    lonely.write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="holds no tokenizer.*vocab.json and merges.txt"):
        load_stable_diffusion(lonely)
    pickle = tmp_path / "lonely" / "sd.ckpt"
    pickle.write_bytes(b"")
    with pytest.raises(ValueError, match=r"\.safetensors only.*pickle"):
        load_stable_diffusion(pickle)


def test_cli_sample_sd_v1(tmp_path):
    command = [sys.executable, "-m", "minildm", "sample", "sd-v1", "--weights", str(tmp_path / "absent"),
               "--prompt", "a red cat"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("minildm sample: no Stable Diffusion v1 weights at")
    assert "tokenizer/" in result.stderr
    pipe = tiny_pipeline(tmp_path)
    pipe.save_pretrained(tmp_path / "sd")
    out = tmp_path / "samples.png"
    command[6] = str(tmp_path / "sd")
    result = subprocess.run([*command, "--prompt", "an cat", "--steps", "2", "--out", str(out), "--device", "cpu"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert out.is_file() and "wrote 2 samples" in result.stdout


def test_clip_conditioner_tokens_null_caption_and_dropout(tmp_path):
    conditioner = FrozenCLIPTextConditioner(dict(vocab_size=64, hidden_size=64, intermediate_size=64,
                                                 num_hidden_layers=1, num_attention_heads=1,
                                                 max_position_embeddings=16),
                                            tiny_tokenizer(tmp_path / "tok"))
    ids = conditioner.prepare({"caption": ["a red cat"]})["caption"]
    assert ids.tolist() == [[0, 28, 55, 57] + [1] * 12]  # <|startoftext|> a red cat, padded with <|endoftext|>
    null = conditioner.null_cond({"caption": ids.expand(3, -1)})["caption"]
    assert null.shape == (3, 16) and null[0].tolist() == [0] + [1] * 15  # "" is <|startoftext|> + padding
    context = conditioner.encode({"caption": ids})["context"]
    assert context.shape == (1, 16, 64) and not context.requires_grad
    assert not any(p.requires_grad for p in conditioner.parameters())
    conditioner.train()
    assert not conditioner.text_encoder.training  # frozen: stays in eval mode
    dropped = conditioner.drop_cond({"caption": ids.expand(1000, -1)}, 0.3, torch.Generator().manual_seed(0))
    fraction = (dropped["caption"] == null[:1]).all(dim=1).float().mean()
    assert 0.25 < fraction < 0.35
    with pytest.raises(ValueError, match="list of strings"):
        conditioner.prepare({"caption": "a red cat"})


def test_clip_vit_l_14_text_encoder_parameter_count():
    with torch.device("meta"):
        encoder = clip_text_model()
    assert count_parameters(encoder) == 123_060_480  # openai/clip-vit-large-patch14, text half
