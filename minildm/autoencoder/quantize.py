"""Vector quantization with a learned codebook (van den Oord et al., 2017; LDM Sec. 3.1).

Every latent vector z (one per spatial position) is replaced by its nearest codebook
entry e_k, k = argmin_j ||z - e_j||^2. The argmin has no gradient, so training uses:

- the straight-through estimator: z_q = z + sg[e_k - z] has the value of e_k and
  passes the decoder's gradient to z unchanged (dz_q / dz = I);
- the codebook term ||sg[z] - e_k||^2, which moves only the codebook towards the encoder;
- the commitment term beta * ||z - sg[e_k]||^2, which moves only the encoder towards
  its codes (beta = 0.25).

Note on the released code: CompVis/taming-transformers' VectorQuantizer (kept in
latent-diffusion with `legacy=True` for checkpoint compatibility) computes
||sg[z] - e||^2 * beta + ||z - sg[e]||^2, i.e. it puts beta on the *codebook* term.
minildm puts beta on the *commitment* term, as the VQ-VAE paper defines it.

Optional extras (off by default):
- `ema_decay > 0`: update the codebook as an exponential moving average of the
  vectors assigned to each code (VQ-VAE App. A.1) instead of by gradient; the codebook
  term is then dropped from the loss.
- `dead_code_threshold > 0`: in training, codes whose running usage count falls
  below the threshold are restarted at random encoder outputs of the current batch.

Health of a codebook (notebooks 02 and 04): `codebook_usage`, the fraction of codes used at
least once, and `codebook_perplexity`, exp(entropy) of the code histogram, the "effective number
of codes". Count them over a whole evaluation set: one batch holds fewer positions than many
codebooks have codes (the quantizer's per-batch values in `info` are training logs only).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def nearest_code_indices(z_flat: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest codebook row for each row of z_flat: (N, C), (K, C) -> (N,).

    Uses ||z - e||^2 = ||z||^2 - 2 z.e + ||e||^2, so no (N, K, C) difference tensor is built.
    """
    distances = z_flat.pow(2).sum(1, keepdim=True) - 2 * z_flat @ codebook.T + codebook.pow(2).sum(1)[None, :]
    return distances.argmin(dim=1)


def straight_through(z: torch.Tensor, z_q: torch.Tensor) -> torch.Tensor:
    """z + sg[z_q - z]: the value of z_q, the gradient of the identity with respect to z."""
    return z + (z_q - z).detach()


def vq_loss(z: torch.Tensor, z_q: torch.Tensor, beta: float = 0.25) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """VQ-VAE loss ||sg[z] - e||^2 + beta ||z - sg[e]||^2 (element means); returns (loss, codebook, commitment).

    z: encoder outputs, z_q: their nearest codes e (before the straight-through trick), same shape.
    """
    codebook_loss = F.mse_loss(z.detach(), z_q)
    commitment_loss = F.mse_loss(z, z_q.detach())
    return codebook_loss + beta * commitment_loss, codebook_loss, commitment_loss


def _code_histogram(indices: torch.Tensor, n_embed: int) -> torch.Tensor:
    """Counts (n_embed,) of each code among integer `indices` of any shape, after checking them."""
    if indices.is_floating_point() or indices.is_complex():
        raise ValueError(f"indices must be an integer tensor of code indices, got dtype {indices.dtype}")
    if indices.numel() == 0:
        raise ValueError("indices is empty: need at least one code index")
    low, high = indices.min().item(), indices.max().item()
    if low < 0 or high >= n_embed:
        raise ValueError(f"code indices must lie in [0, {n_embed - 1}] for n_embed={n_embed}, "
                         f"got values in [{low}, {high}]")
    return torch.bincount(indices.flatten().long(), minlength=n_embed)


def _perplexity_of_counts(counts: torch.Tensor) -> torch.Tensor:
    """exp(-sum_k p_k log p_k), p = counts / sum(counts), with 0 log 0 = 0 (float64, no host sync)."""
    p = counts.double() / counts.sum()
    return torch.exp(-torch.xlogy(p, p).sum())


def codebook_usage(indices: torch.Tensor, n_embed: int) -> torch.Tensor:
    """Fraction of the `n_embed` codes that occur at least once in `indices` (any shape): a 0-dim float tensor.

    Computed over ALL the indices given, e.g. a whole evaluation set, not per batch (a batch of
    64 images at f = 4 holds only 64 * 8 * 8 = 4096 positions, fewer than many codebooks have codes).
    """
    return (_code_histogram(indices, n_embed) > 0).float().mean()


def codebook_perplexity(indices: torch.Tensor, n_embed: int) -> torch.Tensor:
    """exp(-sum_k p_k log p_k) with p_k the fraction of `indices` equal to code k: a 0-dim float tensor.

    n_embed when every code is used equally often, 1 when one code takes everything
    (VQ-VAE / VQGAN's "perplexity", the effective number of codes in use).
    """
    return _perplexity_of_counts(_code_histogram(indices, n_embed)).float()


