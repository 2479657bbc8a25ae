"""Tiny patch tables for the synth tests: dark ellipses (malignant) and bright ovals (benign) on speckle."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import polars as pl

from thyrokit.contract import PATCHES, write_table
from thyrokit.pixels import encode_png, write_shards


def blob_patch(pathology: str, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Return a speckled patch with one nodule and its 0/255 mask."""
    image = np.clip(rng.gamma(4.0, 25.0, (size, size)), 0, 255).astype(np.uint8)
    mask = np.zeros((size, size), np.uint8)
    centre = (size // 2 + int(rng.integers(-2, 3)), size // 2 + int(rng.integers(-2, 3)))
    if pathology == "malignant":
        axes = (int(size * rng.uniform(0.15, 0.22)), int(size * rng.uniform(0.25, 0.32)))
        value = 30
    else:
        axes = (int(size * rng.uniform(0.25, 0.32)), int(size * rng.uniform(0.18, 0.24)))
        value = 200
    cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 30)), 0, 360, 255, -1)
    image[mask > 0] = np.clip(value + rng.normal(0, 12, int((mask > 0).sum())), 0, 255).astype(np.uint8)
    return image, mask


def make_patch_table(folder: Path, counts: dict[tuple[str, str], int], size: int = 16, seed: int = 0) -> Path:
    """Write a PATCHES table with `counts[(split, pathology)]` blob patches, and its shards; return the table path."""
    rng = np.random.default_rng(seed)
    rows, images, masks = [], [], []
    tirads = {"benign": ["TR2", "TR3", None], "malignant": ["TR4", "TR5"]}
    for (split, pathology), count in sorted(counts.items()):
        for index in range(count):
            key = f"{split}-{pathology}-{index:04d}"
            image, mask = blob_patch(pathology, size, rng)
            images.append((key, encode_png(image)))
            masks.append((key, encode_png(mask)))
            rows.append({
                "nodule_id": key, "image_id": f"img-{key}", "patient_id": f"pat-{index % 7}-{split}",
                "split": split, "pathology": pathology, "tirads": tirads[pathology][index % len(tirads[pathology])],
                "label_source": "human", "window": [0, 0, size, size], "scale": 1.0, "size": size,
            })
    image_shards = write_shards(images, folder / "pixels", "patches")
    mask_shards = write_shards(masks, folder / "pixels", "masks")
    frame = pl.DataFrame(rows).with_columns(
        pl.col("nodule_id").replace_strict({k: f"pixels/{v}" for k, v in image_shards.items()}).alias("path"),
        pl.col("nodule_id").replace_strict({k: f"pixels/{v}" for k, v in mask_shards.items()}).alias("mask_path"),
    )
    table = folder / "patches.parquet"
    write_table(frame, table, PATCHES)
    return table
