"""Training masks for inpainting: random boxes and free-form strokes (LDM Sec. 4.5).

The paper trains its inpainting model on the masks of LaMa (Suvorov et al., 2022, "Resolution-robust
Large Mask Inpainting with Fourier Convolutions"): a mix of large rectangles and thick, wandering
brush strokes, so that the model sees both blocky and thin holes. `random_masks` draws such masks
for a whole batch at once, without a Python loop over pixels:

    box mask      one axis-aligned rectangle, each side 1/4 .. 3/4 of the image
    stroke mask   a few polylines (random walks of line segments), each drawn with a random width:
                  a pixel is in the stroke when its distance to a segment is below half the width
    object part   a rectangle over one side of an object (from the item's boxes): the object is cut, and
                  the visible part says which colour and shape the hole must continue

Object parts follow the "object-aware" training masks of CM-GAN (Zheng et al., 2022, "CM-GAN: Image
Inpainting with Cascaded Modulation GAN and Object-Aware Training"): generic boxes and strokes rarely cut
an object in half, yet completing a half-hidden object is what a user asks of an inpainting model most.
`random_masks(..., object_share=p, boxes=..., box_labels=...)` replaces a fraction p of the generic masks
by object parts.

Convention (the same as `LatentDiffusion.sample(cond={"image", "mask"})`): a mask is float
(B, 1, H, W), 1 = a pixel to fill (the hole), 0 = a known pixel. Draws are deterministic under
`generator` (and on any device: the numbers come from `minildm.utils.rand`).
"""

from __future__ import annotations

import math

import torch

from minildm.utils import rand

MASK_KINDS = ("mixed", "box", "stroke")


def rectangle_masks(x0: torch.Tensor, y0: torch.Tensor, x1: torch.Tensor, y1: torch.Tensor, size: int
                    ) -> torch.Tensor:
    """n rectangles, edges (n,) as fractions of the image -> (n, 1, size, size) in {0, 1}.

    A pixel is inside when its centre is: x0 <= x < x1 and y0 <= y < y1.
    """
    centres = (torch.arange(size, device=x0.device) + 0.5) / size  # pixel centres in [0, 1]
    inside_x = (centres >= x0[:, None]) & (centres < x1[:, None])  # (n, W)
    inside_y = (centres >= y0[:, None]) & (centres < y1[:, None])  # (n, H)
    return (inside_y[:, :, None] & inside_x[:, None, :]).float()[:, None]  # (n, H, W) -> (n, 1, H, W)


def box_masks(n: int, size: int, generator: torch.Generator | None = None,
              device: str | torch.device | None = None, min_side: float = 0.25, max_side: float = 0.75
              ) -> torch.Tensor:
    """n random rectangles, each side a fraction min_side .. max_side of the image -> (n, 1, size, size) in {0, 1}."""
    u = rand((n, 4), generator, device=device)  # (n, [w, h, x, y]) in [0, 1)
    wh = min_side + (max_side - min_side) * u[:, :2]  # (n, 2) side lengths, fractions of the image
    x0 = u[:, 2] * (1 - wh[:, 0])  # left edge, so that the box stays inside the image
    y0 = u[:, 3] * (1 - wh[:, 1])
    return rectangle_masks(x0, y0, x0 + wh[:, 0], y0 + wh[:, 1], size)


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


