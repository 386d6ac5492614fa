"""Text and layout conditioners, and the one sampling contract `LatentDiffusion.sample(cond={...})`."""

from __future__ import annotations

import pytest
import torch
import yaml

from minildm.conditioning import (LayoutConditioner, TextConditioner, box_tokens, build_tokenizer,
                                  caption_vocabulary, grid_tokens, shuffle_objects)
from minildm.data import get_dataset
from minildm.ldm import LatentDiffusion
from minildm.pretrained.build import config_path

VOCAB = ["a", "above", "blue", "circle", "large", "red", "small", "square"]
UNET = dict(in_channels=3, out_channels=3, model_channels=16, channel_mult=[1, 2], num_res_blocks=1,
            attention_resolutions=[1, 2], num_head_channels=8, context_dim=16, norm_num_groups=8)
TEXT = {"type": "text", "vocabulary": VOCAB, "max_length": 8, "embed_dim": 16, "depth": 1, "heads": 2}
LAYOUT = {"type": "layout", "num_classes": 18, "grid_size": 8, "max_objects": 3, "embed_dim": 16, "depth": 1,
          "heads": 2}
BOXES = torch.tensor([[[0.0, 0.0, 0.5, 0.5], [0.5, 0.25, 1.0, 0.75], [0, 0, 0, 0]]])
BOX_LABELS = torch.tensor([[3, 17, -1]])


def _ldm(conditioner: dict, **kw) -> LatentDiffusion:
    torch.manual_seed(0)
    return LatentDiffusion(unet=UNET, conditioner=conditioner, image_size=8, first_stage=None, **kw)


def test_tokenizer_ids_padding_unknown_words_and_the_null_caption():
    text = TextConditioner(VOCAB, max_length=8, embed_dim=16, depth=1, heads=2)
    ids = text.tokenize(["A large red circle", "", "a purple square"])
    # 0 = [PAD], 1 = [UNK], then the vocabulary in order: a=2, above=3, blue=4, circle=5, large=6, red=7, ...
    assert ids.tolist() == [[2, 6, 7, 5, 0, 0, 0, 0], [0] * 8, [2, 1, 9, 0, 0, 0, 0, 0]]
    assert torch.equal(text.null_cond({"caption": ids})["caption"], text.tokenize([""] * 3))
    with pytest.raises(ValueError, match="max_length = 8"):
        text.tokenize(["a red circle above a blue square above a red square"])
    with pytest.raises(ValueError, match="list of strings"):
        text.tokenize("a red circle")
    with pytest.raises(ValueError, match="distinct words"):
        build_tokenizer(["red", "red"], 4)


def test_tokenizer_json_roundtrip_gives_the_same_ids():
    from tokenizers import Tokenizer

    tokenizer = build_tokenizer(VOCAB, 8)
    again = Tokenizer.from_str(tokenizer.to_str())
    caption = "a small blue square above a large red circle"
    assert again.encode(caption).ids == tokenizer.encode(caption).ids


def test_txt2img_config_vocabulary_is_the_training_captions_words():
    config = yaml.safe_load(config_path("ldm/shapes-txt2img").read_text())
    data = config["data"]
    dataset = get_dataset("shapes", split="train", size=data["size"], **data["options"])
    captions = [dataset[i]["caption"] for i in range(2000)]
    assert config["model"]["params"]["conditioner"]["vocabulary"] == caption_vocabulary(captions)
    held_out = data["options"]["exclude"]
    assert len(held_out) >= 3 and not any(pair in c for c in captions for pair in held_out)


def test_text_conditioner_gives_one_context_token_per_position():
    text = TextConditioner(VOCAB, max_length=8, embed_dim=16, depth=1, heads=2).eval()
    ids = text.prepare({"caption": ["a red circle", "a blue square"]})["caption"]
    context = text.encode({"caption": ids})["context"]
    assert context.shape == (2, 8, 16)
    assert not torch.allclose(context[0], context[1])  # the words matter
    with pytest.raises(ValueError, match="caption"):
        text.prepare({"label": torch.tensor([1])})


def test_grid_and_box_tokens_follow_the_taming_representation():
    # token(x, y) = y * S + x with x -> round(x * (S - 1)); classes first, then positions, then padding
    assert grid_tokens(torch.tensor([0.0, 1.0, 0.5]), torch.tensor([0.0, 1.0, 0.25]), 8).tolist() == [0, 63, 2 * 8 + 4]
    tokens = box_tokens(BOXES, BOX_LABELS, num_classes=18, grid_size=8)
    c, pad = 18, 18 + 64
    expected = [3, c + 0, c + 4 * 8 + 4,  # class 3, corners (0, 0) and (round(3.5) = 4, 4)
                17, c + 2 * 8 + 4, c + 5 * 8 + 7,  # class 17, (4, round(1.75) = 2) and (7, round(5.25) = 5)
                pad, pad, pad]
    assert tokens.tolist() == [expected]


