"""Tiny synthetic ultrasound-like images for tests and benchmarks: blobs on speckle.

Benign nodules are bright round blobs, malignant ones dark and irregular, so both
heads have something to learn. `contrast` sets how far a blob stands out of the
speckle: low contrast makes an ambiguous image.
"""

from __future__ import annotations

import numpy as np


def blob_image(size: int, rng: np.random.Generator, contrast: float = 0.35,
               malignant: bool | None = None, nodule: bool = True) -> tuple[np.ndarray, np.ndarray, bool]:
    """Return a uint8 speckle image, its 0/255 nodule mask and whether the nodule is malignant."""
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32)
    background = 0.45 + 0.1 * np.sin(rows / size * np.pi)
    mask = np.zeros((size, size), bool)
    malignant = bool(rng.random() < 0.5) if malignant is None else malignant
    if nodule:
        radius = rng.uniform(0.12, 0.22) * size
        centre = rng.uniform(radius + 1, size - radius - 1, 2)
        angle = np.arctan2(rows - centre[0], cols - centre[1])
        wobble = 1 + (0.25 * np.sin(5 * angle + rng.uniform(0, 6.3)) if malignant else 0.0)
        mask = np.hypot(rows - centre[0], cols - centre[1]) < radius * wobble
        background = np.where(mask, background + (-contrast if malignant else contrast), background)
    speckle = rng.gamma(4.0, 0.25, (size, size))  # multiplicative, mean 1, like ultrasound speckle
    image = np.clip(background * speckle, 0, 1)
    return (image * 255).astype(np.uint8), mask.astype(np.uint8) * 255, malignant


def blob_set(count: int, size: int, seed: int, contrast: float = 0.35,
             empty_fraction: float = 0.1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return `count` blob images (N, S, S), masks (N, S, S) and malignancy (N,) (NaN: no nodule)."""
    rng = np.random.default_rng(seed)
    images, masks, malignant = [], [], []
    for _ in range(count):
        nodule = rng.random() >= empty_fraction
        image, mask, is_malignant = blob_image(size, rng, contrast, nodule=nodule)
        images.append(image)
        masks.append(mask)
        malignant.append(float(is_malignant) if nodule else np.nan)
    return np.stack(images), np.stack(masks), np.array(malignant)
