"""Distribution distances between sets of features: Fréchet distance (FID's formula) and KID.

FID (Heusel et al., 2017) is the Fréchet distance between Gaussians fitted to Inception
features of real and generated images:
    d^2 = ||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r S_g)^{1/2}).
Inception weights need a download, so the course applies the same formula to the
features of a small classifier trained here on real images (the "judge"); the numbers
are comparable across the course's own models, not with the paper's FIDs.
KID (Binkowski et al., 2018) is the unbiased MMD^2 with the polynomial kernel
k(a, b) = (a.b / d + 1)^3. The sliced Wasserstein distance compares two point clouds
through many 1-D projections, with no Gaussian assumption (2-D toy samplers, notebook 08).
"""

from __future__ import annotations

import numpy as np
import torch


def trace_sqrt_product(cov_a: np.ndarray, cov_b: np.ndarray) -> float:
    """Tr((A B)^{1/2}) for two symmetric PSD matrices, by symmetric eigendecompositions alone.

    A B is not symmetric, but it is similar to A^{1/2} B A^{1/2}, which is symmetric PSD:
    the two share their eigenvalues, so Tr((A B)^{1/2}) = sum_i sqrt(lambda_i(A^{1/2} B A^{1/2})).
    Round-off can make tiny eigenvalues negative; they are clipped to 0. No scipy.linalg.sqrtm
    (whose signature changed across SciPy releases) and no complex numbers.
    """
    values, vectors = np.linalg.eigh(cov_a)
    sqrt_a = (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T  # A^{1/2}
    middle = sqrt_a @ cov_b @ sqrt_a
    eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2)
    return float(np.sqrt(np.clip(eigenvalues, 0.0, None)).sum())


def frechet_distance(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two (N, D) feature sets (float64 throughout)."""
    a = features_a.detach().double().cpu().numpy()
    b = features_b.detach().double().cpu().numpy()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    distance = ((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_sqrt_product(cov_a, cov_b)
    return float(max(distance, 0.0))


def kernel_inception_distance(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """Unbiased MMD^2 with the cubic polynomial kernel (KID's formula) between (N, D) and (M, D) features."""
    a, b = features_a.detach().double(), features_b.detach().double()
    d = a.shape[1]
    kernel = lambda x, y: (x @ y.T / d + 1) ** 3  # noqa: E731
    k_aa, k_bb, k_ab = kernel(a, a), kernel(b, b), kernel(a, b)
    n, m = a.shape[0], b.shape[0]
    term_aa = (k_aa.sum() - k_aa.diagonal().sum()) / (n * (n - 1))
    term_bb = (k_bb.sum() - k_bb.diagonal().sum()) / (m * (m - 1))
    return float(term_aa + term_bb - 2 * k_ab.mean())


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, num_projections: int = 256,
                       generator: torch.Generator | None = None) -> float:
    """Sliced Wasserstein-2 distance between two equal-size point clouds a, b: (N, D) (on the CPU, float64).

    SW_2^2 = E_u [W_2^2 of the 1-D projections <a, u> and <b, u>], u uniform on the sphere;
    in 1-D, W_2 matches sorted values. 0 for identical clouds; grows with any difference.
    """
    if a.ndim != 2 or b.shape != a.shape:
        raise ValueError(f"sliced_wasserstein needs two (N, D) tensors of equal shape, got {tuple(a.shape)}, {tuple(b.shape)}")
    directions = torch.randn(a.shape[1], num_projections, generator=generator, dtype=torch.float64)
    directions = directions / directions.norm(dim=0, keepdim=True)  # (D, P) unit vectors
    pa = (a.detach().double().cpu() @ directions).sort(dim=0).values  # (N, P)
    pb = (b.detach().double().cpu() @ directions).sort(dim=0).values
    return float((pa - pb).pow(2).mean().sqrt())
