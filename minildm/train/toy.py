"""Tiny models that show the trainer protocol in a few lines (and make the trainer's tests fast).

- `ToyRegressionDataset`: vectors x and targets y = <w, x> + noise, a pure function of (seed, split).
- `ToyRegressor`: an MLP with dropout fitted by mean squared error: one optimizer group.
- `ToyGAN`: a generator and a discriminator on the same vectors: two optimizer groups,
  stepped generator first, like the stage-1 autoencoder with its PatchGAN.

Configs can target them by import string, e.g. minildm/configs/examples/toy-regressor.yaml:

    model: {target: "minildm.train.toy:ToyRegressor", params: {in_features: 8}}
    data: {name: "minildm.train.toy:ToyRegressionDataset", size: 8}
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from minildm.data.base import SPLIT_CODES


class ToyRegressionDataset(Dataset):
    """`length` items {"x": (size,), "y": (1,)} with y = <w, x> + noise_std * noise; w fixed by `seed`."""

    def __init__(self, split: str = "train", size: int = 8, length: int = 256, seed: int = 0, noise_std: float = 0.05):
        if split not in SPLIT_CODES:
            raise ValueError(f"split must be one of {', '.join(SPLIT_CODES)}, got {split!r}")
        weights = torch.randn(size, generator=torch.Generator().manual_seed(seed))
        generator = torch.Generator().manual_seed(seed * 10 + 1 + SPLIT_CODES[split])
        self.x = torch.randn(length, size, generator=generator)  # (N, size)
        self.y = (self.x @ weights + noise_std * torch.randn(length, generator=generator))[:, None]  # (N, 1)

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[index], "y": self.y[index]}


class ToyRegressor(nn.Module):
    """MLP in_features -> hidden -> 1 with dropout (so training draws from the RNG), MSE loss."""

    def __init__(self, in_features: int = 8, hidden: int = 32, dropout: float = 0.1):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_features, hidden), nn.SiLU(), nn.Dropout(dropout), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_features) -> (B, 1)."""
        return self.net(x)

    def training_step(self, batch: dict[str, torch.Tensor], group: str, step: int) -> tuple[torch.Tensor, dict]:
        """Mean squared error between prediction and target (the trainer protocol)."""
        loss = F.mse_loss(self(batch["x"]), batch["y"])
        return loss, {"mse": loss.detach()}

    @torch.no_grad()
    def sample_images(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """The first layer's weight rows as tiny grayscale images (n, 1, 1, in_features), scaled to [-1, 1]."""
        w = self.net[0].weight[:n]  # (n, in_features)
        return (w / w.abs().max().clamp_min(1e-8))[:, None, None, :]


class ToyGAN(nn.Module):
    """A generator (noise -> vector) and a discriminator (vector -> logit), non-saturating GAN loss.

    Groups {"generator", "disc"}: the generator step makes D call its samples real, the
    disc step tells the data's "x" vectors (real) from detached generator samples (fake).
    """

    def __init__(self, in_features: int = 8, noise_dim: int = 4, hidden: int = 32):
        super().__init__()
        self.noise_dim = noise_dim
        self.generator = nn.Sequential(nn.Linear(noise_dim, hidden), nn.SiLU(), nn.Linear(hidden, in_features))
        self.discriminator = nn.Sequential(nn.Linear(in_features, hidden), nn.SiLU(), nn.Linear(hidden, 1))

    def optimizer_groups(self) -> dict[str, list[nn.Parameter]]:
        """Generator first, then the discriminator (stepped in this order every step)."""
        return {"generator": list(self.generator.parameters()), "disc": list(self.discriminator.parameters())}

    def training_step(self, batch: dict[str, torch.Tensor], group: str, step: int) -> tuple[torch.Tensor, dict]:
        """Generator: softplus(-D(G(z))); disc: softplus(-D(x)) + softplus(D(G(z)))."""
        real = batch["x"]
        fake = self.generator(torch.randn(real.shape[0], self.noise_dim, device=real.device))
        if group == "generator":
            loss = F.softplus(-self.discriminator(fake)).mean()
            return loss, {"g_loss": loss.detach()}
        if group == "disc":
            loss = F.softplus(-self.discriminator(real)).mean() + F.softplus(self.discriminator(fake.detach())).mean()
            return loss, {"d_loss": loss.detach()}
        raise ValueError(f"unknown optimizer group {group!r}; ToyGAN has generator, disc")
