"""Binary nodule masks: binarise, bound, and turn back into 0/255 images."""

from __future__ import annotations

import numpy as np

Box = tuple[int, int, int, int]


def binarise(mask: np.ndarray) -> np.ndarray:
    """Return a bool (H, W) mask: True where a grey or colour mask is above half its maximum.

    Half the maximum, not a fixed 127, so that 0/1 masks and 0/255 masks read the same.
    """
    if mask.ndim == 3:
        mask = mask.max(axis=2)
    peak = mask.max(initial=0)
    if peak == 0:
        return np.zeros(mask.shape, dtype=bool)
    return mask.astype(np.float64) > peak / 2


def mask_bbox(mask: np.ndarray) -> Box | None:
    """Return the (x0, y0, x1, y1) box, end exclusive, of a bool mask's True pixels; None if empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def crop_to_box(image: np.ndarray, box: Box) -> np.ndarray:
    """Return the part of `image` inside `box` (x0, y0, x1, y1), end exclusive."""
    x0, y0, x1, y1 = box
    return image[y0:y1, x0:x1]


def to_uint8(mask: np.ndarray) -> np.ndarray:
    """Return a bool mask as the contract's uint8 0/255 image."""
    return np.where(mask, np.uint8(255), np.uint8(0))
