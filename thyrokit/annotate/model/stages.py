"""The `prelabel` and `pseudolabel` stages as library functions; the CLI only wires paths and params."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from thyrokit.annotate.model.config import ModelConfig
from thyrokit.annotate.model.dataset import Examples, load_examples, patients_of
from thyrokit.annotate.model.evaluate import evaluate, gain_interval, pathology_patients, pathology_pr_curve
from thyrokit.annotate.model.inputs import StageInputs
from thyrokit.annotate.model.outputs import save_model, write_nodules, write_uncertainty
from thyrokit.annotate.model.predict import Prediction, predict
from thyrokit.annotate.model.semi_supervised import SemiConfig, train_semi_supervised
from thyrokit.annotate.model.train import StepLog, train_supervised
from thyrokit.annotate.model.unet import UNet

CHUNK = 256  # images read and predicted at a time, so memory stays flat


@dataclass
class StageResult:
    """Metrics of a stage run, plot data, and one line per input item that was skipped."""

    metrics: dict[str, Any]
    pr_curve: list[dict[str, float]]
    problems: list[str]


def read_examples(inputs: StageInputs, images: pl.DataFrame, config: ModelConfig,
                  labelled: bool = True) -> tuple[Examples, list[str]]:
    """Read `images` at the model's sizes, with their human labels unless `labelled` is False."""
    if not labelled:
        return load_examples(images, inputs.images_dir, config.size, detail_size=config.detail_size)
    return load_examples(images, inputs.images_dir, config.size, inputs.nodules, inputs.labels_dir,
                         config.detail_size)


def predict_chunks(model: UNet, inputs: StageInputs, images: pl.DataFrame, config: ModelConfig,
                   device: torch.device, mc_samples: int, problems: list[str]) -> Iterator[Prediction]:
    """Read and predict `images` a chunk at a time; append unreadable ones to `problems`."""
    images = images.sort("image_id")
    for start in range(0, images.height, CHUNK):
        examples, skipped = read_examples(inputs, images.slice(start, CHUNK), config, labelled=False)
        problems.extend(skipped)
        yield predict(model, examples, device, mc_samples=mc_samples, seed=config.seed + start)


def run_prelabel(inputs: StageInputs, config: ModelConfig, device: torch.device, model_dir: Path,
                 out_dir: Path, log: StepLog | None = None) -> StageResult:
    """Train on human-labelled train images; predict and rank every image without human labels."""
    train, problems = read_examples(inputs, inputs.labelled_in("train"), config)
    model = train_supervised(config, train, device, log)
    version = save_model(model, config, model_dir, "prelabel")
    validation, skipped = read_examples(inputs, inputs.labelled_in("validation"), config)
    problems += skipped
    scored = predict(model, validation, device, config.mc_samples, seed=config.seed)

    image_ids: list[str] = []
    uncertainty: list[float] = []

    def recorded(chunks: Iterator[Prediction]) -> Iterator[Prediction]:
        for chunk in chunks:
            image_ids.extend(chunk.image_ids)
            uncertainty.extend(chunk.uncertainty.tolist())
            yield chunk

    unlabelled = inputs.unlabelled()
    chunks = predict_chunks(model, inputs, unlabelled, config, device, config.mc_samples, problems)
    nodules = write_nodules(recorded(chunks), unlabelled, out_dir, label_source="prediction",
                            annotator=f"model:{version}", threshold=config.threshold,
                            min_area=config.min_area)
    write_uncertainty(image_ids, np.array(uncertainty), version, out_dir / "uncertainty.parquet",
                      groups=patients_of(unlabelled, image_ids))
    metrics = {
        "validation": evaluate(scored, validation, config.threshold, min_area=1) if len(validation) else {},
        "n_train_images": len(train),
        "n_predicted_images": len(image_ids),
        "n_predicted_nodules": nodules.height,
        "n_skipped": len(problems),
        "model_version": version,
    }
    return StageResult(metrics, pathology_pr_curve(scored, validation) if len(validation) else [], problems)


