"""Small images, predictions and uncertainty tables, as the split and prelabel stages write them."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import polars as pl

from thyrokit.contract import IMAGES, NODULES, UNCERTAINTY, write_table
from thyrokit.pixels import encode_png, write_shards

HEIGHT, WIDTH = 48, 64
MODEL_VERSION = "prelabel-test-1"


def image_ids(count: int) -> list[str]:
    """Return `count` pseudonymous image ids."""
    return [f"img-{index:04d}" for index in range(count)]


def speckle(index: int, shape: tuple[int, int] = (HEIGHT, WIDTH)) -> np.ndarray:
    """Return a grey ultrasound-like frame, different per index."""
    return np.random.default_rng(index).integers(0, 255, shape, dtype=np.uint8)


def disc(index: int, radius: int = 7, shape: tuple[int, int] = (HEIGHT, WIDTH)) -> np.ndarray:
    """Return a 0/255 mask with one disc, placed by index (scaled with the image)."""
    mask = np.zeros(shape, np.uint8)
    scale = shape[1] / WIDTH
    center = (round((14 + index % 30) * scale), round((12 + index % 20) * scale))
    cv2.circle(mask, center, round(radius * scale), 255, -1)
    return mask


def bbox_of(mask: np.ndarray) -> list[int]:
    """Return the end-exclusive box of a mask's foreground."""
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def write_images(folder: Path, ids: list[str], shape: tuple[int, int] = (HEIGHT, WIDTH)) -> Path:
    """Write an images table with pixel shards into `folder`; return the table's path."""
    where = write_shards(((image_id, encode_png(speckle(i, shape))) for i, image_id in enumerate(ids)),
                         folder / "pixels", "images")
    frame = pl.DataFrame({
        "image_id": ids, "patient_id": [f"pat-{i // 2:04d}" for i in range(len(ids))],
        "study_id": "std-1", "series_id": "ser-1", "site": "site-A", "device": "dev-1", "modality": "US",
        "frame": 0, "n_frames": 1, "width": shape[1], "height": shape[0], "channels": 1,
        "crop": [[0, 0, shape[1], shape[0]]] * len(ids), "path": [f"pixels/{where[i]}" for i in ids],
        "split": "train", "source_format": "synthetic", "source_hmac": [f"h{i}" for i in ids],
        "tool_version": "test",
    })
    write_table(frame, folder / "images.parquet", IMAGES)
    return folder / "images.parquet"


def write_predictions(folder: Path, ids: list[str], model_version: str = MODEL_VERSION,
                      radius: int = 7, shape: tuple[int, int] = (HEIGHT, WIDTH)) -> tuple[Path, Path]:
    """Write one predicted nodule per image and the uncertainty table; return both paths."""
    masks = {f"{image_id}-p0": disc(i, radius, shape) for i, image_id in enumerate(ids)}
    where = write_shards(((key, encode_png(mask)) for key, mask in masks.items()), folder / "masks", "masks")
    pathologies = ["benign", "malignant", "unknown"]
    nodules = pl.DataFrame({
        "image_id": ids, "nodule_id": list(masks),
        "bbox": [bbox_of(mask) for mask in masks.values()],
        "mask_path": [f"masks/{where[key]}" for key in masks],
        "pathology": [pathologies[i % 3] for i in range(len(ids))],
        "composition": "solid", "echogenicity": "hypoechoic", "shape": "wider_than_tall", "margin": "smooth",
        "echogenic_foci": [["none"]] * len(ids), "label_source": "prediction",
        "confidence": [0.5 + 0.4 * (i % 2) for i in range(len(ids))],
    })
    write_table(nodules, folder / "nodules.parquet", NODULES)
    # The last image is the most uncertain, so push order differs from id order.
    uncertainty = pl.DataFrame({
        "image_id": ids, "uncertainty": [0.1 + 0.8 * i / max(len(ids) - 1, 1) for i in range(len(ids))],
        "rank": list(range(len(ids) - 1, -1, -1)), "model_version": model_version,
    })
    write_table(uncertainty, folder / "uncertainty.parquet", UNCERTAINTY)
    return folder / "nodules.parquet", folder / "uncertainty.parquet"
