"""Mean-teacher self-training with FixMatch-style weak/strong views, CutMix and a confidence threshold.

It starts from a supervised model (trained on the labelled images alone) and fine-tunes
it: a student goes on learning from labelled images as in supervised training, and from
unlabelled ones: the teacher (an exponential moving average of the student) predicts each
weakly augmented unlabelled image; pairs of those images swap a box (CutMix), their
predictions alike; and the confident pixels of the mixed prediction become soft targets
for the student's prediction of a strongly augmented view of the mixed image. The
teacher is the model returned: averaged weights predict more steadily.

CutMix makes the consistency target hard enough to teach a segmentation model (French et
al., "Semi-supervised semantic segmentation needs strong, varied perturbations", BMVC
2020): a box edge through a nodule, or a nodule pasted into other tissue, must not fool
the student. The teacher's confident foreground pixels weigh a fixed share of that
consistency (`foreground_share`), so the background, nearly all of every image, does
not teach the student to shrink nodules (:func:`confident_squared_error`).

The pathology head learns from the unlabelled nodules by the same mean-teacher
consistency (:func:`pathology_consistency_loss`): the teacher's malignancy for the nodule
it outlines in a plain image is the soft target for the student's on a strong view of the
same nodule.

What it gains on the demo phantom, against the same fine-tuning without the unlabelled
images (3 seeds, 1,000-step supervised starts, mean supervised -> semi-supervised, seeds
won in brackets): on the validation split at 10% of the labels Dice 0.683 -> 0.717 (3 of
3) and AUC 0.28 -> 0.36 (2 of 3); at 30% Dice 0.747 -> 0.747 (2 of 3) and AUC 0.30 ->
0.39 (2 of 3). Pooled over validation, test and external (187 images) Dice 0.782 -> 0.799
(1 of 3, one tie) and 0.803 -> 0.818 (3 of 3), AUC 0.49 -> 0.54 (2 of 3) and 0.59 -> 0.64
(3 of 3). docs/design_changes.md lists what else was tried.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from thyrokit.annotate.model.augment import cut_mix, strong_augment, weak_augment
from thyrokit.annotate.model.config import ModelConfig
from thyrokit.annotate.model.dataset import Examples, as_float
from thyrokit.annotate.model.train import (
    StepLog,
    averaged_copy,
    check_labelled,
    draw_batch,
    pathology_weights,
    recompute_batch_norm,
    seed_everything,
    supervised_loss,
    update_average,
)
from thyrokit.annotate.model.unet import UNet

UNLABELLED_SEED_OFFSET = 104729  # the unlabelled images' random stream is seeded apart from the labelled ones'


@dataclass(frozen=True)
class SemiConfig:
    """Length, thresholds and weights of the self-training."""

    steps: int = 200                  # optimiser steps of fine-tuning the supervised model
    pixel_threshold: float = 0.9      # teacher pixel confidence max(p, 1-p) that makes a target
    pathology_threshold: float = 0.9  # pathology confidence below which a pseudolabel says unknown
    unlabelled_weight: float = 10.0   # weight of the unlabelled loss once ramped up (squared errors are small)
    pathology_weight: float = 1.0     # share of the pathology head's consistency in the unlabelled loss
    ramp: int = 100                   # steps over which the unlabelled weight rises from 0 to unlabelled_weight
    foreground_share: float | None = 0.1  # share of the mask consistency on the teacher's confident foreground;
                                          # None = every confident pixel alike

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "SemiConfig":
        """Build a config from a mapping, naming any key it does not know."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown semi-supervised setting(s) {unknown}; known: {sorted(known)}")
        return cls(**values)


def consistency_loss(student: UNet, teacher: UNet, images: torch.Tensor, generator: torch.Generator,
                     semi: SemiConfig) -> torch.Tensor:
    """Squared error of the student's mask probabilities on CutMixed strong views against the teacher's weak-view ones.

    Soft targets, as in mean teacher: hard FixMatch-style targets (cross-entropy against
    the thresholded teacher) once taught the student its mistakes, at a cost of 0.1-0.3
    validation Dice on the demo phantom; on the current network they gain nothing
    (pooled held-out Dice +0.007 and -0.001 at 10% and 30% of the labels, 3 seeds).
    """
    weak, _ = weak_augment(images, None, generator)
    with torch.no_grad():
        target = torch.sigmoid(teacher.segment(weak))
    mixed, target = cut_mix(weak, target, generator)
    probability = torch.sigmoid(student.segment(strong_augment(mixed, generator)))
    return confident_squared_error(probability, target, semi.pixel_threshold, semi.foreground_share)


