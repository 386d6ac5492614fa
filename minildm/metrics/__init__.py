"""Evaluation: reconstruction metrics, distribution distances, fidelity/diversity, cost, and the judge classifier.

`evaluate_samples(real, fake, features=..., metrics=...)` (evaluate.py) is the one entry point for sample
quality; every number it returns comes with the name of the feature extractor (features.py) behind it.
"""

from minildm.autoencoder.quantize import codebook_perplexity, codebook_usage
from minildm.metrics.autoencoder import compression_ratio, evaluate_autoencoder, reconstruct
from minildm.metrics.distance import (frechet_distance, frechet_distance_infinity, gaussian_frechet_distance,
                                     kernel_inception_distance, kid_subsets, sliced_wasserstein, unbiased_mmd2)
from minildm.metrics.diversity import class_diversity, memorization, nearest_distance
from minildm.metrics.evaluate import METRICS, evaluate_samples, reconstruction_fd, sample_like
from minildm.metrics.features import FeatureExtractor, feature_extractor
from minildm.metrics.inception_score import inception_score
from minildm.metrics.image import psnr, ssim
from minildm.metrics.judge import JudgeClassifier, judge_accuracy, judge_features, sample_and_judge
from minildm.metrics.manifold import density_coverage, precision_recall
from minildm.metrics.speed import (images_per_second, sampling_seconds_per_image, train_images_per_second,
                                   unet_flops)

__all__ = [
    "FeatureExtractor",
    "JudgeClassifier",
    "METRICS",
    "class_diversity",
    "codebook_perplexity",
    "codebook_usage",
    "compression_ratio",
    "density_coverage",
    "evaluate_autoencoder",
    "evaluate_samples",
    "feature_extractor",
    "frechet_distance",
    "frechet_distance_infinity",
    "gaussian_frechet_distance",
    "images_per_second",
    "inception_score",
    "judge_accuracy",
    "judge_features",
    "kernel_inception_distance",
    "kid_subsets",
    "memorization",
    "nearest_distance",
    "precision_recall",
    "psnr",
    "reconstruct",
    "reconstruction_fd",
    "sample_and_judge",
    "sample_like",
    "sampling_seconds_per_image",
    "sliced_wasserstein",
    "ssim",
    "train_images_per_second",
    "unbiased_mmd2",
    "unet_flops",
]
