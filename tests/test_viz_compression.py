"""minildm.course.viz_compression: latent sizes, codebook statistics and the evaluation report the right numbers."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
import torch

from minildm.autoencoder import AutoencoderKL, VQModel
from minildm.course.viz_compression import (
    codebook_perplexity,
    codebook_usage,
    compression_ratio,
    evaluate_autoencoder,
    images_to_png,
    latent_shape,
    plot_tradeoff,
    png_to_images,
    reconstruct,
    unet_flops,
)
from minildm.metrics import psnr
from minildm.unet import UNetModel

TINY = dict(ch=8, num_res_blocks=1, attn_resolutions=(), resolution=16, num_groups=4, in_channels=3, out_ch=3)


@pytest.mark.parametrize("ch_mult, expected", [((1,), (3, 16, 16)), ((1, 2), (3, 8, 8)), ((1, 2, 2, 4), (3, 2, 2))])
def test_latent_shape_matches_the_encoder(ch_mult, expected):
    assert latent_shape((3, 16, 16), ch_mult, 3) == expected
    torch.manual_seed(0)
    model = AutoencoderKL(ch_mult=ch_mult, z_channels=3, embed_dim=3, **TINY)
    assert tuple(model.encode(torch.zeros(1, 3, 16, 16)).mean.shape[1:]) == expected


def test_latent_shape_rejects_bad_input():
    with pytest.raises(ValueError, match="not divisible"):
        latent_shape((3, 20, 20), (1, 2, 2, 4), 4)
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        latent_shape((32, 32), (1, 2), 4)


def test_compression_ratio():
    assert compression_ratio((3, 32, 32), (3, 8, 8)) == 16.0
    assert compression_ratio((3, 256, 256), (4, 32, 32)) == 48.0  # SD's kl-f8
    assert compression_ratio((1, 32, 32), (3, 16, 16)) == pytest.approx(4 / 3)


def test_codebook_usage_and_perplexity_known_values():
    uniform = torch.arange(8).repeat(5)  # every one of 8 codes 5 times
    assert codebook_usage(uniform, 16).item() == 0.5
    assert codebook_perplexity(uniform, 16).item() == pytest.approx(8.0, rel=1e-5)
    single = torch.full((3, 4, 4), 7)
    assert codebook_usage(single, 10).item() == pytest.approx(0.1)
    assert codebook_perplexity(single, 10).item() == pytest.approx(1.0)
    skewed = torch.tensor([0, 0, 0, 1])  # p = (3/4, 1/4)
    entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert codebook_perplexity(skewed, 2).item() == pytest.approx(math.exp(entropy), rel=1e-5)


def test_codebook_statistics_reject_bad_indices():
    with pytest.raises(ValueError, match="lie in"):
        codebook_usage(torch.tensor([0, 5]), 5)
    with pytest.raises(ValueError, match="integer"):
        codebook_perplexity(torch.tensor([0.0, 1.0]), 4)
    with pytest.raises(ValueError, match="empty"):
        codebook_usage(torch.tensor([], dtype=torch.long), 4)


def test_evaluate_vq_counts_codes_over_the_whole_set_not_per_batch():
    torch.manual_seed(0)
    model = VQModel(ch_mult=(1, 2), z_channels=3, embed_dim=3, n_embed=64, **TINY)
    images = torch.rand(20, 3, 16, 16) * 2 - 1
    with torch.no_grad():  # codes = latent vectors of the images themselves, so each batch picks its own
        z_flat = model.encode_pre_quant(images).permute(0, 2, 3, 1).reshape(-1, 3)  # (20*8*8, 3)
        model.quantize.embedding.weight.copy_(z_flat[torch.randperm(z_flat.shape[0])[:64]])
    result = evaluate_autoencoder(model, images, batch_size=4, speed_repeats=1)
    _, indices = reconstruct(model, images)
    assert result["codebook_usage"] == pytest.approx(codebook_usage(indices, 64).item())
    per_batch = [codebook_usage(reconstruct(model, images[i:i + 4])[1], 64).item() for i in range(0, 20, 4)]
    assert result["codebook_usage"] > max(per_batch)  # the whole set hits more codes than any single batch
    assert result["perplexity"] == pytest.approx(codebook_perplexity(indices, 64).item(), rel=1e-5)
    assert result["latent_shape"] == [3, 8, 8] and result["latent_numbers"] == 192 and result["compression"] == 4.0
    assert result["n_embed"] == 64 and result["images_per_s"] > 0 and result["eval_images"] == 20


def test_evaluate_kl_reports_mean_metrics_and_lpips_variant():
    torch.manual_seed(0)
    model = AutoencoderKL(ch_mult=(1, 2, 2), z_channels=4, embed_dim=4, **TINY)
    images = torch.rand(10, 3, 16, 16) * 2 - 1

    class HalfL1(torch.nn.Module):
        variant = "half-l1"

        def forward(self, x, y):
            return 0.5 * (x - y).abs().mean(dim=(1, 2, 3), keepdim=True)

    result = evaluate_autoencoder(model, images, lpips=HalfL1(), batch_size=3, speed_repeats=0)
    x_hat, indices = reconstruct(model, images)
    assert indices is None and result["codebook_usage"] is None and result["perplexity"] is None
    assert result["psnr"] == pytest.approx(psnr(x_hat, images).mean().item(), rel=1e-5)
    assert result["lpips"] == pytest.approx(0.5 * (x_hat - images).abs().mean().item(), rel=1e-4)
    assert result["lpips_variant"] == "half-l1" and result["latent_shape"] == [4, 4, 4]
    assert "images_per_s" not in result


def test_evaluate_rejects_other_models():
    with pytest.raises(ValueError, match="AutoencoderKL or VQModel"):
        evaluate_autoencoder(torch.nn.Conv2d(3, 3, 1), torch.zeros(2, 3, 8, 8))


def test_unet_flops_grow_with_latent_area():
    torch.manual_seed(0)
    unet = UNetModel(in_channels=3, out_channels=3, model_channels=16, channel_mult=(1, 2), num_res_blocks=1,
                     attention_resolutions=(), norm_num_groups=8)
    small, large = unet_flops(unet, (3, 8, 8)), unet_flops(unet, (3, 16, 16))
    assert small > 0
    assert large / small == pytest.approx(4.0, rel=0.05)  # convolutions: linear in h*w


def test_plot_tradeoff_draws_one_line_per_dataset_and_kind():
    rows = [{"dataset": d, "kind": k, "f": f, "latent_numbers": 3 * (32 // f) ** 2, "psnr": 30 - f + (k == "vq"),
             "lpips": None} for d in ("shapes", "digits") for k in ("kl", "vq") for f in (2, 4, 8)]
    ax = plot_tradeoff(rows, "psnr")
    assert len(ax.lines) == 4
    xs, ys = ax.lines[0].get_data()
    assert list(xs) == sorted(xs) and len(xs) == 3
    plt.close("all")
    with pytest.raises(ValueError, match="no row has a value"):
        plot_tradeoff(rows, "lpips")
    with pytest.raises(ValueError, match="accepted"):
        plot_tradeoff(rows, "fid")


@pytest.mark.parametrize("channels", [1, 3])
def test_png_round_trip_keeps_images_to_8_bits(channels):
    images = torch.rand(5, channels, 8, 6, generator=torch.Generator().manual_seed(0)) * 2 - 1
    text = images_to_png(images)
    assert isinstance(text, str) and text.isascii()
    back = png_to_images(text, 5)
    assert back.shape == images.shape
    assert (back - images).abs().max() <= 1 / 127.5 + 1e-6  # one 8-bit level
    with pytest.raises(ValueError, match="equal width"):
        png_to_images(text, 4)
