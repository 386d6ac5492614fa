"""Stage-1 models: shapes, parameter counts, quantizer gradients, trainables and configs."""

from __future__ import annotations

import inspect
import math
from pathlib import Path

import pytest
import torch
import yaml

from minildm.autoencoder import (AutoencoderKL, DiagonalGaussianDistribution, Encoder, FirstStage, VectorQuantizer,
                                 VQModel, codebook_perplexity, codebook_usage, kl_divergence, latent_shape,
                                 reparameterize)
from minildm.autoencoder.blocks import Downsample, Normalize, ResnetBlock, Upsample
from minildm.autoencoder.training import KLAutoencoderTrainable, VQAutoencoderTrainable, estimate_scale_factor
from minildm.losses import Stage1Loss
from minildm.utils import count_parameters

CONFIG_DIR = Path(__file__).resolve().parents[1] / "minildm" / "configs" / "autoencoder"
TINY = dict(ch=16, ch_mult=(1, 2), num_res_blocks=1, resolution=16, num_groups=8, z_channels=4, embed_dim=4)
NO_GAN = dict(perceptual_weight=0.0, disc_weight=0.0)


def test_sd_v1_vae_has_the_published_parameter_count():
    with torch.device("meta"):
        model = AutoencoderKL(ch=128, ch_mult=(1, 2, 4, 4), num_res_blocks=2, z_channels=4, embed_dim=4, resolution=256)
    assert count_parameters(model) == 83_653_863


