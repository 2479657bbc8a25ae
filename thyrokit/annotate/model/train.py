"""Supervised training of the pre-label model on human labels."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F

from thyrokit.annotate.model.augment import weak_augment
from thyrokit.annotate.model.config import ModelConfig
from thyrokit.annotate.model.dataset import Examples, as_float
from thyrokit.annotate.model.unet import UNet

StepLog = Callable[[int, dict[str, float]], None]

NODULE_SEED_OFFSET = 7919  # the nodule batches' generator is seeded apart from the images'
PRESENCE_PIXELS = 16  # the smallest nodule at the network's size is about this many pixels


def seed_everything(seed: int, threads: int = 0) -> tuple[torch.Generator, torch.Generator]:
    """Seed torch, make CPU kernels deterministic; return generators for image and for nodule batches."""
    torch.manual_seed(seed)
    if threads:
        torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    return torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + NODULE_SEED_OFFSET)


def build_model(config: ModelConfig) -> UNet:
    """Return a freshly initialised network of the configured shape."""
    return UNet(channels=config.channels, depth=config.depth, dropout=config.dropout, roi_size=config.roi_size)


@torch.no_grad()
def update_average(average: UNet, model: UNet, decay: float) -> None:
    """Move the averaged weights (and batch-norm statistics) towards the model's: decay * average + (1 - decay) * model."""
    for ours, theirs in zip(average.state_dict().values(), model.state_dict().values()):
        if ours.dtype.is_floating_point:
            ours.mul_(decay).add_(theirs, alpha=1 - decay)
        else:
            ours.copy_(theirs)


def averaged_copy(model: UNet) -> UNet:
    """Return a frozen copy of `model` to hold its weights' moving average."""
    average = copy.deepcopy(model)
    for parameter in average.parameters():
        parameter.requires_grad_(False)
    return average


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """One minus the soft Dice of sigmoid(logits) against target, over the whole batch."""
    prob = torch.sigmoid(logits)
    if weight is not None:
        prob, target = prob * weight, target * weight
    overlap = (prob * target).sum()
    return 1 - (2 * overlap + 1) / (prob.sum() + target.sum() + 1)


def presence_logit(mask_logits: torch.Tensor) -> torch.Tensor:
    """Per image, the logit that it holds a nodule: the mean of its PRESENCE_PIXELS highest pixel logits."""
    return mask_logits.flatten(1).topk(min(PRESENCE_PIXELS, mask_logits[0].numel()), dim=1).values.mean(dim=1)


