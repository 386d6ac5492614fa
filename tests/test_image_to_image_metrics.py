"""minildm.metrics.image_to_image on hand-built images whose answers are known."""

import math

import pytest
import torch

from minildm.conditioning import bicubic_downsample, bicubic_upsample
from minildm.data import get_dataset
from minildm.data.shapes import COLOURS
from minildm.metrics import (background_hole_masks, colour_match_fraction, half_object_masks,
                             inpainting_masks_for_bars, inpainting_scores, nearest_palette, object_colour_spread,
                             object_completed, psnr, region_psnr, sr_scores)
from minildm.metrics.image_to_image import BACKGROUND_COLOUR, interior


def flat(colour, size=8, batch=1):
    """An image of one colour (given in [0, 1]) -> (batch, 3, size, size) in [-1, 1]."""
    return (torch.tensor(colour).view(1, 3, 1, 1) * 2 - 1).expand(batch, 3, size, size).clone()


def test_region_psnr_counts_only_the_region():
    x = torch.zeros(2, 3, 4, 4)
    y = x.clone()
    y[:, :, :, 2:] = 1.0  # the right half differs by 0.5 in [0, 1]: MSE 0.25 there
    region = torch.zeros(2, 1, 4, 4)
    region[0, :, :, 2:] = 1  # image 0: only the differing half -> 10 log10(1 / 0.25)
    region[1, :, :, :2] = 1  # image 1: only the equal half -> the 100 dB floor
    got = region_psnr(x, y, region)
    assert got[0].item() == pytest.approx(10 * math.log10(4), abs=1e-4)
    assert got[1].item() == pytest.approx(100.0)
    # over the whole image it equals minildm.metrics.psnr (MSE 0.125)
    assert torch.allclose(region_psnr(x, y, torch.ones(2, 1, 4, 4)), psnr(x, y))


def test_region_psnr_empty_region_is_nan_and_bad_shapes_raise():
    x = torch.rand(1, 3, 4, 4)
    assert torch.isnan(region_psnr(x, x, torch.zeros(1, 1, 4, 4))).all()
    with pytest.raises(ValueError, match="region"):
        region_psnr(x, x, torch.ones(1, 3, 4, 4))


def test_nearest_palette_of_pure_colours():
    colours = [BACKGROUND_COLOUR, *COLOURS.values()]
    images = torch.cat([flat(c, size=2) for c in colours])  # (7, 3, 2, 2)
    assert nearest_palette(images)[:, 0, 0].tolist() == list(range(7))
    # a slightly brighter red (the dataset's brightness jitter) is still red
    assert nearest_palette(flat([c + 0.04 for c in COLOURS["red"]]))[0, 0, 0].item() == 1


def test_colour_match_fraction_known_counts():
    # an 8 x 8 map with a 4 x 4 "blue square" (class id 1 * 6 + 4 = 10) in the middle
    seg = torch.zeros(1, 8, 8, dtype=torch.long)
    seg[:, 2:6, 2:6] = 1 + 10
    image = flat(BACKGROUND_COLOUR)
    image[:, :, 2:6, 2:6] = flat(COLOURS["blue"], size=4)
    assert colour_match_fraction(image, seg) == 1.0
    image[:, :, 2, 2:6] = flat(COLOURS["red"], size=4)[:, :, 0]  # the top row of the square drawn red: 4 of 16 wrong
    assert colour_match_fraction(image, seg) == pytest.approx(12 / 16)
    # eroded, only the 2 x 2 interior counts, and it is blue
    assert colour_match_fraction(image, seg, erode=1) == 1.0
    # background pixels never count: a red background changes nothing
    image[:, :, 0, :] = flat(COLOURS["red"], size=8)[:, :, 0]
    assert colour_match_fraction(image, seg, erode=1) == 1.0
    with pytest.raises(ValueError, match="erode"):
        colour_match_fraction(image, seg, erode=2)


