"""`shapes`: the course's built-in procedural dataset (no download, any size, endless).

Each image shows one to four flat-coloured objects on a dark background. One object,
the *main* object, is the labelled one: with companions it is always "large" (about
half the image wide) and they are "small" (about a quarter), so the class is easy
to recognise. Every item carries all the conditioning signals the course uses:

- `image`         (3, S, S) float in [-1, 1]
- `label`         int, the class of the main (largest) object, see below
- `caption`       str, e.g. "a large red circle above a small blue square"
- `boxes`         (N, 4) float, xyxy in [0, 1] (x right, y down), main object first
- `box_labels`    (N,) long, class ids of the boxes
- `segmentation`  (S, S) long, 0 = background, 1 + class id of the object at each pixel

N is the largest number of objects the dataset can draw (`num_objects`); images with
fewer objects are padded with zero boxes whose `box_labels` are -1, so that PyTorch's
default collate can stack a batch. Used by: class conditioning (`label`), text-to-image
(`caption`, LDM Sec. 4.3), layout-to-image (`boxes`, Sec. 4.3.1 / App. D.3) and semantic
synthesis (`segmentation`, Sec. 4.3.2).

Classes: class id = kind_index * 6 + colour_index, with kinds in the order given by
the `kinds` option (default circle, square, triangle) and colours in the order
red, orange, yellow, green, blue, purple. The default 18 classes are:
0 red circle, 1 orange circle, ..., 5 purple circle, 6 red square, ..., 17 purple triangle.

Item i of a split is a pure function of (seed, split, i, options): the per-item random
generator is seeded with (seed, split code, i), and the three splits use different
split codes, so train/val/test never share an image. Rendering is vectorised numpy on
the object's bounding window, with analytically antialiased edges: each shape is a
signed distance function d (pixels, negative inside) and the pixel's coverage is
clip(0.5 - d, 0, 1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from minildm.data.base import SPLIT_CODES, check_size, check_split

COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.86, 0.12, 0.12),
    "orange": (0.98, 0.55, 0.05),
    "yellow": (0.96, 0.88, 0.15),
    "green": (0.15, 0.68, 0.25),
    "blue": (0.15, 0.35, 0.92),
    "purple": (0.62, 0.25, 0.82),
}
KINDS: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "cross", "ring")
DEFAULT_KINDS: tuple[str, ...] = ("circle", "square", "triangle")
BACKGROUNDS: tuple[str, ...] = ("plain", "textured")
DEFAULT_LENGTHS: dict[str, int] = {"train": 50_000, "val": 2_000, "test": 2_000}
MAX_OBJECTS = 4

# Half-extent r of an object as a fraction of the image side (its box is about 2r wide).
LARGE_RADIUS = (0.20, 0.27)
SMALL_RADIUS = (0.09, 0.13)
MARGIN = 0.02  # gap kept between an object and the image border / its layout cell


def shape_class_names(kinds: Sequence[str] = DEFAULT_KINDS) -> list[str]:
    """Class names in class-id order: "red circle", "orange circle", ..., for the given kinds."""
    return [f"{colour} {kind}" for kind in kinds for colour in COLOURS]


def signed_distance(kind: str, dx: np.ndarray, dy: np.ndarray, r: float) -> np.ndarray:
    """Signed distance (pixels; < 0 inside) from points offset (dx, dy) from the centre to a shape of half-extent r.

    dx has shape (1, w) and dy (h, 1); the result broadcasts to (h, w). Polygon distances
    are the max over their edges' half-plane distances (exact on the edges, which is
    what antialiasing needs).
    """
    if kind == "circle":
        return np.sqrt(dx * dx + dy * dy) - r
    if kind == "square":
        return np.maximum(np.abs(dx), np.abs(dy)) - 0.88 * r
    if kind == "triangle":
        # apex (0, -r), base corners (+-r, r): base edge y = r, slanted edges with normal (2, -1)/sqrt(5)
        return np.maximum(dy - r, (2.0 * np.abs(dx) - (dy + r)) / math.sqrt(5.0))
    if kind == "diamond":
        return (np.abs(dx) + np.abs(dy) - r) / math.sqrt(2.0)
    if kind == "cross":
        ax, ay = np.abs(dx), np.abs(dy)
        arm = 0.34 * r
        return np.minimum(np.maximum(ax - r, ay - arm), np.maximum(ax - arm, ay - r))
    if kind == "ring":
        return np.abs(np.sqrt(dx * dx + dy * dy) - 0.76 * r) - 0.24 * r
    raise ValueError(f"unknown shape kind {kind!r}; valid kinds are {', '.join(KINDS)}")


def half_extent(kind: str, r: float) -> float:
    """Half the width (= half the height) of the shape's bounding box, same units as r."""
    return 0.88 * r if kind == "square" else r


