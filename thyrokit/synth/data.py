"""Train-split nodule patches as arrays and tensors, with the labels generators condition on.

A generator is conditioned on one integer per patch that combines its pathology and its
TI-RADS level (or "level unknown"): ``label = class_index * LEVELS + level_index``, with
level index 0 for an unknown level and 1..5 for TR1..TR5. Patches and masks are stacked
as two channels in [-1, 1] (image, mask), so every generated patch carries its mask.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import polars as pl
import torch

from thyrokit.contract import PATCHES, TIRADS_LEVELS, read_table
from thyrokit.pixels import decode_png, read_pngs
from thyrokit.synth.config import DataConfig

LEVELS = 1 + len(TIRADS_LEVELS)


@dataclass(frozen=True)
class PatchSet:
    """Patches, masks and their rows, in table order."""

    images: np.ndarray  # (N, S, S) uint8
    masks: np.ndarray  # (N, S, S) uint8, 0/255
    rows: pl.DataFrame  # the PATCHES rows, same order


def num_labels(classes: tuple[str, ...]) -> int:
    """Return how many (class, TI-RADS level) conditioning labels there are."""
    return len(classes) * LEVELS


def encode_label(class_index: int, tirads: str | None) -> int:
    """Return the conditioning label of a class index and a TI-RADS level (None = unknown)."""
    level = 0 if tirads is None else 1 + TIRADS_LEVELS.index(tirads)
    return class_index * LEVELS + level


def decode_label(label: int, classes: tuple[str, ...]) -> tuple[str, str | None]:
    """Return the (pathology, TI-RADS level or None) of a conditioning label."""
    class_index, level = divmod(int(label), LEVELS)
    return classes[class_index], (None if level == 0 else TIRADS_LEVELS[level - 1])


def labels_of(rows: pl.DataFrame, classes: tuple[str, ...]) -> np.ndarray:
    """Return the conditioning label of every row."""
    return np.array(
        [encode_label(classes.index(p), t) for p, t in zip(rows["pathology"], rows["tirads"])],
        dtype=np.int64,
    )


def select_training_rows(patches: pl.DataFrame, config: DataConfig) -> pl.DataFrame:
    """Return the train-split rows of the configured classes and label sources."""
    return patches.filter(
        (pl.col("split") == "train")
        & pl.col("pathology").is_in(list(config.classes))
        & pl.col("label_source").is_in(list(config.label_sources))
    )


def resize_patch(image: np.ndarray, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Return a patch and its mask resized to `size` x `size` (area for pixels, nearest for masks)."""
    if image.shape == (size, size):
        return image, mask
    image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    mask = cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST)
    return image, mask


def read_patch_pixels(rows: pl.DataFrame, folder: str | os.PathLike, size: int) -> PatchSet:
    """Read the patch and mask of every row from the shards beside their table."""
    folder = Path(folder)
    wanted: dict[str, list[str]] = defaultdict(list)
    for key, path, mask_path in rows.select("nodule_id", "path", "mask_path").iter_rows():
        wanted[path].append(key)
        wanted[mask_path].append(key)
    pngs: dict[tuple[str, str], bytes] = {}
    for shard, keys in sorted(wanted.items()):
        for key, png in read_pngs(folder / shard, keys).items():
            pngs[(shard, key)] = png
    images, masks = [], []
    for key, path, mask_path in rows.select("nodule_id", "path", "mask_path").iter_rows():
        image, mask = decode_png(pngs[(path, key)]), decode_png(pngs[(mask_path, key)])
        if image.ndim != 2 or image.dtype != np.uint8:
            raise ValueError(f"patch {key}: expected a grey uint8 patch, got {image.dtype} {image.shape}")
        image, mask = resize_patch(image, mask, size)
        images.append(image)
        masks.append(np.where(mask > 0, 255, 0).astype(np.uint8))
    shape = (0, size, size)
    return PatchSet(
        images=np.stack(images) if images else np.zeros(shape, np.uint8),
        masks=np.stack(masks) if masks else np.zeros(shape, np.uint8),
        rows=rows,
    )


def load_training_patches(table: str | os.PathLike, config: DataConfig) -> PatchSet:
    """Read the training patches of a PATCHES table; error if a class has none."""
    rows = select_training_rows(read_table(table, PATCHES), config)
    for name in config.classes:
        if rows.filter(pl.col("pathology") == name).is_empty():
            raise ValueError(f"{table}: no train-split patches of class '{name}' to learn from")
    return read_patch_pixels(rows, Path(table).parent, config.size)


def load_held_out(table: str | os.PathLike, config: DataConfig) -> dict[str, PatchSet]:
    """Read the human-labelled patches of the configured classes in each non-train split."""
    rows = read_table(table, PATCHES).filter(
        (pl.col("split") != "train") & pl.col("pathology").is_in(list(config.classes))
        & (pl.col("label_source") == "human")
    )
    return {split: read_patch_pixels(rows.filter(pl.col("split") == split), Path(table).parent, config.size)
            for split in sorted(rows.get_column("split").unique().to_list())}


def to_tensor(images: np.ndarray, masks: np.ndarray) -> torch.Tensor:
    """Stack uint8 patches and masks as a (N, 2, S, S) float tensor in [-1, 1]."""
    pair = np.stack([images, masks], axis=1).astype(np.float32)
    return torch.from_numpy(pair / 127.5 - 1.0)


def from_tensor(pairs: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Return uint8 patches and 0/255 masks from a (N, 2, S, S) tensor in [-1, 1]."""
    pairs = pairs.detach().float().cpu().clamp(-1, 1)
    images = ((pairs[:, 0] + 1) * 127.5).round().to(torch.uint8).numpy()
    masks = np.where(pairs[:, 1].numpy() > 0, 255, 0).astype(np.uint8)
    return images, masks
