"""Fidelity and diversity of generated samples, measured on encoder features.

KID (Binkowski et al., 2018): unbiased MMD^2 with the cubic polynomial kernel,
averaged over random subsets; FID: Frechet distance of Gaussians fitted to the
features; precision/recall (Kynkaanniemi et al., 2019): the fraction of generated
samples inside the real k-NN manifold, and of real samples inside the generated one.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg


def kid(real: np.ndarray, fake: np.ndarray, subset_size: int = 100, subsets: int = 50, seed: int = 0) -> float:
    """Return the kernel inception distance between two (N, D) feature sets."""
    rng = np.random.default_rng(seed)
    size = min(subset_size, len(real), len(fake))
    if size < 2:
        raise ValueError(f"KID needs at least 2 samples per set, got {len(real)} real and {len(fake)} generated")
    dim = real.shape[1]
    values = []
    for _ in range(subsets):
        x = real[rng.choice(len(real), size, replace=False)]
        y = fake[rng.choice(len(fake), size, replace=False)]
        kxx, kyy, kxy = ((a @ b.T / dim + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))
        off_diagonal = size * (size - 1)
        values.append((kxx.sum() - np.trace(kxx)) / off_diagonal + (kyy.sum() - np.trace(kyy)) / off_diagonal
                      - 2 * kxy.mean())
    return float(np.mean(values))


def fid(real: np.ndarray, fake: np.ndarray) -> float:
    """Return the Frechet distance between Gaussians fitted to two (N, D) feature sets."""
    mu_real, mu_fake = real.mean(axis=0), fake.mean(axis=0)
    cov_real, cov_fake = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    # A small ridge keeps the product invertible when some feature dimensions are constant (dead ReLUs).
    ridge = np.eye(len(cov_real)) * 1e-6
    root = linalg.sqrtm((cov_real + ridge) @ (cov_fake + ridge))
    return float(((mu_real - mu_fake) ** 2).sum() + np.trace(cov_real + cov_fake - 2 * root.real))


def _pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.maximum(squared, 0))


def _coverage(manifold: np.ndarray, queries: np.ndarray, k: int) -> float:
    """Fraction of `queries` inside some manifold point's k-NN ball."""
    within = _pairwise_distances(manifold, manifold)
    radii = np.sort(within, axis=1)[:, k]  # column 0 is the point itself
    return float((_pairwise_distances(queries, manifold) <= radii[None, :]).any(axis=1).mean())


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Return (precision, recall) of generated features against real ones, with k-NN manifolds."""
    if min(len(real), len(fake)) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} samples per set")
    return _coverage(real, fake, k), _coverage(fake, real, k)