def test_shuffle_objects_permutes_boxes_with_their_labels():
    boxes, labels = torch.rand(5, 4, 4), torch.randint(0, 18, (5, 4))
    shuffled_boxes, shuffled_labels = shuffle_objects(boxes, labels, torch.Generator().manual_seed(0))
    assert not torch.equal(shuffled_labels, labels) or not torch.equal(shuffled_boxes, boxes)
    for b in range(5):
        before = sorted(zip(labels[b].tolist(), boxes[b].tolist()))
        after = sorted(zip(shuffled_labels[b].tolist(), shuffled_boxes[b].tolist()))
        assert before == after


def test_layout_conditioner_pads_checks_and_has_a_null_layout():
    layout = LayoutConditioner(18, grid_size=8, max_objects=3, embed_dim=16, depth=1, heads=2).eval()
    cond = layout.prepare({"boxes": BOXES[:, :2], "box_labels": BOX_LABELS[:, :2]})  # 2 objects -> padded to 3
    assert cond["boxes"].shape == (1, 3, 4) and cond["box_labels"].tolist() == [[3, 17, -1]]
    assert layout.encode(cond)["context"].shape == (1, 9, 16)
    null = layout.null_cond(cond)
    assert (layout.tokens(null["boxes"], null["box_labels"]) == layout.pad_token).all()
    with pytest.raises(ValueError, match="box_labels must lie"):
        layout.prepare({"boxes": BOXES, "box_labels": torch.tensor([[18, -1, -1]])})
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        layout.prepare({"boxes": BOXES * 2, "box_labels": BOX_LABELS})
    with pytest.raises(ValueError, match="box_labels"):
        layout.prepare({"boxes": BOXES})


@pytest.mark.parametrize("conditioner", [TEXT, LAYOUT])
def test_condition_dropout_replaces_whole_items_by_the_null_condition(conditioner):
    ldm = _ldm(conditioner)
    cond = (ldm.prepare_cond({"caption": ["a red circle"] * 2000}) if conditioner is TEXT else
            ldm.prepare_cond({"boxes": BOXES.expand(2000, -1, -1), "box_labels": BOX_LABELS.expand(2000, -1)}))
    dropped = ldm.conditioner.drop_cond(cond, 0.1, generator=torch.Generator().manual_seed(0))
    null = ldm.conditioner.null_cond(cond)
    key = ldm.conditioner.keys[0]
    is_null = (dropped[key] == null[key]).flatten(1).all(1)
    kept = (dropped[key] == cond[key]).flatten(1).all(1)
    assert (is_null ^ kept).all()  # every item is either untouched or entirely null
    assert is_null.float().mean().item() == pytest.approx(0.1, abs=0.02)
    for k in ldm.conditioner.keys:  # the keys of one item are dropped together
        assert torch.equal(dropped[k][is_null], null[k][is_null])


@pytest.mark.parametrize("conditioner", [TEXT, LAYOUT])
def test_guidance_mixes_conditional_and_null_predictions(conditioner):
    ldm = _ldm(conditioner).eval()
    cond = ({"caption": ["a red circle", "a small blue square"]} if conditioner is TEXT else
            {"boxes": BOXES.expand(2, -1, -1), "box_labels": torch.tensor([[3, 17, -1], [5, -1, -1]])})
    for p in ldm.unet.parameters():  # the zero-initialised output layers would make every prediction 0
        p.data.add_(0.05 * torch.randn_like(p))
    z, t = torch.randn(2, 3, 8, 8), torch.tensor([500, 500])
    prepared = ldm.prepare_cond(cond)
    eps_c = ldm.unet(z, t, **ldm.conditioner.encode(prepared))
    eps_u = ldm.unet(z, t, **ldm.conditioner.encode(ldm.conditioner.null_cond(prepared)))
    assert not torch.allclose(eps_c, eps_u)
    torch.testing.assert_close(ldm.prediction_fn(cond, guidance_scale=1.0)(z, t), eps_c)
    torch.testing.assert_close(ldm.prediction_fn(cond, guidance_scale=3.0)(z, t), eps_u + 3.0 * (eps_c - eps_u),
                               atol=1e-5, rtol=1e-4)


