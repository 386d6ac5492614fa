"""Sample-quality metrics against oracles: closed forms, brute-force loops and independent formulas.

FD of Gaussians vs scipy's matrix square root; precision/recall and density/coverage vs per-point
loops; KID vs scikit-learn's polynomial kernel; IS of uniform and one-hot predictors; memorization of a
copying generator; feature extractors (a torchvision Inception-v3 state dict written in the real
format); `evaluate_samples` on two halves of the real shapes test set; rFD; `sample_like`; `minildm eval`.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy.linalg import sqrtm
from sklearn.metrics.pairwise import polynomial_kernel as sklearn_polynomial_kernel

from minildm.metrics import (METRICS, density_coverage, evaluate_samples, feature_extractor, frechet_distance,
                             frechet_distance_infinity, gaussian_frechet_distance, inception_score,
                             kernel_inception_distance, kid_subsets, memorization, precision_recall,
                             reconstruction_fd, sample_like, unbiased_mmd2)


def _random_covariance(rng: np.random.Generator, dim: int) -> np.ndarray:
    m = rng.normal(size=(dim, dim))
    return m @ m.T / dim + 0.1 * np.eye(dim)


# --- Fréchet distance -------------------------------------------------------------------------------
def test_gaussian_frechet_distance_matches_the_closed_form_with_scipy_sqrtm():
    rng = np.random.default_rng(0)
    for dim in (1, 4, 16):
        mu_a, mu_b = rng.normal(size=dim), rng.normal(size=dim)
        cov_a, cov_b = _random_covariance(rng, dim), _random_covariance(rng, dim)
        expected = ((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * sqrtm(cov_a @ cov_b).real)
        assert gaussian_frechet_distance(mu_a, cov_a, mu_b, cov_b) == pytest.approx(expected, rel=1e-7)
    assert gaussian_frechet_distance(mu_a, cov_a, mu_a, cov_a) == pytest.approx(0.0, abs=1e-8)
    with pytest.raises(ValueError, match="different sizes"):
        gaussian_frechet_distance(mu_a, cov_a, mu_b[:3], cov_b[:3, :3])


def test_frechet_distance_of_samples_approaches_the_distance_of_their_gaussians():
    rng = np.random.default_rng(1)
    dim = 6
    mu_a, mu_b = rng.normal(size=dim), rng.normal(size=dim)
    cov_a, cov_b = _random_covariance(rng, dim), _random_covariance(rng, dim)
    a = torch.from_numpy(rng.multivariate_normal(mu_a, cov_a, size=40000))
    b = torch.from_numpy(rng.multivariate_normal(mu_b, cov_b, size=40000))
    assert frechet_distance(a, b) == pytest.approx(gaussian_frechet_distance(mu_a, cov_a, mu_b, cov_b), rel=0.03)
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        frechet_distance(a[:1], b)


def test_fd_infinity_removes_the_one_over_n_bias():
    """Two samples of ONE Gaussian: FD on N samples is about c / N > 0; the extrapolation to 1/N = 0 is about 0."""
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(4000, 8, generator=g, dtype=torch.float64), torch.randn(2000, 8, generator=g,
                                                                                      dtype=torch.float64)
    fit = frechet_distance_infinity(real, fake, sizes=[100, 200, 400, 800, 2000], repeats=3, generator=g)
    assert fit.values[0] > 0.05 and fit.values[0] > fit.values[-1]  # the bias shrinks as N grows
    assert abs(fit.fd_infinity) < 0.2 * fit.values[0] and fit.slope > 0
    with pytest.raises(ValueError, match="sample counts"):
        frechet_distance_infinity(real, fake, sizes=[100, 3000])


# --- KID ---------------------------------------------------------------------------------------------
def _mmd2_by_sklearn(a: np.ndarray, b: np.ndarray) -> float:
    """Gretton et al. 2012 Eq. 3 written with scikit-learn's kernel: gamma = 1/d, coef0 = 1, degree 3."""
    kernel = lambda x, y: sklearn_polynomial_kernel(x, y, degree=3, gamma=1.0 / a.shape[1], coef0=1)  # noqa: E731
    n, m = len(a), len(b)
    k_aa, k_bb = kernel(a, a), kernel(b, b)
    return ((k_aa.sum() - np.trace(k_aa)) / (n * (n - 1)) + (k_bb.sum() - np.trace(k_bb)) / (m * (m - 1))
            - 2 * kernel(a, b).mean())


