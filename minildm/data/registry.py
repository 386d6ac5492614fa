"""One entry point for every dataset: `get_dataset(name, split, size, **options)`.

The registry below is the single list of datasets; `available_datasets()`,
`dataset_info()` and the `minildm data` command all read it. Valid options of a
dataset are the keyword arguments of its class (other than split and size).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

from torch.utils.data import Dataset

from minildm.data import digits, faces, photos, shapes, torchvision_data
from minildm.data.base import SPLITS, check_size, check_split
from minildm.data.files import data_root


@dataclass(frozen=True)
class DatasetEntry:
    """What the course knows about a dataset before loading it."""

    cls: type
    description: str
    source: str
    licence: str
    channels: int
    keys: tuple[str, ...]
    split_sizes: dict[str, int]
    class_names: list[str] = field(default_factory=list)
    downloadable: bool = False  # False: ships with minildm / its dependencies


_SHAPES_KEYS = ("image", "label", "caption", "boxes", "box_labels", "segmentation")
REGISTRY: dict[str, DatasetEntry] = {
    "shapes": DatasetEntry(shapes.ShapesDataset, "procedural coloured shapes with captions, boxes, segmentation",
                           "minildm (generated)", "MIT (same as minildm)", 3, _SHAPES_KEYS,
                           dict(shapes.DEFAULT_LENGTHS), shapes.shape_class_names()),
    "digits": DatasetEntry(digits.DigitsDataset, "1,797 handwritten 8x8 digits", "scikit-learn (UCI ML digits)",
                           "CC BY 4.0 (UCI)", 1, ("image", "label"), dict(digits.SPLIT_SIZES), digits.CLASS_NAMES),
    "photos": DatasetEntry(photos.PhotosDataset, "random crops of 7 colour photos", "scikit-image data",
                           "public domain / CC0 / CC BY (see datasets/README.md)", 3, ("image", "label"),
                           dict(photos.DEFAULT_LENGTHS), list(photos.PHOTOS)),
    "faces": DatasetEntry(faces.FacesDataset, "200 small grayscale faces and non-faces (LFW subset)",
                          "scikit-image data (Labeled Faces in the Wild)", "LFW: research use", 1,
                          ("image", "label"), dict(faces.SPLIT_SIZES), faces.CLASS_NAMES),
    "mnist": DatasetEntry(torchvision_data.MNISTDataset, "70,000 handwritten 28x28 digits", "LeCun et al. 1998",
                          "CC BY-SA 3.0", 1, ("image", "label"), {"train": 55_000, "val": 5_000, "test": 10_000},
                          torchvision_data.MNIST_CLASSES, downloadable=True),
    "fashion_mnist": DatasetEntry(torchvision_data.FashionMNISTDataset, "70,000 28x28 clothing images",
                                  "Zalando Research, Xiao et al. 2017", "MIT", 1, ("image", "label"),
                                  {"train": 55_000, "val": 5_000, "test": 10_000}, torchvision_data.FASHION_CLASSES,
                                  downloadable=True),
    "cifar10": DatasetEntry(torchvision_data.CIFAR10Dataset, "60,000 32x32 colour images, 10 classes",
                            "Krizhevsky 2009", "no licence stated; research use", 3, ("image", "label"),
                            {"train": 45_000, "val": 5_000, "test": 10_000}, torchvision_data.CIFAR10_CLASSES,
                            downloadable=True),
    "celeba": DatasetEntry(torchvision_data.CelebADataset, "202,599 aligned celebrity faces (no labels)",
                           "Liu et al. 2015", "non-commercial research use only", 3, ("image",),
                           {"train": 162_770, "val": 19_867, "test": 19_962}, downloadable=True),
    "flowers102": DatasetEntry(torchvision_data.Flowers102Dataset, "8,189 flower photos, 102 classes",
                               "Nilsback & Zisserman 2008", "no licence stated; research use", 3, ("image", "label"),
                               {"train": 1_020, "val": 1_020, "test": 6_149}, downloadable=True),
}


def available_datasets() -> list[str]:
    """Names accepted by `get_dataset`, built-in (offline) ones first."""
    return list(REGISTRY)


def _entry(name: str) -> DatasetEntry:
    if name not in REGISTRY:
        raise ValueError(f"unknown dataset {name!r}; valid datasets are {', '.join(REGISTRY)}")
    return REGISTRY[name]


def dataset_options(name: str) -> dict[str, object]:
    """The options `get_dataset(name, ...)` accepts, with their defaults."""
    params = inspect.signature(_entry(name).cls.__init__).parameters
    return {k: p.default for k, p in params.items() if k not in ("self", "split", "size")}


def get_dataset(name: str, split: str = "train", size: int = 32, **options) -> Dataset:
    """A torch Dataset of dicts: "image" (C, size, size) float in [-1, 1], plus "label" etc. when the data has them.

    Built-in datasets (shapes, digits, photos, faces) work offline; the others read files
    from the data root and raise DatasetNotFoundError (a FileNotFoundError) naming the
    missing files when they are absent. Unknown names, splits or options raise ValueError.
    """
    entry = _entry(name)
    check_split(split)
    check_size(size)
    valid = dataset_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)} for dataset {name!r}; "
                         f"valid options are {', '.join(valid) or 'none'}")
    return entry.cls(split=split, size=size, **options)


def dataset_info(name: str) -> dict:
    """Facts about a dataset without loading it: classes, channels, keys, split sizes, source, local files."""
    entry = _entry(name)
    local = True if not entry.downloadable else torchvision_data.files_present(name)
    class_names = entry.class_names
    if name == "flowers102":
        from torchvision.datasets import Flowers102

        class_names = list(Flowers102.classes)
    return {
        "name": name,
        "description": entry.description,
        "source": entry.source,
        "licence": entry.licence,
        "channels": entry.channels,
        "num_classes": len(class_names),
        "class_names": list(class_names),
        "keys": list(entry.keys),
        "splits": {s: entry.split_sizes[s] for s in SPLITS},
        "options": dataset_options(name),
        "builtin": not entry.downloadable,
        "local": local,
        "path": str(data_root() / name) if entry.downloadable else None,
    }
