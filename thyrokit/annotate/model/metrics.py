"""Segmentation, detection and classification metrics of the pre-label model."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

Box = tuple[int, int, int, int]


def dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Dice overlap of two boolean masks; 1.0 when both are empty."""
    prediction, truth = prediction.astype(bool), truth.astype(bool)
    total = prediction.sum() + truth.sum()
    return 1.0 if total == 0 else float(2 * np.logical_and(prediction, truth).sum() / total)


def iou(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union of two boolean masks; 1.0 when both are empty."""
    prediction, truth = prediction.astype(bool), truth.astype(bool)
    union = np.logical_or(prediction, truth).sum()
    return 1.0 if union == 0 else float(np.logical_and(prediction, truth).sum() / union)


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area


def average_precision(detections: list[list[tuple[Box, float]]], truths: list[list[Box]],
                      iou_threshold: float = 0.5) -> float:
    """Area under the all-point interpolated precision-recall curve of scored boxes (VOC style).

    ``detections[i]`` and ``truths[i]`` belong to image ``i``; each true box can be
    matched once, by the highest-scoring detection that overlaps it enough.
    """
    n_truth = sum(len(boxes) for boxes in truths)
    if n_truth == 0:
        return math.nan
    ranked = sorted(((score, i, box) for i, boxes in enumerate(detections) for box, score in boxes),
                    key=lambda item: -item[0])
    matched = [set() for _ in truths]
    hits = []
    for _, image, box in ranked:
        overlaps = [(box_iou(box, truth), j) for j, truth in enumerate(truths[image]) if j not in matched[image]]
        best = max(overlaps, default=(0.0, -1))
        hit = best[0] >= iou_threshold
        if hit:
            matched[image].add(best[1])
        hits.append(hit)
    if not hits:
        return 0.0
    true_positives = np.cumsum(hits)
    recall = true_positives / n_truth
    precision = true_positives / np.arange(1, len(hits) + 1)
    # Make precision non-increasing from the right, then sum it over recall steps.
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.diff(np.concatenate([[0.0], recall]))
    return float((precision * steps).sum())


def roc_auc(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Area under the ROC curve (ties count half), pairs weighted by `weights`; NaN unless both classes are present."""
    scores, labels = np.asarray(scores, float), np.asarray(labels, bool)
    weights = np.ones(len(scores)) if weights is None else np.asarray(weights, float)
    positives, negatives = scores[labels], scores[~labels]
    if len(positives) == 0 or len(negatives) == 0:
        return math.nan
    pair_weights = weights[labels][:, None] * weights[~labels][None, :]
    wins = (positives[:, None] > negatives[None, :]) + 0.5 * (positives[:, None] == negatives[None, :])
    return float((wins * pair_weights).sum() / pair_weights.sum())


def precision_recall_curve(scores: np.ndarray, labels: np.ndarray) -> list[dict[str, float]]:
    """Precision and recall at every distinct score threshold, highest threshold first."""
    scores, labels = np.asarray(scores, float), np.asarray(labels, bool)
    if labels.sum() == 0:
        return []
    points = []
    for threshold in np.unique(scores)[::-1]:
        chosen = scores >= threshold
        true_positives = float((chosen & labels).sum())
        points.append({
            "threshold": round(float(threshold), 6),
            "precision": round(true_positives / float(chosen.sum()), 6),
            "recall": round(true_positives / float(labels.sum()), 6),
        })
    return points


def patient_bootstrap(statistic: Callable[[np.ndarray], float], groups: list[str], rounds: int = 1000,
                      seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of `statistic` over patients drawn with replacement (all images of each drawn patient).

    `statistic` takes the image indices of one draw (a patient drawn twice gives its
    images twice); draws where it is NaN (say, AUC without a malignant patient) drop out.
    """
    members: dict[str, list[int]] = {}
    for index, group in enumerate(groups):
        members.setdefault(group, []).append(index)
    patients = [np.array(members[group]) for group in sorted(members)]
    if not patients:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    values = np.array([statistic(np.concatenate([patients[i] for i in rng.integers(0, len(patients), len(patients))]))
                       for _ in range(rounds)])
    values = values[~np.isnan(values)]
    if not len(values):
        return math.nan, math.nan
    low, high = np.percentile(values, [50 * (1 - level), 50 * (1 + level)])
    return float(low), float(high)
