"""Samplers on a problem with a known answer, classifier-free guidance, and the `sample` entry point.

Toy problem: data x_0 ~ N(mu, s^2) independently per coordinate. Then x_t = sqrt(a) x_0 + sqrt(1-a) eps
is Gaussian too and the exact denoiser is the posterior mean
    E[x_0 | x_t] = mu + sqrt(a) s^2 / (a s^2 + 1 - a) * (x_t - sqrt(a) mu),
so every sampler, given this "perfect network" and enough steps, must produce N(mu, s^2).
"""

from __future__ import annotations

import inspect

import pytest
import torch

from minildm.diffusion import (
    SAMPLER_NAMES,
    SAMPLERS,
    NoiseSchedule,
    cfg_combine,
    cfg_model,
    ddim,
    ddpm,
    euler_ancestral,
    make_denoiser,
    model_calls,
    rescale_guidance,
    sample,
    sampling_sigmas,
    vp_to_ve,
)

MU, S = 0.5, 0.5
N = 4000


@pytest.fixture(scope="module")
def schedule() -> NoiseSchedule:
    return NoiseSchedule.from_name("scaled_linear", 1000, 0.00085, 0.012)


def gaussian_x0_model(schedule: NoiseSchedule):
    """The exact x0-predicting network for data N(MU, S^2), at continuous timesteps."""

    def model_fn(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        sigma = schedule.t_to_sigma(t).to(x_t.dtype).view(-1, *([1] * (x_t.ndim - 1)))
        a = 1 / (1 + sigma**2)
        return MU + a.sqrt() * S**2 / (a * S**2 + 1 - a) * (x_t - a.sqrt() * MU)

    return model_fn


def as_eps_model(x0_model, schedule: NoiseSchedule):
    """The same network re-parameterised to predict eps (checks the objective plumbing)."""

    def model_fn(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        sigma = schedule.t_to_sigma(t).to(x_t.dtype).view(-1, *([1] * (x_t.ndim - 1)))
        a = 1 / (1 + sigma**2)
        return (x_t - a.sqrt() * x0_model(x_t, t)) / (1 - a).sqrt()

    return model_fn


STEPS = {"ddpm": 100, "ddim": 100, "plms": 50, "pndm": 25, "dpmpp_2m": 25, "euler": 100, "euler_ancestral": 100, "heun": 25}


def exact_prior(schedule: NoiseSchedule, z: torch.Tensor) -> torch.Tensor:
    """x_T with the true marginal of the toy data at t = T-1 (not N(0, I): the SD schedule's
    terminal SNR is not zero, Lin et al. 2023), so only the sampler's own error remains."""
    a = schedule.alphas_cumprod[-1].item()
    return a**0.5 * MU + (a * S**2 + 1 - a) ** 0.5 * z


@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_every_sampler_recovers_the_gaussian(schedule, name):
    z = torch.randn(N, 1, generator=torch.Generator().manual_seed(0))
    out = sample(
        gaussian_x0_model(schedule),
        (N, 1),
        name,
        STEPS[name],
        schedule=schedule,
        objective="x0",
        karras=True,
        noise=exact_prior(schedule, z),
        generator=torch.Generator().manual_seed(1),
        progress=False,
    )
    assert out.shape == (N, 1) and out.dtype == torch.float32
    assert out.mean().item() == pytest.approx(MU, abs=0.02), name
    assert out.std().item() == pytest.approx(S, abs=0.025), name


def ode_map(schedule: NoiseSchedule, name: str, steps: int) -> tuple[float, float]:
    """The deterministic sampler maps z to A + B z (everything is affine here); return (A, B).

    The exact probability-flow ODE maps the prior onto the data: A = MU, B = S."""
    z = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    out = sample(
        as_eps_model(gaussian_x0_model(schedule), schedule),
        (2, 1),
        name,
        steps,
        schedule=schedule,
        karras=True,
        noise=exact_prior(schedule, z),
        dtype=torch.float64,
        progress=False,
    )
    return out[0].item(), (out[1] - out[0]).item()


@pytest.mark.parametrize("name", ["plms", "pndm", "dpmpp_2m", "heun"])
def test_higher_order_samplers_follow_the_exact_ode(schedule, name):
    intercept, slope = ode_map(schedule, name, 30)
    assert intercept == pytest.approx(MU, abs=0.005)
    assert slope == pytest.approx(S, abs=0.005)


def test_higher_order_beats_first_order_at_equal_steps(schedule):
    errors = {name: abs(ode_map(schedule, name, 15)[1] - S) for name in ("euler", "ddim", "heun", "dpmpp_2m")}
    assert errors["euler"] == pytest.approx(errors["ddim"], abs=1e-9), "DDIM (eta = 0) is Euler in sigma"
    assert errors["heun"] < errors["euler"] / 3
    assert errors["dpmpp_2m"] < errors["euler"] / 3


def test_too_few_steps_is_worse_than_many(schedule):
    """The quality-vs-steps trade-off notebook 08 shows: 2 Euler steps miss the target std."""
    model = gaussian_x0_model(schedule)
    kwargs = dict(schedule=schedule, objective="x0", progress=False, generator=torch.Generator().manual_seed(2))
    few = sample(model, (N, 1), "euler", 2, **kwargs)
    many = sample(model, (N, 1), "euler", 100, **kwargs)
    assert abs(few.std().item() - S) > 3 * abs(many.std().item() - S)


def test_ddpm_equals_ddim_eta1_equals_euler_ancestral(schedule):
    """Three names, one update: DDPM ancestral = DDIM with eta = 1 = Euler ancestral."""
    denoise = make_denoiser(gaussian_x0_model(schedule), schedule, "x0")
    sigmas = sampling_sigmas(schedule, 10)
    x = vp_to_ve(torch.randn(64, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64), sigmas[0])
    runs = [
        f(denoise, x, sigmas, generator=torch.Generator().manual_seed(4), progress=False, **kw)
        for f, kw in [(ddpm, {}), (ddim, {"eta": 1.0}), (euler_ancestral, {})]
    ]
    assert torch.allclose(runs[0], runs[1], atol=1e-12)
    assert torch.allclose(runs[0], runs[2], atol=1e-10)
    other_seed = ddpm(denoise, x, sigmas, generator=torch.Generator().manual_seed(5), progress=False)
    assert not torch.allclose(runs[0], other_seed)


@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_model_calls_and_callback(schedule, name):
    calls = []
    x0_model = gaussian_x0_model(schedule)

    def counting_model(x_t, t):
        calls.append(t)
        return x0_model(x_t, t)

    seen = []
    sample(
        counting_model,
        (3, 2, 2),
        name,
        6,
        schedule=schedule,
        objective="x0",
        progress=False,
        callback=seen.append,
    )
    assert len(calls) == model_calls(name, 6) == SAMPLERS[name].nfe(6, True)
    sigmas = sampling_sigmas(schedule, 6)
    assert [info["step"] for info in seen] == list(range(6))
    assert all(set(info) == {"step", "sigma", "x", "denoised"} for info in seen)
    assert [float(info["sigma"]) for info in seen] == pytest.approx(sigmas[:-1].tolist())
    assert all(info["x"].shape == (3, 2, 2) and info["denoised"].shape == (3, 2, 2) for info in seen)
    assert float(calls[0].max()) == pytest.approx(999.0)  # trailing spacing starts at pure noise


def test_callback_reports_the_denoiser_at_the_level_of_x(schedule):
    """As in k-diffusion: x is the sample at `sigma` (sigma scale) and `denoised` = D(x, sigma)."""
    denoise = make_denoiser(gaussian_x0_model(schedule), schedule, "x0")
    seen = []
    noise = torch.randn(5, 2, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    sample(gaussian_x0_model(schedule), (5, 2), "dpmpp_2m", 4, schedule=schedule, objective="x0", noise=noise,
           callback=seen.append, progress=False)
    assert torch.allclose(seen[0]["x"], vp_to_ve(noise, seen[0]["sigma"]))
    for info in seen:
        assert torch.allclose(info["denoised"], denoise(info["x"], info["sigma"]))


def test_registry_is_the_one_home_of_nfe_and_options():
    assert SAMPLER_NAMES == tuple(SAMPLERS) == ("ddpm", "ddim", "plms", "pndm", "dpmpp_2m", "euler",
                                                "euler_ancestral", "heun")
    assert [SAMPLERS[n].model_calls(10) for n in SAMPLER_NAMES] == [10, 10, 11, 19, 10, 10, 10, 19]
    assert model_calls("plms", 1) == 1 and model_calls("plms", 1, ends_at_zero=False) == 2
    assert [model_calls("pndm", n) for n in (1, 2, 3, 4)] == [1, 5, 9, 13]  # no Runge-Kutta step ends at 0
    assert [model_calls("pndm", n, ends_at_zero=False) for n in (1, 2, 3, 4)] == [4, 8, 12, 13]
    assert model_calls("heun", 3, ends_at_zero=False) == 6
    assert {n for n in SAMPLER_NAMES if "eta" in SAMPLERS[n].options} == {"ddim", "euler_ancestral"}
    assert {n for n in SAMPLER_NAMES if SAMPLERS[n].stochastic} == {"ddpm", "ddim", "euler_ancestral"}
    for name, spec in SAMPLERS.items():  # the registered options are exactly the function's own keywords
        params = inspect.signature(spec.fn).parameters
        own = {p for p, v in params.items() if v.kind is v.KEYWORD_ONLY} - {"callback", "progress"}
        assert own == set(spec.options), name


@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_nfe_formula_also_for_a_sigma_min_end(schedule, name):
    calls = []
    model = gaussian_x0_model(schedule)
    sample(lambda x, t: calls.append(t) or model(x, t), (2, 1), name, 5, schedule=schedule, objective="x0",
           final_sigma="sigma_min", progress=False)
    assert len(calls) == model_calls(name, 5, ends_at_zero=False)


def test_sample_rejects_bad_inputs(schedule):
    model = gaussian_x0_model(schedule)
    with pytest.raises(ValueError, match="ddpm, ddim, plms, pndm, dpmpp_2m, euler, euler_ancestral, heun"):
        sample(model, (2, 1), "lms", schedule=schedule)
    with pytest.raises(ValueError, match="noise has shape"):
        sample(model, (2, 1), "ddim", schedule=schedule, noise=torch.zeros(3, 1))
    with pytest.raises(ValueError, match="eps, x0, v"):
        sample(model, (2, 1), "ddim", schedule=schedule, objective="score")
    with pytest.raises(ValueError, match="'euler' takes no option 'eta'.*eta is an option of ddim, euler_ancestral"):
        sample(model, (2, 1), "euler", 2, schedule=schedule, eta=0.5, progress=False)
    with pytest.raises(ValueError, match="valid values: vp, sigma"):
        sample(model, (2, 1), "euler", 2, schedule=schedule, start_noise="unit")


def test_sample_is_reproducible_with_a_generator(schedule):
    model = gaussian_x0_model(schedule)
    a = sample(model, (8, 2), "euler_ancestral", 5, schedule=schedule, objective="x0", generator=torch.Generator().manual_seed(7), progress=False)
    b = sample(model, (8, 2), "euler_ancestral", 5, schedule=schedule, objective="x0", generator=torch.Generator().manual_seed(7), progress=False)
    assert torch.equal(a, b)


# ---------------------------------------------------------------- classifier-free guidance


def conditional_model(calls: list | None = None):
    """A toy conditional network whose output depends on x, t and, per row, on the condition."""

    def model(x, t, cond):
        if calls is not None:
            calls.append(x.shape[0])
        c = cond["emb"] if isinstance(cond, dict) else cond
        return torch.tanh(x) * torch.cos(t / 1000).view(-1, 1) + c.view(x.shape[0], -1)[:, :1] * x

    return model


def test_cfg_combine_formula():
    u, c = torch.tensor([1.0, 2.0]), torch.tensor([3.0, 0.0])
    assert torch.equal(cfg_combine(u, c, 1.0), c)
    assert torch.equal(cfg_combine(u, c, 0.0), u)
    assert torch.equal(cfg_combine(u, c, 7.5), u + 7.5 * (c - u))


def test_cfg_scale_one_is_the_conditional_model():
    calls: list[int] = []
    model = conditional_model(calls)
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([10.0, 200.0, 500.0, 999.0])
    cond, uncond = torch.randn(4, 5), torch.zeros(1, 5)
    guided = cfg_model(model, cond, uncond, guidance_scale=1.0)(x, t)
    assert calls == [8], "cond and uncond must share one batched call"
    assert torch.allclose(guided, model(x, t, cond), atol=1e-6)


def test_cfg_batches_rows_correctly():
    model = conditional_model()
    x = torch.randn(3, 2, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([1.0, 400.0, 900.0])
    cond, uncond = torch.tensor([[1.0], [2.0], [3.0]]), torch.tensor([[-1.0], [0.5], [0.0]])
    guided = cfg_model(model, {"emb": cond}, {"emb": uncond}, guidance_scale=4.0)(x, t)
    expected = cfg_combine(model(x, t, uncond), model(x, t, cond), 4.0)
    assert torch.allclose(guided, expected, atol=1e-6)
    swapped = cfg_model(model, cond.flip(0), uncond, guidance_scale=4.0)(x, t)
    assert not torch.allclose(guided, swapped)


def test_cfg_errors_name_the_problem():
    model = conditional_model()
    x, t = torch.randn(3, 2), torch.tensor([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="cond has batch size 2"):
        cfg_model(model, torch.zeros(2, 1), torch.zeros(1, 1), 3.0)(x, t)
    with pytest.raises(ValueError, match="rescale"):
        cfg_model(model, torch.zeros(3, 1), torch.zeros(1, 1), 3.0, guidance_rescale=1.5)
    with pytest.raises(TypeError, match="tensor or a dict"):
        cfg_model(model, [1, 2, 3], torch.zeros(1, 1), 3.0)(x, t)


def test_guidance_rescale_restores_the_conditional_std():
    gen = torch.Generator().manual_seed(2)
    cond_out, uncond_out = torch.randn(2, 4, 8, 8, generator=gen), torch.randn(2, 4, 8, 8, generator=gen)
    guided = cfg_combine(uncond_out, cond_out, 7.5)
    full = rescale_guidance(guided, cond_out, guidance_rescale=1.0)
    assert torch.allclose(full.std(dim=(1, 2, 3)), cond_out.std(dim=(1, 2, 3)), atol=1e-5)
    assert torch.equal(rescale_guidance(guided, cond_out, guidance_rescale=0.0), guided)
    half = rescale_guidance(guided, cond_out, guidance_rescale=0.5)
    assert torch.allclose(half, 0.5 * full + 0.5 * guided, atol=1e-6)


def test_guided_sampling_end_to_end(schedule):
    """sample() accepts a cfg_model-wrapped network; guidance moves samples toward the condition."""
    x0_model = gaussian_x0_model(schedule)

    def model(x, t, cond):  # condition = a shift of the data mean
        return x0_model(x, t) + cond.view(-1, 1)

    cond, uncond = torch.full((N,), 0.5), torch.zeros(1)
    kwargs = dict(schedule=schedule, objective="x0", progress=False, generator=torch.Generator().manual_seed(3))
    plain = sample(cfg_model(model, cond, uncond, 1.0), (N, 1), "ddim", 20, **kwargs)
    strong = sample(cfg_model(model, cond, uncond, 3.0), (N, 1), "ddim", 20, **kwargs)
    assert strong.mean().item() > plain.mean().item() + 0.5


@pytest.mark.parametrize("phi", [0.7, 1.0])
def test_cfg_model_applies_guidance_rescale(phi):
    """cfg_model with guidance_rescale = phi (phi = 1 included) is rescale_guidance of the combined outputs."""
    model = conditional_model()
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(3, 6, generator=gen)
    t = torch.tensor([50.0, 500.0, 950.0])
    cond, uncond = torch.tensor([[1.5], [-2.0], [3.0]]), torch.tensor([[0.0]])
    out_cond, out_uncond = model(x, t, cond), model(x, t, uncond.expand(3, 1))
    expected = rescale_guidance(cfg_combine(out_uncond, out_cond, 5.0), out_cond, phi)
    guided = cfg_model(model, cond, uncond, 5.0, guidance_rescale=phi)(x, t)
    assert torch.allclose(guided, expected, atol=1e-6)
    assert not torch.allclose(guided, cfg_combine(out_uncond, out_cond, 5.0), atol=1e-3)


def test_cfg_model_refuses_dict_conditions_with_different_keys():
    model = conditional_model()
    x, t = torch.randn(2, 2), torch.tensor([1.0, 2.0])
    cond = {"emb": torch.ones(2, 1), "mask": torch.ones(2, 1)}
    with pytest.raises(ValueError, match="same keys"):
        cfg_model(model, cond, {"emb": torch.zeros(1, 1)}, 3.0)(x, t)
    with pytest.raises(ValueError, match="same keys"):
        cfg_model(model, {"emb": torch.ones(2, 1)}, {"emb": torch.zeros(1, 1), "extra": torch.zeros(1, 1)}, 3.0)(x, t)
