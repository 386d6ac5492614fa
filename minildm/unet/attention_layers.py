"""Attention, the mechanism behind LDM's conditioning (LDM Sec. 3.3, Eq. 3).

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d)) V,
    Q = W_Q phi(z_t),   K = W_K tau(y),   V = W_V tau(y)

`attention` is the equation written out (the version to learn from and the reference for
the exercise); the modules call `torch.nn.functional.scaled_dot_product_attention`, which
computes the same thing with fused, memory-efficient kernels.

Two modules use it:
- `CrossAttention`: tokens (B, N, C) attend to a context (B, M, D) -- or to themselves when
  no context is given (self-attention). Used inside the SpatialTransformer.
- `AttentionBlock`: ADM's spatial self-attention over the pixels of a feature map, used by
  UNets without a context (unconditional / class-conditional LDMs).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v (LDM Eq. 3): (..., N, d), (..., M, d), (..., M, d_v) -> (..., N, d_v)."""
    if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
        raise ValueError(
            f"attention needs q (..., N, d), k (..., M, d), v (..., M, d_v); "
            f"got q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (..., N, d) @ (..., d, M) -> (..., N, M)
    weights = scores.softmax(dim=-1)  # each query's weights over the M keys sum to 1
    return weights @ v  # (..., N, M) @ (..., M, d_v) -> (..., N, d_v)


class CrossAttention(nn.Module):
    """Multi-head attention of tokens x (B, N, query_dim) over a context (B, M, context_dim).

    Without a context the tokens attend to themselves (self-attention). q/k/v projections
    have no bias, as in the original code and Stable Diffusion. Names (to_q, to_k, to_v,
    to_out.0) follow the original so checkpoints load as they are.
    """

    def __init__(
        self,
        query_dim: int,
        context_dim: int | None = None,
        heads: int = 8,
        dim_head: int = 64,
        dropout: float = 0.0,
    ):
        super().__init__()
        inner_dim = heads * dim_head
        context_dim = query_dim if context_dim is None else context_dim
        self.heads = heads
        self.dim_head = dim_head
        self.to_q = nn.Linear(query_dim, inner_dim, bias=False)
        self.to_k = nn.Linear(context_dim, inner_dim, bias=False)
        self.to_v = nn.Linear(context_dim, inner_dim, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner_dim, query_dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """(B, N, query_dim), optional (B, M, context_dim) -> (B, N, query_dim)."""
        context = x if context is None else context
        batch, heads, dim_head = x.shape[0], self.heads, self.dim_head
        # (B, N, heads * d) -> (B, N, heads, d) -> (B, heads, N, d); views, no copies
        q = self.to_q(x).view(batch, -1, heads, dim_head).transpose(1, 2)
        k = self.to_k(context).view(batch, -1, heads, dim_head).transpose(1, 2)  # (B, heads, M, d)
        v = self.to_v(context).view(batch, -1, heads, dim_head).transpose(1, 2)  # (B, heads, M, d)
        out = F.scaled_dot_product_attention(q, k, v)  # = attention(q, k, v): (B, heads, N, d)
        out = out.transpose(1, 2).reshape(batch, -1, heads * dim_head)  # (B, heads, N, d) -> (B, N, heads * d)
        return self.to_out(out)


class AttentionBlock(nn.Module):
    """ADM spatial self-attention: every pixel of a (B, C, H, W) map attends to every other pixel.

    GroupNorm -> one 1x1 conv for q, k and v -> multi-head attention -> zero-initialised 1x1
    projection -> residual, so the block starts as the identity.

    Compatibility oddity, kept on purpose: the original code ("QKVAttentionLegacy") lays the
    3C output channels of `qkv` out head by head, [q_0, k_0, v_0, q_1, k_1, v_1, ...], each
    chunk `dim_head` wide. We read them in that order so released checkpoints load unchanged.
    `qkv`/`proj_out` are Conv1d over the flattened pixels, as in the original.
    """

    def __init__(self, channels: int, heads: int = 1, norm_num_groups: int = 32):
        super().__init__()
        if channels % heads:
            raise ValueError(f"AttentionBlock: channels ({channels}) must be divisible by heads ({heads})")
        self.heads = heads
        self.norm = nn.GroupNorm(norm_num_groups, channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        batch, channels, height, width = x.shape
        dim_head = channels // self.heads
        h = x.reshape(batch, channels, height * width)  # (B, C, H, W) -> (B, C, HW)
        qkv = self.qkv(self.norm(h))  # (B, C, HW) -> (B, 3C, HW)
        qkv = qkv.view(batch, self.heads, 3 * dim_head, height * width).transpose(2, 3)  # -> (B, heads, HW, 3d)
        q, k, v = qkv.chunk(3, dim=-1)  # the legacy per-head [q, k, v] layout: each (B, heads, HW, d)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, HW, d)
        out = out.transpose(2, 3).reshape(batch, channels, height * width)  # -> (B, heads, d, HW) -> (B, C, HW)
        return x + self.proj_out(out).view(batch, channels, height, width)  # residual, (B, C, H, W)
