"""Distribution distances between sets of features: Fréchet distance (FID's formula) and KID.

FID (Heusel et al., 2017) is the Fréchet distance between Gaussians fitted to Inception
features of real and generated images:
    d^2 = ||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r S_g)^{1/2}).
Inception weights need a download, so the course applies the same formula to the
features of a small classifier trained here on real images (the "judge"); the numbers
are comparable across the course's own models, not with the paper's FIDs.
KID (Binkowski et al., 2018) is the unbiased MMD^2 with the polynomial kernel
k(a, b) = (a.b / d + 1)^3.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import linalg


def frechet_distance(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two (N, D) feature sets."""
    a = features_a.detach().double().cpu().numpy()
    b = features_b.detach().double().cpu().numpy()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean, _ = linalg.sqrtm(cov_a @ cov_b, disp=False)
    if not np.isfinite(covmean).all():  # nearly singular product: regularise as the FID reference does
        eps = 1e-6 * np.eye(cov_a.shape[0])
        covmean = linalg.sqrtm((cov_a + eps) @ (cov_b + eps))
    covmean = covmean.real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(covmean))


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
