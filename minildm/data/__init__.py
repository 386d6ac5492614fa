"""minildm.data: every dataset of the course behind one call, `get_dataset(name, split, size, **options)`.

Built in (offline): `shapes` (procedural, with captions/boxes/segmentation), `digits`
(scikit-learn), `photos` and `faces` (scikit-image). Downloaded once with
`minildm data download NAME`: `mnist`, `fashion_mnist`, `cifar10`, `celeba`, `flowers102`.
Items are dicts whose "image" is a (C, H, W) float tensor in [-1, 1].
"""

from minildm.data.batches import balanced_labels, load_images, stack_items
from minildm.data.files import DatasetNotFoundError, data_root
from minildm.data.masks import box_masks, object_part_masks, random_masks, stroke_masks
from minildm.data.registry import available_datasets, dataset_info, dataset_options, get_dataset
from minildm.data.shapes import ShapesDataset, shape_class_names
from minildm.data.torchvision_data import download
from minildm.data.transforms import image_grid, images_to_png, png_to_images, resize_image, to_image

__all__ = [
    "DatasetNotFoundError",
    "ShapesDataset",
    "available_datasets",
    "balanced_labels",
    "box_masks",
    "data_root",
    "dataset_info",
    "dataset_options",
    "download",
    "get_dataset",
    "image_grid",
    "images_to_png",
    "load_images",
    "object_part_masks",
    "png_to_images",
    "random_masks",
    "resize_image",
    "shape_class_names",
    "stack_items",
    "stroke_masks",
    "to_image",
]