def relation(main: tuple[float, float], other: tuple[float, float]) -> str:
    """Where `main` is relative to `other` (centres (x, y), y down): the dominant axis decides."""
    dx, dy = other[0] - main[0], other[1] - main[1]
    if abs(dy) > abs(dx):
        return "above" if dy > 0 else "below"
    return "to the left of" if dx > 0 else "to the right of"


class ShapesDataset(Dataset):
    """Procedural images of coloured shapes with labels, captions, boxes and segmentation maps.

    Args:
        split: "train", "val" or "test" (disjoint random streams).
        size: image side in pixels.
        num_objects: objects per image, an int or an inclusive (min, max) range within 1..4.
        seed: base seed; item i is a pure function of (seed, split, i).
        length: number of items (the data is procedural, so this is virtual);
            defaults to 50,000 / 2,000 / 2,000 for train / val / test.
        background: "plain" (one dark colour) or "textured" (dark colour + soft waves + grain).
        kinds: which shape kinds to draw, a subset of KINDS; classes = kinds x 6 colours.
        exclude: class names ("green triangle") never drawn, e.g. colour-shape pairs held out of a
            text-to-image model's training captions to test compositional generalisation. An
            excluded draw is redrawn, so with no exclusions every item is the same as before.
    """

    def __init__(self, split: str = "train", size: int = 32, num_objects: int | Sequence[int] = (1, 3),
                 seed: int = 0, length: int | None = None, background: str = "plain",
                 kinds: Sequence[str] = DEFAULT_KINDS, exclude: Sequence[str] = ()):
        self.split = check_split(split)
        self.size = check_size(size, minimum=8)
        self.min_objects, self.max_objects = self._check_num_objects(num_objects)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.seed = int(seed)
        self.length = DEFAULT_LENGTHS[split] if length is None else int(length)
        if self.length < 1:
            raise ValueError(f"length must be a positive integer, got {length!r}")
        if background not in BACKGROUNDS:
            raise ValueError(f"unknown background {background!r}; valid backgrounds are {', '.join(BACKGROUNDS)}")
        self.background = background
        if isinstance(kinds, str):
            kinds = (kinds,)
        bad = [k for k in kinds if k not in KINDS]
        if bad or len(kinds) == 0 or len(set(kinds)) != len(kinds):
            raise ValueError(f"kinds must be distinct names from {', '.join(KINDS)}; got {tuple(kinds)!r}")
        self.kinds = tuple(kinds)
        self.colours = tuple(COLOURS)
        self.class_names = shape_class_names(self.kinds)
        self.num_classes = len(self.class_names)
        if isinstance(exclude, str):
            exclude = (exclude,)
        unknown = [name for name in exclude if name not in self.class_names]
        if unknown or len(set(exclude)) >= self.num_classes:
            raise ValueError(f"exclude must name some, not all, classes of {', '.join(self.class_names)}; "
                             f"got {tuple(exclude)!r}")
        self.excluded = {self.class_names.index(name) for name in exclude}
        self._palette = np.array(list(COLOURS.values()), dtype=np.float32)  # (6, 3)
        centres = np.arange(self.size, dtype=np.float32) + 0.5  # pixel centres, in pixels
        self._xs, self._ys = centres[None, :], centres[:, None]  # (1, S), (S, 1)

    @staticmethod
    def _check_num_objects(num_objects: int | Sequence[int]) -> tuple[int, int]:
        if isinstance(num_objects, (int, np.integer)) and not isinstance(num_objects, bool):
            lo = hi = int(num_objects)
        elif isinstance(num_objects, Sequence) and len(num_objects) == 2:
            lo, hi = (int(v) for v in num_objects)
        else:
            lo, hi = -1, -1
        if not 1 <= lo <= hi <= MAX_OBJECTS:
            raise ValueError(f"num_objects must be an int or a (min, max) pair within 1..{MAX_OBJECTS}, "
                             f"got {num_objects!r}")
        return lo, hi

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for a shapes split of length {self.length}")
        rng = np.random.default_rng((self.seed, SPLIT_CODES[self.split], int(index)))
        objects = self._layout(rng)
        image = self._background(rng)  # (S, S, 3) in [0, 1]; transposed to (3, S, S) at the end
        segmentation = np.zeros((self.size, self.size), dtype=np.int64)
        for obj in objects:
            self._draw(image, segmentation, obj)

        boxes = np.zeros((self.max_objects, 4), dtype=np.float32)
        box_labels = np.full(self.max_objects, -1, dtype=np.int64)
        for k, obj in enumerate(objects):
            e = obj["extent"]
            boxes[k] = np.clip([obj["x"] - e, obj["y"] - e, obj["x"] + e, obj["y"] + e], 0.0, 1.0)
            box_labels[k] = obj["class"]
        return {
            "image": torch.from_numpy(np.ascontiguousarray(np.clip(image, 0.0, 1.0).transpose(2, 0, 1)) * 2.0 - 1.0),
            "label": objects[0]["class"],
            "caption": self._caption(objects),
            "boxes": torch.from_numpy(boxes),
            "box_labels": torch.from_numpy(box_labels),
            "segmentation": torch.from_numpy(segmentation),
        }

    def _new_object(self, rng: np.random.Generator, large: bool) -> dict:
        """A random kind, colour and size (half-extent r, fraction of the side); placed later by `_place`."""
        kind_index = int(rng.random() * len(self.kinds))
        colour_index = int(rng.random() * len(self.colours))
        while kind_index * len(self.colours) + colour_index in self.excluded:
            kind_index = int(rng.random() * len(self.kinds))
            colour_index = int(rng.random() * len(self.colours))
        lo, hi = LARGE_RADIUS if large else SMALL_RADIUS
        kind = self.kinds[kind_index]
        r = lo + (hi - lo) * rng.random()
        return {"kind": kind, "colour": self.colours[colour_index], "r": r, "extent": half_extent(kind, r),
                "large": large, "class": kind_index * len(self.colours) + colour_index,
                "jitter": np.float32(0.08 * (rng.random() - 0.5))}  # brightness shift in +-0.04

    def _layout(self, rng: np.random.Generator) -> list[dict]:
        """Choose the objects and their centres (fractions of the side); the main object comes first.

        With companions, the image is cut along a random axis: the main object gets a
        region 56-64% deep, the companions share the remaining strip in equal cells, so
        objects never overlap and their spatial relations are clear.
        """
        n = self.min_objects + int(rng.random() * (self.max_objects - self.min_objects + 1))
        if n == 1:
            obj = self._new_object(rng, large=rng.random() < 0.5)
            self._place(rng, obj, (0.0, 1.0), (0.0, 1.0))
            return [obj]
        main = self._new_object(rng, large=True)
        others = [self._new_object(rng, large=False) for _ in range(n - 1)]
        depth = 0.56 + 0.08 * rng.random()
        main_first = rng.random() < 0.5
        main_span = (0.0, depth) if main_first else (1.0 - depth, 1.0)
        strip = (depth, 1.0) if main_first else (0.0, 1.0 - depth)
        along_x = rng.random() < 0.5  # the cut is vertical (regions side by side) or horizontal
        cells = [(k / (n - 1), (k + 1) / (n - 1)) for k in range(n - 1)]
        if along_x:
            self._place(rng, main, main_span, (0.0, 1.0))
            for obj, cell in zip(others, cells):
                self._place(rng, obj, strip, cell)
        else:
            self._place(rng, main, (0.0, 1.0), main_span)
            for obj, cell in zip(others, cells):
                self._place(rng, obj, cell, strip)
        return [main, *others]

    @staticmethod
    def _place(rng: np.random.Generator, obj: dict, x_span: tuple[float, float], y_span: tuple[float, float]) -> None:
        """Put the object's centre uniformly where its box fits inside the span (with MARGIN)."""
        e = obj["extent"] + MARGIN
        for axis, (lo, hi) in (("x", x_span), ("y", y_span)):
            lo, hi = lo + e, hi - e
            obj[axis] = lo + (hi - lo) * rng.random() if hi > lo else 0.5 * (lo + hi)

    def _background(self, rng: np.random.Generator) -> np.ndarray:
        """A dark, slightly tinted colour (S, S, 3); "textured" adds two soft waves and fine grain."""
        base = 0.08 + 0.20 * rng.random() + 0.06 * (rng.random(3) - 0.5)  # (3,)
        image = np.empty((self.size, self.size, 3), dtype=np.float32)
        image[...] = base.astype(np.float32)
        if self.background == "textured":
            pattern = 0.015 * rng.standard_normal((self.size, self.size), dtype=np.float32)  # fine grain
            for _ in range(2):  # soft waves: 1-4 cycles across the image, random direction and phase
                angle, cycles, phase = math.pi * rng.random(), 1.0 + 3.0 * rng.random(), 2 * math.pi * rng.random()
                step = 2 * math.pi * cycles / self.size
                pattern += 0.04 * np.sin((step * math.cos(angle)) * self._xs + (step * math.sin(angle)) * self._ys
                                         + phase)  # (S, S)
            image += pattern[..., None]
        return image

    def _draw(self, image: np.ndarray, segmentation: np.ndarray, obj: dict) -> None:
        """Alpha-composite one object into `image` and write 1 + its class into `segmentation`, in place."""
        s = self.size
        cx, cy, r, e = obj["x"] * s, obj["y"] * s, obj["r"] * s, obj["extent"] * s
        x0, x1 = max(int(cx - e) - 1, 0), min(int(cx + e) + 2, s)  # pixel window around the box
        y0, y1 = max(int(cy - e) - 1, 0), min(int(cy + e) + 2, s)
        dx, dy = self._xs[:, x0:x1] - cx, self._ys[y0:y1] - cy  # (1, w), (h, 1)
        coverage = np.clip(0.5 - signed_distance(obj["kind"], dx, dy, r), 0.0, 1.0)  # (h, w)
        colour = self._palette[self.colours.index(obj["colour"])] + obj["jitter"]  # (3,)
        window = image[y0:y1, x0:x1]  # (h, w, 3), a view
        window += coverage[..., None] * (colour - window)
        segmentation[y0:y1, x0:x1][coverage >= 0.5] = 1 + obj["class"]

    @staticmethod
    def _caption(objects: list[dict]) -> str:
        """Plain English: the main object, then where it is relative to each companion."""
        def phrase(obj: dict) -> str:
            return f"a {'large' if obj['large'] else 'small'} {obj['colour']} {obj['kind']}"

        main, others = objects[0], objects[1:]
        if not others:
            return phrase(main)
        parts, previous = [], None
        for obj in others:
            rel = relation((main["x"], main["y"]), (obj["x"], obj["y"]))
            parts.append(phrase(obj) if rel == previous else f"{rel} {phrase(obj)}")
            previous = rel
        return f"{phrase(main)} " + (", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0])
