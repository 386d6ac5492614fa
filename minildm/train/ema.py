"""Exponential moving average (EMA) of model weights, as used for every LDM (decay 0.9999).

After each optimizer step the shadow weights move towards the current ones:

    n <- n + 1,    d_n = min(decay, (1 + n) / (10 + n)),    shadow <- d_n * shadow + (1 - d_n) * param

The warm-up term (1 + n)/(10 + n) (as in the CompVis `LitEma`) keeps early averages from
being dominated by the random initial weights. Sampling and evaluation use the shadow
weights: `store` + `copy_to` swap them in, `restore` puts the training weights back.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.distributed.tensor import DTensor


class EMA:
    """Shadow copies of the trainable parameters of `model`, keyed by parameter name."""

    def __init__(self, model: nn.Module, decay: float = 0.9999):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.num_updates = 0
        self.shadow = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
        self._stored: dict[str, torch.Tensor] | None = None
        self._pairs: tuple[nn.Module, list[tuple[list[torch.Tensor], list[torch.Tensor]]]] | None = None

    def current_decay(self) -> float:
        """d_n for the next update: min(decay, (1 + n) / (10 + n)) with n counting that update."""
        n = self.num_updates + 1
        return min(self.decay, (1.0 + n) / (10.0 + n))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """shadow <- d shadow + (1 - d) param for every tracked parameter."""
        decay = self.current_decay()
        self.num_updates += 1
        for shadows, params in self._shadow_param_pairs(model):
            current = [p.detach().to(s.dtype) for s, p in zip(shadows, params)]
            torch._foreach_lerp_(shadows, current, 1.0 - decay)

    def _shadow_param_pairs(self, model: nn.Module) -> list[tuple[list[torch.Tensor], list[torch.Tensor]]]:
        """(shadows, parameters) lists for one multi-tensor call each, looked up once per model.

        Two lists when some shadows are sharded (DTensors, train.fsdp) and some whole, as torch's
        multi-tensor ops take one kind or the other. Walking `named_parameters` at every step costs
        a few milliseconds, as much as the update itself for a small UNet.
        """
        if self._pairs is None or self._pairs[0] is not model:
            params = dict(model.named_parameters())
            groups = []
            for sharded in (False, True):
                names = [name for name, shadow in self.shadow.items() if isinstance(shadow, DTensor) == sharded]
                if names:
                    groups.append(([self.shadow[name] for name in names], [params[name] for name in names]))
            self._pairs = (model, groups)
        return self._pairs[1]

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Overwrite the model's parameters with the shadow (EMA) weights."""
        for name, param in model.named_parameters():
            if name in self.shadow:
                param.copy_(self.shadow[name])

    @torch.no_grad()
    def store(self, model: nn.Module) -> None:
        """Keep a copy of the current (training) weights, to `restore` after evaluating with EMA weights."""
        self._stored = {name: p.detach().clone() for name, p in model.named_parameters() if name in self.shadow}

    @torch.no_grad()
    def restore(self, model: nn.Module) -> None:
        """Put back the weights saved by `store`."""
        if self._stored is None:
            raise RuntimeError("EMA.restore called without a matching EMA.store")
        for name, param in model.named_parameters():
            if name in self._stored:
                param.copy_(self._stored[name])
        self._stored = None

    @contextmanager
    def average_parameters(self, model: nn.Module) -> Iterator[nn.Module]:
        """`with ema.average_parameters(model):` runs the block with EMA weights, then restores."""
        self.store(model)
        self.copy_to(model)
        try:
            yield model
        finally:
            self.restore(model)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The shadow weights (parameter name -> tensor); `num_updates` is saved separately."""
        return dict(self.shadow)

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor], num_updates: int) -> None:
        """Load shadow weights saved by `state_dict`; the names must match the tracked parameters."""
        missing, unexpected = set(self.shadow) - set(state), set(state) - set(self.shadow)
        if missing or unexpected:
            raise ValueError(f"EMA state does not match the model: missing {sorted(missing)[:5]}, "
                             f"unexpected {sorted(unexpected)[:5]}")
        for name, tensor in state.items():
            self.shadow[name].copy_(tensor)
        self.num_updates = int(num_updates)
