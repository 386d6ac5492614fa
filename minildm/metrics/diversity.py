"""How varied and how new are samples? Checks that distribution distances can miss.

    class_diversity    mean pairwise distance of features within each class (0 = each class collapsed
                       to one output, e.g. at a high classifier-free guidance scale; notebook 09)
    nearest_distance   distance of each sample to its nearest training point (0 = a copy: the model
                       memorised its data; notebooks 05 and 08)
    memorization       the fraction of samples closer to a training point than (nearly) all fresh real
                       images are: a model that replays its training set is caught (notebook 15)

All compute on the CPU in float64, wherever the inputs are.
"""

from __future__ import annotations

import math

import torch


def class_diversity(features: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean pairwise Euclidean distance between the features (N, D) of samples of the same class.

    For each class with at least two samples: the mean of ||f_i - f_j|| over pairs i != j;
    the result is the average over those classes. 0 means every class collapsed to one point.
    """
    if features.ndim != 2 or labels.shape != (features.shape[0],):
        raise ValueError(f"class_diversity expects features (N, D) and labels (N,), got {tuple(features.shape)} "
                         f"and {tuple(labels.shape)}")
    features, labels = features.detach().double().cpu(), labels.cpu()
    per_class = []
    for c in labels.unique():
        group = features[labels == c]  # (n_c, D)
        n = group.shape[0]
        if n < 2:
            continue
        distances = torch.cdist(group, group)  # (n_c, n_c), zero diagonal
        per_class.append(distances.sum() / (n * (n - 1)))
    if not per_class:
        raise ValueError("class_diversity needs at least one class with two or more samples")
    return float(torch.stack(per_class).mean())


def nearest_distance(samples: torch.Tensor, data: torch.Tensor) -> torch.Tensor:
    """RMS distance (per coordinate) from each sample (B, ...) to its nearest data point (N, ...) -> (B,)."""
    s = samples.detach().reshape(samples.shape[0], -1).double().cpu()  # (B, D)
    d = data.detach().reshape(data.shape[0], -1).double().cpu()  # (N, D)
    if s.shape[1] != d.shape[1]:
        raise ValueError(f"samples have {s.shape[1]} coordinates, data points {d.shape[1]}")
    return torch.cdist(s, d).min(dim=1).values / math.sqrt(s.shape[1])


def memorization(fake: torch.Tensor, real: torch.Tensor, train: torch.Tensor,
                 quantile: float = 0.05) -> dict[str, float]:
    """How many samples sit closer to a training point than fresh real data does: nearest-training-neighbour statistics.

    fake (M, D), real (N, D, held out: never trained on) and train (T, D) are features (or flattened
    images). d(x) = Euclidean distance from x to its nearest training point. The threshold is the
    `quantile` of d over the REAL held-out points: `quantile` of genuinely new images come that close
    to the training set by chance. Returns
        memorized_fraction   fraction of samples with d < threshold (about `quantile` for a model that
                             generalises, 1.0 for one that replays its training set),
        expected_fraction    `quantile`, what a model drawing fresh images of the data would score,
        fake_median_distance / real_median_distance   the medians of d, and `threshold`.
    """
    from minildm.metrics.manifold import knn_distances

    if not 0 < quantile < 1:
        raise ValueError(f"quantile must lie in (0, 1), got {quantile}")
    if not (fake.ndim == real.ndim == train.ndim == 2) or not fake.shape[1] == real.shape[1] == train.shape[1]:
        raise ValueError(f"fake, real and train must be (N, D) features of one dimension D, got shapes "
                         f"{tuple(fake.shape)}, {tuple(real.shape)} and {tuple(train.shape)}")
    fake_distance = knn_distances(fake, train, 1)  # (M,)
    real_distance = knn_distances(real, train, 1)  # (N,)
    threshold = torch.quantile(real_distance, quantile)
    return {"memorized_fraction": float((fake_distance < threshold).double().mean()), "expected_fraction": quantile,
            "threshold": float(threshold), "fake_median_distance": float(fake_distance.median()),
            "real_median_distance": float(real_distance.median())}
