"""The Inception Score (Salimans et al., "Improved Techniques for Training GANs", NeurIPS 2016).

    IS = exp( E_x KL( p(y | x) || p(y) ) ),   p(y) = E_x p(y | x)

computed from a classifier's class probabilities p(y | x) of generated images. It is high when each
sample is confidently one class (sharp p(y | x)) AND the classes are used evenly (flat p(y)):
between 1 (every sample gets the same, or a uniform, prediction) and K, the number of classes
(confident and balanced). It never looks at real images, so a model that draws one perfect image
per class scores K. The original uses Inception-v3's 1,000 ImageNet classes and 10 splits of the
samples (mean and standard deviation over the splits); the course uses its judge's classes.
"""

from __future__ import annotations

import torch


def inception_score(probabilities: torch.Tensor, splits: int = 10) -> tuple[float, float]:
    """(mean, std) over `splits` equal splits of IS = exp(mean_x KL(p(y|x) || p(y))).

    probabilities: (N, K) class probabilities of N generated images, rows summing to 1.
    """
    if probabilities.ndim != 2 or probabilities.shape[0] < splits or splits < 1:
        raise ValueError(f"probabilities must be (N, K) with N >= splits >= 1, got shape {tuple(probabilities.shape)} "
                         f"and splits={splits}")
    p = probabilities.detach().double().cpu()
    if (p < 0).any() or not torch.allclose(p.sum(1), torch.ones(p.shape[0], dtype=p.dtype), atol=1e-4):
        raise ValueError("probabilities must be non-negative with rows summing to 1 (softmax the logits first)")
    scores = []
    for part in p.chunk(splits):
        marginal = part.mean(0, keepdim=True)  # p(y) over this split, (1, K)
        kl = torch.xlogy(part, part).sum(1) - (part * marginal.clamp_min(1e-300).log()).sum(1)  # (n,)
        scores.append(kl.mean().exp())
    scores = torch.stack(scores)
    return float(scores.mean()), float(scores.std()) if splits > 1 else 0.0