COMPARED = ("dice", "auc", "nodule_dice", "false_nodule_rate")  # validation metrics of the label-fraction report


def fraction_key(fraction: float) -> str:
    """Metrics key of a label fraction, e.g. 0.1 -> 'labels_10pct'."""
    return f"labels_{round(fraction * 100)}pct"


def fraction_subsets(labelled: list[int], fractions: list[float], seed: int,
                     strata: list[str] | None = None) -> dict[float, list[int]]:
    """Return, per label fraction, the sorted indices of the labelled images it keeps (at least one).

    The images are drawn in one seeded order, so each smaller set is nested in the larger.
    With `strata` (one class per labelled image, e.g. its pathology) the order interleaves
    the classes in proportion to their sizes, so each fraction keeps about its share of
    every class: drawn at random, 10% of the demo's labels held no malignant nodule on
    some splits, and a pathology head that never saw one scores no AUC worth comparing.
    """
    rng = np.random.default_rng(seed)
    permutation = rng.permutation(len(labelled))
    order = [labelled[i] for i in permutation]
    if strata is not None:
        order = proportional_order(order, [strata[i] for i in permutation], rng)
    return {fraction: sorted(order[:max(1, round(fraction * len(order)))]) for fraction in sorted(fractions)}


def proportional_order(items: list[int], strata: list[str], rng: np.random.Generator) -> list[int]:
    """Reorder `items` so that every prefix holds each stratum in about its share, keeping each stratum's order.

    The k-th item of a stratum of n sits at (k + offset) / n, the offset drawn once per
    stratum: systematic sampling, one stratum after another along the same line.
    """
    sizes = Counter(strata)
    names = sorted(sizes)
    offsets = dict(zip(names, rng.uniform(size=len(names))))
    seen = dict.fromkeys(names, 0)
    keys = []
    for item, stratum in zip(items, strata):
        keys.append(((seen[stratum] + offsets[stratum]) / sizes[stratum], item))
        seen[stratum] += 1
    return [item for _, item in sorted(keys)]


def pathology_strata(examples: Examples) -> list[str]:
    """Each example's pathology: "malignant", "benign" or "unknown"."""
    return ["unknown" if np.isnan(value) else ("malignant" if value == 1.0 else "benign")
            for value in examples.malignant.tolist()]


def label_fraction_subsets(train: Examples, labelled: list[int], fractions: list[float],
                           seed: int) -> dict[float, list[int]]:
    """Return the label-fraction report's subsets of the `labelled` train images, stratified by pathology."""
    return fraction_subsets(labelled, fractions, seed, pathology_strata(train.subset(labelled)))


def plain_prediction(model: UNet, examples: Examples, config: ModelConfig, device: torch.device) -> Prediction:
    """Predict `examples` as the label-fraction report scores them: one pass, dropout off."""
    return predict(model, examples, device, mc_samples=1, seed=config.seed)


def validation_scores(model: UNet, validation: Examples, config: ModelConfig,
                      device: torch.device) -> dict[str, float]:
    """Return the metrics of `model` on `validation` as the label-fraction report scores them."""
    return evaluate(plain_prediction(model, validation, config, device), validation, config.threshold)


