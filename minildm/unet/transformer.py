"""SpatialTransformer: how a condition y enters the UNet through cross-attention (LDM Sec. 3.3).

A feature map phi(z_t) (B, C, H, W) is read as HW tokens; each token attends to the
context tau_theta(y) (B, M, context_dim) -- text tokens, a class token, layout boxes:

    x = GroupNorm(h)                        (eps 1e-6, as in the original)
    x = proj_in(x)                          1x1 conv (or Linear, SD2 style), (B, C, H, W) -> (B, HW, inner)
    repeat depth times (BasicTransformerBlock, pre-LayerNorm):
        x = x + SelfAttn(LN(x))
        x = x + CrossAttn(LN(x), context)   q from x, k/v from the context (LDM Eq. 3)
        x = x + FF(LN(x))                   GEGLU, hidden width 4 * inner
    return h + proj_out(x)                  zero-initialised: the block starts as the identity

Module names (norm, proj_in, transformer_blocks.i.{attn1, attn2, ff.net, norm1-3}, proj_out)
are those of the original code, which diffusers kept too.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint

from minildm.unet.attention_layers import CrossAttention


class GEGLU(nn.Module):
    """GELU-gated linear unit (Shazeer, 2020): x W -> [a, g] -> a * GELU(g); one matmul for both halves."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, 2 * dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., dim_in) -> (..., dim_out)."""
        value, gate = self.proj(x).chunk(2, dim=-1)  # (..., 2 dim_out) -> 2 x (..., dim_out)
        return value * F.gelu(gate)


class FeedForward(nn.Module):
    """GEGLU -> Dropout -> Linear, hidden width mult * dim; `net.0.proj` / `net.2` as in the original."""

    def __init__(self, dim: int, mult: int = 4, dropout: float = 0.0):
        super().__init__()
        inner_dim = dim * mult
        self.net = nn.Sequential(GEGLU(dim, inner_dim), nn.Dropout(dropout), nn.Linear(inner_dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, dim) -> (B, N, dim)."""
        return self.net(x)


class BasicTransformerBlock(nn.Module):
    """Pre-LN self-attention, cross-attention on the context, GEGLU feed-forward; each with a residual."""

    def __init__(
        self,
        dim: int,
        heads: int,
        dim_head: int,
        context_dim: int | None = None,
        dropout: float = 0.0,
        use_checkpoint: bool = False,
    ):
        super().__init__()
        self.use_checkpoint = use_checkpoint
        self.attn1 = CrossAttention(dim, None, heads, dim_head, dropout)  # self-attention
        self.ff = FeedForward(dim, dropout=dropout)
        self.attn2 = CrossAttention(dim, context_dim, heads, dim_head, dropout)  # self-attention if no context
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """(B, N, dim), (B, M, context_dim) -> (B, N, dim); recomputed in backward when use_checkpoint."""
        if self.use_checkpoint and self.training and torch.is_grad_enabled():
            return torch.utils.checkpoint.checkpoint(self._forward, x, context, use_reentrant=False)
        return self._forward(x, context)

    def _forward(self, x: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        x = x + self.attn1(self.norm1(x))
        x = x + self.attn2(self.norm2(x), context)
        return x + self.ff(self.norm3(x))


class SpatialTransformer(nn.Module):
    """(B, C, H, W), context (B, M, context_dim) -> (B, C, H, W); see the module docstring."""

    def __init__(
        self,
        channels: int,
        heads: int,
        dim_head: int,
        depth: int = 1,
        context_dim: int | None = None,
        dropout: float = 0.0,
        norm_num_groups: int = 32,
        use_linear: bool = False,
        use_checkpoint: bool = False,
    ):
        super().__init__()
        inner_dim = heads * dim_head
        self.use_linear = use_linear
        self.norm = nn.GroupNorm(norm_num_groups, channels, eps=1e-6)
        if use_linear:
            self.proj_in: nn.Module = nn.Linear(channels, inner_dim)
            self.proj_out: nn.Module = nn.Linear(inner_dim, channels)
        else:
            self.proj_in = nn.Conv2d(channels, inner_dim, 1)
            self.proj_out = nn.Conv2d(inner_dim, channels, 1)
        self.transformer_blocks = nn.ModuleList(
            BasicTransformerBlock(inner_dim, heads, dim_head, context_dim, dropout, use_checkpoint)
            for _ in range(depth)
        )
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, H, W), (B, M, context_dim) -> (B, C, H, W)."""
        batch, channels, height, width = x.shape
        h = self.norm(x)
        # One copy into contiguous tokens (a free view for channels_last inputs), so that the
        # residual stream and every LayerNorm inside the blocks work on contiguous memory.
        if self.use_linear:  # (B, C, H, W) -> (B, HW, C) -> (B, HW, inner)
            h = self.proj_in(h.permute(0, 2, 3, 1).reshape(batch, height * width, channels))
        else:  # (B, C, H, W) -> (B, inner, H, W) -> (B, HW, inner)
            h = self.proj_in(h).permute(0, 2, 3, 1).reshape(batch, height * width, -1)
        for block in self.transformer_blocks:
            h = block(h, context)  # (B, HW, inner)
        if self.use_linear:
            h = self.proj_out(h).transpose(1, 2).reshape(batch, channels, height, width)  # (B, HW, C) -> (B, C, H, W)
        else:
            h = self.proj_out(h.transpose(1, 2).reshape(batch, -1, height, width))  # (B, inner, H, W) -> (B, C, H, W)
        return x + h