@pytest.mark.parametrize("ch_mult,factor", [((1,), 1), ((1, 2), 2), ((1, 2, 4), 4)])
def test_kl_shapes_follow_downsampling_factor(ch_mult, factor):
    torch.manual_seed(0)
    model = AutoencoderKL(**{**TINY, "ch_mult": ch_mult, "attn_resolutions": (16,)})
    x = torch.randn(2, 3, 16, 16)
    posterior = model.encode(x)
    assert posterior.mean.shape == (2, 4, 16 // factor, 16 // factor)
    x_hat, _ = model(x)
    assert x_hat.shape == x.shape
    assert model.downsampling_factor == factor


def test_attention_only_at_requested_resolutions_and_decoder_has_extra_block():
    encoder = Encoder(ch=16, ch_mult=(1, 2, 2), num_res_blocks=2, attn_resolutions=(8,), resolution=32, num_groups=8)
    assert [len(level.attn) for level in encoder.down] == [0, 0, 2]  # levels work at 32, 16 and 8 px
    encoder = Encoder(ch=16, ch_mult=(1, 2, 2), num_res_blocks=2, attn_resolutions=(16,), resolution=32, num_groups=8)
    assert [len(level.attn) for level in encoder.down] == [0, 2, 0]
    model = AutoencoderKL(**{**TINY, "num_res_blocks": 2})
    assert [len(level.block) for level in model.decoder.up] == [3, 3]
    assert hasattr(model.decoder.up[1], "upsample") and not hasattr(model.decoder.up[0], "upsample")


def test_downsample_pads_right_and_bottom_only():
    down = Downsample(1)
    with torch.no_grad():
        down.conv.weight.zero_()
        down.conv.weight[0, 0, 0, 0] = 1.0  # picks the top-left pixel of each 3x3 window
        down.conv.bias.zero_()
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    assert torch.equal(down(x)[0, 0], torch.tensor([[0.0, 2.0], [8.0, 10.0]]))
    up = Upsample(2)
    assert up(torch.randn(1, 2, 3, 5)).shape == (1, 2, 6, 10)


def test_group_count_must_divide_width():
    with pytest.raises(ValueError, match="num_groups"):
        AutoencoderKL(**{**TINY, "num_groups": 32})
    with pytest.raises(ValueError, match="or 0 for no normalization"):
        AutoencoderKL(**{**TINY, "num_groups": -8})


def test_zero_groups_build_an_autoencoder_without_normalization():
    x = torch.randn(2, 16, 4, 4)
    assert torch.equal(Normalize(16, 0)(x), x)
    model = AutoencoderKL(**{**TINY, "num_groups": 0})
    assert not any(isinstance(m, torch.nn.GroupNorm) for m in model.modules())
    assert not any(".norm" in name for name in model.state_dict())


@pytest.mark.parametrize("num_groups", [8, 0])
def test_group_norm_hides_the_scale_of_an_image_from_a_residual_branch(num_groups):
    # GroupNorm divides each image by its own statistics, so a residual branch sees h and 2h alike
    # (how bright or how large an object is gets normalized away); with no normalization it does not
    torch.manual_seed(0)
    block = ResnetBlock(16, 16, num_groups=num_groups).eval()
    h = torch.randn(1, 16, 8, 8)
    with torch.no_grad():
        branch, branch_of_double = block(h) - h, block(2 * h) - 2 * h
    assert torch.allclose(branch, branch_of_double, atol=1e-4) == (num_groups > 0)


def test_diagonal_gaussian_clamps_and_matches_closed_forms():
    mean = torch.randn(3, 2, 4, 4)
    logvar = torch.randn(3, 2, 4, 4)
    logvar[0, 0, 0, 0] = 100.0
    dist = DiagonalGaussianDistribution(torch.cat([mean, logvar], 1))
    assert dist.logvar.max() == 20.0
    clamped = logvar.clamp(-30, 20)
    expected_kl = 0.5 * (mean**2 + clamped.exp() - 1 - clamped).sum(dim=(1, 2, 3))
    torch.testing.assert_close(dist.kl(), expected_kl)
    normal = torch.distributions.Normal(mean, (0.5 * clamped).exp())
    sample = dist.sample(torch.Generator().manual_seed(0))
    torch.testing.assert_close(dist.nll(sample), -normal.log_prob(sample).sum(dim=(1, 2, 3)), rtol=1e-4, atol=1e-3)
    again = dist.sample(torch.Generator().manual_seed(0))
    assert torch.equal(sample, again) and torch.equal(dist.mode(), mean)


def test_kl_divergence_matches_torch_distributions():
    mean, logvar = torch.randn(3, 4, 2, 2), torch.randn(3, 4, 2, 2)
    reference = torch.distributions.kl_divergence(
        torch.distributions.Normal(mean, (0.5 * logvar).exp()), torch.distributions.Normal(0.0, 1.0)
    ).sum(dim=(1, 2, 3))
    torch.testing.assert_close(kl_divergence(mean, logvar), reference)
    assert kl_divergence(torch.zeros(2, 3), torch.zeros(2, 3)).abs().max() == 0


def test_reparameterize_is_reproducible_and_differentiable():
    mean = torch.zeros(1000, requires_grad=True)
    logvar = torch.full((1000,), 2 * torch.log(torch.tensor(3.0)).item(), requires_grad=True)
    z = reparameterize(mean, logvar, torch.Generator().manual_seed(0))
    assert torch.equal(z, reparameterize(mean, logvar, torch.Generator().manual_seed(0)))
    assert z.std().item() == pytest.approx(3.0, rel=0.1)
    z.sum().backward()
    torch.testing.assert_close(mean.grad, torch.ones(1000))


def test_quantizer_picks_nearest_code_and_reports_usage():
    vq = VectorQuantizer(n_embed=4, embed_dim=2)
    with torch.no_grad():
        vq.embedding.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]))
    z = torch.tensor([[0.9, 0.1], [0.1, 0.8], [0.1, -0.1], [1.2, 0.0]]).T.reshape(1, 2, 2, 2)  # (B, C, H, W)
    z_q, _, info = vq(z)
    assert info["indices"].flatten().tolist() == [1, 2, 0, 1]
    torch.testing.assert_close(z_q[0].permute(1, 2, 0).reshape(4, 2), vq.embedding.weight[[1, 2, 0, 1]])
    assert info["usage"].item() == pytest.approx(0.75)
    expected_perplexity = torch.exp(-(torch.tensor([0.25, 0.5, 0.25]) * torch.log(torch.tensor([0.25, 0.5, 0.25]))).sum())
    assert info["perplexity"].item() == pytest.approx(expected_perplexity.item(), rel=1e-5)