def box_side(boxes: torch.Tensor, side: torch.Tensor, cut: torch.Tensor | float, margin: torch.Tensor | float
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The rectangle that hides one side of each box: boxes (n, 4) xyxy, side (n,) 0 left, 1 right, 2 top, 3 bottom.

    The rectangle covers the fraction `cut` of the box's width (left/right) or height (top/bottom) from
    that side, and reaches `margin` (a fraction of the image) beyond the box on the three outer sides.
    Returns its edges x0, y0, x1, y1, each (n,), for `rectangle_masks`.
    """
    x0, y0, x1, y1 = boxes.unbind(1)
    return (torch.where(side == 1, x1 - cut * (x1 - x0), x0 - margin),
            torch.where(side == 3, y1 - cut * (y1 - y0), y0 - margin),
            torch.where(side == 0, x0 + cut * (x1 - x0), x1 + margin),
            torch.where(side == 2, y0 + cut * (y1 - y0), y1 + margin))


def object_part_masks(boxes: torch.Tensor, box_labels: torch.Tensor, size: int,
                      generator: torch.Generator | None = None, min_cut: float = 0.3, max_cut: float = 0.7,
                      max_margin: float = 0.1) -> torch.Tensor:
    """Holes over one side of one object per image -> (n, 1, size, size) in {0, 1}.

    boxes (n, N, 4) xyxy in [0, 1], box_labels (n, N) with -1 for padding (as `minildm.data.shapes` gives
    them). Per image: a random real object, a random side (left, right, top, bottom), a cut through the box
    at a fraction min_cut .. max_cut of its extent from that side, and a margin of 0 .. max_margin of the
    image beyond the box on the three outer sides (so the rim goes too), see `box_side`. An image without
    objects gets an empty mask.
    """
    if boxes.dim() != 3 or boxes.shape[-1] != 4 or box_labels.shape != boxes.shape[:2]:
        raise ValueError(f"object_part_masks needs boxes (n, N, 4) and box_labels (n, N); got "
                         f"{tuple(boxes.shape)} and {tuple(box_labels.shape)}")
    n, device = boxes.shape[0], boxes.device
    real = box_labels >= 0  # (n, N)
    score = rand(real.shape, generator, device=device)
    pick = torch.where(real, score, torch.full_like(score, -1.0)).argmax(1)  # a random real object per image
    box = boxes.float()[torch.arange(n, device=device), pick]  # (n, 4)
    u = rand((n, 3), generator, device=device)  # (n, [side, cut, margin])
    side = (u[:, 0] * 4).long().clamp(max=3)  # 0 left, 1 right, 2 top, 3 bottom: the side that is hidden
    cut = min_cut + (max_cut - min_cut) * u[:, 1]
    masks = rectangle_masks(*box_side(box, side, cut, max_margin * u[:, 2]), size)
    return masks * real.any(1).float()[:, None, None, None]


def random_masks(n: int, size: int, kind: str = "mixed", generator: torch.Generator | None = None,
                 device: str | torch.device | None = None, object_share: float = 0.0,
                 boxes: torch.Tensor | None = None, box_labels: torch.Tensor | None = None) -> torch.Tensor:
    """n inpainting training masks (n, 1, size, size), 1 = to fill: "box", "stroke", or "mixed" (half each, at random).

    With object_share > 0, that fraction of the masks (at random) are object parts (`object_part_masks`),
    which needs the items' `boxes` and `box_labels`. Deterministic under `generator`; the same generator
    state gives the same masks.
    """
    if kind not in MASK_KINDS:
        raise ValueError(f"unknown mask kind {kind!r}; valid kinds: {', '.join(MASK_KINDS)}")
    if not 0.0 <= object_share <= 1.0:
        raise ValueError(f"object_share must lie in [0, 1], got {object_share!r}")
    if object_share > 0 and (boxes is None or box_labels is None):
        raise ValueError("object_share > 0 needs the items' boxes and box_labels (the objects to cut)")
    if kind == "box":
        masks = box_masks(n, size, generator, device)
    elif kind == "stroke":
        masks = stroke_masks(n, size, generator, device)
    else:
        rectangles, strokes = box_masks(n, size, generator, device), stroke_masks(n, size, generator, device)
        use_box = rand((n, 1, 1, 1), generator, device=device) < 0.5
        masks = torch.where(use_box, rectangles, strokes)
    if object_share == 0:
        return masks
    parts = object_part_masks(boxes.to(masks.device), box_labels.to(masks.device), size, generator)
    use_part = rand((n, 1, 1, 1), generator, device=device) < object_share
    return torch.where(use_part, parts, masks)
