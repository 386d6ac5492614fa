"""Fidelity and diversity as two numbers: k-nearest-neighbour manifolds of real and generated features.

A single distance (FD, KID) mixes two failures: samples that look wrong (low fidelity) and parts of
the data the model never draws (low diversity). Estimating each distribution's support with balls
around its points separates them:

    precision_recall   Kynkäänniemi et al., "Improved Precision and Recall Metric for Assessing
                       Generative Models" (NeurIPS 2019). The manifold of a set is the union of balls
                       B(x_i, r_k(x_i)), r_k = distance to the k-th nearest other point of the same set
                       (k = 3 in the paper).
                       precision = fraction of generated samples inside the real manifold,
                       recall    = fraction of real samples inside the generated manifold.
    density_coverage   Naeem et al., "Reliable Fidelity and Diversity Metrics for Generative Models"
                       (ICML 2020), robust to outliers: balls around REAL points only (k = 5 in the paper).
                       density  = (1 / kM) sum_j #{real balls containing fake j}   (about 1 when matched;
                                  above 1 when samples crowd where real data is dense),
                       coverage = fraction of real balls that contain at least one fake.

Distances are Euclidean, computed in float64 on the CPU, `chunk` rows at a time (no N x M matrix
is ever held whole), so tens of thousands of points fit in memory.
"""

from __future__ import annotations

import torch


def _as_features(name: str, features: torch.Tensor, k: int) -> torch.Tensor:
    if features.ndim != 2:
        raise ValueError(f"{name} must be a (N, D) feature matrix, got shape {tuple(features.shape)}")
    if features.shape[0] <= k:
        raise ValueError(f"{name} has {features.shape[0]} points; k = {k} nearest neighbours need at least {k + 1}")
    return features.detach().double().cpu()


def knn_distances(queries: torch.Tensor, points: torch.Tensor, k: int, exclude_self: bool = False,
                  chunk: int = 1024) -> torch.Tensor:
    """Distance from each query (N, D) to its k-th nearest point among `points` (M, D) -> (N,).

    exclude_self: queries ARE the points (same order); a point is not its own neighbour.
    """
    queries, points = queries.detach().double().cpu(), points.detach().double().cpu()
    result = []
    for start in range(0, queries.shape[0], chunk):
        distances = torch.cdist(queries[start:start + chunk], points)  # (c, M)
        if exclude_self:
            rows = torch.arange(distances.shape[0])
            distances[rows, rows + start] = float("inf")
        result.append(distances.kthvalue(k, dim=1).values)
    return torch.cat(result)


def ball_counts(queries: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """For each query (N, D): how many balls B(centres_i, radii_i) contain it (distance <= radius) -> (N,) long."""
    queries, centres, radii = queries.detach().double().cpu(), centres.detach().double().cpu(), radii.double().cpu()
    counts = [(torch.cdist(queries[start:start + chunk], centres) <= radii[None, :]).sum(dim=1)  # (c, M) -> (c,)
              for start in range(0, queries.shape[0], chunk)]
    return torch.cat(counts)


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> tuple[float, float]:
    """(precision, recall) of generated features `fake` (M, D) against real features `real` (N, D), k-NN manifolds.

    precision = P_j[fake_j lies in some ball B(real_i, r_k(real_i))];
    recall    = P_i[real_i lies in some ball B(fake_j, r_k(fake_j))] (Kynkäänniemi et al. 2019, Eq. 1-3).
    """
    real, fake = _as_features("real", real, k), _as_features("fake", fake, k)
    real_radii = knn_distances(real, real, k, exclude_self=True)  # (N,)
    fake_radii = knn_distances(fake, fake, k, exclude_self=True)  # (M,)
    precision = (ball_counts(fake, real, real_radii) > 0).double().mean()
    recall = (ball_counts(real, fake, fake_radii) > 0).double().mean()
    return float(precision), float(recall)


def density_coverage(real: torch.Tensor, fake: torch.Tensor, k: int = 5) -> tuple[float, float]:
    """(density, coverage) of generated features `fake` (M, D) against `real` (N, D) (Naeem et al. 2020, Eq. 3-4).

    density  = (1 / (k M)) sum_j sum_i 1[fake_j in B(real_i, r_k(real_i))];
    coverage = (1 / N) sum_i 1[some fake_j in B(real_i, r_k(real_i))].
    """
    real, fake = _as_features("real", real, k), _as_features("fake", fake, k)
    real_radii = knn_distances(real, real, k, exclude_self=True)  # (N,)
    density = ball_counts(fake, real, real_radii).double().sum() / (k * fake.shape[0])
    nearest_fake = knn_distances(real, fake, 1)  # (N,): a real ball holds a fake iff its nearest fake is inside
    coverage = (nearest_fake <= real_radii).double().mean()
    return float(density), float(coverage)