def test_unbiased_mmd2_matches_an_independent_formula():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(70, 5)), rng.normal(size=(50, 5)) * 1.3 + 0.2
    assert unbiased_mmd2(torch.from_numpy(a), torch.from_numpy(b)) == pytest.approx(_mmd2_by_sklearn(a, b), rel=1e-10)


def test_kid_averages_the_estimate_over_random_subsets():
    rng = np.random.default_rng(3)
    a, b = torch.from_numpy(rng.normal(size=(300, 4))), torch.from_numpy(rng.normal(size=(200, 4)) + 0.5)
    values = kid_subsets(a, b, num_subsets=20, subset_size=50, generator=torch.Generator().manual_seed(0))
    assert values.shape == (20,) and values.std() > 0  # different subsets, different estimates
    # each value is the unbiased estimate on one subset: redraw the same subsets and compare
    g = torch.Generator().manual_seed(0)
    for value in values[:3]:
        ia, ib = torch.randperm(300, generator=g)[:50], torch.randperm(200, generator=g)[:50]
        assert value == pytest.approx(_mmd2_by_sklearn(a[ia].numpy(), b[ib].numpy()), rel=1e-10)
    # unbiased: the subset mean estimates the same MMD^2 as the full sets
    full = unbiased_mmd2(a, b)
    assert kernel_inception_distance(a, b, num_subsets=200, subset_size=100) == pytest.approx(full, rel=0.1)
    same = kernel_inception_distance(a, torch.from_numpy(rng.normal(size=(300, 4))), num_subsets=50, subset_size=100)
    assert abs(same) < 0.1 * full


# --- Inception Score -----------------------------------------------------------------------------------
def test_inception_score_of_uniform_and_one_hot_predictors():
    k, n = 10, 1000
    uniform = torch.full((n, k), 1.0 / k)
    assert inception_score(uniform) == pytest.approx((1.0, 0.0), abs=1e-9)
    one_hot_balanced = torch.eye(k)[torch.arange(n) % k]  # confident and every class equally often
    assert inception_score(one_hot_balanced)[0] == pytest.approx(k, rel=1e-9)
    one_class = torch.eye(k)[torch.zeros(n, dtype=torch.long)]  # confident but always the same class
    assert inception_score(one_class)[0] == pytest.approx(1.0, abs=1e-9)


def test_inception_score_matches_scipy_entropies_on_random_probabilities():
    from scipy.stats import entropy

    p = torch.softmax(torch.randn(200, 7, generator=torch.Generator().manual_seed(4), dtype=torch.float64) * 2, 1)
    expected = [math.exp(np.mean([entropy(row, part.mean(0)) for row in part])) for part in p.numpy().reshape(4, 50, 7)]
    mean, std = inception_score(p, splits=4)
    assert mean == pytest.approx(np.mean(expected), rel=1e-9)
    assert std == pytest.approx(np.std(expected, ddof=1), rel=1e-9)
    with pytest.raises(ValueError, match="sum"):
        inception_score(p * 2, splits=4)


# --- precision / recall, density / coverage ------------------------------------------------------------
def _kth_neighbour_radius(points: np.ndarray, k: int) -> np.ndarray:
    radii = []
    for i, x in enumerate(points):
        distances = sorted(float(np.sqrt(((x - y) ** 2).sum())) for j, y in enumerate(points) if j != i)
        radii.append(distances[k - 1])
    return np.array(radii)


