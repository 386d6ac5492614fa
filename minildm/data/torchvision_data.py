"""Datasets the user downloads once: mnist, fashion_mnist, cifar10, celeba, flowers102.

Files live under `<data root>/NAME/` (see `minildm.data.files`) in the layout that
torchvision's downloaders create, e.g. `mnist/MNIST/raw/train-images-idx3-ubyte`;
the files may also sit directly in `<data root>/NAME/`. They are read by small
readers here, not by torchvision's classes, so that loading never touches the
network, needs no checksums and reports exactly which files are missing.
`download(NAME)` calls torchvision's downloader (download=True) with a network timeout.

Splits: CelebA and Flowers102 have official train/val/test lists. MNIST, Fashion-MNIST
and CIFAR-10 have train/test only; our `val` is the last tenth of the official training
set (at most 5,000 images) and `train` the rest, so e.g. MNIST is 55,000/5,000/10,000.
"""

from __future__ import annotations

import gzip
import importlib
import pickle
import socket
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from minildm.data.base import ImageTensorDataset, check_size, check_split
from minildm.data.files import DatasetNotFoundError, data_root, missing_files_message
from minildm.data.transforms import resize_image

MNIST_CLASSES = [str(d) for d in range(10)]
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
MAX_VAL = 5_000

# name -> the sub-folders (inside <data root>/NAME) searched for its files, torchvision's layout first
LAYOUTS: dict[str, tuple[str, ...]] = {
    "mnist": ("MNIST/raw", "raw", "."),
    "fashion_mnist": ("FashionMNIST/raw", "raw", "."),
    "cifar10": ("cifar-10-batches-py", "."),
    "celeba": ("celeba", "."),
    "flowers102": ("flowers-102", "."),
}


def dataset_folder(name: str, root: str | Path | None = None) -> Path:
    """`<root or data root>/NAME`."""
    return Path(root if root is not None else data_root()) / name


def find_files(name: str, files: list[str], root: str | Path | None = None) -> dict[str, Path]:
    """Locate `files` (a name also matches NAME.gz) in the first layout folder that has them all.

    Raises DatasetNotFoundError listing what is missing from torchvision's layout folder.
    """
    base = dataset_folder(name, root)
    for sub in LAYOUTS[name]:
        folder = base / sub
        found = {}
        for f in files:
            for candidate in (folder / f, folder / f"{f}.gz"):
                if candidate.exists():
                    found[f] = candidate
                    break
        if len(found) == len(files):
            return found
    expected = base / LAYOUTS[name][0]
    missing = [f for f in files if not (expected / f).exists() and not (expected / f"{f}.gz").exists()]
    raise DatasetNotFoundError(missing_files_message(name, missing, expected))


def files_present(name: str, root: str | Path | None = None) -> bool:
    """Whether every file of every split of `name` is on disk."""
    try:
        for split in ("train", "test"):
            find_files(name, REQUIRED_FILES[name](split), root)
    except DatasetNotFoundError:
        return False
    return True


# ---- readers of the on-disk formats ----------------------------------------------------