def test_object_colour_spread_against_a_per_object_reference():
    seg = torch.zeros(2, 12, 12, dtype=torch.long)
    seg[0, 1:6, 1:6], seg[0, 6:12, 4:11], seg[1, 2:10, 2:10] = 3, 8, 3  # three objects (class 3 twice)
    images = flat(BACKGROUND_COLOUR, size=12, batch=2)
    assert object_colour_spread(images, seg) == 0.0  # flat objects
    images = images + 0.2 * torch.randn(images.shape, generator=torch.Generator().manual_seed(0))
    inside = interior(seg)
    expected = [images[b][:, inside[b] & (seg[b] == c)].std(1).mean() for b, c in ((0, 3), (0, 8), (1, 3))]
    assert object_colour_spread(images, seg) == pytest.approx(torch.stack(expected).mean().item(), rel=1e-5)
    seg[0, 6:12, 4:11] = 0  # a 3 x 3 object has one interior pixel: left out below min_pixels
    seg[0, 7:10, 5:8] = 8
    assert object_colour_spread(images, seg) == pytest.approx(torch.stack(expected[::2]).mean().item(), rel=1e-5)
    assert math.isnan(object_colour_spread(images, torch.zeros_like(seg)))
    with pytest.raises(ValueError, match="object_colour_spread needs images"):
        object_colour_spread(images, seg[0])


def test_interior_leaves_out_borders():
    seg = torch.zeros(1, 6, 6, dtype=torch.long)
    seg[:, 1:5, 1:5] = 3
    expected = torch.zeros(1, 6, 6, dtype=torch.bool)
    expected[:, 2:4, 2:4] = True
    assert torch.equal(interior(seg) & (seg > 0), expected)


def test_background_holes_avoid_objects():
    seg = torch.zeros(3, 16, 16, dtype=torch.long)
    seg[0, :, :8] = 5  # the left half is an object: the hole must sit in x >= 8 + margin
    seg[1] = 2  # no background at all: no valid place
    masks, valid = background_hole_masks(seg, side=4, margin=2, seed=0)
    assert valid.tolist() == [True, False, True]
    assert masks.shape == (3, 1, 16, 16)
    assert masks[0].sum() == 16 and masks[0, 0, :, :10].sum() == 0
    assert masks[1].sum() == 0 and masks[2].sum() == 16
    again, _ = background_hole_masks(seg, side=4, margin=2, seed=0)
    assert torch.equal(masks, again)  # deterministic under the seed


def test_half_object_masks_cover_the_named_half():
    boxes = torch.tensor([[[0.25, 0.25, 0.75, 0.75]]]).expand(4, 1, 4)  # the main object in the middle
    masks = half_object_masks(boxes, 16, halves=torch.arange(4), margin=0.0)[:, 0]  # left, right, top, bottom
    expected = torch.zeros(4, 16, 16)
    expected[0, 4:12, 4:8] = 1
    expected[1, 4:12, 8:12] = 1
    expected[2, 4:8, 4:12] = 1
    expected[3, 8:12, 4:12] = 1
    assert torch.equal(masks, expected)


def test_object_completed_majority_colour():
    seg = torch.zeros(2, 8, 8, dtype=torch.long)
    seg[:, 2:6, 2:6] = 1 + 3  # a green circle (class 3, colour green)
    mask = torch.zeros(2, 1, 8, 8)
    mask[:, :, 2:6, 2:4] = 1  # the left half of it: 8 object pixels
    image = flat(COLOURS["green"], batch=2)
    image[1, :, 2:5, 2:4] = flat(COLOURS["red"], size=2)[0, :, :1].expand(3, 3, 2)  # 6 of 8 red in image 1
    done = object_completed(image, mask, seg, torch.tensor([3, 3]))
    assert done.tolist() == [True, False]


def identity_inpaint(image, mask):
    return image


