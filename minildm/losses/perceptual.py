"""LPIPS perceptual distance (Zhang et al., 2018), used in the stage-1 loss (LDM Sec. 3.1, App. G).

LPIPS compares unit-normalised deep features of two images, layer by layer, with
learned per-channel weights. It needs two sets of weights:

- the linear "calibration" layers: shipped inside the `lpips` package;
- the backbone (AlexNet / VGG16 / SqueezeNet ImageNet weights from torchvision): NOT
  shipped. minildm never downloads them; it looks, in this order, at the `backbone_path`
  argument, the environment variable MINILDM_LPIPS_BACKBONE, and the torch hub cache
  (`<torch.hub.get_dir()>/checkpoints/alexnet-owt-7be5be79.pth`, ...). The file is read with
  torch.load(weights_only=True) into torchvision's model built with weights=None.

Without backbone weights, `LPIPS` falls back to a clearly named stand-in,
"lpips-fallback-randomfeatures": the same normalise-compare-average recipe on the
features of a fixed-seed random-weight conv net (random conv features carry some
perceptual signal, but this is NOT LPIPS and its numbers are not comparable with
published LPIPS values). The fallback is announced once per process with a warning,
and `.variant` always says which distance is in use.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

BACKBONE_FILES = {
    "alex": "alexnet-owt-7be5be79.pth",
    "vgg": "vgg16-397923af.pth",
    "squeeze": "squeezenet1_1-b8a52dc0.pth",
}
FALLBACK_VARIANT = "lpips-fallback-randomfeatures"
BACKBONE_ENV = "MINILDM_LPIPS_BACKBONE"
_fallback_announced = False


def find_backbone_weights(net: str = "alex", backbone_path: str | os.PathLike | None = None) -> Path | None:
    """Where the ImageNet weights of `net` are on this machine, or None. Explicit paths that do not exist raise."""
    if net not in BACKBONE_FILES:
        raise ValueError(f"unknown LPIPS backbone {net!r}; accepted: {sorted(BACKBONE_FILES)}")
    for source, value in (("backbone_path", backbone_path), (BACKBONE_ENV, os.environ.get(BACKBONE_ENV))):
        if value:
            path = Path(value).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"{source} points to {path}, which is not a file; expected torchvision's {BACKBONE_FILES[net]}")
            return path
    cached = Path(torch.hub.get_dir()) / "checkpoints" / BACKBONE_FILES[net]
    return cached if cached.is_file() else None


def _torchvision_features(net: str, weights_file: Path) -> nn.Sequential:
    """torchvision's `net` built with weights=None, loaded from `weights_file`; returns its conv trunk."""
    import torchvision

    builders = {"alex": torchvision.models.alexnet, "vgg": torchvision.models.vgg16, "squeeze": torchvision.models.squeezenet1_1}
    model = builders[net](weights=None)
    state = torch.load(weights_file, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.features


class RandomFeatureDistance(nn.Module):
    """The fallback: LPIPS's recipe on a fixed-seed random conv net, with equal layer weights. NOT LPIPS."""

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128, 128), seed: int = 0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        layers, in_ch = [], 3
        for i, width in enumerate(widths):
            conv = nn.Conv2d(in_ch, width, kernel_size=3, stride=1 if i == 0 else 2, padding=1)
            with torch.no_grad():
                conv.weight.normal_(0.0, (2.0 / (in_ch * 9)) ** 0.5, generator=generator)  # He init
                conv.bias.zero_()
            layers.append(conv)
            in_ch = width
        self.convs = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Distance (B, 1, 1, 1) between images x, y (B, 3, H, W) in [-1, 1]."""
        total = x.new_zeros(x.shape[0], 1, 1, 1)
        hx, hy = x, y
        for conv in self.convs:
            hx, hy = F.relu(conv(hx)), F.relu(conv(hy))
            fx = hx / (hx.norm(dim=1, keepdim=True) + 1e-10)  # unit length over channels, as in LPIPS
            fy = hy / (hy.norm(dim=1, keepdim=True) + 1e-10)
            total = total + (fx - fy).pow(2).sum(dim=1, keepdim=True).mean(dim=(2, 3), keepdim=True)
        return total / len(self.convs)


class LPIPS(nn.Module):
    """Perceptual distance d(x, y) -> (B, 1, 1, 1) for images in [-1, 1]; frozen and always in eval mode.

    `.variant` is "lpips-<net>" when the real backbone weights were found, else
    "lpips-fallback-randomfeatures". With `allow_fallback=False` a missing backbone raises.
    """

    def __init__(self, net: str = "alex", backbone_path: str | os.PathLike | None = None, allow_fallback: bool = True):
        super().__init__()
        weights_file = find_backbone_weights(net, backbone_path)
        if weights_file is None:
            where = Path(torch.hub.get_dir()) / "checkpoints" / BACKBONE_FILES[net]
            if not allow_fallback:
                raise FileNotFoundError(
                    f"LPIPS backbone weights for {net!r} not found: pass backbone_path=, set {BACKBONE_ENV}, or place {where}"
                )
            _announce_fallback(where)
            self.variant = FALLBACK_VARIANT
            self.model: nn.Module = RandomFeatureDistance()
        else:
            self.variant = f"lpips-{net}"
            self.model = _real_lpips(net, weights_file)
        self.weights_file = weights_file
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> LPIPS:
        """A fixed metric: stays in eval mode (no dropout) whatever the parent module does."""
        return super().train(False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-image distance (B, 1, 1, 1) between x and y (B, 3 or 1, H, W) in [-1, 1]; gray is repeated to RGB."""
        if x.shape != y.shape or x.dim() != 4 or x.shape[1] not in (1, 3):
            raise ValueError(
                f"LPIPS expects two (B, 3, H, W) or (B, 1, H, W) image batches of equal shape, got {tuple(x.shape)} and {tuple(y.shape)}"
            )
        if x.shape[1] == 1:
            x, y = x.expand(-1, 3, -1, -1), y.expand(-1, 3, -1, -1)
        return self.model(x, y)


def _real_lpips(net: str, weights_file: Path) -> nn.Module:
    """lpips.LPIPS with its shipped linear layers and the torchvision backbone read from `weights_file`."""
    import lpips

    with warnings.catch_warnings():  # lpips calls torchvision with the deprecated `pretrained=False`
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
    features = _torchvision_features(net, weights_file)
    # lpips splits torchvision's `features` into slices whose children keep their original indices:
    # net.slice2.3.weight is features.3.weight.
    trunk_state = {}
    for name in model.net.state_dict():
        _, index, param = name.split(".")
        trunk_state[name] = features.state_dict()[f"{index}.{param}"]
    model.net.load_state_dict(trunk_state)
    return model


def _announce_fallback(where: Path) -> None:
    """Warn once per process that the stand-in distance is used instead of LPIPS."""
    global _fallback_announced
    if _fallback_announced:
        return
    _fallback_announced = True
    warnings.warn(
        f"LPIPS backbone weights not found (looked for {where}, ${BACKBONE_ENV}); using {FALLBACK_VARIANT!r}, "
        "a fixed random-feature distance that is NOT LPIPS. Place torchvision's ImageNet weights there to get real LPIPS.",
        UserWarning,
        stacklevel=3,
    )