def compare_label_fractions(config: ModelConfig, semi: SemiConfig, train: Examples, labelled: list[int],
                            validation: Examples, fractions: list[float],
                            device: torch.device) -> dict[str, dict[str, float]]:
    """Validation Dice and AUC of supervised-only vs semi-supervised training at each label fraction.

    A fraction keeps that share of the human-labelled train images, and of each
    pathology among them (see :func:`label_fraction_subsets`); every other train image
    is unlabelled. Both models start from one supervised model of the kept labels and
    are fine-tuned the same `semi.steps` steps in the same way, the semi-supervised one
    with the unlabelled images and the supervised one without them: a gain is the
    unlabelled images' doing, not that of the extra steps. ``dice_gain_low`` ..
    ``dice_gain_high`` (and ``auc_gain_*``) bound the gain by a patient bootstrap of the
    validation split (see :func:`gain_interval`): an interval across zero is no gain the
    split can show.
    ``n_labelled_malignant_patients`` says how few malignant patients the kept labels
    may hold: all the pathology head has to learn malignancy from.
    """
    results = {}
    for fraction, keep in label_fraction_subsets(train, labelled, fractions, config.seed).items():
        rest = sorted(set(range(len(train))) - set(keep))
        subset = train.subset(keep)
        start = train_supervised(config, subset, device)
        supervised = train_semi_supervised(config, semi, start, subset, train.subset([]).unlabelled(), device)
        semi_supervised = train_semi_supervised(config, semi, start, subset, train.subset(rest).unlabelled(),
                                                device)
        predictions = {name: plain_prediction(model, validation, config, device)
                       for name, model in (("supervised", supervised), ("semi_supervised", semi_supervised))}
        scores = {name: evaluate(prediction, validation, config.threshold) for name, prediction in predictions.items()}
        kept_patients = pathology_patients(subset)
        results[fraction_key(fraction)] = {
            "n_labelled": len(keep),
            "n_labelled_pathology_patients": kept_patients["n_pathology_patients"],
            "n_labelled_malignant_patients": kept_patients["n_malignant_patients"],
            **{f"{metric}_{name}": scores[name][metric] for name in scores for metric in COMPARED},
            **gain_interval(predictions["semi_supervised"], predictions["supervised"], validation, config.threshold,
                            seed=config.seed),
        }
    return results


def run_pseudolabel(inputs: StageInputs, config: ModelConfig, semi: SemiConfig, start: UNet,
                    fractions: list[float], min_confidence: float, device: torch.device, model_dir: Path,
                    out_dir: Path, log: StepLog | None = None, start_version: str | None = None) -> StageResult:
    """Fine-tune `start` on all train images; pseudolabel the unlabelled train images; compare label fractions.

    `start` is the supervised model of the human-labelled train images: the prelabel
    stage's (version `start_version`). Only train images feed the models; validation
    images only score them. The saved model's config records the fine-tuning settings
    and the model it started from.
    """
    train_images = inputs.images.filter(pl.col("split") == "train")
    train, problems = read_examples(inputs, train_images, config)
    labelled = [i for i, image_id in enumerate(train.image_ids) if image_id in inputs.labelled]
    others = [i for i, image_id in enumerate(train.image_ids) if image_id not in inputs.labelled]
    validation, skipped = read_examples(inputs, inputs.labelled_in("validation"), config)
    problems += skipped
    comparison = compare_label_fractions(config, semi, train, labelled, validation, fractions, device) \
        if len(validation) and labelled else {}

    human = train.subset(labelled)
    unlabelled = train.subset(others).unlabelled()
    model = train_semi_supervised(config, semi, start, human, unlabelled, device, log)
    version = save_model(model, config, model_dir, "pseudolabel", fine_tuning=dataclasses.asdict(semi),
                         started_from=start_version)
    prediction = predict(model, unlabelled, device, mc_samples=1, seed=config.seed)
    nodules = write_nodules([prediction], train_images, out_dir, label_source="pseudo",
                            annotator=f"model:{version}", threshold=config.threshold,
                            min_area=config.min_area, min_confidence=min_confidence,
                            pathology_certainty=semi.pathology_threshold)
    metrics = {
        **comparison,
        # What the report's AUCs rest on: a handful of malignant patients is no measurement.
        **({f"validation_{name}": count for name, count in pathology_patients(validation).items()}
           if len(validation) else {}),
        "n_labelled_train_images": len(labelled),
        "n_unlabelled_train_images": len(others),
        "n_pseudo_nodules": nodules.height,
        "n_pseudo_images": nodules.get_column("image_id").n_unique(),
        "n_skipped": len(problems),
        "model_version": version,
    }
    return StageResult(metrics, [], problems)
