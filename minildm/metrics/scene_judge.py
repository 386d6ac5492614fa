"""A judge for scenes of several shapes: does a generated image show what its caption or layout asked for?

The course judge (`minildm.metrics.judge`) classifies an image holding one object. A text-to-image or
layout-to-image sample holds several, so the scene judge first finds them, then judges each alone:

1. colour segmentation (`find_objects`): every pixel takes the nearest of the six shape colours or
   the image's background colour (the median pixel), and counts as background unless it lies within
   `max_distance` of its colour (antialiased edges blend two colours and belong to neither); the
   connected regions of one colour with at least `min_pixels` pixels are the objects, each with its
   box and colour;
2. crops (`object_crops`): a square window around each object, the object filling about 40% of its
   side as in the judge's training images, other objects painted over with the background, resized
   to 32 x 32;
3. the shapes judge names each crop's class (kind x colour).

Two evaluations build on it:
- `caption_faithfulness`: for every object a caption names ("a large red circle above a small blue
  square"), is an object of that colour and kind there, and is the stated relation right (the
  dataset's rule: the dominant axis between the two centres decides "above" / "to the left of")?
- `layout_fidelity`: for every requested box, the found object that overlaps it most: is it of the
  requested class (per-box accuracy), and how well do the boxes overlap (IoU)?

Both run on real images too, which measures the judge itself: its score there is the ceiling of
what a generated image can get.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from minildm.data.shapes import COLOURS, DEFAULT_KINDS, relation

PALETTE = torch.tensor(list(COLOURS.values()))  # (6, 3) in [0, 1]
OBJECT_FRACTION = 0.4  # an object fills this fraction of its crop's side
PHRASE = re.compile(r"an? (?:(large|small) )?(" + "|".join(COLOURS) + r") (\w+)")
RELATIONS = ("above", "below", "to the left of", "to the right of")


@dataclass
class SceneObject:
    """An object found in an image: its colour, box (xyxy fractions of the side) and pixel mask (H, W)."""

    colour: str
    box: tuple[float, float, float, float]
    mask: np.ndarray

    @property
    def centre(self) -> tuple[float, float]:
        """(x, y) centre of the box, fractions of the side."""
        return (self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2


def parse_caption(caption: str, kinds: Sequence[str] = DEFAULT_KINDS) -> tuple[list[str], list[str]]:
    """A shapes caption -> (class names of the objects it names, main object first; the relation of the main
    object to each companion). "a large red circle above a small blue square" -> (["red circle",
    "blue square"], ["above"])."""
    names, relations = [], []
    matches = list(PHRASE.finditer(caption))
    if not matches or any(m.group(3) not in kinds for m in matches):
        raise ValueError(f"not a shapes caption (\"a [large|small] <colour> <kind> ...\", kinds "
                         f"{', '.join(kinds)}): {caption!r}")
    for previous, match in zip([None, *matches], matches):
        names.append(f"{match.group(2)} {match.group(3)}")
        if previous is not None:
            between = re.sub(r"^and\b", "", caption[previous.end():match.start()].strip(" ,")).strip()
            relations.append(between if between in RELATIONS else relations[-1])  # "..., and" repeats the last
    return names, relations


def find_objects(image: torch.Tensor, min_pixels: int = 4, max_distance: float = 0.25) -> list[SceneObject]:
    """Colour segmentation of one image (3, H, W) in [-1, 1] -> the objects, largest first (RGB distances in [0, 1])."""
    pixels = ((image.detach().float().cpu().clamp(-1, 1) + 1) / 2).permute(1, 2, 0)  # (H, W, 3) in [0, 1]
    height, width = pixels.shape[:2]
    background = pixels.reshape(-1, 3).median(dim=0).values  # most pixels are background
    references = torch.cat([background[None], PALETTE])  # (7, 3): background, then the six colours
    distances, nearest = torch.cdist(pixels.reshape(-1, 3), references).min(dim=1)  # (HW,), (HW,)
    nearest = torch.where(distances <= max_distance, nearest, 0).reshape(height, width).numpy()
    objects = []
    for index, colour in enumerate(COLOURS, start=1):
        regions, count = ndimage.label(nearest == index, structure=np.ones((3, 3)))
        for region in range(1, count + 1):
            mask = regions == region
            if mask.sum() < min_pixels:
                continue
            ys, xs = np.nonzero(mask)
            box = (xs.min() / width, ys.min() / height, (xs.max() + 1) / width, (ys.max() + 1) / height)
            objects.append(SceneObject(colour, box, mask))
    return sorted(objects, key=lambda o: -int(o.mask.sum()))


def object_crops(image: torch.Tensor, objects: Sequence[SceneObject], size: int = 32) -> torch.Tensor:
    """(3, H, W) image, its objects -> (K, 3, size, size) crops, each object alone in the middle of its crop."""
    if not objects:
        return image.new_zeros(0, 3, size, size)
    image = image.detach().float().cpu()
    height, width = image.shape[1:]
    background = image.reshape(3, -1).median(dim=1).values[:, None, None]  # (3, 1, 1)
    all_objects = torch.from_numpy(np.any([o.mask for o in objects], axis=0))
    crops = []
    for obj in objects:
        alone = torch.where(all_objects & ~torch.from_numpy(obj.mask), background, image)  # others painted over
        side = max(obj.box[2] - obj.box[0], obj.box[3] - obj.box[1]) * width / OBJECT_FRACTION
        side = max(int(round(side)), 4)
        cx, cy = obj.centre[0] * width, obj.centre[1] * height
        x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
        padded = torch.cat([alone, torch.ones(1, height, width)])  # a 4th channel marks the real pixels
        padded = F.pad(padded, (side, side, side, side))  # room for windows that leave the image
        window = padded[:, y0 + side:y0 + 2 * side, x0 + side:x0 + 2 * side]  # (4, side, side)
        window = window[:3] * window[3:] + background * (1 - window[3:])  # outside the image -> background
        crops.append(F.interpolate(window[None], size=(size, size), mode="bilinear", antialias=side > size,
                                   align_corners=False)[0])
    return torch.stack(crops)


@torch.no_grad()
def judge_objects(judge: torch.nn.Module, image: torch.Tensor, objects: Sequence[SceneObject],
                  class_names: Sequence[str]) -> list[str]:
    """The judge's class name for each object (judged on its crop)."""
    if not objects:
        return []
    return [class_names[i] for i in judge.predict(object_crops(image, objects)).tolist()]


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two xyxy boxes."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def judge_caption(judge: torch.nn.Module, image: torch.Tensor, caption: str,
                  class_names: Sequence[str]) -> dict[str, bool]:
    """One image against its caption: {"objects" (every named colour-and-kind there), "colours" (every
    named colour there), "relation" (every stated relation right between the objects of the named colour
    and kind), "relation_colours" (the same between the largest objects of the named colours, kinds
    ignored); a caption that states no relation counts as right}."""
    names, relations = parse_caption(caption, kinds=sorted({n.split()[1] for n in class_names}))
    found = find_objects(image)
    judged = judge_objects(judge, image, found, class_names)
    matches = [[o for o, j in zip(found, judged) if j == name] for name in names]  # largest first
    colours = {o.colour for o in found}
    result = {"objects": all(matches), "colours": all(n.split()[0] in colours for n in names)}
    by_colour = [[o for o in found if o.colour == name.split()[0]] for name in names]
    for key, candidates in (("relation", matches), ("relation_colours", by_colour)):
        main = candidates[0][0] if candidates[0] else None
        companions = [next((o for o in c if o is not main), None) for c in candidates[1:]]  # not the main one again
        result[key] = all(main is not None and other is not None and relation(main.centre, other.centre) == rel
                          for other, rel in zip(companions, relations))
    return result