def test_straight_through_gradient_is_identity():
    torch.manual_seed(0)
    vq = VectorQuantizer(n_embed=8, embed_dim=3)
    z = torch.randn(2, 3, 4, 4, requires_grad=True)
    z_q, _, _ = vq(z)
    upstream = torch.randn_like(z_q)
    (grad,) = torch.autograd.grad((z_q * upstream).sum(), z)
    torch.testing.assert_close(grad, upstream)


def test_codebook_term_moves_codebook_only_and_commitment_moves_encoder_with_beta():
    torch.manual_seed(0)
    beta = 0.25
    vq = VectorQuantizer(n_embed=8, embed_dim=3, beta=beta)
    z = torch.randn(2, 3, 4, 4, requires_grad=True)
    _, loss, info = vq(z)
    z_grad, codebook_grad = torch.autograd.grad(loss, [z, vq.embedding.weight])
    e = vq.embedding.weight.detach()[info["indices"]].permute(0, 3, 1, 2)  # (B, C, H, W)
    # d/dz of beta * mean((z - sg[e])^2): the commitment term, with beta, is all the encoder sees
    torch.testing.assert_close(z_grad, beta * 2 * (z.detach() - e) / z.numel())
    # the codebook gets the gradient of mean((sg[z] - e)^2) without beta (beta is NOT on this term, unlike legacy CompVis)
    expected = torch.zeros_like(codebook_grad)
    flat_idx = info["indices"].flatten()
    flat_diff = (e - z.detach()).permute(0, 2, 3, 1).reshape(-1, 3)
    expected.index_add_(0, flat_idx, 2 * flat_diff / z.numel())
    torch.testing.assert_close(codebook_grad, expected)


def test_ema_codebook_moves_towards_assigned_vectors_without_gradient():
    vq = VectorQuantizer(n_embed=2, embed_dim=2, ema_decay=0.5)
    with torch.no_grad():
        vq.embedding.weight.copy_(torch.tensor([[0.0, 0.0], [10.0, 10.0]]))
        vq.ema_embed_sum.copy_(vq.embedding.weight)
    assert not vq.embedding.weight.requires_grad
    z = torch.full((1, 2, 1, 2), 1.0)  # two vectors (1, 1), both nearest to code 0
    vq.train()
    vq(z)
    # count: 0.5 * 1 + 0.5 * 2 = 1.5; sum: 0.5 * 0 + 0.5 * (2, 2) = (1, 1) -> code (2/3, 2/3); code 1 unchanged
    torch.testing.assert_close(vq.embedding.weight, torch.tensor([[2 / 3, 2 / 3], [10.0, 10.0]]))


def test_dead_codes_restart_on_encoder_outputs():
    torch.manual_seed(0)
    vq = VectorQuantizer(n_embed=4, embed_dim=2, dead_code_threshold=0.5, usage_decay=0.0)
    vq.train()
    z = torch.randn(1, 2, 4, 4) + 100.0  # far from the whole codebook: one code wins, three die
    _, _, info = vq(z)
    winner = info["indices"].flatten()[0].item()
    assert (info["indices"] == winner).all()
    before = vq.embedding.weight.detach().clone()
    vq(z)  # the three unused codes are restarted at the start of the next call
    dead = [k for k in range(4) if k != winner]
    assert (vq.embedding.weight.detach()[dead] > 50).all()
    torch.testing.assert_close(vq.embedding.weight.detach()[winner], before[winner])


