"""minildm.course.viz_diffusion: the exact mixture denoiser, sample-quality measures, plots and the explorer."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from minildm.course.viz_diffusion import (  # noqa: E402
    GaussianMixture,
    SamplerExplorer,
    TrajectoryRecorder,
    nearest_distance,
    plot_schedules,
    show_forward_process,
    show_trajectory,
    sliced_wasserstein,
)
from minildm.diffusion import NoiseSchedule, make_denoiser, sample  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


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
                     generator=torch.Generator().manual_seed(0), disable=True)
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


def test_sliced_wasserstein_is_zero_for_permutations_and_the_shift_in_1d():
    a = torch.randn(500, 3, generator=torch.Generator().manual_seed(0))
    assert sliced_wasserstein(a, a[torch.randperm(500)]) == pytest.approx(0.0, abs=1e-12)
    b = torch.randn(300, 1, generator=torch.Generator().manual_seed(1))
    assert sliced_wasserstein(b, b + 0.5) == pytest.approx(0.5, abs=1e-6)  # 1-D: W2 of a shift is the shift
    with pytest.raises(ValueError, match="equal shape"):
        sliced_wasserstein(a, a[:10])


def test_nearest_distance():
    data = torch.zeros(3, 1, 2, 2)
    data[1] += 1.0
    samples = torch.stack([data[1], data[0] + 0.5, data[0] - 2.0])
    torch.testing.assert_close(nearest_distance(samples, data), torch.tensor([0.0, 0.5, 2.0], dtype=torch.float64))


def test_recorder_keeps_every_step_and_picks_evenly():
    schedule = NoiseSchedule.from_name("linear", 1000)
    recorder = TrajectoryRecorder()
    mixture = GaussianMixture.ring()
    sample(mixture.model_fn(schedule), (3, 2), "ddim", 7, schedule=schedule, callback=recorder, disable=True)
    assert len(recorder) == 7 and recorder.steps == list(range(7))
    assert recorder.x_t[0].shape == (3, 2) and recorder.x0_hat[-1].shape == (3, 2)
    assert recorder.pick(3) == [0, 3, 6]
    assert recorder.pick(100) == list(range(7))
    with pytest.raises(ValueError, match="nothing recorded"):
        TrajectoryRecorder().pick(2)


def test_figures_have_one_panel_per_item():
    schedules = {name: NoiseSchedule.from_name(name, 100) for name in ("linear", "cosine")}
    assert len(plot_schedules(schedules).axes) == 3
    fig = show_forward_process(torch.zeros(1, 8, 8), schedules, [0, 50, 99])
    assert len(fig.axes) == 2 * 3
    fig = show_trajectory([torch.zeros(5, 3, 4, 4)] * 4, labels=list("abcd"), max_samples=2)
    assert len(fig.axes) == 2 * 4
    with pytest.raises(ValueError, match="one label per frame"):
        show_trajectory([torch.zeros(1, 1, 4, 4)], labels=["a", "b"])


def test_explorer_runs_headless_and_reports_its_settings():
    explorer = SamplerExplorer(GaussianMixture.ring(), NoiseSchedule.from_name("scaled_linear"), n=64, steps=4)
    samples, path = explorer.run("heun", 4)
    assert samples.shape == (64, 2) and path.shape == (5, 12, 2)
    explorer.sampler.value = "heun"  # triggers update() through the widget
    fig = explorer.update()
    title = fig.axes[0].get_title()
    assert "heun" in title and "7 model calls" in title
    assert explorer.eta.disabled
    with pytest.raises(ValueError, match="2-D"):
        SamplerExplorer(GaussianMixture(torch.zeros(2, 3)), NoiseSchedule.from_name("linear"))
