"""Image-to-image measures (LDM Sec. 4.3.2, 4.4, 4.5): inpainting, super-resolution, semantic synthesis on shapes.

Every number the course reports for its concat-conditioned models comes from here (the benchmarks,
`minildm.pretrained.evaluate` and notebooks 12-14 import these names). Images are (B, 3, H, W) in
[-1, 1], masks (B, 1, H, W) float with 1 = the hole, segmentation maps (B, H, W) long with 0 =
background and 1 + class id (class id = kind * 6 + colour, minildm.data.shapes).

    region_psnr             PSNR over the pixels of a region only (the known region, the hole, ...)
    nearest_palette         each pixel's nearest colour of the shapes palette: 0 = background, 1 + colour
    colour_match_fraction   semantic synthesis: the object pixels drawn in their class colour
    object_colour_spread    semantic synthesis: the colour's spread inside objects (0 = flat, as the shapes are)
    background_hole_masks   inpainting: square holes that touch no object (the fill must be background)
    half_object_masks       inpainting: holes over one half of the main object (its colour must come back)
    object_completed        inpainting: the hole's object pixels mostly take the object's colour
    inpainting_scores       the three inpainting cases of one method, known-region PSNR before and after paste-back
    sr_scores               super-resolution: PSNR (and LPIPS) of the output and of bicubic upsampling

The methods inpainting_scores compares, as functions inpaint(image, mask) -> images before paste-back:

    ldm_inpainter           an inpainting LDM (concat conditioning, LDM Sec. 4.5)
    replacement_inpainter   any unconditional / class / layout LDM with replacement sampling (no training)
    masked_input            the masked image itself (the hole left mid-grey): the floor

A model's scores on held-out shapes items: `evaluate_inpainting`, `evaluate_super_resolution`,
`evaluate_semantic`, and `evaluate_image_to_image(ldm, data)`, which picks by the model's conditioner
(what the manifest of a course checkpoint and `minildm eval` record).

The palette is the six colours of `minildm.data.shapes.COLOURS` plus one background colour, the mean
dark grey of the plain background (0.18, 0.18, 0.18) in [0, 1] (backgrounds are drawn in 0.05 .. 0.31
per channel, far from every object colour). Colour checks compare the *nearest palette entry*, so the
small brightness jitter of the objects (+-0.04) and the autoencoder's colour error do not count as misses.

Object borders are antialiased: the segmentation marks a pixel as the object when the shape covers at
least half of it, and such an edge pixel is a blend of the object and the background colours (nearest
entry either). `colour_match_fraction(..., erode=1)` leaves out the object pixels that have a pixel of
another class among their 8 neighbours; the benchmarks report both (erode 0 and 1).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F

from minildm.conditioning.inpainting import mask_to_latent, masked_image, paste_back
from minildm.conditioning.super_resolution import bicubic_downsample, bicubic_upsample
from minildm.data.masks import box_side, random_masks, rectangle_masks
from minildm.data.shapes import COLOURS
from minildm.diffusion import replacement_model_fn, sample
from minildm.metrics.evaluate import sample_like
from minildm.metrics.image import _to_unit, psnr

BACKGROUND_COLOUR = (0.18, 0.18, 0.18)  # the mean plain background of shapes, in [0, 1]
NUM_COLOURS = len(COLOURS)


def shapes_palette() -> torch.Tensor:
    """(1 + 6, 3) colours in [0, 1]: the background, then the shapes colours in class order (red .. purple)."""
    return torch.tensor([BACKGROUND_COLOUR, *COLOURS.values()])


def class_colour(segmentation: torch.Tensor) -> torch.Tensor:
    """A map of 0 (background) / 1 + class id -> the palette index of its colour: 0, or 1 + (class id mod 6)."""
    return torch.where(segmentation > 0, 1 + (segmentation - 1) % NUM_COLOURS, torch.zeros_like(segmentation))


def region_psnr(x: torch.Tensor, y: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per image over the pixels where `region` (B, 1, H, W) is 1; x, y: (B, C, H, W) in [-1, 1] -> (B,).

    Same convention as `minildm.metrics.psnr` (images mapped to [0, 1], MSE floored at 1e-10, so identical
    pixels give 100 dB); an image with an empty region gives NaN.
    """
    if x.shape != y.shape or region.dim() != 4 or region.shape[1] != 1 or region.shape[0] != x.shape[0] \
            or region.shape[-2:] != x.shape[-2:]:
        raise ValueError(f"region_psnr needs x, y (B, C, H, W) of one shape and region (B, 1, H, W); got "
                         f"{tuple(x.shape)}, {tuple(y.shape)} and {tuple(region.shape)}")
    weight = region.float()
    squared = (_to_unit(x) - _to_unit(y)).pow(2) * weight  # (B, C, H, W), zero outside the region
    count = weight.flatten(1).sum(1) * x.shape[1]  # (B,) pixels x channels inside
    mse = squared.flatten(1).sum(1) / count
    return torch.where(count > 0, 10 * torch.log10(1.0 / mse.clamp_min(1e-10)), torch.full_like(mse, float("nan")))


