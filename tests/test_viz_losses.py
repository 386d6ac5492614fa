"""Tests for minildm.course.viz_losses: receptive fields, sharpness measures and the notebook-03 plots."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from minildm.course.viz_losses import (gradient_magnitude, high_frequency_energy, plot_gan_losses, receptive_field,
                                       show_zoomed)
from minildm.losses import NLayerDiscriminator


@pytest.mark.parametrize("n_layers, expected", [(1, 16), (2, 34), (3, 70)])
def test_receptive_field_of_patchgan_matches_pix2pix(n_layers, expected):
    assert receptive_field(NLayerDiscriminator(3, ndf=8, n_layers=n_layers)) == expected


def test_receptive_field_is_the_support_of_one_logit_gradient():
    disc = NLayerDiscriminator(1, ndf=4, n_layers=2).eval()
    x = torch.randn(1, 1, 96, 96, requires_grad=True)
    logits = disc(x)  # (1, 1, h, w)
    logits[0, 0, logits.shape[2] // 2, logits.shape[3] // 2].backward()
    rows = torch.nonzero(x.grad[0, 0].abs().sum(dim=1)).flatten()
    cols = torch.nonzero(x.grad[0, 0].abs().sum(dim=0)).flatten()
    assert rows.max() - rows.min() + 1 == receptive_field(disc)
    assert cols.max() - cols.min() + 1 == receptive_field(disc)


def test_receptive_field_rejects_models_without_convs():
    with pytest.raises(ValueError, match="Conv2d"):
        receptive_field(nn.Linear(2, 2))


def test_gradient_magnitude_is_zero_on_flat_images_and_drops_with_blur():
    assert torch.all(gradient_magnitude(torch.full((2, 3, 8, 8), 0.3)) == 0)
    g = torch.Generator().manual_seed(0)
    sharp = torch.randn(2, 3, 16, 16, generator=g)
    blurred = F.avg_pool2d(sharp, 3, stride=1, padding=1)
    assert torch.all(gradient_magnitude(blurred) < 0.6 * gradient_magnitude(sharp))
    ramp = torch.arange(8.0).repeat(8, 1)[None, None]  # slope 1 along x
    assert torch.allclose(gradient_magnitude(ramp), torch.tensor([1.0]))


def test_high_frequency_energy_separates_fine_and_coarse_patterns():
    x = torch.arange(32.0)
    fine = torch.cos(torch.pi * x).repeat(32, 1)[None, None]  # 0.5 cycles per pixel
    coarse = torch.cos(2 * torch.pi * x / 16).repeat(32, 1)[None, None]  # 1/16 cycles per pixel
    assert torch.allclose(high_frequency_energy(fine), torch.tensor([1.0]))
    assert torch.allclose(high_frequency_energy(coarse), torch.tensor([0.0]), atol=1e-6)
    assert high_frequency_energy(torch.ones(1, 3, 8, 8)).item() == 0.0
    with pytest.raises(ValueError, match="cutoff"):
        high_frequency_energy(fine, cutoff=0.6)


def test_plots_draw_the_expected_panels():
    fig = plot_gan_losses()
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) == 5 and len(fig.axes[1].lines) == 3
    plt.close(fig)
    images = torch.rand(3, 3, 16, 16) * 2 - 1
    fig = show_zoomed({"real": images, "other": images.flip(-1)}, crop=(4, 4, 8))
    assert len(fig.axes) == 2 * 2 * 3
    plt.close(fig)
    fig = show_zoomed({"real": images}, crop=[(0, 0, 4), (2, 2, 8), (8, 8, 8)])
    assert fig.axes[3].get_images()[0].get_array().shape[:2] == (8, 8)
    plt.close(fig)
    with pytest.raises(ValueError, match="crop"):
        show_zoomed({"real": images}, crop=(10, 10, 8))
    with pytest.raises(ValueError, match="one per image"):
        show_zoomed({"real": images}, crop=[(0, 0, 4)] * 2)