def confident_squared_error(probability: torch.Tensor, target: torch.Tensor, threshold: float,
                            foreground_share: float | None = None) -> torch.Tensor:
    """Mean squared error of `probability` against `target` over the pixels where max(target, 1 - target) >= `threshold`.

    With `foreground_share`, the confident foreground pixels (target >= 0.5) weigh that
    share of the loss and the confident background ones the rest, however few the
    former are. A nodule is a few per cent of an ultrasound image: with every pixel
    alike, the background taught the student to shrink nodules, the more so the fainter
    (on the demo phantom at 30% of the labels, predicted nodule area 0.59 -> 0.50 of the
    true one and validation Dice 0.773 -> 0.756; with a share of 0.1, 0.70 and 0.780).
    Half each over-taught the teacher's nodules instead.
    """
    squared = (probability - target) ** 2
    confident = torch.maximum(target, 1 - target) >= threshold
    if foreground_share is None:
        return masked_mean(squared, confident)
    foreground = confident & (target >= 0.5)
    return (foreground_share * masked_mean(squared, foreground)
            + (1 - foreground_share) * masked_mean(squared, confident & ~foreground))


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `values` where `mask` is true; 0 where it is nowhere true."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def pathology_consistency_loss(student: UNet, teacher: UNet, images: torch.Tensor, detail: torch.Tensor,
                               generator: torch.Generator, threshold: float) -> torch.Tensor:
    """Squared error of the student's malignancy on strong views of the detail images against the teacher's on plain ones.

    Both heads crop at the nodule the teacher outlines in the plain image, so a strong
    view (intensities only) shows the student the same nodule; images where the
    teacher's mask holds no pixel above `threshold` count for nothing.
    """
    with torch.no_grad():
        outlines = torch.sigmoid(teacher.segment(images))
        target = torch.sigmoid(teacher.pathology_head(detail, outlines))
    found = outlines.flatten(1).amax(dim=1) >= threshold
    guess = torch.sigmoid(student.pathology_head(strong_augment(detail, generator), outlines))
    return masked_mean((guess - target) ** 2, found)


@contextlib.contextmanager
def own_random_stream(generator: torch.Generator, device: torch.device) -> Iterator[None]:
    """Run the block on torch's global random numbers seeded from `generator`; restore them afterwards.

    Dropout draws from the global stream. Inside the block it draws from a stream the
    rest of training never sees, so whatever the block does, the rest draws the same.
    """
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
        yield


def train_semi_supervised(config: ModelConfig, semi: SemiConfig, start: UNet, labelled: Examples,
                          unlabelled: Examples, device: torch.device,
                          log: StepLog | None = None) -> UNet:
    """Fine-tune the supervised model `start` on both image sets for `semi.steps` steps; return the teacher.

    Starting from the supervised model rather than from random weights, the teacher
    gives its first targets with everything the labels teach: started from scratch
    after 100 supervised steps, its early mistakes became the student's (validation
    Dice 0.35-0.56 against the supervised model's 0.52-0.70 at 10% of the demo's labels).

    The unlabelled images draw all their random numbers (batches, views, CutMix boxes,
    dropout) from a stream of their own, so the labelled part of training draws the
    same with them as without them: the label-fraction report's two models differ by
    what the unlabelled images teach, not by other luck.
    """
    check_labelled(labelled)
    generator, nodule_generator = seed_everything(config.seed + 1, config.threads)
    unlabelled_generator = torch.Generator().manual_seed(config.seed + 1 + UNLABELLED_SEED_OFFSET)
    student = copy.deepcopy(start).requires_grad_(True).to(device)
    teacher = averaged_copy(student)
    optimiser = torch.optim.AdamW(student.parameters(), lr=config.lr)
    nodule_weights = pathology_weights(labelled)
    student.train()
    teacher.train()  # dropout on in the teacher too: its targets are less over-confident
    for step in range(semi.steps):
        loss = supervised_loss(student, labelled, nodule_weights, config.batch_size, generator, nodule_generator,
                               device)
        unlabelled_loss = torch.zeros((), device=device)
        if len(unlabelled):
            with own_random_stream(unlabelled_generator, device):
                index = draw_batch(unlabelled, config.batch_size, unlabelled_generator)
                images = as_float(unlabelled.images[index], device)
                unlabelled_loss = consistency_loss(student, teacher, images, unlabelled_generator, semi)
                if semi.pathology_weight:
                    detail = images if unlabelled.detail is None else as_float(unlabelled.detail[index], device)
                    unlabelled_loss = unlabelled_loss + semi.pathology_weight * pathology_consistency_loss(
                        student, teacher, images, detail, unlabelled_generator, config.threshold)
            ramp = min(1.0, step / max(semi.ramp, 1))
            loss = loss + ramp * semi.unlabelled_weight * unlabelled_loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        update_average(teacher, student, config.ema_decay)
        if log is not None:
            log(step, {"loss": loss.item(), "unlabelled_loss": unlabelled_loss.item()})
    return recompute_batch_norm(teacher, labelled, config.batch_size, device)