class VectorQuantizer(nn.Module):
    """Nearest-neighbour quantization of (B, C, H, W) latents against `n_embed` codes of size C = `embed_dim`."""

    def __init__(
        self,
        n_embed: int,
        embed_dim: int,
        beta: float = 0.25,
        ema_decay: float = 0.0,
        dead_code_threshold: float = 0.0,
        usage_decay: float = 0.99,
    ):
        super().__init__()
        if n_embed < 1 or embed_dim < 1:
            raise ValueError(f"n_embed and embed_dim must be positive, got n_embed={n_embed}, embed_dim={embed_dim}")
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1) (0 = gradient-trained codebook), got {ema_decay}")
        self.n_embed, self.embed_dim, self.beta = n_embed, embed_dim, beta
        self.ema_decay, self.dead_code_threshold = ema_decay, dead_code_threshold
        self.embedding = nn.Embedding(n_embed, embed_dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / n_embed, 1.0 / n_embed)
        if ema_decay > 0:
            self.embedding.weight.requires_grad_(False)
            self.register_buffer("ema_embed_sum", self.embedding.weight.detach().clone())  # (n_embed, C)
        if ema_decay > 0 or dead_code_threshold > 0:
            # running count of vectors assigned to each code; starts at 1 so weight = sum / count holds at init
            self.usage_decay = ema_decay if ema_decay > 0 else usage_decay
            self.register_buffer("ema_cluster_size", torch.ones(n_embed))

    def nearest_codes(self, z_flat: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code for each row of z_flat (N, C) -> (N,), using ||z||^2 - 2 z.e + ||e||^2."""
        return nearest_code_indices(z_flat, self.embedding.weight)

    def get_codebook_entry(self, indices: torch.Tensor) -> torch.Tensor:
        """Codes for integer indices (B, H, W) -> latents (B, C, H, W)."""
        return self.embedding(indices).permute(0, 3, 1, 2).contiguous()

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Quantize z (B, C, H, W): returns (z_q with straight-through gradient, loss, info).

        loss = ||sg[z] - e||^2 + beta * ||z - sg[e]||^2 (means over elements; the first term
        is dropped with EMA codebooks). info holds `indices` (B, H, W), `perplexity` and
        `usage` of this batch's codes (see `codebook_perplexity`, `codebook_usage`), `codebook_loss` and `commitment_loss` (detached).
        """
        if z.shape[1] != self.embed_dim:
            raise ValueError(f"expected latents with {self.embed_dim} channels (embed_dim), got shape {tuple(z.shape)}")
        b, c, h, w = z.shape
        z_flat = z.permute(0, 2, 3, 1).reshape(-1, c)  # (B, C, H, W) -> (BHW, C)
        if self.training and self.dead_code_threshold > 0:
            self._restart_dead_codes(z_flat.detach())
        indices = self.nearest_codes(z_flat.detach())  # (BHW,)
        e = self.embedding(indices)  # (BHW, C)

        loss, codebook_loss, commitment_loss = vq_loss(z_flat, e, self.beta)
        if self.ema_decay > 0:  # the codebook follows an EMA, not the codebook term's gradient
            loss = self.beta * commitment_loss

        one_hot = F.one_hot(indices, self.n_embed).to(z_flat.dtype)  # (BHW, n_embed)
        if self.training and hasattr(self, "ema_cluster_size"):
            self._update_running_stats(one_hot, z_flat.detach())

        z_q = straight_through(z_flat, e)  # value e, gradient identity to z
        z_q = z_q.reshape(b, h, w, c).permute(0, 3, 1, 2).contiguous()  # (BHW, C) -> (B, C, H, W)
        counts = one_hot.sum(0).detach()  # (n_embed,) codes of this batch: the statistics' histogram, unchecked
        info = {
            "indices": indices.reshape(b, h, w),
            "perplexity": _perplexity_of_counts(counts).float(),
            "usage": (counts > 0).float().mean(),
            "codebook_loss": codebook_loss.detach(),
            "commitment_loss": commitment_loss.detach(),
        }
        return z_q, loss, info

    @torch.no_grad()
    def _update_running_stats(self, one_hot: torch.Tensor, z_flat: torch.Tensor) -> None:
        """Running usage counts; with EMA codebooks also the running sums and the codes themselves."""
        d = self.usage_decay
        self.ema_cluster_size.mul_(d).add_(one_hot.sum(0).float(), alpha=1 - d)
        if self.ema_decay > 0:
            self.ema_embed_sum.mul_(d).add_((one_hot.T @ z_flat).float(), alpha=1 - d)  # (n_embed, C)
            self.embedding.weight.copy_(self.ema_embed_sum / self.ema_cluster_size.clamp_min(1e-5)[:, None])

    @torch.no_grad()
    def _restart_dead_codes(self, z_flat: torch.Tensor) -> None:
        """Move codes used less than `dead_code_threshold` (running count) onto random current encoder outputs."""
        dead = (self.ema_cluster_size < self.dead_code_threshold).nonzero().squeeze(1)
        if dead.numel() == 0:
            return
        picks = torch.randint(0, z_flat.shape[0], (dead.numel(),), device=z_flat.device)
        self.embedding.weight[dead] = z_flat[picks].to(self.embedding.weight.dtype)
        self.ema_cluster_size[dead] = 1.0
        if self.ema_decay > 0:
            self.ema_embed_sum[dead] = z_flat[picks].float()
