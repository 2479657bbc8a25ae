"""Contract tables and pixel shards -> fixed-size tensors for the pre-label model, and back."""

from __future__ import annotations

import functools
import math
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import polars as pl
import torch

from thyrokit.pixels import decode_png, read_pngs


@dataclass(frozen=True)
class Examples:
    """Images (and, where known, masks and malignancy) resized for the network.

    ``images`` and ``masks`` are uint8 ``(N, 1, S, S)`` tensors (masks 0/1) so a
    dataset of thousands stays small in memory; ``malignant`` is 1.0, 0.0 or NaN
    (pathology unknown, or no nodule) per image. ``groups`` names each image's patient
    where known: the frames of one cine clip are one patient's, not many independent cases.
    ``detail`` holds the same images at a finer size ``(N, 1, D, D)``, for the pathology head.
    """

    image_ids: list[str]
    images: torch.Tensor
    masks: torch.Tensor | None = None
    malignant: torch.Tensor | None = None
    groups: list[str] | None = None
    detail: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.image_ids)

    def subset(self, indices: list[int]) -> "Examples":
        """Return the examples at `indices`, in that order."""
        index = torch.tensor(indices, dtype=torch.long)
        return Examples(
            image_ids=[self.image_ids[i] for i in indices],
            images=self.images[index],
            masks=None if self.masks is None else self.masks[index],
            malignant=None if self.malignant is None else self.malignant[index],
            groups=None if self.groups is None else [self.groups[i] for i in indices],
            detail=None if self.detail is None else self.detail[index],
        )

    def unlabelled(self) -> "Examples":
        """Return the same images without their labels."""
        return Examples(image_ids=self.image_ids, images=self.images, groups=self.groups, detail=self.detail)

    @property
    def patients(self) -> list[str]:
        """Each image's patient; an image whose patient is unknown is a patient of its own."""
        return self.groups if self.groups is not None else list(self.image_ids)

    def weights(self) -> torch.Tensor:
        """Return each image's weight, 1 / (images of its patient): every patient counts once."""
        return self._patient_weights.clone()  # a copy: callers may reweigh it in place

    @functools.cached_property
    def _patient_weights(self) -> torch.Tensor:
        # Counted once per set: training draws a batch by these weights at every step.
        counts = Counter(self.patients)
        return torch.tensor([1.0 / counts[patient] for patient in self.patients], dtype=torch.float64)


def to_grey(image: np.ndarray) -> np.ndarray:
    """Return a uint8 (H, W) grey image: colour frames averaged to grey, uint16 stretched to 0..255."""
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    if image.dtype == np.uint8:
        return image
    low, high = float(image.min()), float(image.max())
    scaled = (image.astype(np.float32) - low) / max(high - low, 1.0)
    return np.round(scaled * 255).astype(np.uint8)


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """Return the grey image resized to (size, size)."""
    return cv2.resize(to_grey(image), (size, size), interpolation=cv2.INTER_AREA)


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Return a 0/1 uint8 mask resized to (size, size)."""
    return (cv2.resize(mask.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA) >= 0.5).astype(np.uint8)


def resize_back(probability: np.ndarray, height: int, width: int) -> np.ndarray:
    """Return a (size, size) float map resized to an image's (height, width)."""
    return cv2.resize(probability.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)


def read_images(images: pl.DataFrame, table_dir: str | os.PathLike) -> dict[str, np.ndarray | str]:
    """Return each image's pixels keyed by image_id, or a one-line reason it could not be read."""
    out: dict[str, np.ndarray | str] = {}
    for (shard,), group in images.group_by(["path"], maintain_order=True):
        out.update(_read_keys(Path(table_dir) / shard, group.get_column("image_id").to_list()))
    return out


def _read_keys(shard: Path, keys: list[str]) -> dict[str, np.ndarray | str]:
    try:
        pngs = read_pngs(shard, keys)
    except (OSError, KeyError, pl.exceptions.PolarsError):
        # Fall back to one key at a time so one missing row names itself, not the shard.
        pngs = {}
        for key in keys:
            try:
                pngs.update(read_pngs(shard, [key]))
            except (OSError, KeyError, pl.exceptions.PolarsError):
                pass
    out: dict[str, np.ndarray | str] = {}
    for key in keys:
        if key not in pngs:
            out[key] = f"{key}: no pixels in shard {shard.name}"
            continue
        try:
            out[key] = decode_png(pngs[key])
        except ValueError as error:
            out[key] = f"{key}: {error}"
    return out


