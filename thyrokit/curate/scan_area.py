"""The scan area of an ultrasound frame: the fan or rectangle of tissue, without the screen around it.

Ultrasound exports show the scan inside a screen of annotations: patient name, date,
settings, measurement tables, logos, colour bars. Keeping only the scan area removes
most of that burned-in text and gives models the same field of view across devices.
The area comes from the DICOM header's SequenceOfUltrasoundRegions when there is one
(the device's own statement of where the 2D tissue image is), else it is found in the
pixels: the largest bright, solid region, filled out to its convex hull (a fan or a
rectangle is convex, a dark cyst near the edge must not cut a notch in it).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import cv2
import numpy as np

Box = tuple[int, int, int, int]


def scan_area(frames: np.ndarray, tissue_boxes: Sequence[Box] = (), threshold: int = 12,
              min_fraction: float = 0.05) -> tuple[np.ndarray, str]:
    """Return the keep-mask shared by all frames (N, H, W[, 3]) of a file, and its origin.

    The origin is ``"regions"`` when the header's tissue regions give the mask, else
    ``"detected"``. A cine's frames share one mask, found on their brightest-pixel
    projection, so every frame of a file has the same crop.
    """
    shape = frames.shape[1:3]
    if tissue_boxes:
        mask = mask_from_boxes(tissue_boxes, shape)
        if mask.any():
            return mask, "regions"
    picks = np.linspace(0, len(frames) - 1, num=min(len(frames), 16)).round().astype(int)
    projection = frames[np.unique(picks)].max(axis=0)
    return detect_scan_area(projection, threshold, min_fraction), "detected"


def mask_from_boxes(boxes: Iterable[Box], shape: tuple[int, int]) -> np.ndarray:
    """Return the bool (H, W) union of boxes (x0, y0, x1, y1), clipped to the image."""
    height, width = shape
    mask = np.zeros((height, width), dtype=bool)
    for x0, y0, x1, y1 in boxes:
        mask[max(y0, 0):min(y1, height), max(x0, 0):min(x1, width)] = True
    return mask


def detect_scan_area(image: np.ndarray, threshold: int = 12, min_fraction: float = 0.05) -> np.ndarray:
    """Return the bool (H, W) keep-mask of the scan area found in an ultrasound frame.

    Pixels brighter than `threshold` (0-255 scale) are candidates; an opening removes
    text, markers and thin lines; the largest remaining region, convex-hulled, is the
    scan area. If no region covers `min_fraction` of the frame, the whole frame is kept.
    """
    grey = to_grey_uint8(image)
    height, width = grey.shape
    bright = (cv2.medianBlur(grey, 3) > threshold).astype(np.uint8)
    # Text strokes and calipers are a few pixels wide; the scan area is hundreds.
    radius = max(2, min(height, width) // 60)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    solid = cv2.morphologyEx(bright, cv2.MORPH_CLOSE, kernel)
    solid = cv2.morphologyEx(solid, cv2.MORPH_OPEN, kernel)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(solid, connectivity=8)
    if count <= 1:
        return np.ones((height, width), dtype=bool)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    if stats[largest, cv2.CC_STAT_AREA] < min_fraction * height * width:
        return np.ones((height, width), dtype=bool)
    # The hull of the region's outline equals the hull of all its pixels, at a fraction of the cost.
    contours, _ = cv2.findContours((labels == largest).astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_NONE)
    hull = cv2.convexHull(np.concatenate(contours))
    mask = np.zeros((height, width), dtype=np.uint8)
    cv2.fillConvexPoly(mask, hull, 1)
    return mask.astype(bool)


def bounding_box(mask: np.ndarray) -> Box:
    """Return the (x0, y0, x1, y1) box, end exclusive, of the True pixels of a non-empty mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise ValueError("the mask is empty")
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def crop(image: np.ndarray, box: Box) -> np.ndarray:
    """Return the part of `image` (H, W[, C]) inside `box`."""
    x0, y0, x1, y1 = box
    return image[y0:y1, x0:x1]


def blank_outside(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Return a copy of `image` with every pixel outside the bool `mask` set to 0."""
    blanked = image.copy()
    blanked[~mask] = 0
    return blanked


def to_grey_uint8(image: np.ndarray) -> np.ndarray:
    """Return a (H, W) uint8 view of a grey or RGB, uint8 or uint16 image (min-max for 16 bits)."""
    grey = image.max(axis=2) if image.ndim == 3 else image
    if grey.dtype == np.uint8:
        return np.ascontiguousarray(grey)
    low, high = int(grey.min()), int(grey.max())
    if high == low:
        return np.zeros(grey.shape, dtype=np.uint8)
    return ((grey.astype(np.float32) - low) * (255.0 / (high - low))).round().astype(np.uint8)