def nearest_palette(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [-1, 1] -> (B, H, W) long: the nearest palette entry (0 = background, 1 + colour index)."""
    palette = shapes_palette().to(images.device)  # (7, 3)
    pixels = _to_unit(images).permute(0, 2, 3, 1)  # (B, 3, H, W) -> (B, H, W, 3)
    distance = (pixels[..., None, :] - palette).pow(2).sum(-1)  # (B, H, W, 7)
    return distance.argmin(-1)


def interior(segmentation: torch.Tensor) -> torch.Tensor:
    """(B, H, W) bool: pixels whose 8 neighbours (inside the image) carry the same class as they do."""
    seg = segmentation.float()[:, None]  # (B, 1, H, W)
    padded = F.pad(seg, (1, 1, 1, 1), mode="replicate")
    highest = F.max_pool2d(padded, 3, stride=1)
    lowest = -F.max_pool2d(-padded, 3, stride=1)
    return ((highest == seg) & (lowest == seg))[:, 0]


def colour_match_fraction(images: torch.Tensor, segmentation: torch.Tensor, erode: int = 0) -> float:
    """Semantic synthesis: the fraction of object pixels (segmentation > 0) whose nearest palette colour is the
    colour of their class in the map (all images pooled). erode=1 leaves out object border pixels (see above)."""
    if images.dim() != 4 or segmentation.shape != (images.shape[0], *images.shape[-2:]):
        raise ValueError(f"colour_match_fraction needs images (B, 3, H, W) and segmentation (B, H, W) of the same "
                         f"B, H, W; got {tuple(images.shape)} and {tuple(segmentation.shape)}")
    if erode not in (0, 1):
        raise ValueError(f"erode must be 0 (every object pixel) or 1 (without border pixels), got {erode!r}")
    counted = segmentation > 0
    if erode:
        counted &= interior(segmentation)
    if not counted.any():
        return float("nan")
    match = nearest_palette(images) == class_colour(segmentation.to(images.device).long())
    return float(match[counted].float().mean())


def object_colour_spread(images: torch.Tensor, segmentation: torch.Tensor, min_pixels: int = 4) -> float:
    """Semantic synthesis: how far object interiors are from flat, the standard deviation of the colour over
    each object's interior pixels (`interior`: no border pixels), averaged over RGB and over the objects of all
    images; in the [-1, 1] units of the images, 0 for flat-coloured objects. Objects (one class of one map)
    with fewer than `min_pixels` interior pixels are left out; NaN when none is left."""
    if images.dim() != 4 or segmentation.shape != (images.shape[0], *images.shape[-2:]):
        raise ValueError(f"object_colour_spread needs images (B, 3, H, W) and segmentation (B, H, W) of the same "
                         f"B, H, W; got {tuple(images.shape)} and {tuple(segmentation.shape)}")
    seg = segmentation.to(images.device).long()
    counted = (seg > 0) & interior(seg)  # (B, H, W)
    groups = (torch.arange(seg.shape[0], device=seg.device)[:, None, None] * (int(seg.max()) + 1) + seg)[counted]
    pixels = images.permute(0, 2, 3, 1)[counted].double()  # (N, 3): every counted pixel's colour
    count = torch.zeros(int(groups.max()) + 1 if groups.numel() else 0, dtype=torch.float64, device=images.device)
    count.index_add_(0, groups, torch.ones_like(groups, dtype=torch.float64))
    total = torch.zeros(len(count), 3, dtype=torch.float64, device=images.device).index_add_(0, groups, pixels)
    squares = torch.zeros_like(total).index_add_(0, groups, pixels ** 2)
    kept = count >= max(min_pixels, 2)
    if not kept.any():
        return float("nan")
    n = count[kept, None]
    variance = (squares[kept] - total[kept] ** 2 / n) / (n - 1)  # unbiased, per object and channel
    return float(variance.clamp_min(0).sqrt().mean())


def _generator(seed: int | torch.Generator) -> torch.Generator:
    return seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(int(seed))


def background_hole_masks(segmentation: torch.Tensor, side: int | None = None, margin: int = 2,
                          seed: int | torch.Generator = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Square holes of `side` pixels (default H/4) that stay `margin` pixels away from every object.

    segmentation (B, H, W) -> masks (B, 1, H, W), valid (B,) bool: False where no such place exists (that
    mask is all zero). The place is drawn uniformly among the free ones, deterministically under `seed`.
    The margin keeps the antialiased rim of the objects (pixels the map calls background) out of the hole.
    """
    batch, height, width = segmentation.shape
    side = side or height // 4
    if not 1 <= side <= min(height, width):
        raise ValueError(f"side must lie in 1 .. {min(height, width)} pixels, got {side}")
    objects = (segmentation > 0).float()[:, None]  # (B, 1, H, W)
    near = F.max_pool2d(objects, 2 * margin + 1, stride=1, padding=margin) if margin else objects
    covered = F.avg_pool2d(near, side, stride=1)  # (B, 1, H - side + 1, W - side + 1): object share per place
    free = (covered == 0)[:, 0].flatten(1)  # (B, places)
    score = torch.rand(free.shape, generator=_generator(seed)).to(free.device)
    choice = torch.where(free, score, torch.full_like(score, -1.0)).argmax(1)  # a random free place per image
    top, left = choice // (width - side + 1), choice % (width - side + 1)
    rows, cols = torch.arange(height, device=free.device), torch.arange(width, device=free.device)
    inside_y = (rows >= top[:, None]) & (rows < (top + side)[:, None])  # (B, H)
    inside_x = (cols >= left[:, None]) & (cols < (left + side)[:, None])  # (B, W)
    valid = free.any(1)
    masks = (inside_y[:, :, None] & inside_x[:, None, :] & valid[:, None, None]).float()
    return masks[:, None], valid


def half_object_masks(boxes: torch.Tensor, size: int, halves: torch.Tensor | None = None,
                      margin: float = 0.05) -> torch.Tensor:
    """Holes over one half of each image's main object (its box boxes[:, 0], xyxy in [0, 1]) -> (B, 1, size, size).

    halves (B,) picks the half per image: 0 left, 1 right, 2 top, 3 bottom (default: item index mod 4).
    The hole reaches `margin` (a fraction of the image) beyond the box on its three outer sides, so it
    also covers the object's rim; the other half of the object stays visible.
    """
    box = boxes[:, 0] if boxes.dim() == 3 else boxes  # (B, 4)
    if halves is None:
        halves = torch.arange(box.shape[0]) % 4
    return rectangle_masks(*box_side(box, halves.to(box.device), 0.5, margin), size)


def object_completed(images: torch.Tensor, masks: torch.Tensor, segmentation: torch.Tensor,
                     labels: torch.Tensor) -> torch.Tensor:
    """(B,) bool: inside the hole, the pixels the true map marks as object `labels` (B,) (class ids) mostly have
    that object's colour: the most frequent nearest palette entry among them is the class colour.
    Images whose hole holds none of the object's pixels count as not completed."""
    target = 1 + labels.long().to(images.device) % NUM_COLOURS  # (B,) palette index of the object's colour
    region = (masks[:, 0] > 0.5) & (segmentation.to(images.device) == 1 + labels.long().to(images.device)[:, None, None])
    colours = F.one_hot(nearest_palette(images), NUM_COLOURS + 1) * region[..., None]  # (B, H, W, 7)
    votes = colours.flatten(1, 2).sum(1)  # (B, 7) pixels of each palette colour inside the region
    return (votes.argmax(1) == target) & (votes.sum(1) > 0)


def _stack(items: Mapping[str, Any] | list[Mapping[str, Any]], key: str) -> torch.Tensor:
    if isinstance(items, Mapping):
        return torch.as_tensor(items[key])
    return torch.stack([torch.as_tensor(item[key]) for item in items])


def inpainting_masks_for_bars(items: Mapping[str, Any] | list[Mapping[str, Any]], seed: int = 0
                              ) -> dict[str, Any]:
    """The three inpainting cases on shapes items (a list of dataset items, or a dict of stacked keys):

        "random"       training-style masks, boxes and strokes (`random_masks(..., "mixed")` under `seed`)
        "background"   holes H/4 wide over background only (`background_hole_masks`), with "valid" (B,)
        "half_object"  holes over half of the main object (`half_object_masks`), with its class "labels"

    Returns {"image", "segmentation", "random", "background", "valid", "half_object", "labels"}.
    """
    image, segmentation = _stack(items, "image").float(), _stack(items, "segmentation").long()
    boxes, box_labels = _stack(items, "boxes").float(), _stack(items, "box_labels").long()
    size = image.shape[-1]
    background, valid = background_hole_masks(segmentation, seed=seed)
    return {"image": image, "segmentation": segmentation,
            "random": random_masks(image.shape[0], size, "mixed", generator=_generator(seed)),
            "background": background, "valid": valid,
            "half_object": half_object_masks(boxes, size), "labels": box_labels[:, 0]}


InpaintFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""inpaint(image (B, 3, H, W), mask (B, 1, H, W), 1 = hole) -> images (B, 3, H, W) before paste-back."""


def masked_input(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The floor of every inpainting method: the masked image itself, the hole mid-grey (0 in [-1, 1])."""
    return masked_image(image, mask)


def ldm_inpainter(ldm: torch.nn.Module, steps: int | None = None, seed: int = 0, batch_size: int = 256,
                  progress: bool = False) -> InpaintFn:
    """An inpainting LDM ({"image", "mask"} conditioner) as an InpaintFn: sample, decode, no paste-back.

    Every call draws its noise from a fresh generator seeded with `seed`, so the cases are independent
    of each other's sizes.
    """
    if "mask" not in getattr(ldm.conditioner, "keys", ()):
        raise ValueError(f"ldm_inpainter needs an inpainting LDM (condition keys image, mask); this one reads "
                         f"{getattr(ldm.conditioner, 'keys', 'nothing')}: use replacement_inpainter")

    def inpaint(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        z = sample_like(ldm, {"image": image, "mask": mask}, image.shape[0], batch_size=batch_size,
                        generator=torch.Generator().manual_seed(seed), progress=progress, steps=steps, decode=False)
        device = next(ldm.parameters()).device
        return torch.cat([ldm.decode(part.to(device)).float().cpu() for part in z.split(batch_size)])

    return inpaint


def null_condition(ldm: torch.nn.Module, n: int) -> dict[str, Any] | None:
    """The "no condition" of n items for an unconditional (None), class, layout or text LDM: its null input."""
    conditioner = ldm.conditioner
    if conditioner is None:
        return None
    templates = {("label",): lambda: {"label": torch.zeros(n, dtype=torch.long)},
                 ("boxes", "box_labels"): lambda: {"boxes": torch.zeros(n, 1, 4),
                                                   "box_labels": torch.full((n, 1), -1)},
                 ("caption",): lambda: {"caption": [""] * n}}
    if tuple(conditioner.keys) not in templates:
        raise ValueError(f"no null condition known for condition keys {conditioner.keys}; accepted: an "
                         f"unconditional, class (label), layout (boxes, box_labels) or text (caption) LDM")
    return conditioner.null_cond(ldm.prepare_cond(templates[tuple(conditioner.keys)]()))


def replacement_inpainter(ldm: torch.nn.Module, steps: int | None = None, seed: int = 0, batch_size: int = 256,
                          progress: bool = False) -> InpaintFn:
    """A model that never saw a mask (unconditional, or a class / layout / text LDM with its null condition)
    inpainting by replacement sampling (`minildm.diffusion.replacement_model_fn`, Song et al. 2021; RePaint):
    the known latent is the first stage's encoding of the masked image, the known cells those the hole
    does not touch (`mask_to_latent`). No guidance; returns the decoded images before paste-back."""
    device = next(ldm.parameters()).device

    def inpaint(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        generator, out = torch.Generator().manual_seed(seed), []
        for x, m in zip(image.split(batch_size), mask.split(batch_size)):
            x, m = x.to(device), m.to(device)
            z_known = ldm.encode(masked_image(x, m))  # (B, c, h, w), scaled like the model's latents
            fill = mask_to_latent(m, tuple(z_known.shape[-2:]))  # (B, 1, h, w), 1 = a cell to generate
            model_fn = ldm.prediction_fn(null_condition(ldm, x.shape[0]), guidance_scale=1.0)
            model_fn = replacement_model_fn(model_fn, z_known, fill, ldm.schedule, ldm.objective,
                                            ldm.sampler_options.get("interpolation", "log"))
            z = sample(model_fn, tuple(z_known.shape), ldm.sampler, steps or ldm.sample_steps, schedule=ldm.schedule,
                       objective=ldm.objective, generator=generator, device=device, progress=progress,
                       **ldm.sampler_options)
            out.append(ldm.decode(z).float().cpu())
        return torch.cat(out)

    return inpaint


@torch.no_grad()
def inpainting_scores(inpaint: InpaintFn, cases: Mapping[str, Any]) -> dict[str, float]:
    """The inpainting bars of one method on `cases` (from `inpainting_masks_for_bars`).

    inpaint(image, mask) -> images (B, 3, H, W) *before* paste-back (e.g. the decoded samples); the known
    pixels are pasted back here (`paste_back`), so both numbers of the known region are honest:

        known_psnr_raw       PSNR of the known region of the raw output (how well the model keeps what it sees)
        known_psnr_pasted    the same after paste-back (exact up to float rounding: 100 dB is the floor of MSE)
        background_hole_psnr PSNR inside background-only holes (valid images only), after paste-back
        object_completion    the fraction of half-object holes completed in the object's colour
    """
    image, segmentation = cases["image"], cases["segmentation"]
    out: dict[str, float] = {}
    mask = cases["random"]
    raw = inpaint(image, mask).float().cpu()
    known = 1 - mask
    out["known_psnr_raw"] = float(region_psnr(raw, image, known).nanmean())
    out["known_psnr_pasted"] = float(region_psnr(paste_back(raw, image, mask), image, known).nanmean())
    out["hole_psnr_random"] = float(region_psnr(raw, image, mask).nanmean())
    valid = cases["valid"]
    mask = cases["background"][valid]
    raw = inpaint(image[valid], mask).float().cpu()
    out["background_hole_psnr"] = float(region_psnr(paste_back(raw, image[valid], mask), image[valid], mask).mean())
    out["background_holes"] = int(valid.sum())
    mask = cases["half_object"]
    raw = inpaint(image, mask).float().cpu()
    done = object_completed(paste_back(raw, image, mask), mask, segmentation, cases["labels"])
    out["object_completion"] = float(done.float().mean())
    out["items"] = int(image.shape[0])
    return out


@torch.no_grad()
def sr_scores(super_resolved: torch.Tensor, low_res: torch.Tensor, target: torch.Tensor, scale: int = 4,
              lpips: torch.nn.Module | None = None) -> dict[str, Any]:
    """Super-resolution against the classical baseline: PSNR (and LPIPS, given an LPIPS module) of the model's
    output and of bicubic upsampling (`bicubic_upsample`) of the same low-res input, both against `target`.

    Returns {"psnr", "psnr_bicubic", "psnr_gain" (dB over bicubic)} and, with `lpips`, {"lpips",
    "lpips_bicubic", "lpips_variant"} (the variant names LPIPS or its random-feature fallback,
    minildm.losses.perceptual). Means over the images.
    """
    bicubic = bicubic_upsample(low_res.float(), scale)
    if super_resolved.shape != target.shape or bicubic.shape != target.shape:
        raise ValueError(f"super-resolved {tuple(super_resolved.shape)}, bicubic x{scale} of low_res "
                         f"{tuple(bicubic.shape)} and target {tuple(target.shape)} must have one shape")
    ours, base = float(psnr(super_resolved, target).mean()), float(psnr(bicubic, target).mean())
    out: dict[str, Any] = {"psnr": ours, "psnr_bicubic": base, "psnr_gain": ours - base}
    if lpips is not None:
        out["lpips"] = float(lpips(super_resolved.float(), target.float()).mean())
        out["lpips_bicubic"] = float(lpips(bicubic, target.float()).mean())
        out["lpips_variant"] = getattr(lpips, "variant", type(lpips).__name__)
    return out


# --- a model's scores on held-out items (the manifest of a course checkpoint, `minildm eval`, the benchmark) ---

def shapes_items(data: Mapping[str, Any], split: str, num_items: int, size: int | None = None) -> list[dict[str, Any]]:
    """The first `num_items` items of `split` of a config's `data` section, drawn at `size` (default: the config's)."""
    from minildm.data import get_dataset

    dataset = get_dataset(data["name"], split=split, size=size or data.get("size", 32), **dict(data.get("options") or {}))
    return [dataset[i] for i in range(min(num_items, len(dataset)))]


@torch.no_grad()
def evaluate_inpainting(ldm: torch.nn.Module, items: list[Mapping[str, Any]], steps: int | None = None,
                        seed: int = 0, batch_size: int = 256) -> dict[str, float]:
    """`inpainting_scores` of an inpainting LDM on the three cases of `inpainting_masks_for_bars(items, seed)`."""
    return inpainting_scores(ldm_inpainter(ldm, steps, seed, batch_size), inpainting_masks_for_bars(items, seed))


@torch.no_grad()
def evaluate_super_resolution(ldm: torch.nn.Module, images: torch.Tensor, steps: int | None = None, seed: int = 0,
                              batch_size: int = 256, lpips: torch.nn.Module | None = None) -> dict[str, Any]:
    """`sr_scores` of an SR LDM ({"low_res"} conditioner): degrade `images` (bicubic down by the conditioner's
    scale), super-resolve, compare with the originals and with bicubic upsampling."""
    scale = ldm.conditioner.scale
    low_res = bicubic_downsample(images.float(), scale)
    out = sample_like(ldm, {"low_res": low_res}, images.shape[0], batch_size=batch_size, progress=False,
                      generator=torch.Generator().manual_seed(seed), steps=steps)
    return {**sr_scores(out, low_res, images.float(), scale, lpips), "images": int(images.shape[0])}


@torch.no_grad()
def evaluate_semantic(ldm: torch.nn.Module, segmentation: torch.Tensor, steps: int | None = None, seed: int = 0,
                      batch_size: int = 256) -> dict[str, Any]:
    """`colour_match_fraction` (all object pixels, and without their borders) of one sample per map (B, H, W)."""
    out = sample_like(ldm, {"segmentation": segmentation}, segmentation.shape[0], batch_size=batch_size,
                      progress=False, generator=torch.Generator().manual_seed(seed), steps=steps)
    return {"colour_match": colour_match_fraction(out, segmentation),
            "colour_match_eroded": colour_match_fraction(out, segmentation, erode=1),
            "size": int(segmentation.shape[-1]), "images": int(segmentation.shape[0])}


TASKS = {"MaskedImageConditioner": "inpainting", "LowResConditioner": "super_resolution",
         "SegmentationConditioner": "semantic"}


def image_to_image_task(ldm: torch.nn.Module) -> str | None:
    """"inpainting", "super_resolution" or "semantic" for an LDM with that concat conditioner, else None."""
    return TASKS.get(type(getattr(ldm, "conditioner", None)).__name__)


@torch.no_grad()
def evaluate_image_to_image(ldm: torch.nn.Module, data: Mapping[str, Any], split: str = "val", num_images: int = 256,
                            steps: int | None = None, seed: int = 0, larger_sizes: tuple[int, ...] = (64,),
                            lpips: torch.nn.Module | None = None) -> dict[str, Any]:
    """The bars of an image-to-image LDM on the first `num_images` items of `split` of its dataset, flat numbers:

        inpainting        known_psnr_raw, known_psnr_pasted, background_hole_psnr, object_completion, ...
        super_resolution  psnr, psnr_bicubic, psnr_gain (and lpips, lpips_bicubic with an LPIPS module)
        semantic          colour_match(_eroded) at the trained size, and colour_match_<S>px(_eroded) for each of
                          `larger_sizes` (on a quarter as many maps: a 64 px sample costs 4 x a 32 px one)
    """
    task = image_to_image_task(ldm)
    if task is None:
        raise ValueError(f"no image-to-image evaluation for a {type(getattr(ldm, 'conditioner', None)).__name__}; "
                         f"accepted conditioners: {', '.join(TASKS)}")
    items = shapes_items(data, split, num_images)
    result: dict[str, Any] = {"task": task, "split": split, "seed": seed, "steps": steps or ldm.sample_steps}
    if task == "inpainting":
        return {**result, **evaluate_inpainting(ldm, items, steps, seed)}
    if task == "super_resolution":
        images = torch.stack([item["image"] for item in items])
        return {**result, **evaluate_super_resolution(ldm, images, steps, seed, lpips=lpips)}
    seg = torch.stack([item["segmentation"] for item in items])
    result.update({k: v for k, v in evaluate_semantic(ldm, seg, steps, seed).items() if k != "size"})
    for size in larger_sizes:
        seg = torch.stack([item["segmentation"] for item in shapes_items(data, split, max(1, num_images // 4), size)])
        scores = evaluate_semantic(ldm, seg, steps, seed, batch_size=64)
        result.update({f"colour_match_{size}px": scores["colour_match"],
                       f"colour_match_{size}px_eroded": scores["colour_match_eroded"], f"images_{size}px": scores["images"]})
    return result