def union_masks(nodules: pl.DataFrame, nodule_dir: str | os.PathLike,
                shapes: dict[str, tuple[int, int]]) -> dict[str, np.ndarray]:
    """Return one 0/1 mask per image in `shapes`: the union of its nodules' masks (or boxes)."""
    masks = {image_id: np.zeros(shape, np.uint8) for image_id, shape in shapes.items()}
    nodules = nodules.filter(pl.col("image_id").is_in(list(shapes)))
    with_mask = nodules.filter(pl.col("mask_path").is_not_null())
    pixels: dict[str, np.ndarray | str] = {}
    for (shard,), group in with_mask.group_by(["mask_path"], maintain_order=True):
        pixels.update(_read_keys(Path(nodule_dir) / shard, group.get_column("nodule_id").to_list()))
    for image_id, nodule_id, bbox in nodules.select("image_id", "nodule_id", "bbox").iter_rows():
        mask = pixels.get(nodule_id)
        target = masks[image_id]
        if isinstance(mask, np.ndarray) and mask.shape[:2] == target.shape:
            target |= (to_grey(mask) > 0).astype(np.uint8)
        else:  # no mask drawn, or one that does not fit: the box stands in for the outline
            x0, y0, x1, y1 = bbox
            target[y0:y1, x0:x1] = 1
    return masks


def malignancy(nodules: pl.DataFrame, image_ids: list[str]) -> torch.Tensor:
    """Return 1.0 where an image has a malignant nodule, 0.0 where only benign ones, else NaN."""
    known = nodules.filter(pl.col("pathology").is_in(["benign", "malignant"]))
    by_image = dict(
        known.group_by("image_id").agg((pl.col("pathology") == "malignant").any().alias("m")).iter_rows()
    )
    return torch.tensor([float(by_image[i]) if i in by_image else math.nan for i in image_ids])


def load_examples(images: pl.DataFrame, table_dir: str | os.PathLike, size: int,
                  nodules: pl.DataFrame | None = None, nodule_dir: str | os.PathLike | None = None,
                  detail_size: int = 0) -> tuple[Examples, list[str]]:
    """Read and resize `images` (with their labels when `nodules` is given); return them and problems.

    With a `detail_size`, each image is also kept at that finer size (Examples.detail).
    """
    images = images.sort("image_id")
    pixels = read_images(images, table_dir)
    problems = [value for value in pixels.values() if isinstance(value, str)]
    good = {key: value for key, value in pixels.items() if isinstance(value, np.ndarray)}
    image_ids = sorted(good)
    if not image_ids:
        return Examples(image_ids=[], images=torch.zeros(0, 1, size, size, dtype=torch.uint8)), problems
    stack = np.stack([resize_image(good[i], size) for i in image_ids])[:, None]
    detail = torch.from_numpy(np.stack([resize_image(good[i], detail_size) for i in image_ids])[:, None]) \
        if detail_size else None
    groups = patients_of(images, image_ids)
    if nodules is None:
        return Examples(image_ids=image_ids, images=torch.from_numpy(stack), groups=groups, detail=detail), problems
    shapes = {i: good[i].shape[:2] for i in image_ids}
    masks = union_masks(nodules, nodule_dir if nodule_dir is not None else table_dir, shapes)
    mask_stack = np.stack([resize_mask(masks[i], size) for i in image_ids])[:, None]
    return Examples(
        image_ids=image_ids,
        images=torch.from_numpy(stack),
        masks=torch.from_numpy(mask_stack),
        malignant=malignancy(nodules, image_ids),
        groups=groups,
        detail=detail,
    ), problems


def patients_of(images: pl.DataFrame, image_ids: list[str]) -> list[str] | None:
    """Return the patient of each of `image_ids` in the images table; None if it has no patient_id."""
    if "patient_id" not in images.columns:
        return None
    patient = dict(images.select("image_id", "patient_id").iter_rows())
    return [patient[i] for i in image_ids]


def as_float(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Return uint8 images as floats in [0, 1] on `device`."""
    return images.to(device=device, dtype=torch.float32) / 255.0
