"""minildm's `sample` reproduces diffusers' scheduler loops (diffusers is the dev-time oracle).

Every diffusers loop below runs through `sample()` with nothing but
`diffusers_sampler(name, config)`, `diffusers_schedule(name, config)` and `diffusers_options(name, config)`:
no hand-built grids, no hand-scaled start noise. Both sides get the same float64 alpha_bar table,
the same deterministic network (a fixed random channel mix of x, nonlinear and dependent on t), the
same unit start noise (diffusers multiplies it by `init_noise_sigma` itself) and, for the stochastic
samplers, a generator with the same seed: both draw one standard-normal tensor per step, in the same
order, so their fresh noise is the same. The results must agree to 1e-5 relative, and the network must
be called the same number of times at the same timesteps. diffusers' Euler-type and DPM schedulers
compute in float32 internally, hence ~1e-7 differences there.
"""

from __future__ import annotations

import itertools

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from minildm.diffusion import (  # noqa: E402
    DIFFUSERS_SAMPLERS,
    NoiseSchedule,
    ddim_step,
    diffusers_options,
    diffusers_sampler,
    diffusers_schedule,
    model_calls,
    sample,
    spaced_timesteps,
    vp_to_ve,
)

SHAPE = (2, 3, 4, 4)
STEPS = 5  # divides T = 1000: diffusers DDIM with trailing spacing then steps to the next listed timestep
RTOL = 1e-5
SD_CONFIG = {  # Stable Diffusion v1's scheduler_config.json
    "beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012, "num_train_timesteps": 1000,
    "timestep_spacing": "leading", "steps_offset": 1, "set_alpha_to_one": False, "skip_prk_steps": True,
    "clip_sample": False, "trained_betas": None,
}
CASES = [  # (id, scheduler class, config, step kwargs such as DDIM's eta)
    *[(f"{name}-default", name, {}, {}) for name in DIFFUSERS_SAMPLERS],
    *[(f"{name}-sd", name, SD_CONFIG, {}) for name in DIFFUSERS_SAMPLERS],
    ("EulerDiscreteScheduler-karras-default", "EulerDiscreteScheduler", {"use_karras_sigmas": True}, {}),
    ("EulerDiscreteScheduler-karras-sd", "EulerDiscreteScheduler", {**SD_CONFIG, "use_karras_sigmas": True}, {}),
    ("HeunDiscreteScheduler-karras-sd", "HeunDiscreteScheduler", {**SD_CONFIG, "use_karras_sigmas": True}, {}),
    ("DPMSolverMultistepScheduler-karras-sd", "DPMSolverMultistepScheduler",
     {**SD_CONFIG, "use_karras_sigmas": True}, {}),
    ("DDIMScheduler-sd-eta0.6", "DDIMScheduler", SD_CONFIG, {"eta": 0.6}),
    ("DDIMScheduler-trailing-v", "DDIMScheduler", {"timestep_spacing": "trailing", "prediction_type": "v_prediction",
                                                   "clip_sample": False}, {}),
    ("DPMSolverMultistepScheduler-x0", "DPMSolverMultistepScheduler", {"prediction_type": "sample"}, {}),
]
STOCHASTIC = {"DDPMScheduler", "EulerAncestralDiscreteScheduler"}
# diffusers calls np.array() on the float64 alpha_bar tensor we hand it; harmless here
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

_MIX = torch.randn(3, 3, generator=torch.Generator().manual_seed(123), dtype=torch.float64) / 3**0.5


