"""minildm.course.viz_inpainting: rectangle masks, the hole overlay, the inpainting explorer."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from minildm.conditioning import paste_back  # noqa: E402
from minildm.course.viz_inpainting import InpaintingExplorer, mask_overlay, rectangle_mask  # noqa: E402
from minildm.ldm import LatentDiffusion  # noqa: E402

TINY_UNET = dict(in_channels=7, out_channels=3, model_channels=16, channel_mult=[1, 2], num_res_blocks=1,
                 attention_resolutions=[], norm_num_groups=8)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def ldm() -> LatentDiffusion:
    torch.manual_seed(0)
    model = LatentDiffusion(unet=TINY_UNET, first_stage=None, image_size=8,
                            conditioner={"type": "inpaint", "latent_channels": 3}).eval()
    with torch.no_grad():  # an untrained UNet predicts 0 (zero-init output): perturb it so samples vary
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return model


def test_rectangle_mask_marks_the_pixels_whose_centre_is_inside():
    masks = rectangle_mask([[0.25, 0.0, 0.75, 0.5], [0.0, 0.0, 1.0, 1.0]], 8)
    assert masks.shape == (2, 1, 8, 8)
    expected = torch.zeros(8, 8)
    expected[0:4, 2:6] = 1  # rows 0..3 (y < 0.5), columns 2..5 (0.25 <= x < 0.75)
    assert torch.equal(masks[0, 0], expected)
    assert masks[1].sum() == 64
    with pytest.raises(ValueError, match=r"\(B, 4\) xyxy"):
        rectangle_mask([0.1, 0.1, 0.5, 0.5], 8)


def test_mask_overlay_tints_the_hole_only():
    images = torch.rand(2, 3, 8, 8) * 2 - 1
    masks = rectangle_mask([[0.0, 0.0, 0.5, 0.5]] * 2, 8)
    tinted = mask_overlay(images, masks, tint=(1.0, 1.0, 1.0), strength=1.0)
    known = (masks == 0).expand_as(images)
    assert torch.equal(tinted[known], images[known])
    assert torch.allclose(tinted[~known], torch.ones(int((~known).sum())))


def test_explorer_fills_the_box_and_keeps_the_known_pixels(ldm):
    images = torch.rand(3, 3, 8, 8) * 2 - 1
    explorer = InpaintingExplorer(ldm, images, steps=2, box=(0.0, 0.0, 0.5, 0.5))
    assert explorer.box() == [0.0, 0.0, 0.5, 0.5]
    out = explorer.run(1, explorer.box())
    mask = rectangle_mask([[0.0, 0.0, 0.5, 0.5]], 8)
    assert torch.equal(out["mask"], mask)
    torch.testing.assert_close(out["pasted"], paste_back(out["raw"], images[1:2], mask))
    torch.testing.assert_close(out["pasted"], ldm.sample(cond={"image": images[1:2], "mask": mask}, steps=2,
                                                         noise=explorer.noise, progress=False))
    assert not torch.allclose(out["raw"], images[1:2])  # the sample differs from the image, known pixels included
    explorer.index.value = 2  # the change handler redraws
    fig = explorer.update()
    assert [ax.get_title() for ax in fig.axes] == ["the hole", "model input", "sample", "pasted back"]
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        InpaintingExplorer(ldm, images[0])