def _brute_force(real: np.ndarray, fake: np.ndarray, k_pr: int, k_dc: int) -> dict[str, float]:
    """Kynkäänniemi et al. 2019 and Naeem et al. 2020, one point and one ball at a time."""
    real_r, fake_r, real_r_dc = _kth_neighbour_radius(real, k_pr), _kth_neighbour_radius(fake, k_pr), \
        _kth_neighbour_radius(real, k_dc)
    inside = lambda x, centres, radii: [np.sqrt(((x - c) ** 2).sum()) <= r for c, r in zip(centres, radii)]  # noqa: E731
    precision = np.mean([any(inside(f, real, real_r)) for f in fake])
    recall = np.mean([any(inside(r, fake, fake_r)) for r in real])
    density = sum(sum(inside(f, real, real_r_dc)) for f in fake) / (k_dc * len(fake))
    coverage = np.mean([any(np.sqrt(((f - r) ** 2).sum()) <= rad for f in fake) for r, rad in zip(real, real_r_dc)])
    return {"precision": precision, "recall": recall, "density": density, "coverage": coverage}


@pytest.mark.parametrize("shift", [0.0, 0.7])
def test_precision_recall_density_coverage_match_brute_force(shift):
    rng = np.random.default_rng(5)
    real = rng.normal(size=(60, 4))
    fake = np.concatenate([rng.normal(size=(30, 4)) * 0.6 + shift, rng.normal(size=(20, 4)) * 2.0])
    expected = _brute_force(real, fake, k_pr=3, k_dc=5)
    precision, recall = precision_recall(torch.from_numpy(real), torch.from_numpy(fake), k=3)
    density, coverage = density_coverage(torch.from_numpy(real), torch.from_numpy(fake), k=5)
    assert (precision, recall) == pytest.approx((expected["precision"], expected["recall"]), abs=1e-12)
    assert (density, coverage) == pytest.approx((expected["density"], expected["coverage"]), abs=1e-12)


def test_precision_recall_separate_fidelity_from_diversity():
    g = torch.Generator().manual_seed(6)
    real = torch.randn(500, 3, generator=g)
    collapsed = 0.2 * torch.randn(500, 3, generator=g)  # faithful but not diverse: inside real data, one corner of it
    spread = 3.0 * torch.randn(500, 3, generator=g)  # diverse but mostly unrealistic
    p_c, r_c = precision_recall(real, collapsed)
    p_s, r_s = precision_recall(real, spread)
    assert p_c > 0.95 and r_c < 0.4
    assert p_s < 0.4 and r_s > 0.9
    with pytest.raises(ValueError, match="at least 4"):
        precision_recall(real[:3], collapsed)


# --- memorization ----------------------------------------------------------------------------------------
def test_memorization_catches_a_generator_that_replays_its_training_set():
    g = torch.Generator().manual_seed(7)
    train, held_out, fresh = (torch.randn(n, 5, generator=g) for n in (2000, 500, 500))
    copies = train[:500] + 1e-3 * torch.randn(500, 5, generator=g)
    assert memorization(copies, held_out, train)["memorized_fraction"] == 1.0
    stats = memorization(fresh, held_out, train, quantile=0.05)
    assert stats["expected_fraction"] == 0.05 and abs(stats["memorized_fraction"] - 0.05) < 0.04
    assert stats["fake_median_distance"] == pytest.approx(stats["real_median_distance"], rel=0.15)
    with pytest.raises(ValueError, match="quantile"):
        memorization(fresh, held_out, train, quantile=1.5)


# --- feature extractors -----------------------------------------------------------------------------------
def test_pixel_features_and_clear_errors_for_unknown_or_missing_extractors(tmp_path):
    images = torch.rand(3, 3, 8, 8) * 2 - 1
    embedding = feature_extractor("pixels")(images)
    torch.testing.assert_close(embedding.features, images.flatten(1))
    assert embedding.probabilities is None
    with pytest.raises(ValueError, match="local file"):
        feature_extractor("inception-v3")
    with pytest.raises(FileNotFoundError, match="no weights file"):
        feature_extractor(f"inception-v3:{tmp_path / 'absent.pth'}")
    with pytest.raises(ValueError, match="accepted: 'judge-shapes'"):
        feature_extractor("resnet-imagenet")


