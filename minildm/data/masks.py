"""Training masks for inpainting: random boxes and free-form strokes (LDM Sec. 4.5).

The paper trains its inpainting model on the masks of LaMa (Suvorov et al., 2022, "Resolution-robust
Large Mask Inpainting with Fourier Convolutions"): a mix of large rectangles and thick, wandering
brush strokes, so that the model sees both blocky and thin holes. `random_masks` draws such masks
for a whole batch at once, without a Python loop over pixels:

    box mask      one axis-aligned rectangle, each side 1/4 .. 3/4 of the image
    stroke mask   a few polylines (random walks of line segments), each drawn with a random width:
                  a pixel is in the stroke when its distance to a segment is below half the width

Convention (the same as `LatentDiffusion.sample(cond={"image", "mask"})`): a mask is float
(B, 1, H, W), 1 = a pixel to fill (the hole), 0 = a known pixel. Draws are deterministic under
`generator` (and on any device: the numbers come from `minildm.utils.rand`).
"""

from __future__ import annotations

import math

import torch

from minildm.utils import rand

MASK_KINDS = ("mixed", "box", "stroke")


def box_masks(n: int, size: int, generator: torch.Generator | None = None,
              device: str | torch.device | None = None, min_side: float = 0.25, max_side: float = 0.75
              ) -> torch.Tensor:
    """n random rectangles, each side a fraction min_side .. max_side of the image -> (n, 1, size, size) in {0, 1}."""
    u = rand((n, 4), generator, device=device)  # (n, [w, h, x, y]) in [0, 1)
    wh = min_side + (max_side - min_side) * u[:, :2]  # (n, 2) side lengths, fractions of the image
    x0 = u[:, 2] * (1 - wh[:, 0])  # left edge, so that the box stays inside the image
    y0 = u[:, 3] * (1 - wh[:, 1])
    centres = (torch.arange(size, device=u.device) + 0.5) / size  # pixel centres in [0, 1]
    inside_x = (centres >= x0[:, None]) & (centres < (x0 + wh[:, 0])[:, None])  # (n, W)
    inside_y = (centres >= y0[:, None]) & (centres < (y0 + wh[:, 1])[:, None])  # (n, H)
    return (inside_y[:, :, None] & inside_x[:, None, :]).float()[:, None]  # (n, H, W) -> (n, 1, H, W)


def stroke_masks(n: int, size: int, generator: torch.Generator | None = None,
                 device: str | torch.device | None = None, strokes: int = 3, vertices: int = 5,
                 min_width: float = 0.06, max_width: float = 0.16, max_step: float = 0.3) -> torch.Tensor:
    """n free-form masks of `strokes` thick polylines with `vertices` points each -> (n, 1, size, size) in {0, 1}.

    A stroke starts at a random point and takes `vertices - 1` steps of random direction and length
    up to `max_step` (fractions of the image); its width is min_width .. max_width of the image.
    """
    segments = vertices - 1
    start = rand((n, strokes, 1, 2), generator, device=device)  # (n, S, 1, 2) first vertex in [0, 1)
    angle = 2 * math.pi * rand((n, strokes, segments), generator, device=device)
    length = max_step * rand((n, strokes, segments), generator, device=device)
    steps = torch.stack([angle.cos(), angle.sin()], dim=-1) * length[..., None]  # (n, S, V-1, 2)
    points = torch.cat([start, start + steps.cumsum(dim=2)], dim=2).clamp(0, 1)  # (n, S, V, 2)
    width = min_width + (max_width - min_width) * rand((n, strokes, 1), generator, device=device)  # (n, S, 1)
    a, b = points[:, :, :-1], points[:, :, 1:]  # segment ends (n, S, V-1, 2)
    centres = (torch.arange(size, device=points.device) + 0.5) / size
    pixels = torch.stack(torch.meshgrid(centres, centres, indexing="xy"), dim=-1).reshape(-1, 2)  # (HW, [x, y])
    ab = (b - a)[..., None, :]  # (n, S, V-1, 1, 2)
    ap = pixels - a[..., None, :]  # (n, S, V-1, HW, 2)
    # the closest point of segment a-b to pixel p is a + s (b - a), s = clip(<ap, ab> / |ab|^2, 0, 1)
    s = ((ap * ab).sum(-1) / ab.pow(2).sum(-1).clamp_min(1e-12)).clamp(0, 1)  # (n, S, V-1, HW)
    distance = (ap - s[..., None] * ab).norm(dim=-1)  # (n, S, V-1, HW)
    inside = (distance <= width[..., None] / 2).any(dim=2).any(dim=1)  # (n, HW): in any segment of any stroke
    return inside.float().view(n, 1, size, size)


def random_masks(n: int, size: int, kind: str = "mixed", generator: torch.Generator | None = None,
                 device: str | torch.device | None = None) -> torch.Tensor:
    """n inpainting training masks (n, 1, size, size), 1 = to fill: "box", "stroke", or "mixed" (half each, at random).

    Deterministic under `generator`; the same generator state gives the same masks.
    """
    if kind not in MASK_KINDS:
        raise ValueError(f"unknown mask kind {kind!r}; valid kinds: {', '.join(MASK_KINDS)}")
    if kind == "box":
        return box_masks(n, size, generator, device)
    if kind == "stroke":
        return stroke_masks(n, size, generator, device)
    boxes, strokes = box_masks(n, size, generator, device), stroke_masks(n, size, generator, device)
    use_box = rand((n, 1, 1, 1), generator, device=device) < 0.5
    return torch.where(use_box, boxes, strokes)
