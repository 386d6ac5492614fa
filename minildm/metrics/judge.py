"""The "judge": a small classifier trained on real images, used to evaluate generated ones.

Two uses in the course (stand-ins for the Inception network behind FID/IS, whose
weights need a download):
- class accuracy of conditional samples: does a sample drawn for class c look like c?
- a feature space (the penultimate layer) for Fréchet / KID distances between real and
  generated images (`minildm.metrics.distance`).

`sample_and_judge` does both for a class-conditional LDM: what checkpoint manifests
(minildm.pretrained.evaluate) and the benchmarks report.
"""

from __future__ import annotations

import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from minildm.metrics.distance import frechet_distance


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    """conv 3x3 -> GroupNorm -> SiLU, twice, then 2x2 average pooling: (B, c_in, H, W) -> (B, c_out, H/2, W/2)."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1),
        nn.GroupNorm(8, c_out),
        nn.SiLU(),
        nn.Conv2d(c_out, c_out, 3, padding=1),
        nn.GroupNorm(8, c_out),
        nn.SiLU(),
        nn.AvgPool2d(2),
    )


class JudgeClassifier(nn.Module):
    """A small CNN classifier for images in [-1, 1]; `features()` gives a `width * 4`-dim embedding.

    Trained with the course trainer (`training_step`), with light augmentation (random
    shifts and a little Gaussian noise) so it also judges slightly imperfect samples fairly.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 10, width: int = 32, noise_std: float = 0.05,
                 max_shift: int = 2):
        super().__init__()
        self.num_classes = num_classes
        self.noise_std = noise_std
        self.max_shift = max_shift
        self.blocks = nn.Sequential(
            _conv_block(in_channels, width),  # (B, C, H, W) -> (B, w, H/2, W/2)
            _conv_block(width, width * 2),  # -> (B, 2w, H/4, W/4)
            _conv_block(width * 2, width * 4),  # -> (B, 4w, H/8, W/8)
        )
        self.head = nn.Linear(width * 4, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [-1, 1] -> (B, 4 * width) pooled features (on the judge's device)."""
        return self.blocks(x.to(self.head.weight.device)).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> class logits (B, num_classes)."""
        return self.head(self.features(x))

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Predicted class ids (B,) in eval mode, batched."""
        was_training = self.training
        self.eval()
        preds = torch.cat([self(chunk).argmax(1) for chunk in x.split(batch_size)])
        self.train(was_training)
        return preds

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        if self.max_shift > 0:
            dx, dy = torch.randint(-self.max_shift, self.max_shift + 1, (2,)).tolist()
            x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
        return x + self.noise_std * torch.randn_like(x)

    def training_step(self, batch: dict, group: str, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        """Cross-entropy on augmented real images (the trainer contract)."""
        logits = self(self._augment(batch["image"]))
        loss = F.cross_entropy(logits, batch["label"])
        accuracy = (logits.argmax(1) == batch["label"]).float().mean()
        return loss, {"loss": loss.detach(), "acc": accuracy}


@torch.no_grad()
def judge_accuracy(judge: JudgeClassifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of `images` that `judge` labels as `labels` (the asked classes)."""
    predictions = judge.predict(images)  # on the judge's device, wherever the images were
    return (predictions == labels.to(predictions.device)).float().mean().item()


@torch.no_grad()
def judge_features(judge: JudgeClassifier, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """(N, C, H, W) -> (N, D) judge features, `batch_size` images at a time, on the CPU."""
    judge.eval()
    return torch.cat([judge.features(chunk).cpu() for chunk in images.split(batch_size)])


@torch.no_grad()
def sample_and_judge(ldm: nn.Module, judge: JudgeClassifier, labels: torch.Tensor, real_features: torch.Tensor,
                     sampler: str = "dpmpp_2m", steps: int = 20, guidance_scale: float = 3.0, seed: int = 0,
                     batch_size: int = 120) -> dict[str, float]:
    """Sample one image per entry of `labels` from a class-conditional LDM, then judge them.

    Returns judge_accuracy (samples the judge labels as the asked class), judge_frechet_distance
    (Fréchet distance between judge features of the samples and `real_features`, see
    `judge_features`), and sample_s_per_image / sample_cpu_s_per_image (wall-clock and CPU seconds,
    sampling and decoding). Batches of `batch_size` draw their starting noise in turn from one CPU
    generator seeded with `seed`, so the samples do not depend on the batch size.
    """
    ldm.eval()
    judge.eval()
    generator = torch.Generator().manual_seed(seed)
    start, cpu_start = time.perf_counter(), time.process_time()
    samples = torch.cat([ldm.sample(labels=chunk, sampler=sampler, steps=steps, guidance_scale=guidance_scale,
                                    generator=generator, progress=False).cpu() for chunk in labels.split(batch_size)])
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    return {"judge_accuracy": judge_accuracy(judge, samples, labels),
            "judge_frechet_distance": frechet_distance(judge_features(judge, samples), real_features),
            "sample_s_per_image": seconds / labels.numel(), "sample_cpu_s_per_image": cpu_seconds / labels.numel()}