def judge_layout(judge: torch.nn.Module, image: torch.Tensor, boxes: torch.Tensor, box_labels: torch.Tensor,
                 class_names: Sequence[str]) -> list[tuple[bool, float]]:
    """One image against its layout: for each requested box (label >= 0), (the found object overlapping it most
    has the requested class, its IoU with the box); (False, 0.0) when nothing overlaps."""
    found = find_objects(image)
    judged = judge_objects(judge, image, found, class_names)
    results = []
    for box, label in zip(boxes.tolist(), box_labels.tolist()):
        if label < 0:
            continue
        ious = [box_iou(box, o.box) for o in found]
        best = int(np.argmax(ious)) if ious else -1
        if best < 0 or ious[best] == 0:
            results.append((False, 0.0))
        else:
            results.append((judged[best] == class_names[label], ious[best]))
    return results


def caption_faithfulness(judge: torch.nn.Module, images: torch.Tensor, captions: Sequence[str],
                         class_names: Sequence[str]) -> dict[str, float]:
    """Rates over images: single-object captions ("single_objects": colour and kind right) and two-or-more-object
    captions ("multi_objects", "multi_colours", "multi_relation", "multi_relation_colours"; see `judge_caption`),
    with the counts of each."""
    judge.eval()
    rows = [(len(parse_caption(c)[0]), judge_caption(judge, image, c, class_names))
            for image, c in zip(images, captions)]
    single = [r for n, r in rows if n == 1]
    multi = [r for n, r in rows if n > 1]

    def rate(items: list[dict[str, bool]], key: str) -> float:
        return float(np.mean([r[key] for r in items])) if items else float("nan")

    return {"single_objects": rate(single, "objects"), "single_count": len(single),
            "multi_objects": rate(multi, "objects"), "multi_colours": rate(multi, "colours"),
            "multi_relation": rate(multi, "relation"), "multi_relation_colours": rate(multi, "relation_colours"),
            "multi_count": len(multi)}


