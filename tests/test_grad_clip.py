"""Gradient clipping happens before the optimizer step: the step uses the clipped gradient."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from minildm.train import Trainer

GRADIENT = torch.tensor([3.0, 4.0])  # norm 5, above every clip threshold below


class LinearLoss(nn.Module):
    """loss = <g, w>: the gradient with respect to w is the fixed vector g, whatever w and the batch are."""

    def __init__(self, gradient: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros_like(gradient))
        self.register_buffer("gradient", gradient.clone())

    def training_step(self, batch, group: str, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss <g, w>; the batch is ignored."""
        return (self.gradient * self.weight).sum(), {}


def one_step(tmp_path, grad_clip: float, lr: float = 0.1) -> Trainer:
    """Train LinearLoss for a single optimizer step with `grad_clip`."""
    config = {"steps": 1, "batch_size": 2, "lr": lr, "lr_schedule": "constant", "warmup_steps": 0,
              "grad_clip": grad_clip, "ema_decay": 0.0, "log_every": 1, "checkpoint_every": 100, "device": "cpu",
              "precision": "fp32"}
    return Trainer(LinearLoss(GRADIENT), TensorDataset(torch.zeros(4, 1)), config, out_dir=tmp_path,
                   progress=False).fit()


@pytest.fixture
def sgd(monkeypatch):
    """Make the trainer build plain SGD (w <- w - lr * grad) instead of AdamW."""
    def build_sgd(groups, config):
        return {name: torch.optim.SGD(params, lr=config.lr) for name, params in groups.items()}
    monkeypatch.setattr("minildm.train.trainer.build_optimizers", build_sgd)


@pytest.mark.parametrize("clip", [1.0, 2.5])
def test_sgd_step_moves_by_lr_times_clip(tmp_path, sgd, clip):
    # with plain SGD (w <- w - lr * grad) the step length shows which gradient the optimizer used:
    # the clipped one has norm `clip`, so w moves by exactly lr * clip, along -g
    lr = 0.1
    trainer = one_step(tmp_path, grad_clip=clip, lr=lr)
    moved = trainer.model.weight.detach()  # started at zero
    assert torch.allclose(moved, -lr * clip * GRADIENT / GRADIENT.norm(), atol=1e-7)
    assert torch.linalg.vector_norm(moved).item() == pytest.approx(lr * clip, abs=1e-7)
    assert trainer.history[-1]["grad_norm/model"] == pytest.approx(5.0)  # the norm before clipping


def test_adamw_moments_hold_the_clipped_gradient(tmp_path):
    # the trainer's own optimizer: AdamW's first step moves each weight by ~lr * sign(grad) whether
    # or not the gradient was clipped, but its moments record the gradient it was given:
    # exp_avg = (1 - beta1) * g_clipped and exp_avg_sq = (1 - beta2) * g_clipped**2
    trainer = one_step(tmp_path, grad_clip=1.0)
    beta1, beta2 = trainer.config.betas
    clipped = GRADIENT / GRADIENT.norm()  # norm 1.0 = grad_clip
    state = trainer.optimizers["model"].state[trainer.model.weight]
    assert torch.allclose(state["exp_avg"], (1 - beta1) * clipped, atol=1e-7)
    assert torch.allclose(state["exp_avg_sq"], (1 - beta2) * clipped**2, atol=1e-9)


def test_no_clipping_when_grad_clip_is_zero(tmp_path, sgd):
    trainer = one_step(tmp_path, grad_clip=0.0, lr=0.1)
    assert torch.allclose(trainer.model.weight.detach(), -0.1 * GRADIENT, atol=1e-7)
    assert "grad_norm/model" not in trainer.history[-1]