def test_inception_features_load_a_torchvision_state_dict_file(tmp_path):
    """A randomly initialised torchvision inception_v3 saved as torchvision saves its weights (torch.save of the
    state dict, AuxLogits included): loaded back, the extractor gives the network's 2,048 pooled features."""
    from torchvision.models import inception_v3

    torch.manual_seed(0)
    reference = inception_v3(weights=None, aux_logits=True, init_weights=True).eval()
    path = tmp_path / "inception_v3_google-0cc3c7bd.pth"
    torch.save(reference.state_dict(), path)
    extractor = feature_extractor(f"inception-v3:{path}")
    assert extractor.name == "inception-v3 (torchvision weights inception_v3_google-0cc3c7bd.pth)"
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    embedding = extractor(images)
    pooled = []
    hook = reference.avgpool.register_forward_hook(lambda module, args, out: pooled.append(out.flatten(1)))
    with torch.no_grad():  # torchvision's own pipeline: 299 x 299 input in the Google weights' [-1, 1] range
        logits = reference(torch.nn.functional.interpolate(images, size=(299, 299), mode="bilinear"))
    hook.remove()
    assert embedding.features.shape == (2, 2048) and embedding.probabilities.shape == (2, 1000)
    torch.testing.assert_close(embedding.features, pooled[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(embedding.probabilities, logits.softmax(1), atol=1e-5, rtol=1e-4)
    wrong = tmp_path / "not_inception.pth"
    torch.save({"conv.weight": torch.zeros(1)}, wrong)
    with pytest.raises(ValueError, match="not torchvision's Inception-v3"):
        feature_extractor(f"inception-v3:{wrong}")


# --- the entry point and the command -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def shapes_test_set() -> torch.Tensor:
    from minildm.data import load_images

    return load_images({"name": "shapes", "options": {"num_objects": 1}}, 2000, split="test")[0]  # the whole split


def test_two_halves_of_the_real_test_set_score_as_one_distribution(shapes_test_set):
    real, other = shapes_test_set[:1000], shapes_test_set[1000:]
    result = evaluate_samples(real, other, features="judge-shapes", metrics=METRICS[:-1], kid_subsets_n=20)
    assert result["features"] == "judge-shapes" and result["feature_dim"] == 128
    assert result["precision"] >= 0.9 and result["recall"] >= 0.9
    assert result["density"] == pytest.approx(1.0, abs=0.15) and result["coverage"] >= 0.9
    assert abs(result["kid"]) < 0.01
    assert result["is"] > 12  # 18 classes, confidently and evenly recognised
    shifted = evaluate_samples(real, torch.roll(other, 6, dims=3).clamp(-1, 1) * 0.5, features="judge-shapes",
                               metrics="fd,kid,pr")
    assert shifted["fd"] > 3 * result["fd"] and shifted["kid"] > 0.05 and shifted["precision"] < result["precision"]


def test_evaluate_samples_catches_copies_and_refuses_bad_requests(shapes_test_set):
    from minildm.data import load_images

    train = load_images({"name": "shapes", "options": {"num_objects": 1}}, 1000, split="train")[0]
    real = shapes_test_set[:300]
    copies = evaluate_samples(real, train[:300], metrics="fd,pr,memorization", train=train)
    fresh = evaluate_samples(real, shapes_test_set[300:600], metrics="memorization", train=train)
    assert copies["memorized_fraction"] == 1.0 and fresh["memorized_fraction"] < 0.15
    assert copies["precision"] > 0.8 and copies["n_train"] == 1000  # real-looking: only memorization tells
    with pytest.raises(ValueError, match="training images"):
        evaluate_samples(real, real, metrics="memorization")
    with pytest.raises(ValueError, match="accepted: fd, kid, is, pr, dc, memorization"):
        evaluate_samples(real, real, metrics="fid")
    with pytest.raises(ValueError, match="class probabilities"):
        evaluate_samples(real, real, features="pixels", metrics="is")


def test_reconstruction_fd_compares_images_with_their_reconstructions(shapes_test_set):
    from minildm.metrics import reconstruct
    from minildm.pretrained import resolve

    images = shapes_test_set[:300]
    autoencoder = resolve("shapes-kl-f4")
    result = reconstruction_fd(autoencoder, images, features="judge-shapes", batch_size=128)
    judge = feature_extractor("judge-shapes")
    expected = frechet_distance(judge(images).features, judge(reconstruct(autoencoder, images)[0]).features)
    assert result == {"rfd": pytest.approx(expected, rel=1e-6), "features": "judge-shapes", "n": 300}
    blurred = torch.nn.functional.avg_pool2d(images, 3, stride=1, padding=1)  # a worse "reconstruction"
    assert result["rfd"] < frechet_distance(judge(images).features, judge(blurred).features)


def test_sample_like_conditions_each_sample_on_its_real_item():
    from minildm.ldm import LatentDiffusion

    torch.manual_seed(0)
    ldm = LatentDiffusion(unet=dict(in_channels=3, out_channels=3, model_channels=16, channel_mult=(1,),
                                    num_res_blocks=1, attention_resolutions=(), context_dim=8, norm_num_groups=8),
                          first_stage=None, image_size=8, sample_steps=2,
                          conditioner={"type": "class", "num_classes": 3, "embed_dim": 8})
    items = {"image": torch.zeros(5, 3, 8, 8), "label": torch.tensor([0, 2, 1, 2, 0])}
    in_batches = sample_like(ldm, items, 5, batch_size=2, generator=torch.Generator().manual_seed(1), progress=False)
    expected = ldm.sample(labels=items["label"], generator=torch.Generator().manual_seed(1), progress=False)
    torch.testing.assert_close(in_batches, expected, atol=1e-5, rtol=1e-5)
    cycled = sample_like(ldm, items, 7, batch_size=4, generator=torch.Generator().manual_seed(1), progress=False)
    expected = ldm.sample(labels=items["label"][torch.arange(7) % 5], generator=torch.Generator().manual_seed(1),
                          progress=False)  # more samples than items: the conditions repeat in order
    torch.testing.assert_close(cycled, expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="no \\['label'\\]"):
        sample_like(ldm, {"image": items["image"]}, 5, progress=False)


def test_minildm_eval_writes_every_metric_with_the_extractor_named(tmp_path, capsys, monkeypatch):
    from minildm.cli import main

    out = tmp_path / "eval.json"
    status = main(["eval", "shapes-ldm", "--n", "40", "--steps", "2", "--train-n", "300", "--json", str(out),
                   "--no-progress"])
    assert status == 0
    result = json.loads(out.read_text())
    assert result["features"] == "judge-shapes" and result["checkpoint"] == "shapes-ldm" and result["kid_std"] > 0
    assert result["n_fake"] == result["n_real"] == 40 and result["n_train"] == 300
    for key in ("fd", "kid", "kid_std", "is", "is_std", "precision", "recall", "density", "coverage",
                "memorized_fraction"):
        assert math.isfinite(result[key]), key
    assert "| features | judge-shapes |" in capsys.readouterr().out
    monkeypatch.chdir(tmp_path)  # --json without a file: outputs/eval/<model>.json
    assert main(["eval", "shapes-ldm", "--n", "12", "--steps", "1", "--metrics", "fd,pr", "--json", "--no-progress"]) == 0
    assert json.loads((tmp_path / "outputs" / "eval" / "shapes-ldm.json").read_text())["n_fake"] == 12
    assert main(["eval", "shapes-ldm", "--metrics", "fid"]) == 2
    assert main(["eval", "judge-shapes", "--n", "20"]) == 2
    assert "cannot sample" in capsys.readouterr().err


def test_kid_subsets_are_capped_at_the_smaller_set():
    """subset_size larger than one of the sets: both subsets have min(subset_size, N, M) rows."""
    rng = np.random.default_rng(4)
    a, b = torch.from_numpy(rng.normal(size=(40, 3))), torch.from_numpy(rng.normal(size=(12, 3)) + 0.3)
    values = kid_subsets(a, b, num_subsets=4, subset_size=1000, generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(1)
    for value in values:
        ia, ib = torch.randperm(40, generator=g)[:12], torch.randperm(12, generator=g)
        assert value == pytest.approx(_mmd2_by_sklearn(a[ia].numpy(), b[ib].numpy()), rel=1e-10)
    assert values.std() > 0, "different 12-row subsets of a, different estimates"
