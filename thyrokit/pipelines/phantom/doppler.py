"""Colour Doppler: flow drawn over B-mode in a colour box, through a 256-entry palette.

Every colour frame is an index image into one palette: 128 grey levels, 64 reds
(flow toward the probe) and 64 blues (flow away). The same frame therefore stores
as RGB or as a PALETTE COLOR DICOM without loss.
"""

from __future__ import annotations

import numpy as np

GREY_LEVELS = 128
RAMP = 64
RED_START, BLUE_START = GREY_LEVELS, GREY_LEVELS + RAMP


def palette() -> np.ndarray:
    """Return the (256, 3) uint8 palette: grey ramp, then red-to-yellow, then blue-to-cyan."""
    grey = np.round(np.linspace(0, 255, GREY_LEVELS)).astype(np.uint8)
    ramp = np.linspace(0.0, 1.0, RAMP)
    red = np.stack([120 + 135 * np.minimum(ramp * 1.6, 1), 220 * np.maximum(ramp - 0.45, 0) / 0.55, 30 * ramp], 1)
    blue = np.stack([40 * ramp, 200 * np.maximum(ramp - 0.45, 0) / 0.55, 130 + 125 * np.minimum(ramp * 1.6, 1)], 1)
    table = np.concatenate([np.repeat(grey[:, None], 3, 1), red, blue])
    return np.round(table).astype(np.uint8)


def grey_to_index(grey: np.ndarray) -> np.ndarray:
    """Return palette indices of grey pixels (the nearest of the 128 grey levels)."""
    return ((grey.astype(np.uint16) * (GREY_LEVELS - 1) + 127) // 255).astype(np.uint8)


def flow_to_index(velocity: np.ndarray) -> np.ndarray:
    """Return palette indices of signed velocities in -1..1 (red toward, blue away)."""
    level = np.clip(np.abs(velocity) * (RAMP - 1), 0, RAMP - 1).astype(np.uint8)
    return np.where(velocity >= 0, RED_START + level, BLUE_START + level).astype(np.uint8)


def overlay_flow(index_image: np.ndarray, velocity: np.ndarray, box: tuple[int, int, int, int],
                 visible: np.ndarray, threshold: float = 0.08) -> np.ndarray:
    """Return `index_image` with flow faster than `threshold` painted inside `box` where `visible`."""
    x0, y0, x1, y1 = box
    inside = np.zeros(index_image.shape, bool)
    inside[y0:y1, x0:x1] = True
    painted = inside & visible & (np.abs(velocity) > threshold)
    return np.where(painted, flow_to_index(velocity), index_image).astype(np.uint8)


def draw_colour_bar(index_image: np.ndarray, box: tuple[int, int, int, int]) -> None:
    """Draw the velocity scale bar (red above blue) into `box` of an index image, in place."""
    x0, y0, x1, y1 = box
    half = (y1 - y0) // 2
    top = np.linspace(RAMP - 1, 0, half).astype(np.uint8) + RED_START
    bottom = np.linspace(0, RAMP - 1, (y1 - y0) - half).astype(np.uint8) + BLUE_START
    index_image[y0:y1, x0:x1] = np.concatenate([top, bottom])[:, None]
