"""Agreement between annotators of one image, and which annotation wins a conflict.

The conflict rule: the most recently updated annotation of an image wins (ties go to
the later annotation id); the others are kept only as agreement figures, so a
reviewer can see where annotators disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

import numpy as np


class Dated(Protocol):
    annotation_id: int
    updated_at: datetime


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Return the Dice overlap of two masks; 1.0 when both are empty."""
    a, b = a > 0, b > 0
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Return the intersection over union of two masks; 1.0 when both are empty."""
    a, b = a > 0, b > 0
    union = int((a | b).sum())
    return 1.0 if union == 0 else int((a & b).sum()) / union


def box_iou(a: Sequence[int], b: Sequence[int]) -> float:
    """Return the intersection over union of two (x0, y0, x1, y1) boxes."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(width, 0) * max(height, 0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def winner(annotations: Sequence[Dated]) -> Dated:
    """Return the annotation that wins a conflict: latest updated_at, then latest id."""
    return max(annotations, key=lambda annotation: (annotation.updated_at, annotation.annotation_id))
