"""minildm.course.viz_compression: the trade-off plot and the PNG text the benchmark stores."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
import torch

from minildm.course.viz_compression import plot_tradeoff
from minildm.data import images_to_png, png_to_images


def test_plot_tradeoff_draws_one_line_per_dataset_and_kind():
    rows = [{"dataset": d, "kind": k, "f": f, "latent_numbers": 3 * (32 // f) ** 2, "psnr_db": 30 - f + (k == "vq"),
             "lpips": None} for d in ("shapes", "digits") for k in ("kl", "vq") for f in (2, 4, 8)]
    ax = plot_tradeoff(rows, "psnr_db")
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
