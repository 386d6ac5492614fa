"""minildm.course.viz_diffusion: the trajectory recorder, plots and the explorer."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from minildm.course.viz_diffusion import (  # noqa: E402
    SamplerExplorer,
    TrajectoryRecorder,
    plot_schedules,
    show_forward_process,
    show_trajectory,
)
from minildm.diffusion import NoiseSchedule, sample  # noqa: E402
from minildm.diffusion.gaussian_mixture import GaussianMixture  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_recorder_keeps_every_step_and_picks_evenly():
    schedule = NoiseSchedule.from_name("linear", 1000)
    recorder = TrajectoryRecorder()
    mixture = GaussianMixture.ring()
    sample(mixture.model_fn(schedule), (3, 2), "ddim", 7, schedule=schedule, callback=recorder, progress=False)
    assert len(recorder) == 7 and recorder.steps == list(range(7))
    assert recorder.x_t[0].shape == (3, 2) and recorder.x0_hat[-1].shape == (3, 2)
    assert recorder.pick(3) == [0, 3, 6]
    assert recorder.pick(100) == list(range(7))
    with pytest.raises(ValueError, match="nothing recorded"):
        TrajectoryRecorder().pick(2)


def test_figures_have_one_panel_per_item():
    schedules = {name: NoiseSchedule.from_name(name, 100) for name in ("linear", "cosine")}
    assert len(plot_schedules(schedules).axes) == 3
    fig = show_forward_process(torch.zeros(1, 8, 8), schedules, [0, 50, 99])
    assert len(fig.axes) == 2 * 3
    fig = show_trajectory([torch.zeros(5, 3, 4, 4)] * 4, labels=list("abcd"), max_samples=2)
    assert len(fig.axes) == 2 * 4
    with pytest.raises(ValueError, match="one label per frame"):
        show_trajectory([torch.zeros(1, 1, 4, 4)], labels=["a", "b"])


def test_explorer_runs_headless_and_reports_its_settings():
    explorer = SamplerExplorer(GaussianMixture.ring(), NoiseSchedule.from_name("scaled_linear"), n=64, steps=4)
    samples, path = explorer.run("heun", 4)
    assert samples.shape == (64, 2) and path.shape == (5, 12, 2)
    explorer.sampler.value = "heun"  # triggers update() through the widget
    fig = explorer.update()
    title = fig.axes[0].get_title()
    assert "heun" in title and "7 model calls" in title
    assert explorer.eta.disabled
    with pytest.raises(ValueError, match="2-D"):
        SamplerExplorer(GaussianMixture(torch.zeros(2, 3)), NoiseSchedule.from_name("linear"))
