"""Inference: foreground probability, pathology, an uncertainty score, and masks -> nodules."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from thyrokit.annotate.model.dataset import Examples, as_float
from thyrokit.annotate.model.unet import UNet, enable_dropout


@dataclass(frozen=True)
class Prediction:
    """What the model says about a batch of images, at the model's size."""

    image_ids: list[str]
    probability: np.ndarray   # (N, S, S) float32 foreground probability, mean over MC samples
    malignant: np.ndarray     # (N,) probability that the image holds a malignant nodule
    uncertainty: np.ndarray   # (N,) see image_uncertainty


def binary_entropy(probability: np.ndarray) -> np.ndarray:
    """Entropy in bits of Bernoulli variables with the given probabilities."""
    p = np.clip(probability, 1e-7, 1 - 1e-7)
    return -(p * np.log2(p) + (1 - p) * np.log2(1 - p))


def image_uncertainty(probability: np.ndarray, malignant: np.ndarray) -> np.ndarray:
    """Entropy in bits of whether each image holds a nodule, plus that of its pathology (0..2).

    "Holds a nodule" takes the image's highest foreground probability. Per-pixel
    entropy averaged over an image was tried first and ranks badly: the many
    background pixels of a weakly trained model drown the few that matter, and an
    image where the model sees nothing at all comes out as the surest.
    """
    presence = probability.reshape(len(probability), -1).max(axis=1) if len(probability) else np.zeros(0)
    return binary_entropy(presence) + binary_entropy(malignant)


@torch.no_grad()
def predict(model: UNet, examples: Examples, device: torch.device, mc_samples: int = 8,
            batch_size: int = 32, seed: int = 0) -> Prediction:
    """Predict every example, averaging `mc_samples` passes with dropout on (1 = a plain pass)."""
    torch.manual_seed(seed)
    model.eval()
    if mc_samples > 1:
        enable_dropout(model)
    samples = max(mc_samples, 1)
    probabilities, malignant = [], []
    for start in range(0, len(examples), batch_size):
        images = as_float(examples.images[start:start + batch_size], device)
        detail = None if examples.detail is None else as_float(examples.detail[start:start + batch_size], device)
        mask_sum = torch.zeros_like(images[:, 0])
        malignant_sum = torch.zeros(images.shape[0], device=device)
        for _ in range(samples):
            mask_logits, malignant_logit = model(images, detail)
            mask_sum += torch.sigmoid(mask_logits[:, 0])
            malignant_sum += torch.sigmoid(malignant_logit)
        probabilities.append((mask_sum / samples).cpu().numpy())
        malignant.append((malignant_sum / samples).cpu().numpy())
    model.eval()
    size = examples.images.shape[-1]
    probability = np.concatenate(probabilities) if probabilities else np.zeros((0, size, size), np.float32)
    malignant_array = np.concatenate(malignant) if malignant else np.zeros(0, np.float32)
    uncertainty = image_uncertainty(probability, malignant_array)
    return Prediction(list(examples.image_ids), probability.astype(np.float32),
                      malignant_array.astype(np.float32), uncertainty.astype(np.float64))


def components(mask: np.ndarray, min_area: int = 1) -> list[tuple[np.ndarray, tuple[int, int, int, int]]]:
    """Return each 8-connected component of `mask` with at least `min_area` pixels, and its box.

    Components come in reading order of their boxes (top, then left); boxes are
    ``(x0, y0, x1, y1)``, end exclusive.
    """
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    found = []
    for label in range(1, count):
        x, y, w, h, area = (int(v) for v in stats[label])
        if area >= min_area:
            found.append((labels == label, (x, y, x + w, y + h)))
    return sorted(found, key=lambda item: (item[1][1], item[1][0]))


def rank_by_uncertainty(image_ids: list[str], uncertainty: np.ndarray,
                        groups: list[str] | None = None) -> list[int]:
    """Return each image's annotation rank: 0 = most uncertain; ties go by image_id.

    With ``groups`` (each image's patient), every patient's most uncertain image ranks
    before any patient's second one, and so on: near-identical frames of one cine clip
    would otherwise fill the top of the queue and spend the annotators' time on one case.
    """
    groups = groups if groups is not None else list(image_ids)
    order = sorted(range(len(image_ids)), key=lambda i: (-float(uncertainty[i]), image_ids[i]))
    seen: dict[str, int] = {}
    tier = [0] * len(image_ids)
    for index in order:
        tier[index] = seen.get(groups[index], 0)
        seen[groups[index]] = tier[index] + 1
    order.sort(key=lambda i: tier[i])  # stable: uncertainty order within a tier
    ranks = [0] * len(image_ids)
    for rank, index in enumerate(order):
        ranks[index] = rank
    return ranks
