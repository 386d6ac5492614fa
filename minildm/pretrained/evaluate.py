"""Held-out metrics of course models: what each manifest records and what the acceptance bars check.

    autoencoders   `minildm.metrics.evaluate_autoencoder`: PSNR and SSIM of reconstructions, latent
                   numbers per image; VQ also codebook usage over the whole evaluation set (codes hit
                   at least once; a single batch of flat-background shapes hits only a few) and its
                   perplexity.
    judges         accuracy on real held-out images (the ceiling of any judge accuracy on samples).
    LDMs           `minildm.metrics.sample_and_judge`: the judge's accuracy on class-conditional
                   samples (the same number per class label, DPM-Solver++(2M) 20 steps, CFG 3 by
                   default) and the Fréchet distance between judge features of samples and of real
                   held-out images. Text-to-image and layout-to-image LDMs: the scene judge
                   (minildm.metrics.scene_judge) on one sample per held-out caption / layout, with
                   the captions naming colour-shape pairs held out of training reported apart.
                   Image-to-image LDMs (concat conditioning: inpainting, super-resolution, semantic
                   synthesis): their bars, `minildm.metrics.evaluate_image_to_image` (known-region and
                   background-hole PSNR, half-object completion; PSNR and LPIPS against bicubic; colour
                   match at 32 and 64 px) on the first 256 held-out items.

Held-out images are the first `num_images` of the config's val split (`minildm.data.load_images`).

`evaluate(model, config)` picks the right one from the config's model target; `minildm train CONFIG
--export NAME` calls it on the EMA weights and writes the numbers into the checkpoint's manifest.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

JUDGES = {"shapes": "judge-shapes", "digits": "judge-digits"}  # dataset -> course judge checkpoint


@torch.no_grad()
def evaluate_judge(judge: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Accuracy of the judge on real held-out images."""
    from minildm.metrics import judge_accuracy

    return {"val_accuracy": judge_accuracy(judge.eval(), images, labels), "eval_images": float(images.shape[0])}


@torch.no_grad()
def evaluate_ldm(ldm: nn.Module, judge: nn.Module, real: torch.Tensor, num_classes: int, per_class: int = 20,
                 sampler: str = "dpmpp_2m", steps: int = 20, guidance_scale: float = 3.0, seed: int = 0,
                 batch_size: int = 120) -> dict[str, Any]:
    """Judge accuracy and judge-feature Fréchet distance of `per_class` samples of every class (`sample_and_judge`)."""
    from minildm.data import balanced_labels
    from minildm.metrics import judge_features, sample_and_judge

    labels = balanced_labels(num_classes, num_classes * per_class)
    scores = sample_and_judge(ldm, judge, labels, judge_features(judge, real), sampler, steps, guidance_scale, seed,
                              batch_size)
    return {"judge_accuracy": scores["judge_accuracy"], "judge_frechet_distance": scores["judge_frechet_distance"],
            "samples": int(labels.numel()), "sampler": sampler, "steps": steps, "guidance_scale": guidance_scale}


@torch.no_grad()
def evaluate_scene_ldm(ldm: nn.Module, judge: nn.Module, data: Mapping[str, Any], kind: str,
                       num_images: int = 512) -> dict[str, Any]:
    """Caption faithfulness (text) or layout fidelity (layout) on the first `num_images` items of the val split.

    The val split is drawn without the training config's `exclude` option, so captions naming the
    held-out colour-shape pairs appear; they are scored apart ("held_out/...").
    """
    from minildm.data import get_dataset
    from minildm.metrics.scene_judge import sample_and_judge_captions, sample_and_judge_layouts

    options = dict(data.get("options") or {})
    held_out = list(options.pop("exclude", []))
    dataset = get_dataset(data["name"], split="val", size=data.get("size", 32), **options)
    items = [dataset[i] for i in range(min(num_images, len(dataset)))]
    if kind == "text":
        captions = [item["caption"] for item in items]
        return {**sample_and_judge_captions(ldm, judge, captions, dataset.class_names, held_out),
                "held_out_pairs": held_out, "samples": len(items)}
    boxes = torch.stack([item["boxes"] for item in items])
    box_labels = torch.stack([item["box_labels"] for item in items])
    return {**sample_and_judge_layouts(ldm, judge, boxes, box_labels, dataset.class_names), "samples": len(items)}


def evaluate(model: nn.Module, config: Mapping[str, Any], judge: nn.Module | str | None = None,
             num_images: int = 512, per_class: int = 20) -> dict[str, Any]:
    """Held-out metrics of a trained `model` built from `config` (autoencoder, judge or LDM).

    For an LDM, `judge` is a JudgeClassifier or a course checkpoint name; by default the course judge of
    the config's dataset (JUDGES).
    """
    from minildm.data import dataset_info, load_images
    from minildm.metrics import evaluate_autoencoder

    target, data = config["model"]["target"], config["data"]
    images, labels = load_images(data, num_images, split="val")
    if target in ("autoencoder_kl", "vq_model"):
        return evaluate_autoencoder(model, images)
    if target == "judge":
        return evaluate_judge(model, images, labels)
    if target == "latent_diffusion":
        from minildm.metrics.image_to_image import evaluate_image_to_image, image_to_image_task
        from minildm.pretrained import load

        if image_to_image_task(model) is not None:
            lpips = None
            if image_to_image_task(model) == "super_resolution":
                from minildm.losses import LPIPS

                lpips = LPIPS()
            return evaluate_image_to_image(model, data, "val", min(num_images, 256), lpips=lpips)
        if judge is None:
            if data["name"] not in JUDGES:
                raise ValueError(f"no course judge for dataset {data['name']!r}; known: {', '.join(JUDGES)}; "
                                 f"pass judge=")
            judge = JUDGES[data["name"]]
        if isinstance(judge, str):
            judge = load(judge)
        kind = (config["model"]["params"].get("conditioner") or {}).get("type")
        if kind in ("text", "layout"):
            return evaluate_scene_ldm(model, judge, data, kind, num_images)
        return evaluate_ldm(model, judge, images, dataset_info(data["name"])["num_classes"], per_class=per_class)
    raise ValueError(f"no evaluation for model target {target!r}; accepted: autoencoder_kl, vq_model, judge, "
                     f"latent_diffusion")
