"""Replacement sampling (minildm.diffusion.replacement): the known region of the clean estimate is the known latent."""

import pytest
import torch

from minildm.diffusion import NoiseSchedule, output_from_x0, replacement_model_fn, sample, x0_from_output


def schedule():
    return NoiseSchedule.from_name("scaled_linear", num_timesteps=1000, beta_start=0.0015, beta_end=0.0195)


@pytest.mark.parametrize("objective", ["eps", "x0", "v"])
def test_output_from_x0_inverts_x0_from_output(objective):
    x_t, x0 = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4)
    alpha_bar = torch.rand(3, 1, 1, 1) * 0.9 + 0.05
    output = output_from_x0(x_t, alpha_bar, x0, objective)
    assert torch.allclose(x0_from_output(x_t, alpha_bar, output, objective), x0, atol=1e-5)


@pytest.mark.parametrize("objective", ["eps", "x0", "v"])
def test_known_cells_take_the_known_latent_and_the_hole_is_untouched(objective):
    sched = schedule()
    torch.manual_seed(0)
    net_out = torch.randn(2, 3, 4, 4)
    model_fn = lambda x_t, t: net_out  # noqa: E731  (a network with a fixed answer)
    z_known = torch.randn(2, 3, 4, 4)
    fill = torch.zeros(2, 1, 4, 4)
    fill[:, :, :2] = 1  # the top half is the hole
    wrapped = replacement_model_fn(model_fn, z_known, fill, sched, objective)
    x_t, t = torch.randn(2, 3, 4, 4), torch.tensor([123.4, 700.0])
    alpha_bar = (1 / (sched.t_to_sigma(t) ** 2 + 1)).float().view(-1, 1, 1, 1)
    x0 = x0_from_output(x_t, alpha_bar, wrapped(x_t, t), objective)
    assert torch.allclose(x0[:, :, 2:], z_known[:, :, 2:], atol=1e-4)
    assert torch.allclose(x0[:, :, :2], x0_from_output(x_t, alpha_bar, net_out, objective)[:, :, :2], atol=1e-4)


def test_sampling_with_nothing_to_fill_returns_the_known_latent():
    sched = schedule()
    z_known = torch.randn(2, 3, 4, 4)
    wrapped = replacement_model_fn(lambda x_t, t: torch.zeros_like(x_t), z_known, torch.zeros(2, 1, 4, 4), sched)
    z = sample(wrapped, (2, 3, 4, 4), "dpmpp_2m", 10, schedule=sched, generator=torch.Generator().manual_seed(0),
               progress=False)
    assert torch.allclose(z, z_known, atol=1e-4)


def test_bad_fill_shape_raises():
    with pytest.raises(ValueError, match="fill must be"):
        replacement_model_fn(lambda x, t: x, torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 4), schedule())