def presence_loss(mask_logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of each image's presence logit against whether its mask holds a nodule.

    A false nodule on an empty image is a few hundred of thousands of pixels: the pixel
    losses barely see it, yet it costs that image its whole Dice. Without this term a
    model trained on a few dozen labels swung, from seed to seed, between calling no
    nodule anywhere and calling one on most empty images of the demo phantom.
    """
    present = (masks.flatten(1).amax(dim=1) > 0).to(mask_logits.dtype)
    return F.binary_cross_entropy_with_logits(presence_logit(mask_logits), present)


def supervised_loss(model: UNet, examples: Examples, nodule_weights: torch.Tensor, batch_size: int,
                    generator: torch.Generator, nodule_generator: torch.Generator,
                    device: torch.device) -> torch.Tensor:
    """Segmentation loss (cross-entropy + Dice + presence) of a labelled batch plus pathology loss of a nodule batch.

    The pathology head learns from a batch of its own, of images whose pathology is
    known, and reads the nodule their true masks outline, so it learns what a nodule
    looks like even while the segmentation is still poor. In the labelled batches it
    would see a few nodules of known pathology at a time (the demo's train labels hold
    87 such images among 230, 15 malignant); alone on the true crops of those 87, with
    balanced classes, it reached held-out AUC 0.79-0.82 (3 seeds) against 0.75-0.82
    unbalanced. Its batches are drawn by `nodule_weights` (see :func:`pathology_weights`)
    from `nodule_generator`, so that whatever else a training loop draws, the same seed
    shows the head the same nodules.
    """
    images, masks = labelled_batch(examples, batch_size, generator, device)
    mask_logits = model.segment(images)
    loss = (F.binary_cross_entropy_with_logits(mask_logits, masks) + soft_dice_loss(mask_logits, masks)
            + presence_loss(mask_logits, masks))
    if nodule_weights.sum() > 0:
        detail, outlines, malignant = nodule_batch(examples, nodule_weights, batch_size, nodule_generator, device)
        loss = loss + F.binary_cross_entropy_with_logits(model.pathology_head(detail, outlines), malignant)
    return loss


def draw_batch(examples: Examples, batch_size: int, generator: torch.Generator) -> torch.Tensor:
    """Draw batch indices with every patient equally likely, then one of its images.

    Uniform draws over images let one long cine clip dominate training; the model
    then learns that patient instead of what a nodule looks like.
    """
    count = min(batch_size, len(examples))
    return torch.multinomial(examples.weights(), count, replacement=True, generator=generator)


def labelled_batch(examples: Examples, batch_size: int, generator: torch.Generator,
                   device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw a weakly augmented labelled batch: images and masks on `device`."""
    index = draw_batch(examples, batch_size, generator)
    return weak_augment(as_float(examples.images[index], device), examples.masks[index].to(device, torch.float32),
                        generator)


def pathology_weights(examples: Examples) -> torch.Tensor:
    """Each image's chance in a nodule batch: 0 where the pathology is unknown, each class half, each patient alike."""
    weights = examples.weights()
    known = examples.malignant.to(torch.float64)
    for value in (0.0, 1.0):
        members = known == value
        if members.any():
            weights[members] /= 2 * weights[members].sum()
    weights[torch.isnan(known)] = 0.0
    return weights


def nodule_batch(examples: Examples, weights: torch.Tensor, batch_size: int, generator: torch.Generator,
                 device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw a weakly augmented batch of nodules by `weights`: detail images (or images), masks and malignancy."""
    index = torch.multinomial(weights, batch_size, replacement=True, generator=generator)
    detail = examples.images if examples.detail is None else examples.detail
    images, masks = weak_augment(as_float(detail[index], device), examples.masks[index].to(device, torch.float32),
                                 generator)
    return images, masks, examples.malignant[index].to(device)


@torch.no_grad()
def recompute_batch_norm(model: UNet, examples: Examples, batch_size: int, device: torch.device) -> UNet:
    """Re-estimate the batch-norm statistics of `model` from plain passes over the labelled `examples`; return it.

    The averaged weights are not the weights any batch was normalised with: averaged
    with them, the running statistics of the last few hundred steps left the demo's
    model at 10% of the labels seeing a mean nodule probability of 0.18 inside true
    nodules, and held-out nodule Dice 0.23; its own statistics, from the same weights,
    gave 0.46 (the batch-norm update of stochastic weight averaging, Izmailov et al.
    2018). The segmentation network's come from every image, the pathology head's from
    the nodules of known pathology it learned from, at their true outlines. Labelled
    plain images only: statistics of strong views too, whose contrast, gamma and speckle
    no real image has, made the demo's model call nodules on 55-93% of empty images.
    """
    model.eval()
    head_norms = [module for module in model.pathology_head.modules() if isinstance(module, torch.nn.BatchNorm2d)]
    segment_norms = [module for module in model.modules()
                     if isinstance(module, torch.nn.BatchNorm2d) and not any(module is norm for norm in head_norms)]
    batches = [torch.arange(start, min(start + batch_size, len(examples)))
               for start in range(0, len(examples), batch_size)]
    with estimating(segment_norms):
        for index in batches:
            model.segment(as_float(examples.images[index], device))
    nodules = torch.nonzero(pathology_weights(examples) > 0).flatten()
    if len(nodules):
        detail = examples.images if examples.detail is None else examples.detail
        with estimating(head_norms):
            for index in nodules.split(batch_size):
                model.pathology_head(as_float(detail[index], device), examples.masks[index].to(device, torch.float32))
    return model


@contextlib.contextmanager
def estimating(norms: list[torch.nn.BatchNorm2d]) -> Iterator[None]:
    """Within the block, the passes through `norms` set their running statistics to the passes' average."""
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # None: a cumulative average over the passes
        norm.train()
    try:
        yield
    finally:
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum
            norm.eval()


def check_labelled(examples: Examples) -> None:
    """Raise a clear error if `examples` cannot train a model."""
    if examples.masks is None or examples.malignant is None:
        raise ValueError("training needs labelled examples (masks and pathology)")
    if len(examples) == 0:
        raise ValueError("no labelled training images: label some train images first")


def train_supervised(config: ModelConfig, labelled: Examples, device: torch.device,
                     log: StepLog | None = None) -> UNet:
    """Train a new model on `labelled` for `config.steps` steps; return its averaged weights in eval mode.

    The weights of the last step land wherever the last few batches of a few dozen
    labels left them (validation Dice swung 0.2-0.77 between seeds on the demo); their
    moving average is the steadier model, and the one mean teacher returns as well.
    """
    check_labelled(labelled)
    generator, nodule_generator = seed_everything(config.seed, config.threads)
    model = build_model(config).to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr)
    average = averaged_copy(model)
    nodule_weights = pathology_weights(labelled)
    model.train()
    for step in range(config.steps):
        loss = supervised_loss(model, labelled, nodule_weights, config.batch_size, generator, nodule_generator,
                               device)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        # The first third only copies the weights, so the average never holds the random start.
        update_average(average, model, config.ema_decay if step >= config.steps // 3 else 0.0)
        if log is not None:
            log(step, {"loss": loss.item()})
    return recompute_batch_norm(average, labelled, config.batch_size, device)
