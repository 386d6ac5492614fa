"""Stage-1 losses: small functions, PatchGAN, LPIPS (real weights path and fallback), Stage1Loss."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import lpips as lpips_package
import pytest
import torch
import torch.nn.functional as F
import torchvision

import minildm.losses.perceptual as perceptual
from minildm.losses import (
    FALLBACK_VARIANT,
    LPIPS,
    NLayerDiscriminator,
    Stage1Loss,
    adaptive_weight,
    hinge_d_loss,
    vanilla_d_loss,
)


@pytest.fixture
def no_backbone(tmp_path, monkeypatch):
    """A torch hub cache without LPIPS backbone weights, and a fresh 'announced once' flag."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.delenv(perceptual.BACKBONE_ENV, raising=False)
    monkeypatch.setattr(perceptual, "_fallback_announced", False)


def test_d_losses_on_known_logits():
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.0])
    # hinge: relu(1 - real) = [0, 0.5] -> 0.25; relu(1 + fake) = [0, 1] -> 0.5
    assert hinge_d_loss(real, fake).item() == pytest.approx(0.5 * (0.25 + 0.5))
    expected = 0.5 * (F.softplus(-real).mean() + F.softplus(fake).mean())
    assert vanilla_d_loss(real, fake).item() == pytest.approx(expected.item())
    assert vanilla_d_loss(torch.tensor([20.0]), torch.tensor([-20.0])).item() < 1e-6


def test_adaptive_weight_is_gradient_norm_ratio_clamped():
    last = torch.nn.Parameter(torch.ones(2, 2))
    a, b = torch.tensor([[3.0, 0.0], [0.0, 4.0]]), torch.tensor([[0.0, 1.0], [0.0, 0.0]])
    weight = adaptive_weight((a * last).sum(), (b * last).sum(), last, disc_weight=0.5)
    assert weight.item() == pytest.approx(0.5 * 5.0 / (1.0 + 1e-4))
    assert not weight.requires_grad
    huge = adaptive_weight((a * last).sum(), (0.0 * last).sum(), last)  # 5 / 1e-4 = 5e4 -> clamped
    assert huge.item() == pytest.approx(1e4)


def test_patchgan_layout_and_init():
    torch.manual_seed(0)
    disc = NLayerDiscriminator(in_channels=3, ndf=64, n_layers=3)
    convs = [m for m in disc.main if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 512, 1]
    assert all(c.kernel_size == (4, 4) for c in convs)
    assert isinstance(disc.main[1], torch.nn.LeakyReLU) and disc.main[1].negative_slope == 0.2  # no norm after conv 1
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in disc.main) == 3
    assert convs[2].weight.std().item() == pytest.approx(0.02, rel=0.05)
    bn_weights = torch.cat([m.weight for m in disc.main if isinstance(m, torch.nn.BatchNorm2d)])
    assert bn_weights.mean().item() == pytest.approx(1.0, abs=0.01)
    assert disc(torch.randn(1, 3, 256, 256)).shape == (1, 1, 30, 30)  # the 70x70 PatchGAN's 30x30 patch grid


