"""Score a prediction against labelled examples: Dice, IoU, box AP@0.5, pathology AUC."""

from __future__ import annotations

import numpy as np

from thyrokit.annotate.model.dataset import Examples
from thyrokit.annotate.model.metrics import (average_precision, dice, iou, patient_bootstrap,
                                             precision_recall_curve, roc_auc)
from thyrokit.annotate.model.predict import Prediction, components


def evaluate(prediction: Prediction, truth: Examples, threshold: float = 0.5,
             min_area: int = 1) -> dict[str, float]:
    """Return mean Dice and IoU, box AP@0.5 and pathology AUC, at the model's size.

    Every patient counts once in Dice, IoU and AUC (each image weighs 1 / its
    patient's images), so a 16-frame cine clip is one case, not sixteen. Boxes are
    the connected components of the thresholded masks; a predicted box scores the
    mean foreground probability inside it.

    "dice" counts an image without a nodule, predicted empty, as 1, so a model that
    finds little scores well on a split of many such images; "nodule_dice" (images
    with a nodule) and "false_nodule_rate" (share of the others given one) tell the
    two apart. "n_pathology_patients" and "n_malignant_patients" count the patients
    the AUC rests on: with three malignant ones, one patient moves it by a third.
    """
    if prediction.image_ids != truth.image_ids or truth.masks is None or truth.malignant is None:
        raise ValueError("evaluation needs a prediction of exactly the labelled examples")
    dices = image_dice(prediction, truth, threshold)
    ious, detections, boxes = [], [], []
    for probability, mask in zip(prediction.probability, truth.masks[:, 0].numpy().astype(bool)):
        predicted = probability >= threshold
        ious.append(iou(predicted, mask))
        detections.append([(box, float(probability[part].mean()))
                           for part, box in components(predicted, min_area)])
        boxes.append([box for _, box in components(mask, 1)])
    weights = truth.weights().numpy()
    known = ~np.isnan(truth.malignant.numpy())
    labels = truth.malignant.numpy()[known] == 1.0
    holds = np.array([len(image_boxes) > 0 for image_boxes in boxes], dtype=bool)
    called = np.array([len(found) > 0 for found in detections], dtype=bool)
    return {
        "dice": _weighted_mean(dices, weights),
        "nodule_dice": _weighted_mean(np.array(dices)[holds], weights[holds]),
        "false_nodule_rate": _weighted_mean(called[~holds], weights[~holds]),
        "iou": _weighted_mean(ious, weights),
        "box_ap50": _round(average_precision(detections, boxes, 0.5)),
        "auc": _round(roc_auc(prediction.malignant[known], labels, weights[known])),
        "n_images": len(truth),
        **pathology_patients(truth),
    }


def pathology_patients(truth: Examples) -> dict[str, int]:
    """Count the patients with an image of known pathology, and those among them with a malignant one."""
    pathology = list(zip(truth.patients, truth.malignant.numpy()))
    known = {patient for patient, malignant in pathology if not np.isnan(malignant)}
    malignant_patients = {patient for patient, malignant in pathology if malignant == 1.0}
    return {"n_pathology_patients": len(known), "n_malignant_patients": len(malignant_patients)}


def image_dice(prediction: Prediction, truth: Examples, threshold: float = 0.5) -> np.ndarray:
    """Dice of each image's thresholded prediction against its mask (1 where both are empty)."""
    masks = truth.masks[:, 0].numpy().astype(bool)
    return np.array([dice(probability >= threshold, mask) for probability, mask in zip(prediction.probability, masks)])


def gain_interval(prediction: Prediction, baseline: Prediction, truth: Examples, threshold: float = 0.5,
                  rounds: int = 1000, seed: int = 0) -> dict[str, float]:
    """95% patient-bootstrap interval of the Dice and AUC gain of `prediction` over `baseline` on the same images.

    Both predictions are scored on every draw of patients, so the interval is that of
    the difference (paired): it says how far the split's own sampling of patients
    could move the gain, not how far retraining could.
    """
    weights = truth.weights().numpy()
    gain = image_dice(prediction, truth, threshold) - image_dice(baseline, truth, threshold)
    malignant = truth.malignant.numpy()

    def dice_gain(index: np.ndarray) -> float:
        return float(np.average(gain[index], weights=weights[index]))

    def auc_gain(index: np.ndarray) -> float:
        index = index[~np.isnan(malignant[index])]
        labels = malignant[index] == 1.0
        return (roc_auc(prediction.malignant[index], labels, weights[index])
                - roc_auc(baseline.malignant[index], labels, weights[index]))

    interval = {}
    for name, statistic in (("dice", dice_gain), ("auc", auc_gain)):
        low, high = patient_bootstrap(statistic, truth.patients, rounds, seed)
        interval[f"{name}_gain_low"], interval[f"{name}_gain_high"] = _round(low), _round(high)
    return interval


def pathology_pr_curve(prediction: Prediction, truth: Examples) -> list[dict[str, float]]:
    """Precision-recall points of the pathology head on examples whose pathology is known."""
    known = ~np.isnan(truth.malignant.numpy())
    return precision_recall_curve(prediction.malignant[known], truth.malignant.numpy()[known] == 1.0)


def _weighted_mean(values, weights: np.ndarray) -> float:
    return _round(np.average(values, weights=weights)) if len(values) else float("nan")


def _round(value: float) -> float:
    # Rounded so that metric files do not churn on the last bits of float sums.
    return round(float(value), 4)
