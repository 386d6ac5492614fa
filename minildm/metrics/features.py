"""Feature extractors: the space every distribution metric is computed in, always named with the numbers.

FID, KID, precision/recall and density/coverage compare sets of *features*, so a number means
nothing without its extractor. Published FIDs use Inception-v3 (its 2,048-d pool features; IS its
1,000 ImageNet class probabilities), whose weights every FID package (pytorch-fid, torch-fidelity,
clean-fid) downloads at run time. minildm never downloads them and never substitutes another network
silently: it names the extractor in every result.

    "judge-shapes", "judge-digits"   a course judge classifier (minildm.metrics.judge): its 128-d pooled
                                     features, and its class probabilities for the Inception Score;
                                     also any judge checkpoint folder or run that minildm.pretrained.resolve loads
    "pixels"                         the raw pixels, flattened (C*H*W numbers): no network at all
    "inception-v3:PATH"              torchvision's Inception-v3 from a LOCAL weights file (the one
                                     torchvision downloads as inception_v3_google-0cc3c7bd.pth, or the
                                     same state dict as .safetensors); images are resized to 299 x 299

torchvision's port of the Google weights is not the TensorFlow graph of the original FID code
(pytorch-fid ships a patched copy of it), so even Inception FDs here differ a little from published
FIDs; compare numbers only with numbers from the same extractor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

INCEPTION_PREFIX = "inception-v3"
INCEPTION_URL = "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth"
ACCEPTED = (f"'judge-shapes', 'judge-digits' (or another judge checkpoint name / folder), 'pixels', "
            f"'{INCEPTION_PREFIX}:PATH' (a local torchvision Inception-v3 weights file), or a FeatureExtractor")


class Embedding(NamedTuple):
    """What an extractor gives for a set of images: features (N, D) and, for classifiers, probabilities (N, K)."""

    features: torch.Tensor
    probabilities: torch.Tensor | None


@dataclass
class FeatureExtractor:
    """A named map from images (B, C, H, W) in [-1, 1] to (features (B, D), class logits (B, K) or None)."""

    name: str
    forward: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]]
    device: torch.device = torch.device("cpu")
    batch_size: int = 256

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, progress: bool = False) -> Embedding:
        """Features (N, D) and softmax probabilities (N, K) or None of all `images`, on the CPU, in float32."""
        from tqdm.auto import tqdm

        if images.ndim != 4:
            raise ValueError(f"{self.name} features need images (N, C, H, W) in [-1, 1], got shape {tuple(images.shape)}")
        features, probabilities = [], []
        for chunk in tqdm(images.split(self.batch_size), desc=f"{self.name} features", disable=not progress,
                          leave=False):
            feats, logits = self.forward(chunk.to(self.device).float())
            features.append(feats.float().cpu())
            if logits is not None:
                probabilities.append(logits.float().softmax(dim=1).cpu())
        return Embedding(torch.cat(features), torch.cat(probabilities) if probabilities else None)


def judge_extractor(judge: nn.Module, name: str) -> FeatureExtractor:
    """A judge classifier (features() + head) as an extractor called `name`: pooled features and class logits."""
    if not (hasattr(judge, "features") and hasattr(judge, "head")):
        raise ValueError(f"{name!r} is a {type(judge).__name__}, not a judge classifier (features() + head); "
                         f"accepted feature extractors: {ACCEPTED}")
    judge.eval()

    def forward(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = judge.features(x)  # (B, 4 * width)
        return features, judge.head(features)  # (B, num_classes) logits

    return FeatureExtractor(name, forward, device=judge.head.weight.device)


def pixel_extractor(size: int | None = None) -> FeatureExtractor:
    """The raw pixels as features: (B, C, H, W) -> (B, C*H*W); no class probabilities.

    size: first average-pool the images to size x size ("pixels 16x16"): fewer dimensions, so the
    covariances of FD are estimated from fewer samples and computed faster.
    """
    if size is None:
        return FeatureExtractor("pixels", lambda x: (x.flatten(1), None))
    return FeatureExtractor(f"pixels {size}x{size}", lambda x: (F.adaptive_avg_pool2d(x, size).flatten(1), None))


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a .safetensors file or a torch file of tensors only (torch.load with weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file {str(path)!r}; give a local .pth / .safetensors file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a pickle with objects, a truncated file, not a torch file at all
        raise ValueError(f"{path} is not a state dict of tensors readable with torch.load(weights_only=True) "
                         f"({type(error).__name__}); give torchvision's weights file or a .safetensors copy") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    return state


def inception_extractor(weights: str | Path, device: str | torch.device = "cpu") -> FeatureExtractor:
    """torchvision's Inception-v3 with the weights in the local file `weights`: 2,048-d pool features, 1,000 logits.

    Images in [-1, 1] are resized to 299 x 299 (bilinear) and fed as they are: the Google weights
    expect exactly that range (torchvision's `transform_input=True` maps ImageNet-normalised input
    to it; we skip both steps). Grey images are repeated to three channels.
    """
    from torchvision.models import inception_v3

    state = read_state_dict(weights)
    model = inception_v3(weights=None, aux_logits=True, transform_input=False, init_weights=False)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{weights} is not torchvision's Inception-v3 state dict: missing {sorted(missing)[:3]} "
                         f"({len(missing)} in all), unexpected {sorted(unexpected)[:3]} ({len(unexpected)} in all); "
                         f"expected the file torchvision downloads from {INCEPTION_URL}")
    fc, model.fc = model.fc, nn.Identity()  # the forward pass then ends at the 2,048-d pooled features
    model = model.to(device).eval()
    fc = fc.to(device)

    def forward(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)  # (B, 3, 299, 299)
        features = model(x)  # (B, 2048): eval mode returns the main branch only
        return features, fc(features)  # (B, 1000) ImageNet logits

    return FeatureExtractor(f"{INCEPTION_PREFIX} (torchvision weights {Path(weights).name})", forward,
                            device=torch.device(device), batch_size=64)


def feature_extractor(spec: str | FeatureExtractor, device: str | torch.device = "cpu") -> FeatureExtractor:
    """The extractor named by `spec` (see the module docstring); a FeatureExtractor is returned as it is."""
    if isinstance(spec, FeatureExtractor):
        return spec
    if not isinstance(spec, (str, Path)):
        raise TypeError(f"features must be a name or a FeatureExtractor, got {type(spec).__name__}; accepted: {ACCEPTED}")
    spec = str(spec)
    if spec == "pixels":
        return pixel_extractor()
    if spec.split(":", 1)[0] == INCEPTION_PREFIX:
        path = spec.split(":", 1)[1] if ":" in spec else ""
        if not path:
            raise ValueError(f"'{INCEPTION_PREFIX}' needs torchvision's weights as a local file: "
                             f"features='{INCEPTION_PREFIX}:/path/to/inception_v3_google-0cc3c7bd.pth' "
                             f"(fetch {INCEPTION_URL} on a connected machine); minildm never downloads it")
        return inception_extractor(path, device=device)
    from minildm.pretrained import resolve

    try:
        judge = resolve(spec, device=device)
    except ValueError:
        raise ValueError(f"unknown feature extractor {spec!r}; accepted: {ACCEPTED}") from None
    return judge_extractor(judge, spec)
