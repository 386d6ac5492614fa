"""minildm.course.viz_semantic: maps painted in their class colours, the map explorer."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from minildm.course.viz_semantic import MapExplorer, paint_segmentation  # noqa: E402
from minildm.data import get_dataset  # noqa: E402
from minildm.data.shapes import COLOURS  # noqa: E402
from minildm.ldm import LatentDiffusion  # noqa: E402
from minildm.metrics import colour_match_fraction  # noqa: E402

UNET = dict(in_channels=6, out_channels=3, model_channels=16, channel_mult=[1, 2], num_res_blocks=1,
            attention_resolutions=[], norm_num_groups=8)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_paint_segmentation_gives_each_class_its_colour():
    seg = torch.tensor([[[0, 1, 7, 18], [-1, 4, 11, 16]]])  # 1 + class id; class id = kind * 6 + colour
    painted = (paint_segmentation(seg) + 1) / 2  # (1, 3, 2, 4) in [0, 1]
    assert painted.shape == (1, 3, 2, 4)
    red, green, blue, purple = (torch.tensor(COLOURS[c]) for c in ("red", "green", "blue", "purple"))
    for (y, x), colour in {(0, 1): red, (0, 2): red, (0, 3): purple, (1, 1): green, (1, 2): blue,
                           (1, 3): green}.items():
        torch.testing.assert_close(painted[0, :, y, x], colour)
    torch.testing.assert_close(painted[0, :, 0, 0], painted[0, :, 1, 0])  # "no map" drawn as background
    assert painted[0, :, 0, 0].max() < 0.3  # a dark background
    assert paint_segmentation(seg[0]).shape == (1, 3, 2, 4)  # a single (H, W) map
    with pytest.raises(ValueError, match="integer class maps"):
        paint_segmentation(seg.float())


def test_a_painted_real_map_matches_its_own_colours():
    data = get_dataset("shapes", split="val", length=4)
    maps = torch.stack([data[i]["segmentation"] for i in range(4)])
    assert colour_match_fraction(paint_segmentation(maps), maps) == 1.0


@pytest.fixture(scope="module")
def ldm() -> LatentDiffusion:
    torch.manual_seed(0)
    ldm = LatentDiffusion(unet=UNET, first_stage=None, image_size=8, cond_drop_prob=0.0,
                          conditioner={"type": "segmentation", "num_classes": 18}).eval()
    with torch.no_grad():  # an untrained UNet predicts 0 whatever the map (zero-init output): perturb it
        for parameter in ldm.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return ldm


def test_explorer_fills_the_regions_and_samples_the_map(ldm):
    names = [f"class {c}" for c in range(18)]
    left = torch.zeros(16, 16, dtype=torch.bool)
    left[:, :8] = True
    square = torch.zeros(16, 16, dtype=torch.bool)
    square[4:12, 4:12] = True
    explorer = MapExplorer(ldm, {"left": left, "square": square}, names, {"left": 3, "square": 10}, n=2, steps=2)
    seg = explorer.segmentation()
    assert seg[0, 0] == 3 and seg[0, 15] == 0 and seg[8, 8] == 10  # the later region paints over the earlier
    assert (seg == 10).sum() == 64 and (seg == 3).sum() == 16 * 8 - 32
    seg, images = explorer.run()
    assert images.shape == (2, 3, 16, 16)  # the output size follows the map, not the model's 8 x 8
    expected = ldm.sample(cond={"segmentation": seg.expand(2, -1, -1)}, steps=2, noise=explorer.noise, progress=False)
    torch.testing.assert_close(images, expected)
    explorer.dropdowns["square"].value = 0  # the change handler redraws, with the square now background
    assert (explorer.segmentation() == 10).sum() == 0
    fig = explorer.update()
    assert len(fig.axes) == 2 * 2
    with pytest.raises(ValueError, match="class names"):
        MapExplorer(ldm, {"left": left}, names[:3])
    with pytest.raises(ValueError, match="one size"):
        MapExplorer(ldm, {"left": left, "small": square[:8]}, names)
