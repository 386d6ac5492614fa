"""Layout conditioning (LDM Sec. 4.3.1, App. D.3): bounding boxes -> tokens -> transformer -> cross-attention.

The paper's layout-to-image model reads a layout as a sequence of discrete tokens, the
"objects + bounding boxes" representation of taming-transformers: every object becomes three
tokens,

    (class token, token(x0, y0), token(x1, y1)),   token(x, y) = y * S + x on an S x S grid,

with x, y in [0, 1] rounded to the grid (x -> round(x * (S - 1))); the sequence is padded with a
padding token to a fixed number of objects, and the objects are shuffled during training so
the model cannot rely on their order. A transformer (trained jointly with the UNet) turns the
token embeddings into the context the UNet attends to.

One change from taming-transformers, on purpose: there, class ids and coordinate tokens share
the same ids 0..8191; here they get separate ranges of one vocabulary, so a token says what it is:

    0 .. C-1                 object classes
    C .. C + S*S - 1         grid positions, C + y * S + x
    C + S*S                  padding (no object)

The null layout for classifier-free guidance is "no objects": every token is padding.

How a token becomes a vector (`corner_embedding`): "lookup" gives every token its own learned vector,
as the original does; a grid token then says nothing about its neighbours until training has seen
it many times. "fourier" keeps the tokens but embeds a grid token from its cell's coordinates,
Fourier features [sin, cos](2^k pi x), [sin, cos](2^k pi y) through a linear layer, so nearby cells
start out with similar vectors: a small model learns to place objects in minutes instead of hours.

Which class goes where (`bind_classes`): in the token sequence an object's class and its corners are
three separate tokens, tied together only by their positions in the sequence, so a pixel of the image
must find the corner tokens near it and then the class token of the same object (two hops of attention).
With `bind_classes`, each corner token also carries its object's class embedding,
e(corner) + e(class), so the corner a pixel attends to already says what to draw there.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn

from minildm.conditioning.base import Conditioner
from minildm.utils import rand


def grid_tokens(x: torch.Tensor, y: torch.Tensor, grid_size: int) -> torch.Tensor:
    """Coordinates in [0, 1] -> grid token y * S + x on an S x S grid (x, y rounded to round(v * (S - 1)))."""
    xi = (x.clamp(0, 1) * (grid_size - 1)).round().long()
    yi = (y.clamp(0, 1) * (grid_size - 1)).round().long()
    return yi * grid_size + xi


def box_tokens(boxes: torch.Tensor, box_labels: torch.Tensor, num_classes: int, grid_size: int) -> torch.Tensor:
    """Boxes (B, N, 4) xyxy in [0, 1] + labels (B, N) (-1 = none) -> tokens (B, 3N) (see the module docstring).

    Object n gives tokens 3n, 3n+1, 3n+2 = (class, C + token(x0, y0), C + token(x1, y1)); a padding object
    (label -1) gives three padding tokens C + S*S.
    """
    corner0 = num_classes + grid_tokens(boxes[..., 0], boxes[..., 1], grid_size)  # (B, N)
    corner1 = num_classes + grid_tokens(boxes[..., 2], boxes[..., 3], grid_size)  # (B, N)
    tokens = torch.stack([box_labels.long(), corner0, corner1], dim=-1)  # (B, N, 3)
    pad = num_classes + grid_size * grid_size
    tokens = torch.where((box_labels < 0)[..., None], torch.full_like(tokens, pad), tokens)
    return tokens.flatten(1)  # (B, N, 3) -> (B, 3N)


def fourier_features(x: torch.Tensor, y: torch.Tensor, num_frequencies: int) -> torch.Tensor:
    """Coordinates (...) in [0, 1] -> (..., 4F): sin and cos of 2^k pi x and 2^k pi y, k = 0 .. F-1."""
    freqs = math.pi * 2.0 ** torch.arange(num_frequencies, device=x.device)  # (F,)
    angles = torch.cat([x[..., None] * freqs, y[..., None] * freqs], dim=-1)  # (..., 2F)
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def shuffle_objects(boxes: torch.Tensor, box_labels: torch.Tensor, generator: torch.Generator | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """The objects of each layout in a random order (its own permutation per item), boxes and labels alike."""
    order = rand(box_labels.shape, generator, device=box_labels.device).argsort(dim=1)  # (B, N), any device
    return boxes.gather(1, order[..., None].expand_as(boxes)), box_labels.gather(1, order)


class LayoutConditioner(Conditioner):
    """{"boxes": (B, N, 4), "box_labels": (B, N)} -> {"context": (B, 3 * max_objects, embed_dim)}.

    Args:
        num_classes: object classes C (labels 0 .. C-1; -1 = padding).
        grid_size: S of the S x S coordinate grid.
        max_objects: objects per layout after padding (fewer are padded, more are refused).
        embed_dim: width of the tokens = the UNet's context_dim.
        depth, heads: transformer layers and attention heads.
        shuffle: shuffle the objects of each layout in training (taming-transformers does).
        corner_embedding: "lookup" (a learned vector per token, as the original) or "fourier" (grid tokens
            embedded from their coordinates, see the module docstring).
        bind_classes: add each object's class embedding to its two corner tokens (see the module docstring).
    """

    keys = ("boxes", "box_labels")

    def __init__(self, num_classes: int, grid_size: int = 16, max_objects: int = 4, embed_dim: int = 64,
                 depth: int = 2, heads: int = 4, shuffle: bool = True, corner_embedding: str = "lookup",
                 bind_classes: bool = False):
        super().__init__()
        if corner_embedding not in ("lookup", "fourier"):
            raise ValueError(f"corner_embedding must be 'lookup' or 'fourier', got {corner_embedding!r}")
        self.corner_embedding, self.bind_classes = corner_embedding, bind_classes
        self.num_classes, self.grid_size, self.max_objects, self.shuffle = num_classes, grid_size, max_objects, shuffle
        self.pad_token = num_classes + grid_size * grid_size
        self.token_embedding = nn.Embedding(self.pad_token + 1, embed_dim)  # grid rows unused with "fourier"
        self.num_frequencies = max(1, math.ceil(math.log2(grid_size)))
        self.corner_proj = nn.Linear(4 * self.num_frequencies, embed_dim) if corner_embedding == "fourier" else None
        self.position_embedding = nn.Parameter(0.02 * torch.randn(3 * max_objects, embed_dim))
        layer = nn.TransformerEncoderLayer(embed_dim, heads, dim_feedforward=4 * embed_dim, dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.final_norm = nn.LayerNorm(embed_dim)

    def prepare(self, cond: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Stack and check boxes (B, N, 4) in [0, 1] and labels (B, N); pad N up to max_objects with -1."""
        cond = super().prepare(cond)
        boxes, labels = cond["boxes"].float(), cond["box_labels"].long()
        if boxes.dim() != 3 or boxes.shape[-1] != 4 or labels.shape != boxes.shape[:2]:
            raise ValueError(f"boxes must be (B, N, 4) and box_labels (B, N); got {tuple(boxes.shape)} and "
                             f"{tuple(labels.shape)}")
        if boxes.shape[1] > self.max_objects:
            raise ValueError(f"a layout holds at most max_objects = {self.max_objects} boxes, got {boxes.shape[1]}")
        if labels.numel() and (labels.min() < -1 or labels.max() >= self.num_classes):
            raise ValueError(f"box_labels must lie in [0, {self.num_classes - 1}] or be -1 (no object), "
                             f"got [{labels.min().item()}, {labels.max().item()}]")
        real = labels >= 0
        if real.any() and ((boxes[real] < 0) | (boxes[real] > 1)).any():
            raise ValueError("boxes must be xyxy fractions of the image in [0, 1]")
        missing = self.max_objects - boxes.shape[1]
        boxes = torch.cat([boxes, boxes.new_zeros(boxes.shape[0], missing, 4)], dim=1)
        labels = torch.cat([labels, labels.new_full((labels.shape[0], missing), -1)], dim=1)
        return {"boxes": boxes, "box_labels": labels}

    def null_cond(self, cond: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """No objects: zero boxes, every label -1."""
        return {"boxes": torch.zeros_like(cond["boxes"]), "box_labels": torch.full_like(cond["box_labels"], -1)}

    def tokens(self, boxes: torch.Tensor, box_labels: torch.Tensor) -> torch.Tensor:
        """The token sequence (B, 3N) of a batch of layouts (`box_tokens` with this conditioner's C and S)."""
        return box_tokens(boxes, box_labels, self.num_classes, self.grid_size)

    def forward(self, boxes: torch.Tensor, box_labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, N, 4), (B, N) -> {"context": (B, 3N, embed_dim)}; objects shuffled in training."""
        if self.training and self.shuffle:
            boxes, box_labels = shuffle_objects(boxes, box_labels)
        tokens = self.tokens(boxes, box_labels)  # (B, N, 4), (B, N) -> (B, 3N)
        h = self.embed(tokens) + self.position_embedding[: tokens.shape[1]]  # (B, 3N, D)
        return {"context": self.final_norm(self.transformer(h))}

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens (B, L) -> vectors (B, L, D): a learned lookup, grid tokens from their coordinates with "fourier",
        corners plus their object's class vector with `bind_classes`."""
        h = self.token_embedding(tokens)  # (B, L, D)
        S, C = self.grid_size, self.num_classes
        if self.corner_proj is not None:
            is_grid = (tokens >= C) & (tokens < self.pad_token)  # (B, L)
            cell = (tokens - C).clamp(0, S * S - 1)
            x, y = (cell % S).float() / (S - 1), (cell // S).float() / (S - 1)  # the cell's coordinates in [0, 1]
            corners = self.corner_proj(fourier_features(x, y, self.num_frequencies))  # (B, L, D)
            h = torch.where(is_grid[..., None], corners, h)
        if self.bind_classes:  # (class, corner, corner) per object: the class vector joins its two corners
            objects = h.unflatten(1, (-1, 3))  # (B, L, D) -> (B, N, 3, D)
            is_object = (tokens[:, 0::3] < C)[..., None, None]  # (B, N, 1, 1): a class token, not padding
            bound = objects[:, :, 1:] + objects[:, :, :1]  # corners + their class vector
            h = torch.cat([objects[:, :, :1], torch.where(is_object, bound, objects[:, :, 1:])], dim=2).flatten(1, 2)
        return h
