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
the student. Against the same fine-tuning without unlabelled images, scored on the demo
phantom's validation, test and external images together over 4 seeds, at 30% of the
labels it won 4 of 4 seeds (+0.015 Dice on average) where plain strong views won 2 of 4
(+0.008). Since the two runs share every labelled draw (see
:func:`train_semi_supervised`), the same comparison on 1 thread gives Dice 0.744 ->
0.769 at 10% of the labels and 0.757 -> 0.783 at 30% (3 of 4 seeds each). That is
within the runs' spread: the same seed on 2 threads instead of 1 (the same sums in
another order) turned one run's gain of +0.087 into -0.047. On the validation split
alone (57 labelled images, 12 patients of known pathology) nothing stands out of that
spread either.

The pathology head learns from the unlabelled nodules by the same mean-teacher
consistency (:func:`pathology_consistency_loss`): the teacher's malignancy for the nodule
it outlines in a plain image is the soft target for the student's on a strong view of the
same nodule. With the head pooled from the 64 px network's features this target moved
held-out AUC by -0.51 to +0.16 from run to run; on crops of the detail image it helps.
Pooled over validation, test and external (52 patients of known pathology, 14 malignant)
on one demo split, 4 seeds on 2 threads (``benchmarks/semi_supervised_gain.py``), against
the fine-tuning without unlabelled images, held-out AUC went 0.584 -> 0.638 at 10% of the
labels (2 of 4 seeds) and 0.596 -> 0.657 at 30% (3 of 4), Dice 0.695 -> 0.709 (3 of 4)
and 0.780 -> 0.783 (2 of 4). On the validation split alone (12 such patients, 3
malignant) the AUC gains of such runs ranged from -0.37 to +0.25. On a second demo
split (another secret; label fractions stratified by pathology, 4 seeds, pooled
held-out) it repeated at 30% of the labels, AUC 0.594 -> 0.642 (4 of 4 seeds), but not
at 10% (0.471 -> 0.400, 1 of 4): there the supervised head is at chance, and
consistency with a teacher who knows nothing teaches nothing. Dice went 0.637 ->
0.626 and 0.766 -> 0.766 (3 of 4 seeds each).

Other unlabelled pathology losses were tried and dropped. FixMatch on the teacher's sure
calls (at `pathology_threshold`) scored the demo's validation AUC 0.42 and 0.65 at 10%
and 30% of labels, against 0.44 and 0.63 without it. Information maximisation on the
nodules the teacher finds (the student's strong view matches the teacher's weak one, is
sure of itself, and a batch is malignant a fixed 20% of the time) raised pooled held-out
AUC when only the head was fine-tuned (0.53 -> 0.57 at 10%, 0.58 -> 0.60 at 30%, 4
seeds), but in this loop it lowered it (0.53 -> 0.45 and 0.66 -> 0.62): the 1-7
malignant images of a label fraction cannot tell it which cluster of nodules is the
malignant one.

The supervised models got better since (their batch-norm statistics recomputed, see
:func:`~thyrokit.annotate.model.train.recompute_batch_norm`; dropout moved before the
mask head, see :class:`~thyrokit.annotate.model.unet.UNet`), and the gain over them is
again within the noise. A fourth demo split, 3 seeds, pooled held-out (187 images),
against the same fine-tuning without unlabelled images: at 10% of the labels Dice
0.751 -> 0.769 (1 of 3 seeds; one seed's supervised model called nodules on 16% of the
empty images) and AUC 0.475 -> 0.558 (3 of 3); at 30% Dice 0.807 -> 0.802 (1 of 3) and
AUC 0.625 -> 0.639 (2 of 3). On that split's validation images alone (26, of 12
patients) the stage reported Dice 0.673 -> 0.642 and 0.713 -> 0.693.
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

    Pixels count where the teacher is confident (`pixel_threshold`). Soft targets, as in
    mean teacher: hard FixMatch-style targets from a teacher trained on a few dozen
    labels taught the student its mistakes and cost 0.1-0.3 validation Dice on the demo
    phantom.
    """
    weak, _ = weak_augment(images, None, generator)
    with torch.no_grad():
        target = torch.sigmoid(teacher.segment(weak))
    mixed, target = cut_mix(weak, target, generator)
    mask_logits = student.segment(strong_augment(mixed, generator))
    confident = (torch.maximum(target, 1 - target) >= semi.pixel_threshold).float()
    squared = (torch.sigmoid(mask_logits) - target) ** 2
    return (squared * confident).sum() / confident.sum().clamp(min=1.0)


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
    found = (outlines.flatten(1).amax(dim=1) >= threshold).to(target.dtype)
    guess = torch.sigmoid(student.pathology_head(strong_augment(detail, generator), outlines))
    return ((guess - target) ** 2 * found).sum() / found.sum().clamp(min=1.0)


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
