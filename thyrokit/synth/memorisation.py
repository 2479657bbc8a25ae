"""Memorisation: how close each generated patch is to its nearest training patch.

Closeness is measured two ways: SSIM on pixels (scikit-image) and cosine similarity
of encoder features. Comparing every sample with every training patch by SSIM costs
N x M full SSIMs, so SSIM is computed exactly against a shortlist: the `candidates`
nearest training patches by pixel distance and by feature cosine. A near-copy is
nearest by pixel distance too, so the shortlist always contains it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage.metrics import structural_similarity


@dataclass(frozen=True)
class Nearest:
    """Per generated sample: the highest SSIM and feature cosine to any training patch, and which."""

    ssim: np.ndarray
    ssim_index: np.ndarray
    cosine: np.ndarray
    cosine_index: np.ndarray


def cosine_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Return the (N, M) cosine similarities between the rows of `a` and `b`."""
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return a @ b.T


def pixel_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Return the (N, M) squared Euclidean distances between uint8 images."""
    x = a.reshape(len(a), -1).astype(np.float64)
    y = b.reshape(len(b), -1).astype(np.float64)
    return (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2 * x @ y.T


def standardise(features: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Centre and scale features by the mean and spread of `reference`, dimension by dimension."""
    return (features - reference.mean(axis=0)) / (reference.std(axis=0) + 1e-8)


def nearest_training(samples: np.ndarray, sample_features: np.ndarray, train: np.ndarray,
                     train_features: np.ndarray, candidates: int = 16) -> Nearest:
    """Find each generated patch's nearest training patch by SSIM and by feature cosine.

    Features are standardised by the training set first: raw pooled ReLU features all
    point the same way (any two patches have cosine ~0.9999), which would hide copies.
    """
    cosines = cosine_matrix(standardise(sample_features, train_features), standardise(train_features, train_features))
    distances = pixel_distances(samples, train)
    k = min(candidates, len(train))
    by_pixels = np.argsort(distances, axis=1, kind="stable")[:, :k]
    by_features = np.argsort(-cosines, axis=1, kind="stable")[:, :k]
    best_ssim = np.zeros(len(samples))
    best_index = np.zeros(len(samples), dtype=np.int64)
    for row, sample in enumerate(samples):
        shortlist = np.unique(np.concatenate([by_pixels[row], by_features[row]]))
        scores = [structural_similarity(sample, train[j], data_range=255) for j in shortlist]
        best = int(np.argmax(scores))
        best_ssim[row], best_index[row] = scores[best], shortlist[best]
    cosine_index = cosines.argmax(axis=1) if len(train) else np.zeros(len(samples), np.int64)
    return Nearest(
        ssim=best_ssim,
        ssim_index=best_index,
        cosine=cosines[np.arange(len(samples)), cosine_index] if len(train) else np.zeros(len(samples)),
        cosine_index=cosine_index,
    )


def memorised(nearest: Nearest, ssim_threshold: float, cosine_threshold: float | None = None) -> np.ndarray:
    """Return which samples are too close to a training patch to be released (cosine: only if a threshold is set)."""
    too_close = nearest.ssim >= ssim_threshold
    if cosine_threshold is not None:
        too_close |= nearest.cosine >= cosine_threshold
    return too_close