def model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A deterministic stand-in for a network: a fixed random channel mix, nonlinear in x, dependent on t."""
    t = torch.as_tensor(t, dtype=x.dtype).reshape(-1).expand(x.shape[0]).reshape(-1, 1, 1, 1)
    mixed = torch.einsum("oc,bchw->bohw", _MIX.to(x.dtype), x)
    return 0.8 * torch.tanh(mixed) * torch.cos(t / 700) + 0.1 * x * torch.sin(t / 300)


def start_noise(seed: int = 0) -> torch.Tensor:
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def run_diffusers(name: str, config: dict, steps: int, noise: torch.Tensor, seed: int, **step_kwargs):
    """diffusers' own loop on our float64 alpha_bar table: (final sample, timesteps the network saw)."""
    scheduler = getattr(diffusers, name).from_config(config)  # ignores keys the class does not use
    schedule = diffusers_schedule(name, config)
    assert torch.allclose(scheduler.alphas_cumprod.double(), schedule.alphas_cumprod, rtol=1e-5), "wrong betas"
    scheduler.alphas_cumprod = schedule.alphas_cumprod.clone()  # diffusers' own table is float32
    if hasattr(scheduler, "final_alpha_cumprod"):  # DDIM / PNDM: recompute from the float64 table
        one = torch.tensor(1.0, dtype=torch.float64)
        scheduler.final_alpha_cumprod = one if scheduler.config.set_alpha_to_one else schedule.alphas_cumprod[0]
    scheduler.set_timesteps(steps)
    generator = torch.Generator().manual_seed(seed)
    if name in STOCHASTIC or step_kwargs.get("eta", 0) > 0:
        step_kwargs = {**step_kwargs, "generator": generator}
    x, seen = noise * scheduler.init_noise_sigma, []
    for t in scheduler.timesteps:
        seen.append(float(t))
        x = scheduler.step(model(scheduler.scale_model_input(x, t), t), t, x, **step_kwargs).prev_sample
    return x, seen


def run_ours(name: str, config: dict, steps: int, noise: torch.Tensor, seed: int, **step_kwargs):
    """minildm's `sample` with the translated settings: (final sample, timesteps the network saw)."""
    seen: list[float] = []

    def counted(x, t):
        seen.append(float(t[0]))
        return model(x, t)

    out = sample(counted, SHAPE, diffusers_sampler(name, config), steps, schedule=diffusers_schedule(name, config),
                 noise=noise, generator=torch.Generator().manual_seed(seed), progress=False,
                 **diffusers_options(name, config), **step_kwargs)
    return out, seen


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.fixture(scope="module")
def finals() -> dict:
    return {}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_sample_reproduces_the_diffusers_loop(case, finals):
    case_id, name, config, step_kwargs = case
    noise = start_noise()
    theirs, their_t = run_diffusers(name, config, STEPS, noise, seed=1, **step_kwargs)
    ours, our_t = run_ours(name, config, STEPS, noise, seed=1, **step_kwargs)
    assert len(our_t) == len(their_t), f"{len(our_t)} network calls vs diffusers' {len(their_t)}"
    assert our_t == pytest.approx(their_t, abs=1e-3), "the network saw other timesteps"
    ends_at_zero = diffusers_options(name, config)["final_sigma"] == "zero"
    assert len(our_t) == model_calls(diffusers_sampler(name, config), STEPS, ends_at_zero)
    assert relative_error(ours, theirs) < RTOL
    assert relative_error(ours, noise) > 0.1, "the sampler did not move"
    finals[case_id] = ours


def test_the_cases_are_different_problems(finals):
    """Guard against a vacuous pass: every scheduler/config pair gives a different sample, except the one
    pair that is the same algorithm on the same grid (DDPM = Euler ancestral, notebook 08)."""
    if len(finals) < len(CASES):
        pytest.skip("needs the full parametrized run above")
    same = {("DDPMScheduler-sd", "EulerAncestralDiscreteScheduler-sd")}
    for (a, x), (b, y) in itertools.combinations(finals.items(), 2):
        if (a, b) in same:
            assert relative_error(x, y) < RTOL
        else:
            assert relative_error(x, y) > 1e-3, f"{a} and {b} gave the same sample"


@pytest.mark.parametrize("name", ["DDPMScheduler", "EulerAncestralDiscreteScheduler"])
def test_stochastic_samplers_match_only_with_the_same_noise(name):
    """The agreement above comes from the two noise streams lining up, not from the noise being negligible."""
    noise = start_noise(2)
    theirs, _ = run_diffusers(name, SD_CONFIG, STEPS, noise, seed=3)
    same, _ = run_ours(name, SD_CONFIG, STEPS, noise, seed=3)
    other, _ = run_ours(name, SD_CONFIG, STEPS, noise, seed=4)
    assert relative_error(same, theirs) < RTOL
    assert relative_error(other, theirs) > 0.01


