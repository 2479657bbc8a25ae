"""Utility of synthetic patches: does a classifier trained with them do better on real held-out data?

The same small classifier (:class:`thyrokit.synth.encoder.PatchClassifier`) is trained
three ways: on real train patches only, on real plus the synthetic patches that
balance the classes, and on synthetic patches only (train on synthetic, test on
real). Each is scored on the validation, test and external splits.
"""

from __future__ import annotations

import numpy as np
import torch

from thyrokit.synth.config import EncoderConfig
from thyrokit.synth.encoder import PatchClassifier, predict_malignant, train_classifier

Scores = dict[str, dict[str, float | None]]
POOLED = "held_out"


def balanced_accuracy(truth: np.ndarray, predicted: np.ndarray) -> float:
    """Return the mean per-class recall of 0/1 predictions (over the classes present in `truth`)."""
    recalls = [float((predicted[truth == value] == value).mean()) for value in np.unique(truth)]
    return float(np.mean(recalls))


def roc_auc(truth: np.ndarray, scores: np.ndarray) -> float | None:
    """Return the ROC AUC of scores for 0/1 truth (Mann-Whitney U, ties count half); None if one class is absent."""
    positives, negatives = scores[truth == 1], scores[truth == 0]
    if len(positives) == 0 or len(negatives) == 0:
        return None
    greater = (positives[:, None] > negatives[None, :]).sum()
    ties = (positives[:, None] == negatives[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(positives) * len(negatives)))


def with_pooled(held_out: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Return the held-out splits plus all of them pooled (``held_out``).

    Each split alone can be tiny (a demo test split holds 2 malignant patches, where one
    prediction moves balanced accuracy by 0.25), so the headline figures are the pooled ones.
    """
    present = [held_out[split] for split in sorted(held_out) if len(held_out[split][1])]
    if not present:
        return dict(held_out)
    pooled = (np.concatenate([images for images, _ in present]), np.concatenate([truth for _, truth in present]))
    return {**held_out, POOLED: pooled}


def score_splits(model: PatchClassifier, held_out: dict[str, tuple[np.ndarray, np.ndarray]]) -> Scores:
    """Return balanced accuracy and AUC of `model` on each held-out split's (images, 0/1 classes)."""
    scores: Scores = {}
    for split, (images, truth) in sorted(held_out.items()):
        if len(truth) == 0:
            continue
        probability = predict_malignant(model, images)
        scores[split] = {
            "balanced_accuracy": balanced_accuracy(truth, (probability >= 0.5).astype(np.int64)),
            "auc": roc_auc(truth, probability),
            "count": int(len(truth)),
        }
    return scores


def train_and_score(images: np.ndarray, classes: np.ndarray, held_out: dict[str, tuple[np.ndarray, np.ndarray]],
                    config: EncoderConfig, seed: int, device: torch.device, desc: str) -> Scores:
    """Train the utility classifier on (images, classes) and score it on every held-out split."""
    return score_splits(train_classifier(images, classes, config, seed, device, desc), held_out)