def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST format, optionally gzipped) into a numpy uint8 array.

    Header: two zero bytes, a type byte (0x08 = unsigned byte), the number of dimensions,
    then each dimension as a big-endian int32; the values follow in row-major order.
    """
    with _open(path) as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file (bad magic number {data[:4].hex()})")
    ndim = data[3]
    shape = tuple(int(v) for v in np.frombuffer(data, dtype=">i4", count=ndim, offset=4))
    values = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if values.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says shape {shape} but holds {values.size} values")
    return values.reshape(shape)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only dicts/lists/strings and numpy arrays (what a CIFAR batch holds), nothing executable."""

    def find_class(self, module: str, name: str):
        if (module, name) == ("_codecs", "encode"):  # how Python 3 pickles (protocol <= 2) store bytes
            return getattr(importlib.import_module("_codecs"), name)
        if module in ("numpy", "numpy.core.multiarray", "numpy._core.multiarray") and \
                name in ("ndarray", "dtype", "_reconstruct", "scalar"):
            if name in ("ndarray", "dtype"):
                return getattr(np, name)
            try:
                return getattr(importlib.import_module("numpy._core.multiarray"), name)
            except ImportError:
                return getattr(importlib.import_module("numpy.core.multiarray"), name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a dataset file")


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch -> images (N, 3, 32, 32) uint8 and labels (N,) int64."""
    with _open(path) as f:
        batch = _ArrayUnpickler(f, encoding="latin1").load()
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    images = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    return images, np.asarray(batch["labels"], dtype=np.int64)


def _train_val(split: str, images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cut the official training set: the last tenth (at most MAX_VAL) is `val`, the rest `train`."""
    n_val = min(MAX_VAL, len(images) // 10)
    keep = slice(len(images) - n_val, None) if split == "val" else slice(0, len(images) - n_val)
    return images[keep], labels[keep]


def _mnist_files(split: str) -> list[str]:
    prefix = "t10k" if split == "test" else "train"
    return [f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"]


def _cifar_files(split: str) -> list[str]:
    return ["test_batch"] if split == "test" else [f"data_batch_{k}" for k in range(1, 6)]


REQUIRED_FILES = {
    "mnist": _mnist_files,
    "fashion_mnist": _mnist_files,
    "cifar10": _cifar_files,
    "celeba": lambda split: ["list_eval_partition.txt", "img_align_celeba"],
    "flowers102": lambda split: ["imagelabels.mat", "setid.mat", "jpg"],
}


# ---- datasets ----------------------------------------------------------------------------

class _IDXDataset(ImageTensorDataset):
    """MNIST-format data: items {"image": (channels, size, size) in [-1, 1], "label": 0..9}."""

    NAME = "mnist"
    CLASSES = MNIST_CLASSES

    def __init__(self, split: str = "train", size: int = 32, channels: int = 1, root: str | None = None):
        check_split(split)
        paths = find_files(self.NAME, _mnist_files(split), root)
        images_file, labels_file = _mnist_files(split)
        images, labels = read_idx(paths[images_file]), read_idx(paths[labels_file]).astype(np.int64)
        if split != "test":
            images, labels = _train_val(split, images, labels)
        pixels = torch.from_numpy(images.copy())[:, None]  # (N, 28, 28) -> (N, 1, 28, 28) uint8
        super().__init__(pixels, labels, size, self.CLASSES, channels)
        self.split = split


class MNISTDataset(_IDXDataset):
    """MNIST handwritten digits (LeCun et al., 1998): 55,000 / 5,000 / 10,000 images, 28x28."""


class FashionMNISTDataset(_IDXDataset):
    """Fashion-MNIST (Xiao et al., 2017): 55,000 / 5,000 / 10,000 clothing images, 28x28, 10 classes."""

    NAME = "fashion_mnist"
    CLASSES = FASHION_CLASSES


class CIFAR10Dataset(ImageTensorDataset):
    """CIFAR-10 (Krizhevsky, 2009): 45,000 / 5,000 / 10,000 colour 32x32 images, 10 classes."""

    def __init__(self, split: str = "train", size: int = 32, root: str | None = None):
        check_split(split)
        paths = find_files("cifar10", _cifar_files(split), root)
        parts = [read_cifar_batch(paths[f]) for f in _cifar_files(split)]
        images = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
        if split != "test":
            images, labels = _train_val(split, images, labels)
        super().__init__(torch.from_numpy(images), labels, size, CIFAR10_CLASSES)
        self.split = split


def _load_photo(path: Path, size: int, crop: float) -> torch.Tensor:
    """Decode a JPEG (at reduced resolution when it is much larger), centre-crop a square whose
    side is `crop` x the shorter side, resize -> (3, size, size) in [-1, 1]."""
    with Image.open(path) as img:
        img.draft("RGB", (2 * size, 2 * size))  # lets the JPEG decoder skip detail we would throw away
        pixels = torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1)  # (3, H, W) uint8
    _, h, w = pixels.shape
    side = max(int(crop * min(h, w)), 1)
    top, left = (h - side) // 2, (w - side) // 2
    square = pixels[:, top:top + side, left:left + side].float() / 255.0
    return resize_image(square, size) * 2.0 - 1.0


class CelebADataset(Dataset):
    """CelebA aligned faces (Liu et al., 2015): 162,770 / 19,867 / 19,962 images; no labels.

    The 178x218 photos are centre-cropped to 140x140 (the face) and resized to `size`.
    """

    CROP = 140 / 178

    def __init__(self, split: str = "train", size: int = 32, root: str | None = None):
        self.split = check_split(split)
        self.size = check_size(size)
        paths = find_files("celeba", REQUIRED_FILES["celeba"](split), root)
        code = {"train": "0", "val": "1", "test": "2"}[split]
        lines = paths["list_eval_partition.txt"].read_text().split("\n")
        self.folder = paths["img_align_celeba"]
        self.files = [p[0] for p in (line.split() for line in lines) if len(p) == 2 and p[1] == code]

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        return {"image": _load_photo(self.folder / self.files[index], self.size, self.CROP)}


class Flowers102Dataset(Dataset):
    """Oxford 102 Flowers (Nilsback & Zisserman, 2008): 1,020 / 1,020 / 6,149 images, 102 classes.

    Photos are centre-cropped to a square and resized; `label` is 0..101.
    """

    def __init__(self, split: str = "train", size: int = 32, root: str | None = None):
        from scipy.io import loadmat

        self.split = check_split(split)
        self.size = check_size(size)
        paths = find_files("flowers102", REQUIRED_FILES["flowers102"](split), root)
        labels = loadmat(paths["imagelabels.mat"], squeeze_me=True)["labels"]
        ids = np.atleast_1d(loadmat(paths["setid.mat"], squeeze_me=True)[{"train": "trnid", "val": "valid",
                                                                           "test": "tstid"}[split]])
        self.folder = paths["jpg"]
        self.files = [f"image_{int(i):05d}.jpg" for i in ids]
        self.labels = [int(np.atleast_1d(labels)[int(i) - 1]) - 1 for i in ids]  # ids and labels are 1-based
        from torchvision.datasets import Flowers102

        self.class_names = list(Flowers102.classes)
        self.num_classes = len(self.class_names)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        return {"image": _load_photo(self.folder / self.files[index], self.size, 1.0), "label": self.labels[index]}


# ---- download --------------------------------------------------------------------------

def download(name: str, root: str | Path | None = None, timeout: float = 30.0) -> Path:
    """Download `name` with torchvision (download=True) into `<root or data root>/NAME`; return that folder.

    Network problems (no internet, time-outs, refused or failed requests) become a
    DatasetNotFoundError that says what to do instead; no request waits more than
    `timeout` seconds.
    """
    from torchvision import datasets as tv

    calls = {
        "mnist": lambda folder: [tv.MNIST(folder, train=t, download=True) for t in (True, False)],
        "fashion_mnist": lambda folder: [tv.FashionMNIST(folder, train=t, download=True) for t in (True, False)],
        "cifar10": lambda folder: tv.CIFAR10(folder, train=True, download=True),
        "celeba": lambda folder: tv.CelebA(folder, split="all", target_type=[], download=True),
        "flowers102": lambda folder: tv.Flowers102(folder, split="train", download=True),
    }
    if name not in calls:
        raise ValueError(f"{name!r} cannot be downloaded; downloadable datasets are {', '.join(calls)}")
    folder = dataset_folder(name, root)
    folder.mkdir(parents=True, exist_ok=True)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        calls[name](str(folder))
    except Exception as error:  # urllib / http / gdown / torchvision integrity errors alike
        reason = f"{type(error).__name__}: {error}".splitlines()[0][:300]
        raise DatasetNotFoundError(
            f"could not download {name!r} into {folder} ({reason}). Check the internet connection and retry "
            f"`minildm data download {name}`, or copy the files into {folder / LAYOUTS[name][0]} by hand."
        ) from None
    finally:
        socket.setdefaulttimeout(previous)
    return folder