def _reference_lpips(x: torch.Tensor, y: torch.Tensor, features: torch.nn.Sequential) -> torch.Tensor:
    """LPIPS-alex v0.1 by hand: scaled input, ReLU outputs 1/4/7/9/11, unit-normalised, weighted, averaged."""
    lins = torch.load(Path(lpips_package.__file__).parent / "weights/v0.1/alex.pth", map_location="cpu", weights_only=True)
    shift = torch.tensor([-0.030, -0.088, -0.188])[None, :, None, None]
    scale = torch.tensor([0.458, 0.448, 0.450])[None, :, None, None]
    hx, hy, total, k = (x - shift) / scale, (y - shift) / scale, 0.0, 0
    for index, layer in enumerate(features[:12]):
        hx, hy = layer(hx.clone()), layer(hy.clone())
        if index in (1, 4, 7, 9, 11):
            nx = hx / (hx.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            ny = hy / (hy.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + F.conv2d((nx - ny) ** 2, lins[f"lin{k}.model.1.weight"]).mean(dim=(2, 3), keepdim=True)
            k += 1
    return total


def test_real_lpips_path_loads_a_torchvision_format_backbone(tmp_path, no_backbone, monkeypatch):
    torch.manual_seed(0)
    alexnet = torchvision.models.alexnet(weights=None)
    weights_file = tmp_path / "alexnet-owt-7be5be79.pth"
    torch.save(alexnet.state_dict(), weights_file)  # exactly torchvision's format: features.* and classifier.*
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the real path must not announce the fallback
        metric = LPIPS("alex", backbone_path=weights_file)
    assert metric.variant == "lpips-alex"
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    y = (x + 0.3 * torch.randn_like(x)).clamp(-1, 1)
    with torch.no_grad():
        torch.testing.assert_close(metric(x, y), _reference_lpips(x, y, alexnet.features.eval()), rtol=1e-4, atol=1e-6)
    assert metric(x, x).abs().max() < 1e-6
    # the same file through the environment variable and through the torch hub cache
    monkeypatch.setenv(perceptual.BACKBONE_ENV, str(weights_file))
    assert LPIPS("alex").variant == "lpips-alex"
    monkeypatch.delenv(perceptual.BACKBONE_ENV)
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    os.link(weights_file, tmp_path / "hub" / "checkpoints" / weights_file.name)
    assert LPIPS("alex").variant == "lpips-alex"


def test_fallback_is_named_announced_once_and_behaves_like_a_distance(no_backbone):
    with pytest.warns(UserWarning, match="NOT LPIPS"):
        metric = LPIPS("alex")
    assert metric.variant == FALLBACK_VARIANT
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = LPIPS("alex")  # announced once per process only
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    noise = torch.randn_like(x)
    small, large = metric(x, x + 0.05 * noise), metric(x, x + 0.5 * noise)
    assert metric(x, x).abs().max() < 1e-6
    assert (small > 0).all() and (large > small).all()
    torch.testing.assert_close(second(x, x + 0.5 * noise), large)  # fixed seed: the same stand-in everywhere
    assert metric(x[:, :1], x[:, :1]).shape == (2, 1, 1, 1)  # gray images are accepted
    with pytest.raises(FileNotFoundError, match="MINILDM_LPIPS_BACKBONE"):
        LPIPS("alex", allow_fallback=False)
    with pytest.raises(FileNotFoundError, match="not a file"):
        LPIPS("alex", backbone_path="/nonexistent/alexnet.pth")
    with pytest.raises(ValueError, match="accepted"):
        LPIPS("resnet")


def test_stage1_loss_nll_kl_and_logvar(no_backbone):
    loss_fn = Stage1Loss(perceptual_weight=0.0, disc_weight=0.0, kl_weight=0.1, logvar_init=1.0)
    assert loss_fn.discriminator is None and list(loss_fn.state_dict()) == ["logvar"]
    x, x_hat = torch.zeros(2, 3, 4, 4), torch.full((2, 3, 4, 4), 0.5)
    kl = torch.tensor([1.0, 3.0])
    loss, logs = loss_fn.generator_loss(x, x_hat, step=0, kl=kl)
    nll = (0.5 / torch.e + 1.0) * 48  # per pixel rec/exp(logvar) + logvar, summed over 48 pixels (batch mean)
    assert loss.item() == pytest.approx(nll + 0.1 * 2.0, rel=1e-5)
    assert logs["kl_loss"] == pytest.approx(2.0) and logs["g_loss"] == 0.0
    loss.backward()
    assert loss_fn.logvar.grad.item() == pytest.approx(48 * (1 - 0.5 / torch.e), rel=1e-5)
    mean_loss = Stage1Loss(perceptual_weight=0.0, disc_weight=0.0, reduction="mean", learn_logvar=False)
    loss, _ = mean_loss.generator_loss(x, x_hat, step=0, codebook_loss=torch.tensor(0.2))
    assert loss.item() == pytest.approx(0.5 + 0.2)


def test_stage1_loss_perceptual_term_is_kept_out_of_the_state_dict(no_backbone):
    with pytest.warns(UserWarning):
        loss_fn = Stage1Loss(perceptual_weight=1.0, disc_weight=0.0)
    assert loss_fn.perceptual.variant == FALLBACK_VARIANT
    assert list(loss_fn.state_dict()) == ["logvar"] and len(list(loss_fn.parameters())) == 1
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    y = x.flip(-1)
    _, logs = loss_fn.generator_loss(x, y, step=0)
    expected = (x - y).abs().mean() + loss_fn.perceptual(x, y).mean()
    assert logs["rec_loss"] == pytest.approx(expected.item(), rel=1e-5)


def test_stage1_loss_gan_terms_use_adaptive_weight_after_disc_start(no_backbone):
    torch.manual_seed(0)
    loss_fn = Stage1Loss(perceptual_weight=0.0, disc_weight=0.5, disc_start=10, disc_ndf=8, disc_num_layers=2)
    last = torch.nn.Parameter(torch.randn(3, 3, 3, 3) * 0.1)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    x_hat = F.conv2d(x, last, padding=1)
    loss_before, logs = loss_fn.generator_loss(x, x_hat, step=9, last_layer=last)
    assert logs["d_weight"] == 0.0 and logs["disc_factor"] == 0.0
    loss_after, logs = loss_fn.generator_loss(x, x_hat, step=10, last_layer=last)
    nll_loss = (x - x_hat).abs().sum() / 2
    loss_fn.discriminator.eval()
    g_loss = -loss_fn.discriminator(x_hat).mean()
    expected_weight = adaptive_weight(nll_loss, g_loss, last, disc_weight=0.5)
    assert logs["d_weight"] == pytest.approx(expected_weight.item(), rel=1e-4)
    assert loss_after.item() == pytest.approx((loss_before + expected_weight * g_loss).item(), rel=1e-4)
    d_loss, d_logs = loss_fn.discriminator_loss(x, x_hat, step=10)
    assert d_logs["disc_loss"] > 0 and d_loss.requires_grad
    vanilla = Stage1Loss(perceptual_weight=0.0, disc_start=0, disc_loss="vanilla", disc_ndf=8, disc_num_layers=2)
    vanilla.discriminator.load_state_dict(loss_fn.discriminator.state_dict())
    logits_real, logits_fake = vanilla.discriminator(x), vanilla.discriminator(x_hat.detach())
    assert vanilla.discriminator_loss(x, x_hat, step=0)[0].item() == pytest.approx(
        vanilla_d_loss(logits_real, logits_fake).item(), rel=1e-5)
    with pytest.raises(ValueError, match="accepted"):
        Stage1Loss(disc_loss="wgan")
