"""minildm.course.viz_ldm: SNR maths and plots."""

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
    plot_cost_bars,
    plot_effective_snr,
    plot_loss_curve,
    show_class_grid,
    show_noised_latents,
)
from minildm.diffusion import NoiseSchedule

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