def test_sample_takes_dataset_keys_and_labels_is_shorthand():
    text = _ldm(TEXT).eval()
    images = text.sample(cond={"caption": ["a red circle", "a blue square", ""]}, steps=2, progress=False,
                         generator=torch.Generator().manual_seed(0))
    assert images.shape == (3, 3, 8, 8) and images.min() >= -1 and images.max() <= 1
    layout = _ldm(LAYOUT).eval()
    assert layout.sample(cond={"boxes": BOXES, "box_labels": BOX_LABELS}, steps=2, progress=False).shape == (1, 3, 8, 8)
    with pytest.raises(ValueError, match="boxes, box_labels"):
        layout.sample(labels=torch.tensor([1]), steps=2, progress=False)
    classes = _ldm({"type": "class", "num_classes": 4, "embed_dim": 16}).eval()
    by_key = classes.sample(cond={"label": torch.tensor([0, 3])}, steps=2, progress=False,
                            generator=torch.Generator().manual_seed(0))
    by_shorthand = classes.sample(labels=torch.tensor([0, 3]), steps=2, progress=False,
                                  generator=torch.Generator().manual_seed(0))
    assert torch.equal(by_key, by_shorthand)
    with pytest.raises(ValueError, match="once"):
        classes.sample(labels=torch.tensor([0]), cond={"label": torch.tensor([0])})
    with pytest.raises(ValueError, match="n = 5"):
        classes.sample(n=5, labels=torch.tensor([0, 1]))


@pytest.mark.parametrize("conditioner", [TEXT, LAYOUT])
def test_training_on_dataset_items_reduces_the_loss(conditioner):
    """60 steps on 32 fixed items: the loss at fixed draws goes down (the conditioner learns too)."""
    from minildm.ldm import latent_diffusion_loss

    data = get_dataset("shapes", split="train", size=8, num_objects=(1, 2), length=32)
    if conditioner is TEXT:
        words = caption_vocabulary(data[i]["caption"] for i in range(32))
        conditioner = {**TEXT, "vocabulary": words, "max_length": 12}
    ldm = _ldm(conditioner, cond_drop_prob=0.1)
    encoded = ldm.encode_dataset(data)  # captions become token ids once, boxes are stacked
    batch = encoded.get_batch(list(range(32)))
    assert set(batch) == {"latent", *ldm.conditioner.keys}
    generator = torch.Generator().manual_seed(1)
    t = torch.randint(0, 1000, (32,), generator=generator)
    noise = torch.randn(batch["latent"].shape, generator=generator)
    cond = {k: batch[k] for k in ldm.conditioner.keys}

    def fixed_loss() -> float:
        with torch.no_grad():
            return latent_diffusion_loss(ldm, batch["latent"], t, noise, cond).item()

    before = fixed_loss()
    context_before = ldm.condition(cond)["context"].detach().clone()
    optimizer = torch.optim.Adam([p for g in ldm.optimizer_groups().values() for p in g], lr=2e-3)
    torch.manual_seed(0)
    for step in range(60):
        loss, _ = ldm.training_step(batch, "model", step)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert fixed_loss() < 0.8 * before
    assert not torch.allclose(ldm.condition(cond)["context"], context_before)  # tau_theta is trained jointly


def test_checkpoint_roundtrip_keeps_the_tokenizer_and_the_outputs(tmp_path):
    from minildm.pretrained import load_model
    from minildm.train import train_from_config

    config = {"model": {"target": "latent_diffusion",
                        "params": {"unet": UNET, "conditioner": TEXT, "image_size": 8, "first_stage": None}},
              "data": {"name": "shapes", "size": 8, "options": {"num_objects": 1}, "cache_latents": 64},
              "train": {"steps": 2, "batch_size": 8, "log_every": 1, "checkpoint_every": 2}}
    trainer = train_from_config(config, out_dir=tmp_path, progress=False)
    loaded = load_model(tmp_path, ema=False)
    captions = ["a large red circle", "a small blue square above a red circle"]
    assert torch.equal(loaded.conditioner.tokenize(captions), trainer.model.conditioner.tokenize(captions))
    assert loaded.conditioner.tokenizer.to_str() == trainer.model.conditioner.tokenizer.to_str()
    trained = trainer.model.cpu().eval()  # it trained on the default device; the loaded copy is on the CPU
    torch.testing.assert_close(loaded.condition({"caption": captions})["context"],
                               trained.condition({"caption": captions})["context"])


def test_shapes_exclude_never_draws_the_held_out_pairs():
    held_out = ["green triangle", "purple square", "orange circle"]
    data = get_dataset("shapes", size=16, num_objects=(1, 3), exclude=held_out, length=400)
    ids = {data.class_names.index(name) for name in held_out}
    assert not any(set(data[i]["box_labels"].tolist()) & ids for i in range(400))
    plain = get_dataset("shapes", size=16, num_objects=(1, 3))
    assert torch.equal(get_dataset("shapes", size=16, num_objects=(1, 3), exclude=[])[7]["image"], plain[7]["image"])
    with pytest.raises(ValueError, match="exclude"):
        get_dataset("shapes", exclude=["pink circle"])


