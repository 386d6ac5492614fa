"""Metrics against independent references: scikit-image's PSNR/SSIM, closed-form Fréchet distances."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from minildm.metrics import JudgeClassifier, frechet_distance, judge_accuracy, kernel_inception_distance, psnr, ssim


def _pair(seed=0, shape=(2, 3, 32, 32)):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g) * 2 - 1
    y = (x + 0.1 * torch.randn(shape, generator=g)).clamp(-1, 1)
    return x, y


def test_psnr_matches_skimage():
    x, y = _pair()
    ours = psnr(x, y)
    for i in range(x.shape[0]):
        ref = peak_signal_noise_ratio(((x[i] + 1) / 2).numpy(), ((y[i] + 1) / 2).numpy(), data_range=1.0)
        assert ours[i].item() == pytest.approx(ref, abs=1e-3)


def test_ssim_matches_skimage_gaussian_window():
    x, y = _pair(1)
    ours = ssim(x, y)
    for i in range(x.shape[0]):
        a = ((x[i] + 1) / 2).permute(1, 2, 0).double().numpy()
        b = ((y[i] + 1) / 2).permute(1, 2, 0).double().numpy()
        ref = structural_similarity(a, b, data_range=1.0, channel_axis=2, gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False)
        assert ours[i].item() == pytest.approx(ref, abs=2e-3)


def test_identical_images_have_ssim_one_and_high_psnr():
    x, _ = _pair(2)
    assert torch.allclose(ssim(x, x), torch.ones(2), atol=1e-5)
    assert (psnr(x, x) > 90).all()


def test_frechet_distance_of_gaussians_matches_closed_form():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(20000, 3, generator=g, dtype=torch.float64)
    b = torch.randn(20000, 3, generator=g, dtype=torch.float64) * 2 + 1
    # mean term 3 * 1^2; trace term 3 * (1 + 4 - 2 * 2) = 3
    assert frechet_distance(a, b) == pytest.approx(6.0, rel=0.05)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def test_trace_sqrt_product_equals_the_eigenvalues_of_the_product():
    from minildm.metrics.distance import trace_sqrt_product

    rng = np.random.default_rng(0)
    for dim in (1, 5, 32):
        m_a, m_b = rng.normal(size=(dim, dim)), rng.normal(size=(dim, 2 * dim))
        cov_a, cov_b = m_a @ m_a.T, m_b @ m_b.T / 2  # PSD, not commuting
        # independent route: A B is diagonalisable with real non-negative eigenvalues
        expected = np.sqrt(np.clip(np.linalg.eigvals(cov_a @ cov_b).real, 0, None)).sum()
        assert trace_sqrt_product(cov_a, cov_b) == pytest.approx(expected, rel=1e-8)
    # singular covariances (fewer samples than dimensions) stay finite and non-negative
    low_rank = rng.normal(size=(8, 3))
    assert trace_sqrt_product(low_rank @ low_rank.T, np.eye(8)) == pytest.approx(
        np.sqrt(np.linalg.eigvalsh(low_rank @ low_rank.T).clip(0)).sum(), rel=1e-8)
    features = torch.from_numpy(rng.normal(size=(4, 16)))
    assert frechet_distance(features, features * 2) >= 0.0


def test_kid_is_near_zero_for_same_distribution_and_positive_otherwise():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(500, 8, generator=g), torch.randn(500, 8, generator=g)
    assert abs(kernel_inception_distance(a, b)) < 0.05
    assert kernel_inception_distance(a, b + 1) > 0.5


def test_judge_learns_a_separable_problem():
    torch.manual_seed(0)
    judge = JudgeClassifier(in_channels=1, num_classes=2, width=8)
    images = torch.zeros(64, 1, 16, 16)
    labels = torch.arange(64) % 2
    images[labels == 1, :, :8] = 1.0  # class 1: bright top half
    images -= 0.5
    opt = torch.optim.AdamW(judge.parameters(), lr=3e-3)
    for step in range(60):
        loss, logs = judge.training_step({"image": images, "label": labels}, "model", step)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert judge_accuracy(judge, images, labels) == 1.0
    assert judge.features(images).shape == (64, 32)
