"""Evaluation: reconstruction metrics, distribution distances, and the judge classifier."""

from minildm.metrics.distance import frechet_distance, kernel_inception_distance
from minildm.metrics.image import psnr, ssim
from minildm.metrics.judge import JudgeClassifier, judge_accuracy

__all__ = ["psnr", "ssim", "frechet_distance", "kernel_inception_distance", "JudgeClassifier", "judge_accuracy"]
