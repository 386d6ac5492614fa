"""The scene judge: captions parsed, objects found by colour, captions and layouts judged (and able to fail)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from minildm.data import get_dataset
from minildm.data.shapes import relation
from minildm.ldm import LatentDiffusion
from minildm.metrics.scene_judge import (box_iou, caption_faithfulness, find_objects, layout_fidelity,
                                         names_held_out, parse_caption)
from minildm.pretrained import load

DATA = get_dataset("shapes", split="test", num_objects=(1, 2), length=80)
ITEMS = [DATA[i] for i in range(80)]
IMAGES = torch.stack([item["image"] for item in ITEMS])
CAPTIONS = [item["caption"] for item in ITEMS]


@pytest.fixture(scope="module")
def judge():
    return load("judge-shapes")


def test_parse_caption_names_the_objects_and_relations_of_the_item():
    data = get_dataset("shapes", split="test", num_objects=(1, 4), length=60)
    for i in range(60):
        item = data[i]
        names, relations = parse_caption(item["caption"])
        labels = [c for c in item["box_labels"].tolist() if c >= 0]
        assert names == [data.class_names[c] for c in labels], item["caption"]
        boxes = item["boxes"][: len(labels)]
        centres = [((b[0] + b[2]).item() / 2, (b[1] + b[3]).item() / 2) for b in boxes]
        assert relations == [relation(centres[0], c) for c in centres[1:]], item["caption"]
    assert parse_caption("a large red circle above a small blue square") == (["red circle", "blue square"], ["above"])
    assert names_held_out("a small green triangle", ["green triangle"])
    with pytest.raises(ValueError, match="not a shapes caption"):
        parse_caption("two cats on a sofa")


def test_find_objects_recovers_the_boxes_of_real_images():
    for item in ITEMS[:30]:
        found = find_objects(item["image"])
        wanted = [(b, DATA.class_names[c].split()[0]) for b, c in zip(item["boxes"].tolist(),
                                                                       item["box_labels"].tolist()) if c >= 0]
        assert len(found) == len(wanted)
        for box, colour in wanted:
            best = max(found, key=lambda o: box_iou(box, o.box))
            assert best.colour == colour and box_iou(box, best.box) > 0.5  # small triangles lose their apex


def test_box_iou():
    assert box_iou([0, 0, 1, 1], [0, 0, 1, 1]) == pytest.approx(1.0)
    assert box_iou([0, 0, 0.5, 1], [0.25, 0, 0.75, 1]) == pytest.approx(1 / 3)
    assert box_iou([0, 0, 0.5, 0.5], [0.5, 0.5, 1, 1]) == 0.0


def test_caption_faithfulness_is_high_on_real_images_and_low_on_wrong_captions(judge):
    right = caption_faithfulness(judge, IMAGES, CAPTIONS, DATA.class_names)
    assert right["single_objects"] >= 0.95 and right["multi_objects"] >= 0.9 and right["multi_relation"] >= 0.85
    assert right["multi_relation_colours"] >= 0.85
    assert right["single_count"] + right["multi_count"] == 80
    wrong = caption_faithfulness(judge, IMAGES.roll(1, dims=0), CAPTIONS, DATA.class_names)  # captions of others
    assert wrong["single_objects"] < 0.3 and wrong["multi_objects"] < 0.3 and wrong["multi_relation_colours"] < 0.5


def test_layout_fidelity_is_high_on_real_images_and_drops_with_moved_boxes(judge):
    boxes = torch.stack([item["boxes"] for item in ITEMS])
    labels = torch.stack([item["box_labels"] for item in ITEMS])
    right = layout_fidelity(judge, IMAGES, boxes, labels, DATA.class_names)
    assert right["box_accuracy"] >= 0.95 and right["mean_iou"] >= 0.75
    assert right["boxes"] == int((labels >= 0).sum())
    flipped = boxes[..., [2, 1, 0, 3]].clone()
    flipped[..., [0, 2]] = 1 - flipped[..., [0, 2]]  # mirrored left-right: most objects are elsewhere
    moved = layout_fidelity(judge, IMAGES, flipped, labels, DATA.class_names)
    assert moved["mean_iou"] < right["mean_iou"] - 0.3


def test_scenes_benchmark_rows_on_a_tiny_model(judge):
    spec = importlib.util.spec_from_file_location("benchmark_scenes",
                                                  Path(__file__).resolve().parents[1] / "benchmarks" / "scenes.py")
    scenes = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = scenes
    spec.loader.exec_module(scenes)
    torch.manual_seed(0)
    unet = dict(in_channels=3, out_channels=3, model_channels=8, channel_mult=[1], num_res_blocks=1,
                attention_resolutions=[1], num_head_channels=8, context_dim=8, norm_num_groups=4)
    ldm = LatentDiffusion(unet=unet, image_size=32, first_stage=None, conditioner={
        "type": "layout", "num_classes": 18, "embed_dim": 8, "depth": 1, "heads": 2}).eval()
    items, class_names, held_out = scenes.test_items({"name": "shapes", "options": {"num_objects": [1, 2]}}, 4)
    rows = scenes.run_layout(ldm, judge, items, class_names, guidance_scale=2.0, steps=2, seed=0)
    assert [r["images"] for r in rows] == ["real images", "samples"] and rows[1]["boxes"] == rows[0]["boxes"]
    assert "| samples |" in scenes.format_table(rows)
