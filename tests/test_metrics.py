"""Metrics against independent references (scikit-image PSNR/SSIM, closed forms) and the evaluations built on them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from minildm.autoencoder import AutoencoderKL, VQModel, codebook_perplexity, codebook_usage
from minildm.data import balanced_labels
from minildm.ldm import LatentDiffusion
from minildm.metrics import (JudgeClassifier, class_diversity, compression_ratio, evaluate_autoencoder, frechet_distance,
                             judge_accuracy, judge_features, kernel_inception_distance, nearest_distance, psnr,
                             reconstruct, sample_and_judge, sampling_seconds_per_image, sliced_wasserstein, ssim,
                             train_images_per_second, unet_flops)
from minildm.unet import UNetModel

TINY_AE = dict(ch=8, num_res_blocks=1, attn_resolutions=(), resolution=16, num_groups=4, in_channels=3, out_ch=3)
TINY_UNET = dict(in_channels=3, out_channels=3, model_channels=16, channel_mult=(1, 2), num_res_blocks=1,
                 attention_resolutions=(2,), num_head_channels=8, context_dim=16, norm_num_groups=8)


def _tiny_class_ldm() -> LatentDiffusion:
    torch.manual_seed(0)
    return LatentDiffusion(unet=TINY_UNET, first_stage=None, image_size=8, sample_steps=3,
                           conditioner={"type": "class", "num_classes": 4, "embed_dim": 16, "mode": "crossattn"})


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



def test_compression_ratio():
    assert compression_ratio((3, 32, 32), (3, 8, 8)) == 16.0
    assert compression_ratio((3, 256, 256), (4, 32, 32)) == 48.0  # SD's kl-f8
    assert compression_ratio((1, 32, 32), (3, 16, 16)) == pytest.approx(4 / 3)


def test_evaluate_vq_counts_codes_over_the_whole_set_not_per_batch():
    torch.manual_seed(0)
    model = VQModel(ch_mult=(1, 2), z_channels=3, embed_dim=3, n_embed=64, **TINY_AE)
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
    model = AutoencoderKL(ch_mult=(1, 2, 2), z_channels=4, embed_dim=4, **TINY_AE)
    images = torch.rand(10, 3, 16, 16) * 2 - 1

    class HalfL1(torch.nn.Module):
        variant = "half-l1"

        def forward(self, x, y):
            return 0.5 * (x - y).abs().mean(dim=(1, 2, 3), keepdim=True)

    result = evaluate_autoencoder(model, images, lpips=HalfL1(), batch_size=3, speed_repeats=0)
    x_hat, indices = reconstruct(model, images)
    assert indices is None and not {"codebook_usage", "perplexity", "n_embed"} & set(result)
    assert result["psnr_db"] == pytest.approx(psnr(x_hat, images).mean().item(), rel=1e-5)
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



def test_timers_return_rates_and_restore_mode():
    model = _tiny_class_ldm()
    model.eval()
    rate = train_images_per_second(model, {"latent": torch.randn(4, 3, 8, 8), "label": torch.arange(4)}, steps=1)
    assert math.isfinite(rate) and rate > 0 and not model.training
    seconds = sampling_seconds_per_image(model, torch.arange(2), steps=2)
    assert math.isfinite(seconds) and seconds > 0
    with pytest.raises(ValueError, match="steps"):
        train_images_per_second(model, {"latent": torch.randn(2, 3, 8, 8)}, steps=0)



def test_class_diversity_averages_within_class_pair_distances():
    features = torch.tensor([[0.0, 0.0], [3.0, 4.0], [1.0, 1.0], [1.0, 1.0], [9.0, 9.0]])
    labels = torch.tensor([0, 0, 1, 1, 2])  # class 0: distance 5; class 1: 0; class 2: one sample, skipped
    assert class_diversity(features, labels) == pytest.approx(2.5)
    three = torch.tensor([[0.0], [1.0], [3.0]])
    assert class_diversity(three, torch.zeros(3)) == pytest.approx((1 + 3 + 2) / 3)
    with pytest.raises(ValueError, match="two or more"):
        class_diversity(features[:1], labels[:1])
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        class_diversity(features, labels[:3])


def test_sample_and_judge_does_not_depend_on_the_batch_size():
    ldm = _tiny_class_ldm().eval()
    torch.manual_seed(0)
    judge = JudgeClassifier(in_channels=3, num_classes=4, width=8).eval()
    labels = balanced_labels(4, 6)  # 2 per class
    real = judge_features(judge, torch.rand(10, 3, 8, 8) * 2 - 1)
    one = sample_and_judge(ldm, judge, labels, real, steps=2, batch_size=8)
    other = sample_and_judge(ldm, judge, labels, real, steps=2, batch_size=3)
    assert one["judge_accuracy"] == other["judge_accuracy"]
    assert one["judge_frechet_distance"] == pytest.approx(other["judge_frechet_distance"], rel=1e-4)
    samples = ldm.sample(labels=labels, steps=2, generator=torch.Generator().manual_seed(0), progress=False)
    assert one["judge_accuracy"] == pytest.approx(judge_accuracy(judge, samples, labels))
    assert one["sample_s_per_image"] > 0 and one["sample_cpu_s_per_image"] > 0