@pytest.mark.parametrize("name", ["shapes-txt2img", "shapes-layout"])
def test_shipped_text_and_layout_checkpoints_follow_their_conditions(name):
    """The course checkpoints draw what they are asked far above chance (18 classes) on a few val items."""
    from minildm.metrics.scene_judge import caption_faithfulness, layout_fidelity
    from minildm.pretrained import available, load, manifest

    if name not in available():
        pytest.skip(f"{name} is not shipped")
    ldm, judge = load(name), load("judge-shapes")
    options = {k: v for k, v in manifest(name)["config"]["data"]["options"].items() if k != "exclude"}
    data = get_dataset("shapes", split="val", **options)
    items = [data[i] for i in range(24)]
    if name == "shapes-txt2img":
        captions = [item["caption"] for item in items]
        images = ldm.sample(cond={"caption": captions}, steps=10, progress=False,
                            generator=torch.Generator().manual_seed(0))
        scores = caption_faithfulness(judge, images, captions, data.class_names)
        assert scores["single_objects"] >= 0.6 and scores["multi_colours"] >= 0.5
    else:
        boxes = torch.stack([item["boxes"] for item in items])
        box_labels = torch.stack([item["box_labels"] for item in items])
        images = ldm.sample(cond={"boxes": boxes, "box_labels": box_labels}, steps=10, progress=False,
                            generator=torch.Generator().manual_seed(0))
        scores = layout_fidelity(judge, images, boxes, box_labels, data.class_names)
        assert scores["box_accuracy"] >= 0.2 and scores["mean_iou"] >= 0.5  # chance: 1 in 18 classes


def test_fourier_corner_embedding_places_nearby_cells_close():
    from minildm.conditioning.layout import fourier_features

    near = (fourier_features(torch.tensor(0.0), torch.tensor(0.0), 4)
            - fourier_features(torch.tensor(1 / 15), torch.tensor(0.0), 4)).norm()
    far = (fourier_features(torch.tensor(0.0), torch.tensor(0.0), 4)
           - fourier_features(torch.tensor(0.6), torch.tensor(0.6), 4)).norm()
    assert near < 0.5 * far
    layout = LayoutConditioner(18, grid_size=16, embed_dim=16, depth=1, heads=2, corner_embedding="fourier").eval()
    tokens = layout.tokens(BOXES, BOX_LABELS)
    vectors = layout.embed(tokens)  # (1, 9, 16)
    assert torch.equal(vectors[0, 0], layout.token_embedding.weight[3])  # class tokens: the lookup table
    again = layout.embed(tokens.clone())
    assert torch.equal(vectors, again) and layout.encode(layout.prepare(
        {"boxes": BOXES, "box_labels": BOX_LABELS}))["context"].shape == (1, 12, 16)
    with pytest.raises(ValueError, match="corner_embedding"):
        LayoutConditioner(18, corner_embedding="sinusoid")


@pytest.mark.parametrize("corner_embedding", ["lookup", "fourier"])
def test_bind_classes_adds_each_class_vector_to_its_own_corners(corner_embedding):
    torch.manual_seed(0)
    free = LayoutConditioner(18, grid_size=8, max_objects=3, embed_dim=16, depth=1, heads=2,
                             corner_embedding=corner_embedding)
    bound = LayoutConditioner(18, grid_size=8, max_objects=3, embed_dim=16, depth=1, heads=2,
                              corner_embedding=corner_embedding, bind_classes=True)
    bound.load_state_dict(free.state_dict())  # the same weights; only the embedding rule differs
    tokens = free.tokens(BOXES, BOX_LABELS)  # objects: class 3, class 17, padding
    plain, tied = free.embed(tokens)[0], bound.embed(tokens)[0]  # (9, 16)
    classes = free.token_embedding.weight
    torch.testing.assert_close(tied[[0, 3, 6]], plain[[0, 3, 6]])  # class tokens and the padding object's first
    torch.testing.assert_close(tied[1:3], plain[1:3] + classes[3])  # object 0's corners carry class 3
    torch.testing.assert_close(tied[4:6], plain[4:6] + classes[17])  # object 1's corners carry class 17
    torch.testing.assert_close(tied[7:9], plain[7:9])  # padding stays padding


def test_layout_prepare_checks_the_boxes_of_class_zero_too():
    """Every real object (label >= 0, class 0 included) must have its box in [0, 1]; padding (-1) is not checked."""
    layout = LayoutConditioner(18, grid_size=8, max_objects=3, embed_dim=16, depth=1, heads=2)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        layout.prepare({"boxes": torch.tensor([[[0.0, 0.0, 1.5, 0.5]]]), "box_labels": torch.tensor([[0]])})
    padded = layout.prepare({"boxes": torch.tensor([[[0.0, 0.0, 0.5, 0.5], [2.0, 2.0, 3.0, 3.0]]]),
                             "box_labels": torch.tensor([[0, -1]])})
    assert padded["box_labels"].tolist() == [[0, -1, -1]]
