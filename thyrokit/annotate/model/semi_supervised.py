"""Mean-teacher self-training with FixMatch-style weak/strong views and a confidence threshold.

A student learns from labelled images as in supervised training, and from unlabelled
ones: the teacher (an exponential moving average of the student) predicts each weakly
augmented unlabelled image, and its confident pixels (and its pathology, where it sees
a nodule) become soft targets for the student's prediction of a strongly augmented
view of the same image. The teacher is the model returned: averaged weights predict
more steadily.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from thyrokit.annotate.model.augment import strong_augment, weak_augment
from thyrokit.annotate.model.config import ModelConfig
from thyrokit.annotate.model.dataset import Examples, as_float
from thyrokit.annotate.model.train import (
    StepLog,
    averaged_copy,
    build_model,
    check_labelled,
    draw_batch,
    labelled_batch,
    seed_everything,
    supervised_loss,
    update_average,
)
from thyrokit.annotate.model.unet import UNet


@dataclass(frozen=True)
class SemiConfig:
    """Thresholds and weights of the self-training."""

    pixel_threshold: float = 0.9      # teacher pixel confidence max(p, 1-p) that makes a target
    pathology_threshold: float = 0.9  # pathology confidence below which a pseudolabel says unknown
    unlabelled_weight: float = 10.0   # weight of the unlabelled loss once ramped up (squared errors are small)
    warmup: int = 100                 # steps of supervised-only training before the ramp

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
    """Squared error of the student's strong-view probabilities against the teacher's weak-view ones.

    Pixels count where the teacher is confident (`pixel_threshold`); pathology counts on
    images where the teacher sees a nodule. Soft targets, as in mean teacher: hard
    FixMatch-style targets from a teacher trained on a few dozen labels taught the
    student its mistakes and cost 0.1-0.3 validation Dice on the demo phantom.
    """
    weak, _ = weak_augment(images, None, generator)
    with torch.no_grad():
        teacher_logits, teacher_logit = teacher(weak)
        target = torch.sigmoid(teacher_logits)
        target_malignant = torch.sigmoid(teacher_logit)
    mask_logits, malignant_logit = student(strong_augment(weak, generator))
    confident = (torch.maximum(target, 1 - target) >= semi.pixel_threshold).float()
    squared = (torch.sigmoid(mask_logits) - target) ** 2
    loss = (squared * confident).sum() / confident.sum().clamp(min=1.0)
    seen = (target >= 0.5).flatten(1).any(dim=1)
    if seen.any():
        loss = loss + F.mse_loss(torch.sigmoid(malignant_logit[seen]), target_malignant[seen])
    return loss


def train_semi_supervised(config: ModelConfig, semi: SemiConfig, labelled: Examples,
                          unlabelled: Examples, device: torch.device,
                          log: StepLog | None = None) -> UNet:
    """Train a student on `labelled` and `unlabelled` for `config.steps` steps; return the teacher."""
    check_labelled(labelled)
    generator = seed_everything(config.seed, config.threads)
    student = build_model(config).to(device)
    teacher = averaged_copy(student)
    optimiser = torch.optim.AdamW(student.parameters(), lr=config.lr)
    student.train()
    teacher.train()  # dropout on in the teacher too: its targets are less over-confident
    for step in range(config.steps):
        loss = supervised_loss(student, *labelled_batch(labelled, config.batch_size, generator, device))
        ramp = min(1.0, max(0.0, (step - semi.warmup) / max(semi.warmup, 1)))
        unlabelled_loss = torch.zeros((), device=device)
        if ramp > 0 and len(unlabelled):
            images = as_float(unlabelled.images[draw_batch(unlabelled, config.batch_size, generator)], device)
            unlabelled_loss = consistency_loss(student, teacher, images, generator, semi)
            loss = loss + ramp * semi.unlabelled_weight * unlabelled_loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        # Until the ramp starts the teacher simply copies the student, so it never
        # averages in the random first weights.
        update_average(teacher, student, config.ema_decay if ramp > 0 else 0.0)
        if log is not None:
            log(step, {"loss": loss.item(), "unlabelled_loss": unlabelled_loss.item()})
    recalibrate_batch_norm(teacher, [labelled.images, unlabelled.images], config.batch_size, device)
    return teacher.eval()


@torch.no_grad()
def recalibrate_batch_norm(model: UNet, images: list[torch.Tensor], batch_size: int,
                           device: torch.device) -> None:
    """Reset the model's batch-norm statistics to their plain average over un-augmented `images`.

    The student's running statistics (and so the teacher's) also averaged the strong
    views, whose contrast, gamma and speckle a real image never has; normalised by
    them, the model under-calls nodules at inference.
    """
    norms = [module for module in model.modules() if isinstance(module, torch.nn.BatchNorm2d)]
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over every batch below
    model.train()
    for batch in torch.cat(images).split(batch_size):
        model(as_float(batch, device))
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    model.eval()
