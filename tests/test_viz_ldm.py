"""minildm.course.viz_ldm: the explicit L_LDM matches training_step, SNR maths, plots and timers."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from minildm.autoencoder import AutoencoderKL
from minildm.course.viz_ldm import (
    effective_log_snr,
    latent_diffusion_loss,
    plot_cost_bars,
    plot_effective_snr,
    plot_loss_curve,
    sampling_seconds_per_image,
    show_class_grid,
    show_noised_latents,
    train_images_per_second,
)
from minildm.diffusion import NoiseSchedule
from minildm.ldm import LatentDiffusion

UNET = dict(in_channels=3, out_channels=3, model_channels=16, channel_mult=(1, 2), num_res_blocks=1,
            attention_resolutions=(2,), num_head_channels=8, context_dim=16, norm_num_groups=8)


def tiny_ldm(cond_drop_prob: float = 0.5, objective: str = "eps", weighting: str = "uniform") -> LatentDiffusion:
    torch.manual_seed(0)
    model = LatentDiffusion(unet=UNET, first_stage=None, image_size=8, objective=objective, loss_weighting=weighting,
                            conditioner={"type": "class", "num_classes": 4, "embed_dim": 16, "mode": "crossattn"},
                            cond_drop_prob=cond_drop_prob, sample_steps=3)
    with torch.no_grad():  # the UNet's zero-initialised output layers would make its output ignore the condition
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("objective,weighting", [("eps", "uniform"), ("v", "min_snr")])
def test_latent_diffusion_loss_is_training_step_with_its_random_draws_made_explicit(objective, weighting):
    model = tiny_ldm(objective=objective, weighting=weighting)
    z0 = torch.randn(6, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    torch.manual_seed(5)
    expected, _ = model.training_step({"latent": z0, "label": labels}, "model", 0)
    torch.manual_seed(5)  # the same draws, in training_step's order: t, noise, dropout mask
    t = torch.randint(0, model.schedule.num_timesteps, (6,))
    noise = torch.randn_like(z0)
    drop_mask = torch.rand(labels.shape) < model.cond_drop_prob
    assert drop_mask.any() and not drop_mask.all()  # the seed exercises both kept and dropped labels
    actual = latent_diffusion_loss(model, z0, t, noise, labels, drop_mask)
    torch.testing.assert_close(actual, expected)
    no_drop = latent_diffusion_loss(model, z0, t, noise, labels, torch.zeros(6, dtype=torch.bool))
    assert not torch.allclose(no_drop, actual)  # dropping labels changes the conditioning


def test_latent_diffusion_loss_drop_mask_means_null_class():
    model = tiny_ldm()
    z0, noise = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)
    t, labels = torch.tensor([10, 200, 500, 900]), torch.tensor([0, 1, 2, 3])
    dropped = latent_diffusion_loss(model, z0, t, noise, labels, torch.ones(4, dtype=torch.bool))
    null = latent_diffusion_loss(model, z0, t, noise, torch.full((4,), 4))
    torch.testing.assert_close(dropped, null)


def test_effective_log_snr_scales_snr_by_variance():
    schedule = NoiseSchedule.from_name("scaled_linear", 1000, 0.0015, 0.0195)
    base = effective_log_snr(schedule, 1.0)
    torch.testing.assert_close(base, schedule.snr(torch.arange(1000)).log())
    torch.testing.assert_close(effective_log_snr(schedule, 2.0), base + math.log(4.0))
    with pytest.raises(ValueError, match="data_std"):
        effective_log_snr(schedule, 0.0)
    fig = plot_effective_snr(schedule, {"unit": 1.0, "loud": 2.2})
    labels = [text.get_text() for text in fig.axes[0].get_legend().get_texts()]
    crossing = int((base > 0).sum())
    assert labels[0] == f"unit: SNR = 1 at t = {crossing}"
    assert int(labels[1].rsplit("= ", 1)[1]) > crossing  # louder data stays above SNR 1 for longer
    plt.close(fig)


def test_show_noised_latents_rows_share_noise_and_differ_by_scale():
    torch.manual_seed(0)
    autoencoder = AutoencoderKL(ch=8, ch_mult=(1, 2), num_res_blocks=1, resolution=8, z_channels=3, embed_dim=3,
                                num_groups=4, scale_factor=0.5).eval()
    schedule = NoiseSchedule.from_name("scaled_linear", 1000, 0.0015, 0.0195)
    image = torch.rand(3, 8, 8) * 2 - 1
    fig = show_noised_latents(autoencoder, image, schedule, [0, 600], {"c = 1": 1.0, "c = 0.1": 0.1},
                              generator=torch.Generator().manual_seed(0))
    grid = np.array(fig.axes).reshape(2, 2)
    pixels = [[np.asarray(ax.images[0].get_array(), dtype=float) for ax in row] for row in grid]
    assert np.abs(pixels[0][0] - pixels[1][0]).mean() < np.abs(pixels[0][1] - pixels[1][1]).mean()
    with pytest.raises(ValueError, match="one image"):
        show_noised_latents(autoencoder, image[None], schedule, [0], {"c": 1.0})
    plt.close(fig)


def test_show_class_grid_frames_judge_mistakes():
    images = torch.rand(6, 3, 8, 8) * 2 - 1
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    predictions = torch.tensor([0, 2, 2, 1, 1, 2])  # two mistakes
    fig = show_class_grid(images, labels, ["red circle", "blue square", "green triangle"], predictions)
    axes = np.array(fig.axes).reshape(2, 3)
    red = sum(ax.spines["top"].get_edgecolor() == (1.0, 0.0, 0.0, 1.0) for ax in axes.flat)
    assert red == 2
    assert axes[0, 1].get_title() == "blue\nsquare"
    with pytest.raises(ValueError, match="labels"):
        show_class_grid(images, labels[:3], ["a", "b", "c"])
    plt.close(fig)


def test_timers_return_rates_and_restore_mode():
    model = tiny_ldm()
    model.eval()
    rate = train_images_per_second(model, {"latent": torch.randn(4, 3, 8, 8), "label": torch.arange(4)}, steps=1)
    assert math.isfinite(rate) and rate > 0 and not model.training
    seconds = sampling_seconds_per_image(model, torch.arange(2), steps=2)
    assert math.isfinite(seconds) and seconds > 0
    with pytest.raises(ValueError, match="steps"):
        train_images_per_second(model, {"latent": torch.randn(2, 3, 8, 8)}, steps=0)


def test_plots_report_their_numbers():
    fig = plot_cost_bars({"pixels (3x32x32)": {"train img/s": 10.0, "sampling s/image": 0.5},
                          "latents (3x8x8)": {"train img/s": 200.0, "sampling s/image": 0.05}})
    bar_labels = [[text.get_text() for text in ax.texts] for ax in fig.axes]
    assert bar_labels == [["10", "200 (20x)"], ["0.5", "0.05 (0.1x)"]]
    assert [ax.get_title() for ax in fig.axes] == ["train img/s", "sampling s/image"]
    plt.close(fig)
    fig = plot_loss_curve([1.0, 0.5, 0.25, 0.125], window=2)
    smooth = fig.axes[0].lines[1].get_ydata()
    np.testing.assert_allclose(smooth, [0.75, 0.375, 0.1875])
    plt.close(fig)
    with pytest.raises(ValueError):
        plot_loss_curve([])
