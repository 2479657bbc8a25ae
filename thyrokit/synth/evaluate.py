"""synth_eval: fidelity, diversity, memorisation and utility of one trained generator.

For each generator a fresh evaluation sample is drawn through the same memorisation
gate as synth_sample: ``samples_per_class`` per class (at least the class's deficit).
Fidelity compares its encoder features with the real train patches'; utility adds
each class's deficit of it to the real train patches, and trains on it alone (TSTR).
``dp`` carries the privacy report saved with the model (DP-SGD enabled, epsilon, delta,
noise multiplier), so the figures and the guarantee they were bought with travel together.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import torch

from thyrokit.synth.balance import class_deficits
from thyrokit.synth.config import EncoderConfig, EvalConfig, SampleConfig
from thyrokit.synth.data import LEVELS, PatchSet
from thyrokit.synth.encoder import PatchClassifier, encode
from thyrokit.synth.fidelity import fid, kid, precision_recall
from thyrokit.synth.sample import TrainedGenerator, deficit_labels, draw_gated
from thyrokit.synth.utility import POOLED, Scores, train_and_score

HEADLINE_SPLIT = POOLED


def class_counts(rows: pl.DataFrame, classes: tuple[str, ...]) -> dict[str, int]:
    """Return how many rows each class has."""
    return {name: rows.filter(pl.col("pathology") == name).height for name in classes}


def first_per_class(classes_of: np.ndarray, wanted: dict[int, int]) -> np.ndarray:
    """Return indices of the first `wanted[c]` items of each class c, in order."""
    taken = {c: 0 for c in wanted}
    keep = []
    for index, value in enumerate(classes_of.tolist()):
        if taken.get(value, 0) < wanted.get(value, 0):
            taken[value] += 1
            keep.append(index)
    return np.asarray(keep, dtype=np.int64)


def headline(scores: Scores, metric: str) -> float | None:
    """Return a metric on the headline split (all held-out splits pooled), or None where there is none."""
    return scores.get(HEADLINE_SPLIT, {}).get(metric)


def fidelity_figures(real: np.ndarray, fake: np.ndarray, config: EvalConfig, seed: int) -> dict[str, float | None]:
    """Return KID, FID, precision and recall; None for each when too few samples passed the gate."""
    if len(fake) <= max(config.k, 2):
        return {"kid": None, "fid": None, "precision": None, "recall": None}
    precision, recall = precision_recall(real, fake, config.k)
    return {"kid": kid(real, fake, config.kid_subset_size, config.kid_subsets, seed), "fid": fid(real, fake),
            "precision": precision, "recall": recall}


def evaluate_generator(generator: TrainedGenerator, encoder: PatchClassifier, train: PatchSet,
                       train_features: np.ndarray, held_out: dict[str, tuple[np.ndarray, np.ndarray]],
                       real_scores: Scores, config: EvalConfig, sample_config: SampleConfig,
                       classifier_config: EncoderConfig, seed: int, device: torch.device) -> dict:
    """Return the metrics of one generator (see the module docstring)."""
    classes = generator.data.classes
    deficits = class_deficits(class_counts(train.rows, classes), classes, sample_config.target_ratio)
    wanted = {name: max(config.samples_per_class, deficits[name]) for name in classes}
    labels = deficit_labels(train.rows, classes, wanted, np.random.default_rng(seed))
    drawn = draw_gated(generator, labels, seed, encoder, train.images, train_features, sample_config)
    fidelity = fidelity_figures(train_features, encode(encoder, drawn.images), config, seed)

    real_classes = np.asarray([classes.index(p) for p in train.rows["pathology"]], dtype=np.int64)
    synthetic_classes = drawn.labels // LEVELS
    balancing = first_per_class(synthetic_classes, {i: deficits[name] for i, name in enumerate(classes)})
    mixed_images = np.concatenate([train.images, drawn.images[balancing]])
    mixed_classes = np.concatenate([real_classes, synthetic_classes[balancing]])
    mixed_scores = train_and_score(mixed_images, mixed_classes, held_out, classifier_config, seed, device,
                                   f"{generator.name}: real+synthetic")
    tstr = first_per_class(synthetic_classes, {i: config.samples_per_class for i in range(len(classes))})
    tstr_scores: Scores = {}
    if len(np.unique(synthetic_classes[tstr])) == len(classes):  # else too few samples passed the gate
        tstr_scores = train_and_score(drawn.images[tstr], synthetic_classes[tstr], held_out, classifier_config,
                                      seed, device, f"{generator.name}: synthetic only")
    return {
        "generator": f"{generator.name}:{generator.version}",
        "dp": generator.privacy,
        "samples": int(len(drawn.labels)),
        **fidelity,
        "memorised_rejected": drawn.memorised_rejected,
        "empty_mask_rejected": drawn.empty_mask_rejected,
        "nn_ssim_max": float(drawn.nn_ssim.max()),
        "nn_ssim_median": float(np.median(drawn.nn_ssim)),
        "nn_cosine_max": float(drawn.nn_cosine.max()),
        "nn_cosine_median": float(np.median(drawn.nn_cosine)),
        "balanced_accuracy_real": headline(real_scores, "balanced_accuracy"),
        "balanced_accuracy_real_plus_synth": headline(mixed_scores, "balanced_accuracy"),
        "auc_real": headline(real_scores, "auc"),
        "auc_real_plus_synth": headline(mixed_scores, "auc"),
        "tstr_balanced_accuracy": headline(tstr_scores, "balanced_accuracy"),
        "tstr_auc": headline(tstr_scores, "auc"),
        "splits": {split: {"real": real_scores.get(split), "real_plus_synth": mixed_scores.get(split),
                           "tstr": tstr_scores.get(split)} for split in sorted(held_out)},
    }
