"""Sinusoidal timestep embedding: how the UNet is told the noise level t (LDM Sec. 3.2, Eq. 1).

The UNet eps_theta(x_t, t) shares one set of weights across all T = 1000 noise levels, so it
needs t as an input. Following the Transformer's positional encoding (Vaswani et al., 2017,
Sec. 3.5) as adopted by DDPM (Ho et al., 2020) and ADM (Dhariwal & Nichol, 2021), t becomes a
vector of cosines and sines at geometrically spaced frequencies

    f_i = max_period^(-i / half),   i = 0 .. half - 1,   half = dim // 2
    emb(t) = [cos(t f_0), ..., cos(t f_{half-1}), sin(t f_0), ..., sin(t f_{half-1})]

which an MLP (`UNetModel.time_embed`) then maps to 4 * model_channels.

Order convention: the original CompVis / ADM code puts the cosines first. diffusers computes
[sin, cos] and flips it with `flip_sin_to_cos=True` (and `freq_shift=0`) for Stable Diffusion,
which gives exactly the vector above; loading SD weights relies on this order.
"""

from __future__ import annotations

import math

import torch


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """(B,) timesteps (int or float) -> (B, dim) float32 embedding [cos(t f), sin(t f)] (see module docstring).

    When `dim` is odd the last column is zero (as in the original code).
    """
    if t.ndim != 1:
        raise ValueError(f"timesteps must be a 1-D tensor of shape (B,), got shape {tuple(t.shape)}")
    if dim < 2:
        raise ValueError(f"embedding dim must be at least 2, got {dim}")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)  # (half,)
    args = t.float()[:, None] * freqs[None, :]  # (B, 1) * (1, half) -> (B, half)
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (B, 2 * half)
    if dim % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)  # (B, dim)
    return embedding
