"""Cross-attention maps: which pixels of the UNet's feature maps attend to which context token.

In every SpatialTransformer the pixels (queries) attend to the context tokens tau_theta(y) (keys):

    A = softmax(Q K^T / sqrt(d)),   Q = W_Q phi(z_t)  (B, HW, d),   K = W_K tau_theta(y)  (B, M, d)

Row i of A (one pixel) is a distribution over the M tokens, so column j, reshaped to H x W, shows
where token j ("red", "circle", a box corner) is read. Hertz et al. (2022, "Prompt-to-Prompt") edit
images through these maps; here we only look at them.

`record_cross_attention(unet)` hooks every cross-attention layer (`attn2` of each transformer block)
while it is active; `attention_maps(records, size)` averages the recorded maps over layers and heads,
resized to one size: (B, M, size, size).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn as nn
import torch.nn.functional as F

from minildm.unet.attention_layers import CrossAttention
from minildm.unet.transformer import BasicTransformerBlock


def cross_attention_weights(module: CrossAttention, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    """The attention weights softmax(q k^T / sqrt(d)) of `module` for queries x (B, N, C) over a context
    (B, M, D), averaged over the heads: (B, N, M), each row summing to 1."""
    batch, heads, dim_head = x.shape[0], module.heads, module.dim_head
    q = module.to_q(x).view(batch, -1, heads, dim_head).transpose(1, 2)  # (B, heads, N, d)
    k = module.to_k(context).view(batch, -1, heads, dim_head).transpose(1, 2)  # (B, heads, M, d)
    weights = (q @ k.transpose(-2, -1) / math.sqrt(dim_head)).softmax(dim=-1)  # (B, heads, N, M)
    return weights.mean(dim=1)


@contextmanager
def record_cross_attention(unet: nn.Module) -> Iterator[list[torch.Tensor]]:
    """While active, every cross-attention call with a context appends its weights (B, N, M) to the list yielded."""
    records: list[torch.Tensor] = []

    def hook(module: CrossAttention, args: tuple, output: torch.Tensor) -> None:
        x, context = args[0], args[1] if len(args) > 1 else None
        if context is not None:
            records.append(cross_attention_weights(module, x, context).detach())

    handles = [block.attn2.register_forward_hook(hook) for block in unet.modules()
               if isinstance(block, BasicTransformerBlock)]
    try:
        yield records
    finally:
        for handle in handles:
            handle.remove()


def attention_maps(records: list[torch.Tensor], size: int) -> torch.Tensor:
    """Recorded weights (each (B, N, M) with N = h * w, square maps) -> their mean (B, M, size, size)."""
    if not records:
        raise ValueError("no cross-attention was recorded: run the UNet with a context inside record_cross_attention")
    maps = []
    for weights in records:
        side = math.isqrt(weights.shape[1])
        grid = weights.transpose(1, 2).reshape(weights.shape[0], weights.shape[2], side, side)  # (B, M, h, w)
        maps.append(F.interpolate(grid, size=(size, size), mode="bilinear", align_corners=False))
    return torch.stack(maps).mean(dim=0)