def test_dpm_solver_grid_and_euler_start(schedule=NoiseSchedule.from_name("linear")):
    """The two translations that used to be done by hand: DPM-Solver's grid and Euler's start noise."""
    dpm = diffusers.DPMSolverMultistepScheduler()
    dpm.set_timesteps(20)
    assert dpm.timesteps.tolist()[:3] == [999, 949, 899] and dpm.timesteps.tolist()[-1] == 50
    assert spaced_timesteps(20, 1000, diffusers_options("DPMSolverMultistepScheduler")["spacing"]).tolist() == \
        dpm.timesteps.tolist()
    euler = diffusers.EulerDiscreteScheduler()
    euler.set_timesteps(7)
    assert spaced_timesteps(7, 1000, "linspace_fractional").tolist() == pytest.approx(euler.timesteps.tolist())
    assert euler.timesteps[1] % 1 != 0, "diffusers' Euler timesteps are fractional"
    assert diffusers_options("EulerDiscreteScheduler")["start_noise"] == "sigma"
    assert diffusers_options("EulerDiscreteScheduler", {"timestep_spacing": "leading"})["start_noise"] == "vp"


@pytest.mark.parametrize("steps", [4, 10])
@pytest.mark.parametrize("config", [{}, {"set_alpha_to_one": True, "steps_offset": 1},
                                    {"timestep_spacing": "trailing"}], ids=["default", "alpha1-offset1", "trailing"])
def test_pndm_runge_kutta_warmup_matches_diffusers(config, steps):
    """PNDMScheduler's default: 3 pseudo Runge-Kutta steps (12 calls, midpoints at t - T // n // 2), then
    4th-order multistep; from n = 4 (the fewest steps with a multistep part) on, n + 9 calls."""
    noise = start_noise(4)
    theirs, their_t = run_diffusers("PNDMScheduler", config, steps, noise, seed=0)
    ours, our_t = run_ours("PNDMScheduler", config, steps, noise, seed=0)
    assert our_t == pytest.approx(their_t, abs=1e-3) and len(our_t) == steps + 9
    assert relative_error(ours, theirs) < RTOL


def test_pndm_with_an_odd_timestep_gap_keeps_one_level_per_stage():
    """With 8 steps the gap is 125 timesteps: the sample moves to 813 (t - 125 // 2) in both, but diffusers
    calls the network at 812 on it, minildm at 813 (see `timestep_midpoint`): close, not equal."""
    noise = start_noise(4)
    theirs, their_t = run_diffusers("PNDMScheduler", {}, 8, noise, seed=0)
    ours, our_t = run_ours("PNDMScheduler", {}, 8, noise, seed=0)
    assert our_t[:3] == pytest.approx([875, 813, 813], abs=1e-3) and their_t[:3] == [875, 812, 812]
    assert 1e-5 < relative_error(ours, theirs) < 3e-3


def test_pndm_sampler_follows_the_config():
    assert DIFFUSERS_SAMPLERS["PNDMScheduler"] == diffusers_sampler("PNDMScheduler") == "pndm"
    assert diffusers_sampler("PNDMScheduler", SD_CONFIG) == "plms"
    assert "midpoint" in diffusers_options("PNDMScheduler")
    assert "midpoint" not in diffusers_options("PNDMScheduler", SD_CONFIG), "plms takes no midpoint"
    assert diffusers_options("PNDMScheduler")["final_sigma"] == "sigma_min"  # set_alpha_to_one=False


def test_unsupported_settings_are_refused_with_a_reason():
    with pytest.raises(ValueError, match="rescale_betas_zero_snr=True"):
        diffusers_options("PNDMScheduler", {"rescale_betas_zero_snr": True})
    with pytest.raises(ValueError, match="solver_order=3"):
        diffusers_options("DPMSolverMultistepScheduler", {"solver_order": 3})
    with pytest.raises(ValueError, match="t - T // n"):
        diffusers_options("DDIMScheduler", {"timestep_spacing": "linspace"})
    with pytest.raises(ValueError, match="supported: DDIMScheduler"):
        diffusers_options("LMSDiscreteScheduler")
    assert diffusers_options("DDIMScheduler", {"_class_name": "PNDMScheduler", "skip_prk_steps": True}) == \
        diffusers_options("DDIMScheduler"), "keys the class does not use are ignored, as diffusers does"


