"""minildm's samplers reproduce diffusers' schedulers step by step (diffusers is the dev-time oracle).

Both sides get the same float64 alpha_bar table, the same deterministic model (a smooth
nonlinear function of x and t), the same starting noise and, for stochastic samplers, the
same generator seed (both draw one standard-normal tensor per step, in the same order).
Trajectories are compared after every step, in the sigma scale, to 1e-5 relative.
diffusers' Euler-type and DPM schedulers compute in float32 internally, hence ~1e-7 there.
"""

from __future__ import annotations

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from minildm.diffusion import (  # noqa: E402
    NoiseSchedule,
    ddim_step,
    sample,
    sampling_sigmas,
    spaced_timesteps,
    vp_to_ve,
)

SD = dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
SHAPE = (2, 3, 4, 4)
RTOL = 1e-5
OBJECTIVE = {"epsilon": "eps", "sample": "x0", "v_prediction": "v"}
# diffusers calls np.array() on the float64 alpha_bar tensor we hand it; harmless here
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(scope="module")
def schedule() -> NoiseSchedule:
    return NoiseSchedule.from_name("scaled_linear", 1000, 0.00085, 0.012)


def model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A deterministic stand-in for a network: smooth, nonlinear, and dependent on t."""
    t = torch.as_tensor(t, dtype=x.dtype).reshape(-1, *([1] * (x.ndim - 1)))
    return 0.5 * torch.tanh(x) * torch.cos(t / 1000) + 0.05 * x


def start_noise(seed: int = 0) -> torch.Tensor:
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def make_scheduler(cls, schedule: NoiseSchedule, **config):
    """A diffusers scheduler on exactly our float64 alpha_bar table (it would otherwise use float32)."""
    scheduler = cls(**{**SD, **config})
    scheduler.alphas_cumprod = schedule.alphas_cumprod.clone()
    if hasattr(scheduler, "final_alpha_cumprod"):
        set_alpha_to_one = config.get("set_alpha_to_one", cls.__name__ == "DDIMScheduler")
        scheduler.final_alpha_cumprod = torch.tensor(1.0, dtype=torch.float64) if set_alpha_to_one else schedule.alphas_cumprod[0]
    return scheduler


def run_diffusers(scheduler, init: torch.Tensor, seed: int | None = None, skip_first: bool = False, **step_kwargs):
    """Run a diffusers scheduler loop; return the samples after each full step (its own scale)."""
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    x, points = init, []
    for i, t in enumerate(scheduler.timesteps):
        out = model(scheduler.scale_model_input(x, t), t.double())
        extra = {"generator": generator} if generator is not None else {}
        x = scheduler.step(out, t, x, **step_kwargs, **extra).prev_sample
        first_order_state = getattr(scheduler, "state_in_first_order", True)  # Heun: predictor half-steps
        if first_order_state and not (skip_first and i == 0):
            points.append(x)
    if not getattr(scheduler, "state_in_first_order", True):
        points.append(x)
    return points


def run_ours(name: str, schedule: NoiseSchedule, noise: torch.Tensor, steps: int, seed: int | None = None, **kwargs):
    """Run minildm's `sample`; return the samples after each step in the sigma scale."""
    sigmas = sampling_sigmas(
        schedule,
        steps,
        **{k: kwargs[k] for k in ("spacing", "steps_offset", "karras", "final_sigma") if k in kwargs},
    )
    points: list[torch.Tensor] = []
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    final = sample(
        model,
        SHAPE,
        name,
        steps,
        schedule=schedule,
        noise=noise,
        dtype=torch.float64,
        generator=generator,
        disable=True,
        callback=lambda i, x, x0: points.append(vp_to_ve(x, sigmas[i + 1])),
        **kwargs,
    )
    return points, final


def assert_trajectories_match(ours: list[torch.Tensor], theirs: list[torch.Tensor], to_ve=None) -> None:
    assert len(ours) == len(theirs), f"{len(ours)} steps vs diffusers' {len(theirs)}"
    for i, (a, b) in enumerate(zip(ours, theirs)):
        b = to_ve(b, i) if to_ve is not None else b
        err = ((a - b).abs().max() / b.abs().max()).item()
        assert err < RTOL, f"step {i}: relative difference {err:.2e}"


def vp_points_to_ve(sigmas: torch.Tensor):
    return lambda x, i: vp_to_ve(x, sigmas[i + 1])


