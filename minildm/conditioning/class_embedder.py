"""Class conditioning (LDM Sec. 3.3, App. D): a label becomes UNet inputs.

Two ways, both in the paper's code:
- "crossattn": nn.Embedding -> a one-token context (B, 1, D) the UNet attends to;
- "adm": the label is passed as `y` and the UNet adds its own embedding to the time
  embedding (Dhariwal & Nichol, 2021).
For classifier-free guidance (Ho & Salimans, 2022) one extra id, `num_classes`, is the
"null" class: training replaces ~10% of labels by it, sampling uses it for the
unconditional half of the batch.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn as nn

from minildm.conditioning.base import Conditioner

MODES = ("crossattn", "adm")


class ClassConditioner(Conditioner):
    """Labels (B,) -> keyword arguments of the UNet: {"context": (B, 1, D)} or {"y": (B,)}."""

    keys = ("label",)

    def __init__(self, num_classes: int, embed_dim: int = 64, mode: str = "crossattn"):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"unknown class-conditioning mode {mode!r}; valid modes: {', '.join(MODES)}")
        self.num_classes = num_classes
        self.mode = mode
        self.null_id = num_classes  # the extra "no class" id used by classifier-free guidance
        self.embedding = nn.Embedding(num_classes + 1, embed_dim) if mode == "crossattn" else None

    def null_input(self, like: torch.Tensor) -> torch.Tensor:
        """The unconditional input for a batch shaped like `like`: every label set to the null id."""
        return torch.full_like(like, self.null_id)

    def null_cond(self, cond: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """{"label": every label set to the null id}."""
        return {"label": self.null_input(cond["label"])}

    def prepare(self, cond: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """{"label": ints or a tensor} -> {"label": (B,) long}."""
        return {"label": super().prepare(cond)["label"].long().reshape(-1)}

    def drop(self, labels: torch.Tensor, drop_prob: float, generator: torch.Generator | None = None) -> torch.Tensor:
        """Condition dropout for CFG training: each label becomes the null id with probability `drop_prob`."""
        return self.drop_cond({"label": labels}, drop_prob, generator)["label"]

    def forward(self, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B,) long -> UNet kwargs."""
        labels = labels.long()
        # checked in eval mode (user input at sampling time); in training the labels come from a
        # dataset, and the check would make the host wait for the GPU at every step
        if not self.training and labels.numel() and (labels.min() < 0 or labels.max() > self.num_classes):
            raise ValueError(f"class labels must lie in [0, {self.num_classes}] ({self.num_classes} = null), "
                             f"got [{labels.min().item()}, {labels.max().item()}]")
        if self.mode == "adm":
            return {"y": labels}
        return {"context": self.embedding(labels)[:, None, :]}  # (B,) -> (B, 1, D)