# ---------------------------------------------------------------- pieces, one at a time


def test_sd_leading_timesteps_match_diffusers():
    scheduler = diffusers.DDIMScheduler.from_config(SD_CONFIG)
    scheduler.set_timesteps(5)
    assert spaced_timesteps(5, 1000, "leading", steps_offset=1).tolist() == [801, 601, 401, 201, 1]
    assert scheduler.timesteps.tolist() == [801, 601, 401, 201, 1]


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("steps", [5, 7, 50])
def test_spacings_match_diffusers(spacing, steps):
    scheduler = diffusers.DDPMScheduler(timestep_spacing=spacing)
    scheduler.set_timesteps(steps)
    assert spaced_timesteps(steps, 1000, spacing).tolist() == scheduler.timesteps.tolist()


def test_ddim_step_matches_diffusers_for_linspace_pairs():
    """One DDIM update equals diffusers' `step`, also for the pairs its linspace spacing produces.

    diffusers' DDIMScheduler always steps to t - T // n (999 -> 799 for 5 linspace steps) while
    the next listed timestep is 749; minildm's `ddim` goes to the next listed level, so whole
    linspace trajectories differ by design (diffusers_options refuses them). The single step agrees.
    """
    schedule = diffusers_schedule("DDIMScheduler", SD_CONFIG)
    scheduler = diffusers.DDIMScheduler.from_config({**SD_CONFIG, "timestep_spacing": "linspace", "steps_offset": 0})
    scheduler.alphas_cumprod = schedule.alphas_cumprod.clone()
    scheduler.final_alpha_cumprod = schedule.alphas_cumprod[0]
    scheduler.set_timesteps(5)
    assert scheduler.timesteps.tolist() == [999, 749, 500, 250, 0]
    x_t = start_noise(2)
    for t in scheduler.timesteps.tolist():
        t_prev = t - 1000 // 5
        eps = model(x_t, torch.tensor(float(t)))
        theirs = scheduler.step(eps, t, x_t, variance_noise=None).prev_sample
        sigma = schedule.sigmas[t]
        sigma_prev = schedule.sigmas[t_prev] if t_prev >= 0 else schedule.sigmas[0]
        x = vp_to_ve(x_t, sigma)
        ours = ddim_step(x, x - sigma * eps, sigma, sigma_prev)
        assert torch.allclose(vp_to_ve(theirs, sigma_prev), ours, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", ["ddim", "plms", "pndm", "dpmpp_2m", "euler", "heun"])
def test_float32_agrees_with_float64(name):
    schedule = diffusers_schedule("DDIMScheduler", SD_CONFIG)
    noise = start_noise(10)
    kwargs = dict(schedule=schedule, noise=noise, progress=False, spacing="trailing")
    x64 = sample(model, SHAPE, name, 10, dtype=torch.float64, **kwargs)
    x32 = sample(model, SHAPE, name, 10, dtype=torch.float32, **kwargs)
    assert x32.dtype == torch.float32
    assert ((x32.double() - x64).abs().max() / x64.abs().max()).item() < 1e-4


@pytest.mark.parametrize("steps", [14, 15, 16])
def test_dpm_solver_ending_at_sigma_min_is_second_order_to_the_end_from_15_steps(steps):
    """diffusers' lower_order_final: a run that does not end at sigma = 0 takes its last step first order only
    when it has fewer than 15 steps; the steps = 15 boundary is where the two choices part."""
    config = {"final_sigmas_type": "sigma_min"}
    assert diffusers_options("DPMSolverMultistepScheduler", config)["final_sigma"] == "sigma_min"
    noise = start_noise(5)
    theirs, their_t = run_diffusers("DPMSolverMultistepScheduler", config, steps, noise, seed=0)
    ours, our_t = run_ours("DPMSolverMultistepScheduler", config, steps, noise, seed=0)
    assert our_t == pytest.approx(their_t, abs=1e-3)
    assert relative_error(ours, theirs) < RTOL