def test_vq_quantize_in_decoder_moves_quantization_to_decode():
    torch.manual_seed(0)
    model = VQModel(**TINY, n_embed=16, quantize_in_decoder=True).eval()
    x = torch.randn(2, 3, 16, 16)
    h = model.encode(x)
    torch.testing.assert_close(h, model.encode_pre_quant(x))
    torch.testing.assert_close(model.decode(h), model(x)[0])
    model.quantize_in_decoder = False
    indices = model.quantize(h)[2]["indices"]
    torch.testing.assert_close(model.encode(x), model.quantize.get_codebook_entry(indices))


def _fixed_batch() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    x = torch.zeros(4, 3, 16, 16)
    x[:, :, 4:12, 4:12] = torch.rand(4, 3, 1, 1, generator=generator) * 2 - 1
    return x


@pytest.fixture
def one_thread():
    """Tiny models train faster on one thread than on a contended shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("cls, num_groups", [(KLAutoencoderTrainable, 8), (VQAutoencoderTrainable, 8),
                                             (KLAutoencoderTrainable, 0)])
def test_training_step_reduces_loss_on_a_tiny_batch(cls, num_groups, one_thread):
    torch.manual_seed(0)
    extra = {"n_embed": 32} if cls is VQAutoencoderTrainable else {}
    model = cls(autoencoder={**TINY, "ch": 8, "num_groups": num_groups, **extra}, loss=NO_GAN)
    groups = model.optimizer_groups()
    assert list(groups) == ["autoencoder"]
    optimizer = torch.optim.Adam(groups["autoencoder"], lr=3e-3)
    batch = {"image": _fixed_batch()}
    l1 = []
    for step in range(30):
        loss, logs = model.training_step(batch, "autoencoder", step)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        l1.append(logs["l1_loss"])
    # without normalization the untrained decoder starts nearer the data (outputs near 0), so it has less to gain
    assert l1[-1] < (0.6 if num_groups else 0.7) * l1[0]
    samples = model.sample_images(4)
    assert samples.shape == (4, 3, 16, 16) and samples.abs().max() <= 1.0


def test_gan_groups_and_disc_start():
    torch.manual_seed(0)
    model = KLAutoencoderTrainable(
        autoencoder=TINY, loss=dict(perceptual_weight=0.0, disc_start=5, disc_ndf=8, disc_num_layers=2)
    )
    groups = model.optimizer_groups()
    assert list(groups) == ["autoencoder", "disc"]
    assert {id(p) for p in groups["disc"]} == {id(p) for p in model.loss.discriminator.parameters()}
    assert any(p is model.loss.logvar for p in groups["autoencoder"])
    batch = {"image": _fixed_batch()}
    _, logs = model.training_step(batch, "autoencoder", step=4)
    assert logs["g_loss"] == 0.0 and logs["d_weight"] == 0.0
    d_loss, _ = model.training_step(batch, "disc", step=4)
    d_loss.backward()
    assert all(p.grad is None or (p.grad == 0).all() for p in groups["disc"])
    model.zero_grad(set_to_none=True)
    loss, logs = model.training_step(batch, "autoencoder", step=5)
    assert logs["d_weight"] > 0 and logs["g_loss"] != 0.0
    loss.backward()  # the generator step leaves the discriminator's weights alone
    assert all(p.grad is None for p in model.loss.discriminator.parameters())
    d_loss, d_logs = model.training_step(batch, "disc", step=5)
    assert d_logs["disc_loss"] > 0
    with pytest.raises(ValueError, match="optimizer group"):
        model.training_step(batch, "generator", step=5)


def test_scale_factor_is_one_over_latent_std_and_saved():
    torch.manual_seed(0)
    model = KLAutoencoderTrainable(autoencoder=TINY, loss=NO_GAN)
    batches = [{"image": torch.randn(4, 3, 16, 16)} for _ in range(3)]
    value = model.update_scale_factor(batches, num_batches=3)
    with torch.no_grad():
        latents = torch.cat([model.autoencoder.encode(b["image"]).mode() for b in batches])
    assert value == pytest.approx(1.0 / latents.std().item(), rel=1e-4)
    assert model.state_dict()["autoencoder.scale_factor"].item() == pytest.approx(value)
    with torch.no_grad():
        torch.testing.assert_close(model.encode_latent(batches[0]["image"]), value * latents[:4])
    assert estimate_scale_factor(model.autoencoder, batches, num_batches=1) != pytest.approx(1.0)


def test_unknown_config_keys_name_accepted_ones():
    with pytest.raises(ValueError, match="accepted"):
        KLAutoencoderTrainable(autoencoder={**TINY, "channels": 4})


def _check_keys(cls: type, params: dict, where: str) -> None:
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    assert set(params) <= accepted, f"{where}: unknown keys {set(params) - accepted} for {cls.__name__}"


CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))


def test_all_required_configs_exist():
    names = {p.stem for p in CONFIGS}
    required = {"shapes-kl-f4", "shapes-kl-f8", "shapes-vq-f4", "shapes-vq-f8", "digits-kl-f4", "digits-vq-f4",
                "photos-kl-f4", "kl-f4", "kl-f8", "kl-f16", "kl-f32", "vq-f4", "vq-f8", "vq-f16", "sd-v1-vae"}
    assert required <= names, f"missing: {required - names}"


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_instantiates(path):
    config = yaml.safe_load(path.read_text())
    assert {"model", "data", "train"} <= set(config) <= {"model", "data", "train", "gpu"}  # gpu: CUDA-only overrides
    target = config["model"]["target"]
    trainable, model_cls = {
        "autoencoder_kl": (KLAutoencoderTrainable, AutoencoderKL),
        "vq_model": (VQAutoencoderTrainable, VQModel),
    }[target]
    params = config["model"]["params"]
    _check_keys(trainable, params, path.name)
    _check_keys(model_cls, params["autoencoder"], path.name)
    _check_keys(Stage1Loss, params.get("loss", {}), path.name)
    resolution = params["autoencoder"]["resolution"]
    assert config["data"]["size"] == resolution
    if resolution <= 64:
        model = trainable(**params)
        x = torch.zeros(1, params["autoencoder"].get("in_channels", 3), resolution, resolution)
        assert model.autoencoder.decode(model.autoencoder.encode_latent(x)).shape == x.shape
    else:
        with torch.device("meta"):
            model = model_cls(**params["autoencoder"])
        factor = 2 ** (len(params["autoencoder"]["ch_mult"]) - 1)
        assert path.stem.endswith(f"f{factor}") or path.stem == "sd-v1-vae"
    if path.stem == "sd-v1-vae":
        assert count_parameters(model) == 83_653_863


# --- codebook statistics ---------------------------------------------------------------------------
def test_codebook_usage_and_perplexity_known_values():
    uniform = torch.arange(8).repeat(4)  # 8 of 16 codes, equally often
    assert codebook_usage(uniform, 16).item() == 0.5
    assert codebook_perplexity(uniform, 16).item() == pytest.approx(8.0, rel=1e-5)
    single = torch.full((3, 4, 4), 2)
    assert codebook_usage(single, 10).item() == pytest.approx(0.1)
    assert codebook_perplexity(single, 10).item() == pytest.approx(1.0)
    skewed = torch.tensor([0, 0, 0, 1])
    entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert codebook_perplexity(skewed, 2).item() == pytest.approx(math.exp(entropy), rel=1e-5)


def test_codebook_statistics_reject_bad_indices():
    with pytest.raises(ValueError, match=r"lie in \[0, 4\]"):
        codebook_usage(torch.tensor([0, 5]), 5)
    with pytest.raises(ValueError, match="integer tensor"):
        codebook_perplexity(torch.tensor([0.0, 1.0]), 4)
    with pytest.raises(ValueError, match="empty"):
        codebook_usage(torch.tensor([], dtype=torch.long), 4)


def test_quantizer_batch_statistics_are_the_codebook_statistics_of_its_indices():
    torch.manual_seed(0)
    vq = VectorQuantizer(n_embed=16, embed_dim=3)
    _, _, info = vq(torch.randn(2, 3, 4, 4) / 16)
    assert info["usage"].item() == pytest.approx(codebook_usage(info["indices"], 16).item())
    assert info["perplexity"].item() == pytest.approx(codebook_perplexity(info["indices"], 16).item(), rel=1e-6)


# --- the first-stage protocol ----------------------------------------------------------------------
def _tiny(cls, scale_factor):
    torch.manual_seed(0)
    extra = {"n_embed": 16} if cls is VQModel else {}
    return cls(ch=8, ch_mult=(1, 2), num_res_blocks=1, resolution=16, z_channels=3, embed_dim=3, num_groups=4,
               scale_factor=scale_factor, **extra).eval()


@pytest.mark.parametrize("cls", [AutoencoderKL, VQModel])
def test_first_stage_protocol_scales_latents_and_inverts_the_scale(cls):
    model = _tiny(cls, 0.37)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    assert isinstance(model, FirstStage) and model.downsampling_factor == 2
    with torch.no_grad():
        raw = model.encode(x).mode() if cls is AutoencoderKL else model.encode(x)  # the unscaled latent
        z = model.encode_latent(x)
        torch.testing.assert_close(z, 0.37 * raw)
        assert z.shape == (2, *latent_shape((3, 16, 16), (1, 2), 3))
        # decode_latent divides by the scale again: the round trip equals the unscaled one
        torch.testing.assert_close(model.decode_latent(z), model.decode(raw), atol=1e-5, rtol=1e-4)
        unscaled_round_trip = model(x, sample_posterior=False)[0] if cls is AutoencoderKL else model(x)[0]
        torch.testing.assert_close(model.decode_latent(z), unscaled_round_trip, atol=1e-5, rtol=1e-4)
        assert not torch.allclose(model.decode(z), unscaled_round_trip, atol=1e-3)  # forgetting the scale shows


def test_identity_first_stage_follows_the_protocol():
    from minildm.ldm import IdentityFirstStage

    identity, x = IdentityFirstStage(scale_factor=0.5), torch.randn(2, 3, 4, 4)
    assert isinstance(identity, FirstStage) and identity.downsampling_factor == 1
    torch.testing.assert_close(identity.encode_latent(x), 0.5 * x)
    torch.testing.assert_close(identity.decode_latent(identity.encode_latent(x)), x)


def test_latent_shape_follows_ch_mult_and_rejects_indivisible_sizes():
    assert latent_shape((3, 256, 256), (1, 2, 4, 4), 4) == (4, 32, 32)
    assert latent_shape((1, 32, 32), (1, 2, 2), 3) == (3, 8, 8)
    with pytest.raises(ValueError, match="not divisible"):
        latent_shape((3, 20, 20), (1, 2, 2, 4), 3)
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        latent_shape((32, 32), (1, 2), 3)


@pytest.mark.parametrize("ch_mult, expected", [((1,), (3, 16, 16)), ((1, 2), (3, 8, 8)), ((1, 2, 2, 4), (3, 2, 2))])
def test_latent_shape_matches_the_encoder(ch_mult, expected):
    assert latent_shape((3, 16, 16), ch_mult, 3) == expected
    torch.manual_seed(0)
    model = AutoencoderKL(ch_mult=ch_mult, z_channels=3, embed_dim=3, ch=8, num_res_blocks=1, resolution=16, num_groups=4)
    assert tuple(model.encode(torch.zeros(1, 3, 16, 16)).mean.shape[1:]) == expected


def test_attn_resolutions_are_pixel_sizes_and_others_are_refused():
    with pytest.raises(ValueError, match=r"valid sizes: \[16, 8\].*pixel sizes"):
        AutoencoderKL(ch=8, ch_mult=(1, 2), num_res_blocks=1, resolution=16, num_groups=4, attn_resolutions=(2,))
    model = AutoencoderKL(ch=8, ch_mult=(1, 2), num_res_blocks=1, resolution=16, num_groups=4, attn_resolutions=(8,))
    assert [len(level.attn) for level in model.encoder.down] == [0, 1]

