"""minildm.diffusion.gaussian_mixture: the exact mixture denoiser against closed forms, numerics and sampling."""

from __future__ import annotations

import math

import pytest
import torch

from minildm.diffusion import NoiseSchedule, make_denoiser, sample
from minildm.diffusion.gaussian_mixture import GaussianMixture


def test_single_gaussian_denoiser_is_the_linear_shrinkage():
    mu, s, sigma = torch.tensor([[0.5, -1.0, 2.0]]), 0.7, 1.3
    mixture = GaussianMixture(mu, s)
    x = torch.randn(5, 3, dtype=torch.float64)
    expected = mu + s**2 / (s**2 + sigma**2) * (x - mu)  # E[x0 | x] for a Gaussian prior
    torch.testing.assert_close(mixture.denoise(x, sigma), expected)


def test_mixture_denoiser_matches_numerical_posterior_mean():
    mixture = GaussianMixture(torch.tensor([[-1.0], [0.8]]), torch.tensor([0.3, 0.1]), torch.tensor([0.3, 0.7]))
    grid = torch.linspace(-4, 4, 20001, dtype=torch.float64)  # x0 values
    prior = sum(w * torch.exp(-0.5 * ((grid - m) / s) ** 2) / s
                for w, m, s in zip(mixture.weights, mixture.means[:, 0], mixture.stds))
    for x, sigma in [(0.2, 0.5), (-2.0, 1.5), (1.0, 0.05)]:
        posterior = prior * torch.exp(-0.5 * ((x - grid) / sigma) ** 2)
        expected = float((grid * posterior).sum() / posterior.sum())
        got = float(mixture.denoise(torch.tensor([[x]], dtype=torch.float64), sigma))
        assert got == pytest.approx(expected, abs=1e-6), (x, sigma)


def test_point_masses_denoise_to_nearest_point_at_low_noise_and_mean_at_high_noise():
    data = torch.tensor([[[0.0, 1.0]], [[2.0, -1.0]], [[-3.0, 0.5]]])  # (K=3, 1, 2): event shape (1, 2)
    mixture = GaussianMixture(data)
    x = data[1:2] + 0.05
    torch.testing.assert_close(mixture.denoise(x, 0.01), data[1:2])
    far = mixture.denoise(torch.zeros(1, 1, 2), 1e4)
    torch.testing.assert_close(far, data.mean(0, keepdim=True), atol=1e-3, rtol=0)
    assert far.shape == (1, 1, 2)


def test_model_fn_is_the_exact_denoiser_through_make_denoiser():
    schedule = NoiseSchedule.from_name("scaled_linear", 1000)
    mixture = GaussianMixture.ring(num_components=4, radius=1.0, std=0.2)
    x = torch.randn(6, 2, dtype=torch.float64)
    for objective in ("eps", "x0"):
        denoise = make_denoiser(mixture.model_fn(schedule, objective), schedule, objective)
        for sigma in [float(schedule.sigmas[10]), 0.9, float(schedule.sigmas[-1])]:  # on and between training steps
            torch.testing.assert_close(denoise(x, torch.tensor(sigma)), mixture.denoise(x, sigma), atol=1e-6, rtol=1e-6)


def test_many_step_samples_follow_the_mixture():
    schedule = NoiseSchedule.from_name("scaled_linear", 1000)
    mixture = GaussianMixture(torch.tensor([[-1.0], [1.0]]), 0.1, torch.tensor([0.25, 0.75]))
    # Karras sigmas end at the smallest training sigma (0.03): the last step then barely shrinks the spread.
    samples = sample(mixture.model_fn(schedule), (4000, 1), "dpmpp_2m", 30, schedule=schedule, karras=True,
                     generator=torch.Generator().manual_seed(0), progress=False)
    right = (samples > 0).double().mean()
    assert float(right) == pytest.approx(0.75, abs=0.03)
    assert float(samples[samples > 0].std()) == pytest.approx(0.1, abs=0.02)


def test_sample_matches_mixture_moments():
    mixture = GaussianMixture(torch.tensor([[-2.0, 0.0], [2.0, 0.0]]), torch.tensor([0.5, 1.0]), torch.tensor([1.0, 3.0]))
    x = mixture.sample(20000, torch.Generator().manual_seed(0))
    assert x.shape == (20000, 2) and x.dtype == torch.float32
    assert float(x[:, 0].mean()) == pytest.approx(0.25 * -2 + 0.75 * 2, abs=0.05)
    assert float(x[:, 1].std()) == pytest.approx(math.sqrt(0.25 * 0.25 + 0.75 * 1.0), abs=0.03)


def test_mixture_rejects_bad_arguments():
    with pytest.raises(ValueError, match="one row per component"):
        GaussianMixture(torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="stds"):
        GaussianMixture(torch.zeros(2, 2), -1.0)
    with pytest.raises(ValueError, match="weights"):
        GaussianMixture(torch.zeros(2, 2), 0.1, torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="coordinates"):
        GaussianMixture(torch.zeros(2, 2)).denoise(torch.zeros(1, 3), 1.0)

