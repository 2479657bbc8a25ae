"""Sample grids: generated patches with their masks, one PNG per class."""

from __future__ import annotations

import os

import numpy as np

from thyrokit.atomic import write_bytes
from thyrokit.pixels import encode_png


def tile(images: np.ndarray, columns: int, gap: int = 2) -> np.ndarray:
    """Tile (N, S, S) uint8 images into rows of `columns`, separated by `gap` white pixels."""
    count, size = images.shape[0], images.shape[1]
    rows = -(-count // columns)
    canvas = np.full((rows * (size + gap) - gap, columns * (size + gap) - gap), 255, np.uint8)
    for index, image in enumerate(images):
        row, column = divmod(index, columns)
        canvas[row * (size + gap):row * (size + gap) + size, column * (size + gap):column * (size + gap) + size] = image
    return canvas


def write_grid(path: str | os.PathLike, images: np.ndarray, masks: np.ndarray, zoom: int = 3) -> None:
    """Write patches (top row) above their masks (bottom row) as one PNG, each pixel `zoom` x `zoom`."""
    grid = tile(np.concatenate([images, masks]), columns=len(images))
    write_bytes(path, encode_png(grid.repeat(zoom, axis=0).repeat(zoom, axis=1)))
