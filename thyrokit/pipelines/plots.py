"""The dataset card's pictures: class balance, split composition and patch montages, as PNG bytes."""

from __future__ import annotations

import io

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend is chosen before pyplot loads)
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from thyrokit.pixels import encode_png  # noqa: E402


def figure_png(figure: Figure) -> bytes:
    """Return `figure` as PNG bytes (no timestamp, so the same figure gives the same bytes) and close it."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    plt.close(figure)
    return buffer.getvalue()


def class_balance(before: dict[str, int], after: dict[str, int] | None = None) -> bytes:
    """Plot train patches per class, real only and (if given) real plus synthetic."""
    classes = list(before)
    figure, axes = plt.subplots(figsize=(5, 3))
    positions = np.arange(len(classes))
    width = 0.4 if after else 0.8
    axes.bar(positions - (width / 2 if after else 0), [before[name] for name in classes], width, label="real")
    if after:
        axes.bar(positions + width / 2, [after[name] for name in classes], width, label="real + synthetic")
        axes.legend()
    axes.set_xticks(positions, classes)
    axes.set_ylabel("train patches")
    axes.set_title("Class balance of the train split")
    figure.tight_layout()
    return figure_png(figure)


def split_composition(counts: dict[str, dict[str, int]]) -> bytes:
    """Plot images per split, stacked by site; `counts` maps site -> split -> images."""
    sites = sorted(counts)
    splits = list(next(iter(counts.values()))) if counts else []
    figure, axes = plt.subplots(figsize=(5, 3))
    bottom = np.zeros(len(splits))
    for site in sites:
        values = np.array([counts[site][split] for split in splits], dtype=float)
        axes.bar(splits, values, bottom=bottom, label=site)
        bottom += values
    axes.set_ylabel("images")
    axes.set_title("Images per split, by site")
    if sites:
        axes.legend(fontsize="small")
    figure.tight_layout()
    return figure_png(figure)


def montage(images: list[np.ndarray], columns: int = 8, size: int = 64) -> np.ndarray:
    """Return `images` tiled row by row into one grey uint8 image, each resized to `size` x `size`."""
    rows = max(1, -(-len(images) // columns))
    canvas = np.zeros((rows * size, columns * size), dtype=np.uint8)
    for index, image in enumerate(images):
        if image.ndim == 3:
            image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        if image.dtype != np.uint8:
            image = cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
        row, column = divmod(index, columns)
        canvas[row * size:(row + 1) * size, column * size:(column + 1) * size] = cv2.resize(
            image, (size, size), interpolation=cv2.INTER_AREA)
    return canvas


def montage_png(images: list[np.ndarray], columns: int = 8, size: int = 64) -> bytes:
    """Return the montage of `images` as PNG bytes."""
    return encode_png(montage(images, columns, size))