def test_inpainting_scores_of_perfect_and_blank_fills():
    items = [get_dataset("shapes", split="test", size=32, num_objects=(1, 3))[i] for i in range(8)]
    cases = inpainting_masks_for_bars(items, seed=0)
    assert cases["random"].shape == (8, 1, 32, 32) and cases["labels"].shape == (8,)
    again = inpainting_masks_for_bars(items, seed=0)
    assert all(torch.equal(cases[k], again[k]) for k in ("random", "background", "half_object"))
    perfect = inpainting_scores(identity_inpaint, cases)
    assert perfect["known_psnr_raw"] == pytest.approx(100.0) and perfect["background_hole_psnr"] == pytest.approx(100.0)
    assert perfect["object_completion"] == 1.0
    blank = inpainting_scores(lambda image, mask: torch.zeros_like(image), cases)  # every pixel mid-grey
    assert blank["known_psnr_pasted"] == pytest.approx(100.0)  # paste-back restores the known pixels
    assert blank["known_psnr_raw"] < 20 and blank["background_hole_psnr"] < 20
    assert blank["object_completion"] < 0.5


def test_sr_scores_bicubic_gain_is_zero_for_bicubic():
    target = torch.rand(2, 3, 16, 16) * 2 - 1
    low = bicubic_downsample(target, 4)
    scores = sr_scores(bicubic_upsample(low, 4), low, target)
    assert scores["psnr_gain"] == pytest.approx(0.0, abs=1e-6)
    perfect = sr_scores(target, low, target)
    assert perfect["psnr"] == pytest.approx(100.0) and perfect["psnr_gain"] > 0
    with pytest.raises(ValueError, match="one shape"):
        sr_scores(target[..., :8], low, target)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_sr_scores_lpips_names_its_variant():
    from minildm.losses import LPIPS

    target = torch.rand(2, 3, 32, 32) * 2 - 1
    low = bicubic_downsample(target, 4)
    scores = sr_scores(target, low, target, lpips=LPIPS())
    assert scores["lpips"] == pytest.approx(0.0, abs=1e-6) and scores["lpips_bicubic"] > 0
    assert scores["lpips_variant"].startswith("lpips")


@pytest.mark.parametrize("config_name, keys", [
    ("ldm/shapes-inpaint", ("known_psnr_raw", "background_hole_psnr", "object_completion")),
    ("ldm/shapes-sr4", ("psnr", "psnr_bicubic", "psnr_gain")),
    ("ldm/shapes-semantic", ("colour_match", "colour_match_eroded", "colour_match_64px")),
])
def test_course_evaluation_dispatches_on_the_concat_conditioner(config_name, keys):
    """`minildm.pretrained.evaluate` (what --export writes into a manifest) on an untrained model of each kind."""
    from minildm.pretrained import resolve, resolve_config
    from minildm.pretrained.evaluate import evaluate

    torch.manual_seed(0)
    model, config = resolve(config_name), resolve_config(config_name)
    model.sample_steps = 1
    metrics = evaluate(model, config, num_images=8)
    assert all(key in metrics for key in keys)
    if "known_psnr_pasted" in metrics:
        assert metrics["known_psnr_pasted"] == pytest.approx(100.0)  # paste-back keeps the known pixels
        assert 0 <= metrics["object_completion"] <= 1 and metrics["items"] == 8
    if "psnr_bicubic" in metrics:  # the bicubic baseline, computed here independently
        images = torch.stack([get_dataset("shapes", split="val", num_objects=(1, 3))[i]["image"] for i in range(8)])
        expected = psnr(bicubic_upsample(bicubic_downsample(images, 4), 4), images).mean().item()
        assert metrics["psnr_bicubic"] == pytest.approx(expected, abs=1e-4)
        assert metrics["lpips_variant"].startswith("lpips")
    if "colour_match" in metrics:
        assert 0 <= metrics["colour_match"] <= 1 and metrics["images_64px"] == 2


def test_minildm_eval_runs_an_inpainting_model(tmp_path):
    """`minildm eval` makes inpainting conditions (image + a random mask) and adds the inpainting scores."""
    import json

    from minildm.cli import main

    out = tmp_path / "eval.json"
    assert main(["eval", "ldm/shapes-inpaint", "--n", "12", "--steps", "1", "--metrics", "fd", "--no-progress",
                 "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["n_fake"] == 12 and result["inpainting/items"] == 12
    assert result["inpainting/known_psnr_pasted"] == pytest.approx(100.0)