def layout_fidelity(judge: torch.nn.Module, images: torch.Tensor, boxes: torch.Tensor, box_labels: torch.Tensor,
                    class_names: Sequence[str]) -> dict[str, float]:
    """Per-box class accuracy and mean IoU over every requested box of every image (`judge_layout`)."""
    judge.eval()
    results = [r for i in range(images.shape[0])
               for r in judge_layout(judge, images[i], boxes[i], box_labels[i], class_names)]
    return {"box_accuracy": float(np.mean([ok for ok, _ in results])),
            "mean_iou": float(np.mean([iou for _, iou in results])), "boxes": len(results)}


def names_held_out(caption: str, held_out: Sequence[str]) -> bool:
    """Whether `caption` names one of the `held_out` colour-kind pairs ("green triangle")."""
    return any(name in held_out for name in parse_caption(caption)[0])


def _sample(ldm: torch.nn.Module, cond: dict, sampler: str, steps: int, guidance_scale: float,
            generator: torch.Generator, batch_size: int) -> torch.Tensor:
    """One sample per item of `cond` (a dict of equal-length batches), `batch_size` at a time, on the CPU."""
    total = len(next(iter(cond.values())))
    chunks = []
    for start in range(0, total, batch_size):
        part = {k: v[start:start + batch_size] for k, v in cond.items()}
        chunks.append(ldm.sample(cond=part, sampler=sampler, steps=steps, guidance_scale=guidance_scale,
                                 generator=generator, progress=False).cpu())
    return torch.cat(chunks)


@torch.no_grad()
def sample_and_judge_captions(ldm: torch.nn.Module, judge: torch.nn.Module, captions: Sequence[str],
                              class_names: Sequence[str], held_out: Sequence[str] = (), sampler: str = "dpmpp_2m",
                              steps: int = 20, guidance_scale: float = 3.0, seed: int = 0,
                              batch_size: int = 100) -> dict[str, float]:
    """Caption faithfulness of a text-to-image LDM: one sample per caption, judged by `caption_faithfulness`,
    separately for captions naming only seen pairs ("seen/...") and those naming a `held_out` pair ("held_out/...")."""
    ldm.eval()
    images = _sample(ldm, {"caption": list(captions)}, sampler, steps, guidance_scale,
                     torch.Generator().manual_seed(seed), batch_size)
    unseen = [names_held_out(c, held_out) for c in captions]
    scores: dict[str, float] = {}
    for group, keep in (("seen", [not u for u in unseen]), ("held_out", unseen)):
        index = [i for i, k in enumerate(keep) if k]
        if index:
            rates = caption_faithfulness(judge, images[index], [captions[i] for i in index], class_names)
            scores.update({f"{group}/{k}": v for k, v in rates.items()})
    return {**scores, "sampler": sampler, "steps": steps, "guidance_scale": guidance_scale}


@torch.no_grad()
def sample_and_judge_layouts(ldm: torch.nn.Module, judge: torch.nn.Module, boxes: torch.Tensor,
                             box_labels: torch.Tensor, class_names: Sequence[str], sampler: str = "dpmpp_2m",
                             steps: int = 20, guidance_scale: float = 3.0, seed: int = 0,
                             batch_size: int = 100) -> dict[str, float]:
    """Layout fidelity of a layout-to-image LDM: one sample per layout, judged by `layout_fidelity`."""
    ldm.eval()
    images = _sample(ldm, {"boxes": boxes, "box_labels": box_labels}, sampler, steps, guidance_scale,
                     torch.Generator().manual_seed(seed), batch_size)
    return {**layout_fidelity(judge, images, boxes, box_labels, class_names), "sampler": sampler, "steps": steps,
            "guidance_scale": guidance_scale}
