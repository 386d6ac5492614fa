"""Concat conditioning (inpainting, super-resolution, semantic maps, hybrid) and the training masks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from minildm.conditioning import (LowResConditioner, MaskedImageConditioner, SegmentationConditioner, SpatialRescaler,
                                  bicubic_downsample, build_conditioner, mask_to_latent, masked_image,
                                  one_hot_segmentation, paste_back)
from minildm.data import box_masks, get_dataset, random_masks, stroke_masks
from minildm.ldm import LatentDiffusion

UNET = dict(out_channels=3, model_channels=16, channel_mult=[1, 2], num_res_blocks=1, attention_resolutions=[],
            norm_num_groups=8)
TEXT = {"type": "text", "vocabulary": ["a", "red", "blue", "circle", "square"], "max_length": 6, "embed_dim": 16,
        "depth": 1, "heads": 2}


def _pixel_ldm(conditioner: dict, extra_channels: int, image_size: int = 8, **kw) -> LatentDiffusion:
    """A pixel-space (f = 1) LDM whose UNet reads 3 + extra_channels channels."""
    torch.manual_seed(0)
    return LatentDiffusion(unet={**UNET, "in_channels": 3 + extra_channels, **kw.pop("unet", {})},
                           conditioner=conditioner, image_size=image_size, first_stage=None, cond_drop_prob=0.0, **kw)


# --- training masks ------------------------------------------------------------------------------
def test_random_masks_are_binary_deterministic_and_mix_both_kinds():
    a = random_masks(64, 16, generator=torch.Generator().manual_seed(3))
    b = random_masks(64, 16, generator=torch.Generator().manual_seed(3))
    c = random_masks(64, 16, generator=torch.Generator().manual_seed(4))
    assert a.shape == (64, 1, 16, 16) and torch.equal(a, b) and not torch.equal(a, c)
    assert set(a.unique().tolist()) <= {0.0, 1.0}
    covered = a.mean(dim=(1, 2, 3))
    assert (covered > 0).all() and (covered < 1).all()  # every mask has a hole and known pixels
    # a box mask is the outer product of its row and column profiles; most stroke masks are not
    rectangular = [torch.equal(m[0], m[0].amax(1, keepdim=True) * m[0].amax(0, keepdim=True)) for m in a]
    assert 10 < sum(rectangular) < 54
    with pytest.raises(ValueError, match="valid kinds: mixed, box, stroke"):
        random_masks(2, 8, kind="circle")


def test_box_masks_cover_a_quarter_to_three_quarters_of_each_side():
    masks = box_masks(200, 32, generator=torch.Generator().manual_seed(0))[:, 0]  # (n, H, W)
    widths, heights = masks.amax(1).sum(1) / 32, masks.amax(2).sum(1) / 32
    assert widths.min() >= 0.25 - 1 / 32 and widths.max() <= 0.75 + 1 / 32
    assert heights.min() >= 0.25 - 1 / 32 and heights.max() <= 0.75 + 1 / 32
    assert torch.equal(masks, masks.amax(2, keepdim=True) * masks.amax(1, keepdim=True))  # one rectangle each


def test_stroke_masks_match_a_pixel_by_pixel_reference():
    """The vectorised distance-to-segment test against a slow loop over pixels and segments."""
    size, generator = 12, torch.Generator().manual_seed(5)
    masks = stroke_masks(2, size, generator=generator, strokes=2, vertices=3)
    generator = torch.Generator().manual_seed(5)  # replay the same draws
    start = torch.rand((2, 2, 1, 2), generator=generator)
    angle = 2 * torch.pi * torch.rand((2, 2, 2), generator=generator)
    length = 0.3 * torch.rand((2, 2, 2), generator=generator)
    steps = torch.stack([angle.cos(), angle.sin()], -1) * length[..., None]
    points = torch.cat([start, start + steps.cumsum(2)], 2).clamp(0, 1)
    width = 0.06 + 0.10 * torch.rand((2, 2, 1), generator=generator)
    for n in range(2):
        for row in range(size):
            for col in range(size):
                p = torch.tensor([(col + 0.5) / size, (row + 0.5) / size])
                inside = False
                for s in range(2):
                    for v in range(2):
                        a, b = points[n, s, v], points[n, s, v + 1]
                        u = ((p - a) @ (b - a) / max(float((b - a) @ (b - a)), 1e-12)).clamp(0, 1)
                        inside |= bool((p - (a + u * (b - a))).norm() <= width[n, s, 0] / 2)
                assert masks[n, 0, row, col].item() == float(inside), (n, row, col)


# --- inpainting pieces -----------------------------------------------------------------------------
def test_object_part_masks_cut_one_side_of_a_real_object():
    """Against a per-image loop: the hole is the chosen side of the chosen box (cut at 0.3 .. 0.7 of its extent,
    the margin beyond the other three sides); padding boxes are never chosen; no object, no hole."""
    from minildm.data.masks import object_part_masks

    size = 16
    boxes = torch.tensor([[[0.2, 0.2, 0.6, 0.8], [0.0, 0.0, 0.0, 0.0]],
                          [[0.0, 0.0, 0.0, 0.0], [0.5, 0.1, 0.9, 0.5]],
                          [[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]]).repeat(20, 1, 1)
    labels = torch.tensor([[4, -1], [-1, 7], [-1, -1]]).repeat(20, 1)
    masks = object_part_masks(boxes, labels, size, torch.Generator().manual_seed(0))
    assert masks.shape == (60, 1, size, size) and set(masks.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(masks, object_part_masks(boxes, labels, size, torch.Generator().manual_seed(0)))
    generator = torch.Generator().manual_seed(0)  # replay the draws
    torch.rand((60, 2), generator=generator)  # the object choice (a single real object here)
    u = torch.rand((60, 3), generator=generator)
    centre = (torch.arange(size) + 0.5) / size
    for i in range(60):
        expected = torch.zeros(size, size)
        if labels[i].max() >= 0:
            x0, y0, x1, y1 = boxes[i, int(labels[i].argmax())].tolist()
            side, cut, margin = min(int(u[i, 0] * 4), 3), 0.3 + 0.4 * float(u[i, 1]), 0.1 * float(u[i, 2])
            lo_x, hi_x, lo_y, hi_y = x0 - margin, x1 + margin, y0 - margin, y1 + margin
            if side == 0:
                hi_x = x0 + cut * (x1 - x0)
            elif side == 1:
                lo_x = x1 - cut * (x1 - x0)
            elif side == 2:
                hi_y = y0 + cut * (y1 - y0)
            else:
                lo_y = y1 - cut * (y1 - y0)
            for row in range(size):
                for col in range(size):
                    expected[row, col] = float(lo_x <= centre[col] < hi_x and lo_y <= centre[row] < hi_y)
        assert torch.equal(masks[i, 0], expected), i
    # the hole hides part of the object, never all of it
    for i in range(2):
        x0, y0, x1, y1 = (boxes[i, int(labels[i].argmax())] * size).round().long().tolist()
        inside = masks[i::3, 0, y0:y1, x0:x1].mean(dim=(1, 2))
        assert (inside > 0.1).all() and (inside < 0.9).all()


def test_random_masks_mix_in_object_parts_when_asked():
    data = get_dataset("shapes", split="train", size=32)
    items = [data[i] for i in range(64)]
    boxes, labels = torch.stack([it["boxes"] for it in items]), torch.stack([it["box_labels"] for it in items])
    generic = random_masks(64, 32, generator=torch.Generator().manual_seed(0))
    mixed = random_masks(64, 32, generator=torch.Generator().manual_seed(0), object_share=0.5, boxes=boxes,
                         box_labels=labels)
    changed = (mixed != generic).flatten(1).any(1)
    assert 16 < int(changed.sum()) < 48  # about half replaced by object parts
    with pytest.raises(ValueError, match="needs the items' boxes"):
        random_masks(2, 8, object_share=0.5)
    with pytest.raises(ValueError, match=r"object_share must lie in \[0, 1\]"):
        MaskedImageConditioner(object_share=1.5)
    conditioner = MaskedImageConditioner(object_share=0.5)
    assert conditioner.dataset_keys == ("image", "boxes", "box_labels")
    cond = conditioner.training_cond({"image": torch.stack([it["image"] for it in items]), "boxes": boxes,
                                      "box_labels": labels})
    assert cond["mask"].shape == (64, 1, 32, 32)


def test_masked_image_mask_to_latent_and_paste_back():
    image = torch.rand(2, 3, 8, 8) * 2 - 1
    mask = torch.zeros(2, 1, 8, 8)
    mask[0, 0, 5, 2] = 1  # one pixel: exactly its 4 x 4 latent cell (row 1, column 0) is to fill
    mask[1, :, :4] = 1
    assert torch.equal(masked_image(image, mask), torch.where(mask.bool(), torch.zeros_like(image), image))
    small = mask_to_latent(mask, (2, 2))
    assert small[0, 0].tolist() == [[0, 0], [1, 0]] and small[1, 0].tolist() == [[1, 1], [0, 0]]
    generated = torch.rand(2, 3, 8, 8)
    out = paste_back(generated, image, mask)
    assert torch.equal(out[mask.expand_as(out) == 0], image[mask.expand_as(out) == 0])
    assert torch.equal(out[mask.expand_as(out) == 1], generated[mask.expand_as(out) == 1])


def test_inpainting_concat_input_with_the_course_autoencoder():
    """f = 4: [scale * E(masked image) ; max-pooled mask] is (B, 3 + 1, 8, 8), and the UNet reads 7 channels."""
    from minildm.pretrained import resolve

    first_stage = resolve("shapes-kl-f4")
    ldm = LatentDiffusion(unet={**UNET, "in_channels": 7}, first_stage=first_stage, image_size=32,
                          conditioner={"type": "inpaint", "latent_channels": 3})
    images = torch.stack([get_dataset("shapes", split="val")[i]["image"] for i in range(2)])
    masks = random_masks(2, 32, generator=torch.Generator().manual_seed(0))
    concat = ldm.condition({"image": images, "mask": masks})["concat"]
    assert concat.shape == (2, 4, 8, 8)
    torch.testing.assert_close(concat[:, :3], ldm.encode(images * (1 - masks)))
    assert torch.equal(concat[:, 3:], F.max_pool2d(masks, 4))
    assert not any(k.startswith("conditioner.") for k in ldm.state_dict())  # the first stage is saved once
    with pytest.raises(ValueError, match="in_channels must be the latent channels .* plus the conditioner's "
                                         "concatenated channels \\(4\\): 7, got 3"):
        LatentDiffusion(unet={**UNET, "in_channels": 3}, first_stage=first_stage, image_size=32,
                        conditioner={"type": "inpaint", "latent_channels": 3})


def test_inpainting_sample_keeps_the_known_pixels_and_follows_the_image_size():
    ldm = _pixel_ldm({"type": "inpaint"}, extra_channels=4).eval()
    image = torch.rand(2, 3, 16, 16) * 2 - 1
    mask = random_masks(2, 16, generator=torch.Generator().manual_seed(1))
    out = ldm.sample(cond={"image": image, "mask": mask}, steps=2, progress=False)
    assert out.shape == (2, 3, 16, 16) and out.min() >= -1 and out.max() <= 1  # a model trained at 8 px, 16 px in
    known = (mask == 0).expand_as(out)
    assert torch.equal(out[known], image[known])
    assert not torch.equal(out[~known], image[~known])
    raw = ldm.sample(cond={"image": image, "mask": mask}, steps=2, progress=False, decode=False)
    assert raw.shape == (2, 3, 16, 16)


def test_inpainting_conditioner_rejects_bad_masks():
    conditioner = MaskedImageConditioner(latent_channels=3)
    image = torch.zeros(2, 3, 8, 8)
    with pytest.raises(ValueError, match="mask \\(B, 1, H, W\\) of the same B, H, W"):
        conditioner.prepare({"image": image, "mask": torch.zeros(2, 1, 4, 4)})
    with pytest.raises(ValueError, match="mask values must lie in \\[0, 1\\]"):
        conditioner.prepare({"image": image, "mask": torch.full((2, 1, 8, 8), 2.0)})
    with pytest.raises(ValueError, match="needs the condition key\\(s\\) image, mask; missing mask"):
        conditioner.prepare({"image": image})
    with pytest.raises(RuntimeError, match="not bound to a first stage"):
        conditioner(image, torch.zeros(2, 1, 8, 8))


# --- super-resolution -------------------------------------------------------------------------------
def test_bicubic_downsample_and_the_low_res_conditioner():
    image = torch.rand(2, 3, 16, 16) * 2 - 1
    low = bicubic_downsample(image, 4)
    torch.testing.assert_close(low, F.interpolate(image, size=(4, 4), mode="bicubic", antialias=True).clamp(-1, 1))
    with pytest.raises(ValueError, match="not divisible by the scale 4"):
        bicubic_downsample(torch.zeros(1, 3, 10, 10), 4)
    ldm = _pixel_ldm({"type": "low_res", "scale": 4}, extra_channels=3).eval()
    concat = ldm.condition({"low_res": low})["concat"]  # f = 1: the low-res image is resized to 16 x 16
    torch.testing.assert_close(concat, F.interpolate(low, size=(16, 16), mode="bicubic"))
    out = ldm.sample(cond={"low_res": low}, steps=2, progress=False)
    assert out.shape == (2, 3, 16, 16)  # the output size follows the low-res input: 4 x 4 -> 16 x 16
    assert ldm.sample(cond={"low_res": low[:, :, :2, :3]}, steps=2, progress=False).shape == (2, 3, 8, 12)
    training = LowResConditioner(scale=4, noise_augment=0.2).training_cond({"image": image})["low_res"]
    assert training.shape == (2, 3, 4, 4) and not torch.equal(training, low)  # noise augmentation
    assert torch.equal(LowResConditioner(scale=4).training_cond({"image": image})["low_res"], low)
    with pytest.raises(ValueError, match="low_res must be \\(B, 3, h, w\\)"):
        ldm.sample(cond={"low_res": torch.zeros(2, 1, 4, 4)}, steps=1, progress=False)


# --- semantic maps ------------------------------------------------------------------------------------
def test_one_hot_segmentation_and_the_null_map():
    seg = torch.tensor([[[0, 2], [1, -1]]])
    one_hot = one_hot_segmentation(seg, 3)
    assert one_hot.shape == (1, 3, 2, 2)
    assert one_hot[0, :, 0, 0].tolist() == [1, 0, 0] and one_hot[0, :, 0, 1].tolist() == [0, 0, 1]
    assert one_hot[0, :, 1, 1].tolist() == [0, 0, 0]  # -1 = no map


def test_spatial_rescaler_is_average_pooling_then_a_1x1_convolution():
    """Two bilinear halvings of a map = 4 x 4 average pooling (each halving averages 2 x 2 cells)."""
    torch.manual_seed(0)
    rescaler = SpatialRescaler(n_stages=2, in_channels=5, out_channels=3)
    x = torch.rand(2, 5, 16, 16)
    reference = rescaler.channel_mapper(F.avg_pool2d(x, 4))
    torch.testing.assert_close(rescaler(x), reference)
    with pytest.raises(ValueError, match="unknown method 'cubic'"):
        SpatialRescaler(method="cubic")


def test_segmentation_conditioner_binds_to_the_first_stage_factor():
    from minildm.pretrained import resolve

    first_stage = resolve("shapes-kl-f4")
    ldm = LatentDiffusion(unet={**UNET, "in_channels": 6}, first_stage=first_stage, image_size=32,
                          conditioner={"type": "segmentation", "num_classes": 18})
    assert ldm.conditioner.rescaler.n_stages == 2
    seg = torch.stack([get_dataset("shapes", split="val", size=64)[i]["segmentation"] for i in range(2)])
    assert ldm.condition({"segmentation": seg})["concat"].shape == (2, 3, 16, 16)
    with pytest.raises(ValueError, match="n_stages = 1 gives maps 2\\^1 times smaller, but .* f = 4"):
        LatentDiffusion(unet={**UNET, "in_channels": 6}, first_stage=first_stage, image_size=32,
                        conditioner={"type": "segmentation", "num_classes": 18, "n_stages": 1})
    with pytest.raises(ValueError, match="segmentation values must lie in \\[0, 18\\]"):
        ldm.prepare_cond({"segmentation": torch.full((1, 32, 32), 19)})
    with pytest.raises(ValueError, match="segmentation must be \\(B, H, W\\) integer class maps"):
        ldm.prepare_cond({"segmentation": torch.zeros(1, 32, 32)})


# --- training through the dataset keys, guidance, hybrid, checkpoints ----------------------------------------
@pytest.mark.parametrize("spec, extra", [({"type": "inpaint"}, 4), ({"type": "inpaint", "object_share": 0.5}, 4),
                                         ({"type": "low_res", "scale": 2}, 3),
                                         ({"type": "segmentation", "num_classes": 18}, 3)])
def test_concat_training_reads_dataset_keys_and_reduces_the_loss(spec, extra):
    """encode_dataset keeps what the conditioner reads (images or maps); 80 steps lower the loss at fixed draws."""
    from minildm.ldm import latent_diffusion_loss

    ldm = _pixel_ldm(spec, extra)
    data = get_dataset("shapes", split="train", size=8, length=32)
    batch = ldm.encode_dataset(data).get_batch(list(range(32)))
    assert set(batch) == {"latent", *ldm.conditioner.dataset_keys}
    generator = torch.Generator().manual_seed(1)
    t = torch.randint(0, 1000, (32,), generator=generator)
    noise = torch.randn(batch["latent"].shape, generator=generator)
    torch.manual_seed(2)
    cond = ldm.prepare_cond(ldm.conditioner.training_cond(batch))  # fixed masks / low-res inputs / maps

    def fixed_loss() -> float:
        with torch.no_grad():
            return latent_diffusion_loss(ldm, batch["latent"], t, noise, cond).item()

    before = fixed_loss()
    optimizer = torch.optim.Adam([p for g in ldm.optimizer_groups().values() for p in g], lr=3e-3)
    for step in range(80):
        loss, _ = ldm.training_step(batch, "model", step)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert fixed_loss() < 0.7 * before


def test_concat_condition_dropout_and_guidance_use_the_null_map():
    ldm = _pixel_ldm({"type": "segmentation", "num_classes": 18}, 3)
    seg = torch.randint(0, 19, (4, 8, 8))
    cond = ldm.prepare_cond({"segmentation": seg})
    dropped = ldm.conditioner.where_null(cond, torch.tensor([True, False, True, False]))["segmentation"]
    assert (dropped[[0, 2]] == -1).all() and torch.equal(dropped[[1, 3]], seg[[1, 3]])
    z, t = torch.randn(4, 3, 8, 8), torch.full((4,), 500)
    with torch.no_grad():
        conditional = ldm.model_output(z, t, ldm.condition(cond))
        null = ldm.model_output(z, t, ldm.conditioner.encode(ldm.conditioner.null_cond(cond)))
        guided = ldm.prediction_fn(cond, guidance_scale=2.0)(z, t)
    torch.testing.assert_close(guided, null + 2.0 * (conditional - null))


def test_hybrid_conditioner_gives_a_map_and_tokens():
    ldm = _pixel_ldm({"type": "hybrid", "concat": {"type": "inpaint"}, "crossattn": TEXT}, 4,
                     unet={"attention_resolutions": [1], "context_dim": 16, "num_head_channels": 8})
    image, mask = torch.rand(2, 3, 8, 8) * 2 - 1, torch.zeros(2, 1, 8, 8)
    mask[:, :, 2:6, 2:6] = 1
    cond = {"image": image, "mask": mask, "caption": ["a red circle", "a blue square"]}
    args = ldm.condition(cond)
    assert args["concat"].shape == (2, 4, 8, 8) and args["context"].shape == (2, 6, 16)
    null = ldm.conditioner.null_cond(ldm.prepare_cond(cond))
    assert (null["mask"] == 1).all() and (null["caption"] == 0).all()
    out = ldm.sample(cond=cond, steps=2, progress=False)
    assert torch.equal(out[:, :, :2], image[:, :, :2])  # rows above the hole are pasted back
    with pytest.raises(ValueError, match="exactly `concat` and `crossattn`"):
        build_conditioner({"type": "hybrid", "concat": {"type": "inpaint"}})
    with pytest.raises(ValueError, match="a concat conditioner .* as `concat`"):
        build_conditioner({"type": "hybrid", "concat": TEXT, "crossattn": {"type": "inpaint"}})


def test_unknown_conditioner_type_lists_the_concat_ones():
    with pytest.raises(ValueError, match="valid types: class, text, layout, clip, inpaint, low_res, segmentation, "
                                         "hybrid"):
        build_conditioner({"type": "depth"})


def test_segmentation_checkpoint_roundtrip_keeps_the_rescaler(tmp_path):
    from minildm.pretrained import load_model
    from minildm.train import train_from_config

    config = {"model": {"target": "latent_diffusion",
                        "params": {"unet": {**UNET, "in_channels": 6}, "image_size": 8, "first_stage": None,
                                   "conditioner": {"type": "segmentation", "num_classes": 18}}},
              "data": {"name": "shapes", "size": 8, "cache_latents": 32},
              "train": {"steps": 2, "batch_size": 8, "log_every": 1, "checkpoint_every": 2}}
    trainer = train_from_config(config, out_dir=tmp_path, progress=False)
    loaded = load_model(tmp_path, ema=False)
    trained = trainer.model.cpu().eval()  # it trained on the default device; the loaded copy is on the CPU
    seg = torch.randint(0, 19, (2, 16, 16))
    torch.testing.assert_close(loaded.condition({"segmentation": seg})["concat"],
                               trained.condition({"segmentation": seg})["concat"])
    assert loaded.sample(cond={"segmentation": seg}, steps=1, progress=False).shape == (2, 3, 16, 16)


@pytest.mark.parametrize("name", ["shapes-inpaint", "shapes-sr4", "shapes-semantic"])
def test_shipped_image_to_image_checkpoints_follow_their_inputs(name):
    """A few held-out items, 10 steps: each course model clears its bar's measure with room to spare."""
    from minildm.metrics.image_to_image import (background_hole_masks, colour_match_fraction, region_psnr,
                                                sr_scores)
    from minildm.pretrained import available, load

    if name not in available():
        pytest.skip(f"{name} is not shipped")
    ldm = load(name)
    data = get_dataset("shapes", split="test", size=32)
    items = [data[i] for i in range(16)]
    images = torch.stack([it["image"] for it in items])
    seg = torch.stack([it["segmentation"] for it in items])
    generator = torch.Generator().manual_seed(0)
    if name == "shapes-semantic":
        big = torch.stack([get_dataset("shapes", split="test", size=64)[i]["segmentation"] for i in range(4)])
        out = ldm.sample(cond={"segmentation": big}, steps=10, generator=generator, progress=False)
        assert out.shape == (4, 3, 64, 64)
        assert colour_match_fraction(ldm.sample(cond={"segmentation": seg}, steps=10, generator=generator,
                                                progress=False), seg) >= 0.8
    elif name == "shapes-sr4":
        low_res = bicubic_downsample(images, 4)
        out = ldm.sample(cond={"low_res": low_res}, steps=10, generator=generator, progress=False)
        scores = sr_scores(out, low_res, images, 4)
        assert scores["psnr"] >= scores["psnr_bicubic"] + 2.0
    else:
        masks, valid = background_hole_masks(seg)  # holes over background only: filled with background
        out = ldm.sample(cond={"image": images[valid], "mask": masks[valid]}, steps=10, generator=generator,
                         progress=False)
        known = 1 - masks[valid]
        assert valid.sum() >= 8 and torch.equal(out * known, images[valid] * known)  # known pixels pasted back
        assert region_psnr(out, images[valid], masks[valid]).mean() >= 22.0
