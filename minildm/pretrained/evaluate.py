"""Held-out metrics of course models: what each manifest records and what the acceptance bars check.

    autoencoders   PSNR and SSIM of reconstructions (minildm.metrics), latent numbers per image;
                   VQ also codebook usage over the whole evaluation set (codes hit at least once;
                   a single batch of flat-background shapes hits only a few) and its perplexity.
    judges         accuracy on real held-out images (the ceiling of any judge accuracy on samples).
    LDMs           the judge's accuracy on class-conditional samples (one batch per class label,
                   DPM-Solver++(2M) 20 steps, CFG 3 by default) and the Fréchet distance between judge
                   features of samples and of real held-out images.

`evaluate(model, config)` picks the right one from the config's model target; `minildm train CONFIG
--export NAME` calls it on the EMA weights and writes the numbers into the checkpoint's manifest.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

JUDGES = {"shapes": "judge-shapes", "digits": "judge-digits"}  # dataset -> course judge checkpoint


def held_out_images(data: Mapping[str, Any], num_images: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `num_images` images (B, C, H, W) in [-1, 1] and labels (B,) of the config's val split."""
    from minildm.data import get_dataset

    dataset = get_dataset(data["name"], split="val", size=data.get("size", 32), **dict(data.get("options") or {}))
    n = min(num_images, len(dataset))
    items = [dataset[i] for i in range(n)]
    return torch.stack([it["image"] for it in items]), torch.as_tensor([int(it["label"]) for it in items])


@torch.no_grad()
def evaluate_autoencoder(model: nn.Module, images: torch.Tensor, batch_size: int = 64) -> dict[str, float]:
    """PSNR/SSIM of reconstructions through the latent (and codebook usage for VQ) on `images`."""
    from minildm.autoencoder import VQModel
    from minildm.metrics import psnr, ssim

    autoencoder = getattr(model, "autoencoder", model).eval()
    device = next(autoencoder.parameters()).device
    scores: dict[str, list[torch.Tensor]] = {"psnr_db": [], "ssim": []}
    indices = []
    for x in images.split(batch_size):
        x = x.to(device)
        if isinstance(autoencoder, VQModel):
            _, _, info = autoencoder.quantize(autoencoder.encode_pre_quant(x))
            indices.append(info["indices"].flatten())
        latent = autoencoder.encode_latent(x)
        recon = autoencoder.decode_latent(latent).clamp(-1, 1)
        scores["psnr_db"].append(psnr(recon, x))
        scores["ssim"].append(ssim(recon, x))
    metrics = {k: torch.cat(v).mean().item() for k, v in scores.items()}
    metrics["latent_numbers"] = float(latent[0].numel())
    metrics["scale_factor"] = float(autoencoder.scale_factor)
    if indices:
        counts = torch.bincount(torch.cat(indices), minlength=autoencoder.quantize.n_embed).double()
        probs = counts / counts.sum()
        metrics["codebook_usage"] = (counts > 0).double().mean().item()
        metrics["perplexity"] = torch.exp(-(probs * torch.log(probs + 1e-12)).sum()).item()
    metrics["eval_images"] = float(images.shape[0])
    return metrics


@torch.no_grad()
def evaluate_judge(judge: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Accuracy of the judge on real held-out images."""
    from minildm.metrics import judge_accuracy

    return {"val_accuracy": judge_accuracy(judge.eval(), images, labels), "eval_images": float(images.shape[0])}


@torch.no_grad()
def evaluate_ldm(ldm: nn.Module, judge: nn.Module, real: torch.Tensor, num_classes: int, per_class: int = 20,
                 sampler: str = "dpmpp_2m", steps: int = 20, guidance_scale: float = 3.0, seed: int = 0,
                 batch_size: int = 120) -> dict[str, Any]:
    """Judge accuracy and judge-feature Fréchet distance of `per_class` samples of every class."""
    from minildm.metrics import frechet_distance, judge_accuracy

    ldm.eval()
    judge.eval()
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    generator = torch.Generator().manual_seed(seed)
    samples = torch.cat([ldm.sample(labels=chunk, sampler=sampler, steps=steps, guidance_scale=guidance_scale,
                                    generator=generator, progress=False) for chunk in labels.split(batch_size)])
    return {
        "judge_accuracy": judge_accuracy(judge, samples, labels),
        "judge_frechet_distance": frechet_distance(judge.features(samples), judge.features(real)),
        "samples": int(labels.numel()), "sampler": sampler, "steps": steps, "guidance_scale": guidance_scale,
    }


def evaluate(model: nn.Module, config: Mapping[str, Any], judge: nn.Module | str | None = None,
             num_images: int = 512, per_class: int = 20) -> dict[str, Any]:
    """Held-out metrics of a trained `model` built from `config` (autoencoder, judge or LDM).

    For an LDM, `judge` is a JudgeClassifier or a course checkpoint name; by default the course judge of
    the config's dataset (JUDGES).
    """
    from minildm.data import dataset_info

    target, data = config["model"]["target"], config["data"]
    images, labels = held_out_images(data, num_images)
    if target in ("autoencoder_kl", "vq_model"):
        return evaluate_autoencoder(model, images)
    if target == "judge":
        return evaluate_judge(model, images, labels)
    if target == "latent_diffusion":
        from minildm.pretrained import load

        if judge is None:
            if data["name"] not in JUDGES:
                raise ValueError(f"no course judge for dataset {data['name']!r}; known: {', '.join(JUDGES)}; "
                                 f"pass judge=")
            judge = JUDGES[data["name"]]
        if isinstance(judge, str):
            judge = load(judge)
        return evaluate_ldm(model, judge, images, dataset_info(data["name"])["num_classes"], per_class=per_class)
    raise ValueError(f"no evaluation for model target {target!r}; accepted: autoencoder_kl, vq_model, judge, "
                     f"latent_diffusion")
