"""minildm.course.viz_guidance: object geometry, the guidance sweep, rows of images, the explorer."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from minildm.course.viz_guidance import (  # noqa: E402
    GuidanceExplorer,
    guidance_sweep,
    object_geometry,
    show_rows,
)
from minildm.ldm import LatentDiffusion  # noqa: E402
from minildm.metrics import JudgeClassifier, class_diversity  # noqa: E402

TINY_UNET = dict(in_channels=3, out_channels=3, model_channels=16, channel_mult=[1, 2], num_res_blocks=1,
                 attention_resolutions=[2], num_head_channels=8, context_dim=16, norm_num_groups=8)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def models() -> tuple[LatentDiffusion, JudgeClassifier]:
    torch.manual_seed(0)
    ldm = LatentDiffusion(unet=TINY_UNET, first_stage=None, image_size=8,
                          conditioner={"type": "class", "num_classes": 3, "embed_dim": 16}).eval()
    with torch.no_grad():  # an untrained UNet predicts 0 whatever the class (zero-init output): perturb it
        for parameter in ldm.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    judge = JudgeClassifier(in_channels=3, num_classes=3, width=8).eval()
    return ldm, judge


def _square(x0: int, y0: int, side: int, size: int = 16, background: float = -0.6) -> torch.Tensor:
    image = torch.full((3, size, size), background)
    image[0, y0:y0 + side, x0:x0 + side] = 0.9  # a red square on a grey background
    return image


def test_object_geometry_finds_centre_and_size_of_a_square():
    images = torch.stack([_square(2, 5, 4), _square(9, 1, 6, background=0.2), torch.full((3, 16, 16), -1.0)])
    geometry = object_geometry(images)
    torch.testing.assert_close(geometry[0], torch.tensor([3.5, 6.5, 4.0]))
    torch.testing.assert_close(geometry[1], torch.tensor([11.5, 3.5, 6.0]))
    torch.testing.assert_close(geometry[2], torch.tensor([7.5, 7.5, 0.0]))  # no object: centre, size 0
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        object_geometry(images[0])


def test_guidance_sweep_uses_the_same_noise_at_every_scale(models):
    ldm, judge = models
    labels = torch.tensor([0, 1, 2, 0])
    noise = torch.randn(4, *ldm.latent_shape, generator=torch.Generator().manual_seed(3))
    sweep = guidance_sweep(ldm, judge, labels, [1, 3], noise=noise, steps=3, batch_size=3, progress=False)
    assert sweep.guidance_scales == [1.0, 3.0] and len(sweep.images) == len(sweep.accuracy) == len(sweep.diversity) == 2
    expected = ldm.sample(labels=labels, steps=3, guidance_scale=3.0, noise=noise, progress=False)
    torch.testing.assert_close(sweep.images[1], expected, atol=1e-4, rtol=1e-3)  # batching changes nothing
    assert not torch.allclose(sweep.images[0], sweep.images[1])  # the scale does
    accuracy = (judge.predict(expected) == labels).float().mean().item()
    assert sweep.accuracy[1] == pytest.approx(accuracy)
    assert sweep.diversity[1] == pytest.approx(class_diversity(object_geometry(expected), labels))
    single = guidance_sweep(ldm, judge, labels[:3], [1], noise=noise[:3], steps=2, progress=False)
    assert math.isnan(single.diversity[0])  # every class asked once: no within-class pairs
    with pytest.raises(ValueError, match="noise has shape"):
        guidance_sweep(ldm, judge, labels, [1], noise=noise[:2], progress=False)


def test_show_rows_draws_one_row_per_tensor_with_labels():
    rows = [torch.zeros(3, 3, 8, 8), torch.ones(2, 3, 8, 8)]
    fig = show_rows(rows, ["s = 1", "s = 3"], title="t")
    assert len(fig.axes) == 2 * 3
    assert fig.axes[0].get_ylabel() == "s = 1" and fig.axes[3].get_ylabel() == "s = 3"
    assert len(fig.axes[5].images) == 0  # the second row is one image short
    with pytest.raises(ValueError, match="one label per row"):
        show_rows(rows, ["only one"])


def test_explorer_samples_the_chosen_class_and_redraws(models):
    ldm, judge = models
    explorer = GuidanceExplorer(ldm, judge, class_names=["a", "b", "c"], n=3, steps=2)
    first = explorer.run(1, 2.0)
    torch.testing.assert_close(first, ldm.sample(labels=torch.full((3,), 1), steps=2, guidance_scale=2.0,
                                                 noise=explorer.noise, progress=False))
    explorer.label.value = 2  # the change handler redraws
    fig = explorer.update()
    assert fig.texts and "c, guidance scale 3" in fig.texts[0].get_text()
    with pytest.raises(ValueError, match="class names"):
        GuidanceExplorer(ldm, class_names=["a"])
