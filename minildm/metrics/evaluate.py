"""One entry point for sample quality: `evaluate_samples(real, fake, features=..., metrics=...)`.

    evaluate_samples       images in, a dict of numbers out, always with the feature extractor's name
    reconstruction_fd      rFID of an autoencoder (LDM Tab. 8): FD between images and their reconstructions
    sample_like            one sample per real item, conditioned as that item is (the eval set of `minildm eval`)

Metric names (`METRICS`), each computed on the extractor's features:

    fd             Fréchet distance (FID's formula; "FID" only with Inception features)   distance.py
    kid            KID: unbiased polynomial-kernel MMD^2 over subsets, with kid_std            distance.py
    is             Inception Score from the extractor's class probabilities, with is_std      inception_score.py
    pr             precision / recall, k-NN manifolds with k = 3                            manifold.py
    dc             density / coverage, k = 5                                                manifold.py
    memorization   nearest-training-neighbour statistics (needs the training images)         diversity.py
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from minildm.metrics.distance import frechet_distance, kid_subsets
from minildm.metrics.diversity import memorization
from minildm.metrics.features import FeatureExtractor, feature_extractor
from minildm.metrics.inception_score import inception_score
from minildm.metrics.manifold import density_coverage, precision_recall

METRICS = ("fd", "kid", "is", "pr", "dc", "memorization")


def check_metrics(metrics: str | Sequence[str]) -> tuple[str, ...]:
    """"fd,kid" or ["fd", "kid"] -> ("fd", "kid"); unknown names raise ValueError listing METRICS."""
    names = tuple(m.strip() for m in (metrics.split(",") if isinstance(metrics, str) else metrics) if m.strip())
    unknown = [m for m in names if m not in METRICS]
    if unknown or not names:
        raise ValueError(f"unknown metrics {unknown or names}; accepted: {', '.join(METRICS)} (comma-separated)")
    return names


@torch.no_grad()
def evaluate_samples(real: torch.Tensor, fake: torch.Tensor, features: str | FeatureExtractor = "judge-shapes",
                     metrics: str | Sequence[str] = ("fd", "kid", "is", "pr", "dc"), train: torch.Tensor | None = None,
                     k: int = 3, dc_k: int = 5, kid_subsets_n: int = 100, kid_subset_size: int | None = None,
                     is_splits: int = 10, memorization_quantile: float = 0.05, seed: int = 0,
                     device: str | torch.device = "cpu", progress: bool = False) -> dict[str, Any]:
    """Compare generated images `fake` (M, C, H, W) with real held-out images `real` (N, C, H, W), both in [-1, 1].

    features: the extractor (see minildm.metrics.features), by name or as a FeatureExtractor.
    metrics: names from METRICS; "memorization" also needs `train`, the images the model learned from.
    Returns {"features": the extractor's name, "feature_dim", "n_real", "n_fake", and per metric: fd; kid,
    kid_std, kid_subset_size; is, is_std; precision, recall (k); density, coverage (dc_k); memorized_fraction,
    memorization_expected, memorization_threshold} (plain floats). The KID subsets are drawn from `seed`;
    their size defaults to min(1000, N // 2, M // 2) (1,000 as Binkowski et al., but never a whole set,
    whose 100 "subsets" would all be the same and kid_std 0).
    """
    names = check_metrics(metrics)
    if "memorization" in names and train is None:
        raise ValueError("the memorization metric needs the training images: pass train=(T, C, H, W)")
    extractor = feature_extractor(features, device=device)
    real_emb, fake_emb = extractor(real, progress=progress), extractor(fake, progress=progress)
    result: dict[str, Any] = {"features": extractor.name, "feature_dim": int(real_emb.features.shape[1]),
                              "n_real": int(real.shape[0]), "n_fake": int(fake.shape[0])}
    if "fd" in names:
        result["fd"] = frechet_distance(real_emb.features, fake_emb.features)
    if "kid" in names:
        size = kid_subset_size or min(1000, real.shape[0] // 2, fake.shape[0] // 2)
        values = kid_subsets(real_emb.features, fake_emb.features, kid_subsets_n, size,
                             generator=torch.Generator().manual_seed(seed))
        result.update(kid=float(values.mean()), kid_std=float(values.std()) if len(values) > 1 else 0.0,
                      kid_subset_size=size)
    if "is" in names:
        if fake_emb.probabilities is None:
            raise ValueError(f"the Inception Score needs class probabilities; {extractor.name!r} gives none "
                             "(use a judge or inception-v3)")
        result["is"], result["is_std"] = inception_score(fake_emb.probabilities, splits=min(is_splits, fake.shape[0]))
    if "pr" in names:
        result["precision"], result["recall"] = precision_recall(real_emb.features, fake_emb.features, k=k)
        result["k"] = k
    if "dc" in names:
        result["density"], result["coverage"] = density_coverage(real_emb.features, fake_emb.features, k=dc_k)
        result["dc_k"] = dc_k
    if "memorization" in names:
        train_features = extractor(train, progress=progress).features
        stats = memorization(fake_emb.features, real_emb.features, train_features, quantile=memorization_quantile)
        result.update(memorized_fraction=stats["memorized_fraction"], memorization_expected=stats["expected_fraction"],
                      memorization_threshold=stats["threshold"], n_train=int(train.shape[0]))
    return result


@torch.no_grad()
def reconstruction_fd(autoencoder: nn.Module, images: torch.Tensor, features: str | FeatureExtractor = "judge-shapes",
                      batch_size: int = 256, device: str | torch.device = "cpu") -> dict[str, Any]:
    """rFID (LDM Tab. 8): the Fréchet distance between features of `images` and of their reconstructions.

    Reconstructions go through the latent stage 2 diffuses (`minildm.metrics.reconstruct`). Returns
    {"rfd": ..., "features": the extractor's name, "n": number of images}.
    """
    from minildm.metrics.autoencoder import reconstruct

    extractor = feature_extractor(features, device=device)
    recon = torch.cat([reconstruct(autoencoder, chunk)[0].cpu() for chunk in images.split(batch_size)])
    return {"rfd": frechet_distance(extractor(images).features, extractor(recon).features),
            "features": extractor.name, "n": int(images.shape[0])}


def condition_keys(model: nn.Module) -> tuple[str, ...]:
    """The dataset item keys a model's conditioner reads (its `keys`, e.g. ("label",)); () if unconditional."""
    conditioner = getattr(model, "conditioner", None)
    if conditioner is None:
        return ()
    keys = getattr(conditioner, "keys", None) or (getattr(conditioner, "batch_key", None),)
    if None in keys:
        raise ValueError(f"the conditioner {type(conditioner).__name__} names no dataset item keys (`keys`)")
    return tuple(keys)


def _take(value: Any, index: torch.Tensor) -> Any:
    """Items `index` of a tensor (N, ...) or of a list of N values (e.g. captions)."""
    return value[index] if isinstance(value, torch.Tensor) else [value[i] for i in index.tolist()]


@torch.no_grad()
def sample_like(model: nn.Module, items: Mapping[str, Any], n: int, batch_size: int = 250,
                generator: torch.Generator | None = None, progress: bool = True, **sample_options: Any) -> torch.Tensor:
    """`n` samples of `model`, sample i conditioned as real item i (cycling when n > items): (n, C, H, W) on the CPU.

    items: real items, key -> a tensor (N, ...) or a list of N values (e.g. captions), as
    `minildm.data.stack_items` gives them. The conditioning keys come from the model's conditioner
    (`condition_keys`: "label" for class models; "caption", "boxes", ... for the others), so the
    generated set has the conditions of real data (its class balance, its kinds of captions).
    Take the items from another split than the real images the samples are compared with: samples
    that share their exact labels with the reference set are not independent of it, and the
    unbiased estimates (KID) then come out below 0.
    Conditions go to `model.sample(cond={...})` when the model takes that, else (class models)
    `labels=`. Batches draw their noise in turn from `generator`, so the samples do not depend on the
    batch size. sample_options: sampler, steps, guidance_scale, ...
    """
    import inspect

    from tqdm.auto import tqdm

    keys = condition_keys(model)
    num_items = len(next(iter(items.values()))) if items else 0
    if keys and num_items == 0:
        raise ValueError(f"the model is conditioned on {list(keys)}; give real items to take the conditions from")
    missing = [key for key in keys if key not in items]
    if missing:
        raise ValueError(f"the model is conditioned on {list(keys)}, but the real items have no {missing}; "
                         f"they have {sorted(items)}")
    takes_cond = "cond" in inspect.signature(model.sample).parameters
    if keys and not takes_cond and keys != ("label",):
        raise ValueError(f"this LatentDiffusion.sample has no cond= argument for the conditioning keys {list(keys)}")
    images = []
    with tqdm(total=n, desc="sampling", unit="img", disable=not progress) as bar:
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            index = torch.arange(start, stop) % max(num_items, 1)
            cond = {key: _take(items[key], index) for key in keys}
            if not keys:
                batch = model.sample(n=stop - start, generator=generator, progress=False, **sample_options)
            elif takes_cond:
                batch = model.sample(cond=cond, generator=generator, progress=False, **sample_options)
            else:
                batch = model.sample(labels=cond["label"], generator=generator, progress=False, **sample_options)
            images.append(batch.cpu())
            bar.update(stop - start)
    return torch.cat(images)

