"""Evaluation: reconstruction metrics, distribution distances, diversity, cost, and the judge classifier."""

from minildm.autoencoder.quantize import codebook_perplexity, codebook_usage
from minildm.metrics.autoencoder import compression_ratio, evaluate_autoencoder, reconstruct
from minildm.metrics.distance import frechet_distance, kernel_inception_distance, sliced_wasserstein
from minildm.metrics.diversity import class_diversity, nearest_distance
from minildm.metrics.image import psnr, ssim
from minildm.metrics.judge import JudgeClassifier, judge_accuracy, judge_features, sample_and_judge
from minildm.metrics.speed import (images_per_second, sampling_seconds_per_image, train_images_per_second,
                                   unet_flops)

__all__ = [
    "JudgeClassifier",
    "class_diversity",
    "codebook_perplexity",
    "codebook_usage",
    "compression_ratio",
    "evaluate_autoencoder",
    "frechet_distance",
    "images_per_second",
    "judge_accuracy",
    "judge_features",
    "kernel_inception_distance",
    "nearest_distance",
    "psnr",
    "reconstruct",
    "sample_and_judge",
    "sampling_seconds_per_image",
    "sliced_wasserstein",
    "ssim",
    "train_images_per_second",
    "unet_flops",
]
