"""Schedules, the forward process, objectives and the diffusion loss (minildm.diffusion core)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from minildm.diffusion import (
    NoiseSchedule,
    compvis_schedule,
    diffusion_loss,
    eps_from_v,
    eps_from_x0,
    karras_sigmas,
    make_betas,
    min_snr_weight,
    x0_from_eps,
    q_sample,
    sampling_sigmas,
    spaced_timesteps,
    training_target,
    x0_from_v,
)


@pytest.fixture(scope="module")
def sd() -> NoiseSchedule:
    return NoiseSchedule.from_name("scaled_linear", 1000, 0.00085, 0.012)


# ---------------------------------------------------------------- schedules


def test_scaled_linear_is_linear_in_sqrt_beta(sd):
    expected = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    assert sd.betas.dtype == torch.float64
    assert torch.equal(sd.betas, expected)
    assert sd.betas[0].item() == pytest.approx(0.00085) and sd.betas[-1].item() == pytest.approx(0.012)
    # differences of sqrt(beta) are constant, differences of beta are not
    assert torch.allclose(sd.betas.sqrt().diff(), sd.betas.sqrt().diff()[0].expand(999))
    assert not torch.allclose(sd.betas.diff(), sd.betas.diff()[0].expand(999))


def test_stable_diffusion_known_values(sd):
    assert sd.alphas_cumprod[-1].item() == pytest.approx(0.0047, abs=1e-4)
    assert sd.sigmas[0].item() == pytest.approx(0.0292, abs=1e-4)
    assert sd.sigmas[-1].item() == pytest.approx(14.6146, abs=1e-3)


def test_linear_is_plain_linspace():
    betas = make_betas("linear", 1000)
    assert torch.equal(betas, torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64))
    assert NoiseSchedule(betas).alphas_cumprod[-1].item() == pytest.approx(4.036e-5, rel=1e-3)


def test_cosine_follows_its_alpha_bar_and_is_clipped():
    betas = make_betas("cosine", 1000)
    f = lambda t: math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    alpha_bar = torch.cumprod(1 - betas, 0)
    for t in (0, 10, 500, 900):
        assert alpha_bar[t].item() == pytest.approx(f(t + 1) / f(0), rel=1e-9)
    assert betas.max().item() == pytest.approx(0.999)
    assert betas[-1].item() == pytest.approx(0.999)


def test_schedules_match_diffusers_float32_versions():
    diffusers = pytest.importorskip("diffusers")
    pairs = [("scaled_linear", "scaled_linear", 0.00085, 0.012), ("linear", "linear", 1e-4, 0.02), ("cosine", "squaredcos_cap_v2", None, None)]
    for ours, theirs, b0, b1 in pairs:
        kw = {} if b0 is None else dict(beta_start=b0, beta_end=b1)
        ref = diffusers.DDPMScheduler(beta_schedule=theirs, **kw).betas.double()
        assert torch.allclose(make_betas(ours, 1000, b0, b1), ref, rtol=1e-5, atol=1e-8), ours


def test_compvis_names_map_to_what_they_mean():
    assert torch.equal(compvis_schedule("linear", 1000, 0.0015, 0.0195).betas, make_betas("scaled_linear", 1000, 0.0015, 0.0195))
    assert torch.equal(compvis_schedule("sqrt_linear", 1000, 0.0015, 0.0195).betas, make_betas("linear", 1000, 0.0015, 0.0195))
    assert torch.equal(compvis_schedule("cosine").betas, make_betas("cosine"))
    with pytest.raises(ValueError, match="sqrt_linear"):
        compvis_schedule("sqrt")


def test_bad_schedule_names_list_valid_ones():
    with pytest.raises(ValueError, match="scaled_linear, linear, cosine"):
        make_betas("quadratic")
    with pytest.raises(ValueError, match="compvis_schedule"):
        make_betas("sqrt_linear")
    with pytest.raises(ValueError, match="beta_start"):
        make_betas("linear", 1000, 0.02, 0.01)


def test_noise_schedule_is_immutable_and_consistent(sd):
    with pytest.raises(dataclasses.FrozenInstanceError):
        sd.betas = torch.ones(3)
    a = sd.alphas_cumprod
    assert torch.allclose(a, torch.cumprod(1 - sd.betas, 0))
    assert torch.allclose(sd.sigmas, ((1 - a) / a).sqrt())
    assert torch.allclose(sd.sqrt_alphas_cumprod**2 + sd.sqrt_one_minus_alphas_cumprod**2, torch.ones_like(a))
    t = torch.tensor([0, 250, 999])
    assert torch.allclose(sd.snr(t), a[t] / (1 - a[t]))
    assert torch.allclose(sd.log_snr(t), 0.5 * sd.snr(t).log())
    assert torch.allclose(sd.log_snr(t), -sd.sigmas[t].log())
    assert bool((sd.snr(torch.arange(1000)).diff() < 0).all()), "SNR must fall with t"


def test_sigma_to_t_inverts_t_to_sigma(sd):
    t_int = torch.tensor([0.0, 1.0, 500.0, 999.0], dtype=torch.float64)
    assert torch.allclose(sd.sigma_to_t(sd.sigmas[t_int.long()]), t_int, atol=1e-8)
    t = torch.tensor([0.25, 10.5, 700.75, 998.9], dtype=torch.float64)
    assert torch.allclose(sd.sigma_to_t(sd.t_to_sigma(t)), t, atol=1e-8)
    assert sd.sigma_to_t(torch.tensor([1e-6, 1e6])).tolist() == [0.0, 999.0]


def test_linear_interpolation_reads_sigma_linearly_and_inverts(sd):
    t = torch.tensor([0.25, 10.5, 700.75, 998.9], dtype=torch.float64)
    low = t.floor().long()
    expected = sd.sigmas[low] + (t - low) * (sd.sigmas[low + 1] - sd.sigmas[low])
    assert torch.allclose(sd.t_to_sigma(t, "linear"), expected, rtol=1e-12)
    assert not torch.allclose(sd.t_to_sigma(t, "linear"), sd.t_to_sigma(t), rtol=1e-6)
    assert torch.allclose(sd.sigma_to_t(expected, "linear"), t, atol=1e-8)
    with pytest.raises(ValueError, match="valid values: log, linear"):
        sd.t_to_sigma(t, "cubic")


def test_schedule_rejects_bad_betas():
    with pytest.raises(ValueError, match="in \\(0, 1\\)"):
        NoiseSchedule(torch.tensor([0.1, 1.5]))


# ---------------------------------------------------------------- spacing


def test_karras_sigmas_follow_eq5():
    sigmas = karras_sigmas(10, 0.03, 14.6, rho=7.0)
    assert sigmas[0].item() == pytest.approx(14.6) and sigmas[-1].item() == pytest.approx(0.03)
    inv = sigmas ** (1 / 7)
    assert torch.allclose(inv.diff(), inv.diff()[0].expand(9))


def test_sampling_sigmas_end_where_asked(sd):
    zero = sampling_sigmas(sd, 4, "trailing")
    assert zero.tolist()[:-1] == sd.sigmas[[999, 749, 499, 249]].tolist() and zero[-1].item() == 0.0
    assert sampling_sigmas(sd, 4, "trailing", final_sigma="sigma_min")[-1].item() == sd.sigmas[0].item()
    with pytest.raises(ValueError, match="leading, trailing, linspace"):
        spaced_timesteps(4, 1000, "uniform")
    with pytest.raises(ValueError, match="steps must lie"):
        spaced_timesteps(0)


def test_skip_last_and_fractional_spacings(sd):
    dpm = spaced_timesteps(20, 1000, "linspace_skip_last").tolist()
    assert dpm[:3] == [999, 949, 899] and dpm[-1] == 50 and len(dpm) == 20
    assert spaced_timesteps(10, 1000, "leading_skip_last", steps_offset=1).tolist() == list(range(901, 0, -90))[:10]
    fractional = spaced_timesteps(7, 1000, "linspace_fractional")
    assert fractional.dtype == torch.float64 and fractional[1].item() == pytest.approx(832.5)
    sigmas = sampling_sigmas(sd, 7, "linspace_fractional", interpolation="linear")
    assert torch.allclose(sigmas[:-1], sd.t_to_sigma(fractional, "linear"))
    assert sigmas[0].item() == sd.sigmas[-1].item()


def test_karras_range_of_the_schedule_or_of_the_spaced_levels(sd):
    full = sampling_sigmas(sd, 5, "leading", steps_offset=1, karras=True)
    spaced = sampling_sigmas(sd, 5, "leading", steps_offset=1, karras=True, karras_range="spaced")
    assert full[0].item() == pytest.approx(sd.sigmas[-1].item()) and full[-2].item() == pytest.approx(sd.sigmas[0].item())
    assert spaced[0].item() == pytest.approx(sd.sigmas[801].item()) and spaced[-2].item() == pytest.approx(sd.sigmas[1].item())


# ---------------------------------------------------------------- forward process


def test_q_sample_formula_and_statistics(sd):
    x0 = torch.full((20000, 1), 2.0, dtype=torch.float64)
    t = torch.full((20000,), 500)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x_t = q_sample(x0, t, noise, sd)
    a = sd.alphas_cumprod[500]
    assert torch.allclose(x_t, a.sqrt() * x0 + (1 - a).sqrt() * noise)
    assert x_t.mean().item() == pytest.approx(2.0 * a.sqrt().item(), abs=0.02)
    assert x_t.std().item() == pytest.approx((1 - a).sqrt().item(), abs=0.02)


def test_q_sample_matches_diffusers_add_noise(sd):
    diffusers = pytest.importorskip("diffusers")
    scheduler = diffusers.DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    gen = torch.Generator().manual_seed(1)
    x0, noise = torch.randn(3, 2, 4, 4, generator=gen), torch.randn(3, 2, 4, 4, generator=gen)
    t = torch.tensor([0, 400, 999])
    assert torch.allclose(q_sample(x0, t, noise, sd), scheduler.add_noise(x0, noise, t), atol=1e-5)


def test_q_sample_checks_inputs(sd):
    with pytest.raises(ValueError, match="noise must have the shape"):
        q_sample(torch.zeros(2, 3), torch.tensor([1, 2]), torch.zeros(2, 4), sd)
    with pytest.raises(ValueError, match=r"\[0, 999\]"):
        q_sample(torch.zeros(2, 3), torch.tensor([1, 1000]), torch.zeros(2, 3), sd)


# ---------------------------------------------------------------- objectives


def test_objective_conversions_round_trip(sd):
    gen = torch.Generator().manual_seed(2)
    x0, eps = torch.randn(5, 3, 4, 4, generator=gen, dtype=torch.float64), torch.randn(5, 3, 4, 4, generator=gen, dtype=torch.float64)
    t = torch.tensor([0, 10, 300, 700, 999])
    x_t = q_sample(x0, t, eps, sd)
    v = training_target("v", x0, eps, t, sd)
    assert torch.allclose(x0_from_eps(x_t, t, eps, sd), x0, atol=1e-8)
    assert torch.allclose(eps_from_x0(x_t, t, x0, sd), eps, atol=1e-8)
    assert torch.allclose(x0_from_v(x_t, t, v, sd), x0, atol=1e-10)
    assert torch.allclose(eps_from_v(x_t, t, v, sd), eps, atol=1e-10)
    a = sd.alphas_cumprod[t].view(-1, 1, 1, 1)
    assert torch.allclose(v, a.sqrt() * eps - (1 - a).sqrt() * x0)


def test_v_matches_diffusers_velocity(sd):
    diffusers = pytest.importorskip("diffusers")
    scheduler = diffusers.DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    gen = torch.Generator().manual_seed(3)
    x0, eps = torch.randn(2, 4, 3, 3, generator=gen), torch.randn(2, 4, 3, 3, generator=gen)
    t = torch.tensor([5, 800])
    assert torch.allclose(training_target("v", x0, eps, t, sd), scheduler.get_velocity(x0, eps, t), atol=1e-5)


def test_min_snr_weights():
    snr = torch.tensor([0.1, 5.0, 50.0], dtype=torch.float64)
    assert torch.allclose(min_snr_weight(snr, "eps", 5.0), torch.tensor([1.0, 1.0, 0.1], dtype=torch.float64))
    assert torch.allclose(min_snr_weight(snr, "x0", 5.0), torch.tensor([0.1, 5.0, 5.0], dtype=torch.float64))
    assert torch.allclose(min_snr_weight(snr, "v", 5.0), torch.tensor([0.1 / 1.1, 5 / 6, 5 / 51], dtype=torch.float64))
    with pytest.raises(ValueError, match="eps, x0, v"):
        min_snr_weight(snr, "score")


def test_diffusion_loss_known_values(sd):
    x0 = torch.zeros(2, 3, 2, 2)
    noise = torch.ones(2, 3, 2, 2)
    t = torch.tensor([10, 900])
    assert diffusion_loss(noise + 1.0, x0, noise, t, sd).item() == pytest.approx(1.0)
    assert diffusion_loss(noise, x0, noise, t, sd).item() == 0.0
    output = noise.clone()
    output[1] += 2.0
    per_sample = diffusion_loss(output, x0, noise, t, sd, reduction="none")
    assert per_sample.tolist() == pytest.approx([0.0, 4.0])
    # min-SNR (eps): weight min(SNR, 5)/SNR; t = 10 has SNR >> 5, t = 900 has SNR < 5 (weight 1)
    snr = sd.snr(t)
    weighted = diffusion_loss(noise + 1.0, x0, noise, t, sd, weighting="min_snr", reduction="none")
    assert weighted.tolist() == pytest.approx([5.0 / snr[0].item(), 1.0], rel=1e-5)


def test_diffusion_loss_targets_for_each_objective(sd):
    gen = torch.Generator().manual_seed(4)
    x0, noise = torch.randn(3, 2, 4, 4, generator=gen), torch.randn(3, 2, 4, 4, generator=gen)
    t = torch.tensor([1, 500, 998])
    for objective in ("eps", "x0", "v"):
        target = training_target(objective, x0, noise, t, sd)
        assert diffusion_loss(target, x0, noise, t, sd, objective=objective).item() < 1e-12
        assert diffusion_loss(target + 0.5, x0, noise, t, sd, objective=objective).item() == pytest.approx(0.25)
    assert torch.equal(training_target("x0", x0, noise, t, sd), x0)
    with pytest.raises(ValueError, match="uniform, min_snr"):
        diffusion_loss(noise, x0, noise, t, sd, weighting="p2")
    with pytest.raises(ValueError, match="shape"):
        diffusion_loss(noise[:, :1], x0, noise, t, sd)


def test_diffusion_loss_has_gradients(sd):
    output = torch.zeros(2, 1, 2, 2, requires_grad=True)
    loss = diffusion_loss(output, torch.zeros(2, 1, 2, 2), torch.ones(2, 1, 2, 2), torch.tensor([3, 4]), sd)
    loss.backward()
    assert torch.allclose(output.grad, torch.full_like(output, -2.0 / 8))


# ---------------------------------------------------------------- schedule and weighting edge cases


def test_equal_beta_start_and_end_give_a_constant_schedule():
    """The documented range check is 0 < beta_start <= beta_end < 1: equal ends are a valid constant schedule."""
    betas = make_betas("linear", 10, 0.01, 0.01)
    assert torch.equal(betas, torch.full((10,), 0.01, dtype=torch.float64))
    scaled = make_betas("scaled_linear", 10, 0.01, 0.01)
    assert torch.allclose(scaled, torch.full((10,), 0.01, dtype=torch.float64), rtol=1e-12)


def test_schedule_table_is_cached_per_dtype(sd):
    """table() keeps one copy per (name, device, dtype): asking for another dtype must not return the cached one."""
    t32 = sd.table("alphas_cumprod", "cpu", torch.float32)
    t64 = sd.table("alphas_cumprod", "cpu", torch.float64)
    assert t32.dtype == torch.float32 and t64.dtype == torch.float64
    assert torch.equal(t64, sd.alphas_cumprod)
    assert sd.table("alphas_cumprod", "cpu", torch.float32) is t32, "the same request reuses the copy"
    assert sd.table("sigmas", "cpu", torch.float32).dtype == torch.float32


@pytest.mark.parametrize("objective", ["x0", "v"])
def test_min_snr_loss_uses_the_weight_of_its_objective(sd, objective):
    """x0 loss is weighted by min(SNR, gamma), v loss by min(SNR, gamma) / (SNR + 1) (Hang et al. 2023)."""
    gen = torch.Generator().manual_seed(5)
    x0, noise = torch.randn(3, 2, 4, 4, generator=gen), torch.randn(3, 2, 4, 4, generator=gen)
    t = torch.tensor([5, 400, 990])
    target = training_target(objective, x0, noise, t, sd)
    output = target + torch.randn(3, 2, 4, 4, generator=gen)
    plain = ((output - target) ** 2).flatten(1).mean(1)
    snr = (sd.alphas_cumprod[t] / (1 - sd.alphas_cumprod[t])).float()
    expected = plain * (snr.clamp(max=3.0) if objective == "x0" else snr.clamp(max=3.0) / (snr + 1))
    weighted = diffusion_loss(output, x0, noise, t, sd, objective=objective, weighting="min_snr", gamma=3.0,
                              reduction="none")
    assert torch.allclose(weighted, expected, rtol=1e-5)


def test_min_snr_rejects_a_zero_gamma():
    with pytest.raises(ValueError, match="gamma must be positive"):
        min_snr_weight(torch.tensor([1.0]), "eps", gamma=0.0)
