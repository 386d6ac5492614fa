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
from minildm.metrics.image_to_image import (background_hole_masks, colour_match_fraction, half_object_masks,
                                             inpainting_masks_for_bars, inpainting_scores, nearest_palette,
                                             object_colour_spread, object_completed, region_psnr, shapes_palette,
                                             sr_scores)
from minildm.metrics.judge import JudgeClassifier, judge_accuracy, judge_features, sample_and_judge
from minildm.metrics.manifold import density_coverage, precision_recall
from minildm.metrics.speed import (images_per_second, sampling_seconds_per_image, train_images_per_second,
                                   unet_flops)

__all__ = [
    "FeatureExtractor",
    "JudgeClassifier",
    "METRICS",
    "background_hole_masks",
    "class_diversity",
    "codebook_perplexity",
    "codebook_usage",
    "colour_match_fraction",
    "compression_ratio",
    "density_coverage",
    "evaluate_autoencoder",
    "evaluate_samples",
    "feature_extractor",
    "frechet_distance",
    "frechet_distance_infinity",
    "gaussian_frechet_distance",
    "half_object_masks",
    "images_per_second",
    "inception_score",
    "inpainting_masks_for_bars",
    "inpainting_scores",
    "judge_accuracy",
    "judge_features",
    "kernel_inception_distance",
    "kid_subsets",
    "memorization",
    "nearest_distance",
    "nearest_palette",
    "object_colour_spread",
    "object_completed",
    "precision_recall",
    "psnr",
    "reconstruct",
    "reconstruction_fd",
    "region_psnr",
    "sample_and_judge",
    "sample_like",
    "sampling_seconds_per_image",
    "shapes_palette",
    "sliced_wasserstein",
    "sr_scores",
    "ssim",
    "train_images_per_second",
    "unbiased_mmd2",
    "unet_flops",
]