def test_sd_leading_timesteps_match_diffusers():
    scheduler = diffusers.DDIMScheduler(**SD, steps_offset=1)
    scheduler.set_timesteps(5)
    assert spaced_timesteps(5, 1000, "leading", steps_offset=1).tolist() == [801, 601, 401, 201, 1]
    assert scheduler.timesteps.tolist() == [801, 601, 401, 201, 1]


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("steps", [5, 7, 50])
def test_spacings_match_diffusers(spacing, steps):
    scheduler = diffusers.DDIMScheduler(**SD, timestep_spacing=spacing)
    scheduler.set_timesteps(steps)
    assert spaced_timesteps(steps, 1000, spacing).tolist() == scheduler.timesteps.tolist()


@pytest.mark.parametrize("eta", [0.0, 0.6])
def test_ddim_stable_diffusion_setting(schedule, eta):
    """scaled_linear 0.00085/0.012, leading + steps_offset 1, set_alpha_to_one=False."""
    noise = start_noise()
    scheduler = make_scheduler(diffusers.DDIMScheduler, schedule, clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    scheduler.set_timesteps(5)
    theirs = run_diffusers(scheduler, noise, seed=1, eta=eta)
    options = dict(spacing="leading", steps_offset=1, final_sigma="sigma_min")
    ours, final = run_ours("ddim", schedule, noise, 5, seed=1, eta=eta, **options)
    sigmas = sampling_sigmas(schedule, 5, **options)
    assert_trajectories_match(ours, theirs, vp_points_to_ve(sigmas))
    assert torch.allclose(final, theirs[-1], rtol=0, atol=RTOL * theirs[-1].abs().max())


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample", "v_prediction"])
def test_ddim_trailing_all_objectives(schedule, prediction_type):
    noise = start_noise(1)
    scheduler = make_scheduler(
        diffusers.DDIMScheduler, schedule, clip_sample=False, timestep_spacing="trailing", prediction_type=prediction_type
    )
    scheduler.set_timesteps(10)
    theirs = run_diffusers(scheduler, noise)
    ours, _ = run_ours("ddim", schedule, noise, 10, spacing="trailing", objective=OBJECTIVE[prediction_type])
    assert_trajectories_match(ours, theirs, vp_points_to_ve(sampling_sigmas(schedule, 10, "trailing")))


def test_ddim_step_matches_diffusers_for_linspace_pairs(schedule):
    """One DDIM update equals diffusers' `step`, also for the pairs its linspace spacing produces.

    diffusers' DDIMScheduler always steps to t - T // n (999 -> 799 for 5 linspace steps) while
    the next listed timestep is 749; minildm's `ddim` goes to the next listed level, so whole
    linspace trajectories differ by design. The single step agrees for any pair.
    """
    scheduler = make_scheduler(diffusers.DDIMScheduler, schedule, clip_sample=False, timestep_spacing="linspace")
    scheduler.set_timesteps(5)
    assert scheduler.timesteps.tolist() == [999, 749, 500, 250, 0]
    x_t = start_noise(2)
    for t in scheduler.timesteps.tolist():
        t_prev = t - 1000 // 5
        eps = model(x_t, torch.tensor(float(t)))
        theirs = scheduler.step(eps, t, x_t, variance_noise=None).prev_sample
        sigma = schedule.sigmas[t]
        sigma_prev = schedule.sigmas[t_prev] if t_prev >= 0 else torch.tensor(0.0, dtype=torch.float64)
        x = vp_to_ve(x_t, sigma)
        ours = ddim_step(x, x - sigma * eps, sigma, sigma_prev)
        assert torch.allclose(vp_to_ve(theirs, sigma_prev), ours, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("spacing", ["leading", "linspace"])
def test_ddpm_ancestral(schedule, spacing):
    noise = start_noise(3)
    scheduler = make_scheduler(diffusers.DDPMScheduler, schedule, clip_sample=False, timestep_spacing=spacing)
    scheduler.set_timesteps(10)
    theirs = run_diffusers(scheduler, noise, seed=4)
    ours, _ = run_ours("ddpm", schedule, noise, 10, seed=4, spacing=spacing)
    assert_trajectories_match(ours, theirs, vp_points_to_ve(sampling_sigmas(schedule, 10, spacing)))


def test_plms_is_pndm_with_skip_prk_steps(schedule):
    noise = start_noise(4)
    scheduler = make_scheduler(diffusers.PNDMScheduler, schedule, skip_prk_steps=True, steps_offset=1)
    scheduler.set_timesteps(10)
    theirs = run_diffusers(scheduler, noise, skip_first=True)  # its first call is PLMS' warm-up half-step
    options = dict(spacing="leading", steps_offset=1, final_sigma="sigma_min")
    ours, _ = run_ours("plms", schedule, noise, 10, **options)
    assert_trajectories_match(ours, theirs, vp_points_to_ve(sampling_sigmas(schedule, 10, **options)))


@pytest.mark.parametrize(
    "steps, karras, final_sigma",
    [(10, False, "zero"), (10, True, "zero"), (20, False, "sigma_min")],  # 20 steps, sigma_min: 2nd-order last step
)
def test_dpmpp_2m(schedule, steps, karras, final_sigma):
    noise = start_noise(5)
    scheduler = make_scheduler(
        diffusers.DPMSolverMultistepScheduler,
        schedule,
        algorithm_type="dpmsolver++",
        solver_order=2,
        timestep_spacing="trailing",
        use_karras_sigmas=karras,
        final_sigmas_type=final_sigma,
    )
    scheduler.set_timesteps(steps)
    theirs = run_diffusers(scheduler, noise)
    # diffusers' DPM-Solver hands the network rounded timesteps for Karras sigmas: quantize=True
    options = dict(spacing="trailing", karras=karras, final_sigma=final_sigma)
    ours, _ = run_ours("dpmpp_2m", schedule, noise, steps, quantize=karras, **options)
    assert_trajectories_match(ours, theirs, vp_points_to_ve(sampling_sigmas(schedule, steps, **options)))


def ve_start(scheduler, noise: torch.Tensor, sigma_max: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """diffusers' Euler-type start (noise * init_noise_sigma) and the unit noise that gives it in minildm."""
    init = noise * scheduler.init_noise_sigma
    return init, init / (sigma_max.double() ** 2 + 1).sqrt()


@pytest.mark.parametrize(
    "cls_name, name",
    [("EulerDiscreteScheduler", "euler"), ("HeunDiscreteScheduler", "heun")],
)
@pytest.mark.parametrize("karras", [False, True])
def test_euler_and_heun(schedule, cls_name, name, karras):
    noise = start_noise(6)
    # diffusers' Karras range is that of the spaced timesteps; linspace spans all of [0, T-1] as minildm does
    spacing = "linspace" if karras else "trailing"
    scheduler = make_scheduler(getattr(diffusers, cls_name), schedule, timestep_spacing=spacing, use_karras_sigmas=karras)
    scheduler.set_timesteps(8)
    init, ours_noise = ve_start(scheduler, noise, scheduler.sigmas.max())
    theirs = run_diffusers(scheduler, init)
    ours, _ = run_ours(name, schedule, ours_noise, 8, spacing=spacing, karras=karras)
    assert_trajectories_match(ours, theirs)


def test_euler_on_rounded_linspace_timesteps(schedule):
    """diffusers' Euler keeps fractional linspace timesteps; given minildm's rounded ones it agrees."""
    noise = start_noise(7)
    scheduler = make_scheduler(diffusers.EulerDiscreteScheduler, schedule, timestep_spacing="linspace")
    scheduler.set_timesteps(timesteps=spaced_timesteps(6, 1000, "linspace").tolist())
    init, ours_noise = ve_start(scheduler, noise, scheduler.sigmas.max())
    theirs = run_diffusers(scheduler, init)
    ours, _ = run_ours("euler", schedule, ours_noise, 6, spacing="linspace")
    assert_trajectories_match(ours, theirs)


@pytest.mark.parametrize("spacing", ["leading", "trailing"])
def test_euler_ancestral(schedule, spacing):
    noise = start_noise(8)
    scheduler = make_scheduler(diffusers.EulerAncestralDiscreteScheduler, schedule, timestep_spacing=spacing)
    scheduler.set_timesteps(10)
    init, ours_noise = ve_start(scheduler, noise, scheduler.sigmas.max())
    theirs = run_diffusers(scheduler, init, seed=9)
    ours, _ = run_ours("euler_ancestral", schedule, ours_noise, 10, seed=9, spacing=spacing)
    assert_trajectories_match(ours, theirs)


@pytest.mark.parametrize("name", ["ddim", "plms", "dpmpp_2m", "euler", "heun"])
def test_float32_agrees_with_float64(schedule, name):
    noise = start_noise(10)
    kwargs = dict(schedule=schedule, noise=noise, disable=True, spacing="trailing")
    x64 = sample(model, SHAPE, name, 10, dtype=torch.float64, **kwargs)
    x32 = sample(model, SHAPE, name, 10, dtype=torch.float32, **kwargs)
    assert x32.dtype == torch.float32
    assert ((x32.double() - x64).abs().max() / x64.abs().max()).item() < 1e-4
