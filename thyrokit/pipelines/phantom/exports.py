"""Frames exported from the scanner as PNG or JPEG, named the way people name them (with PHI)."""

from __future__ import annotations

import cv2
import numpy as np

from thyrokit.pixels import encode_png
from thyrokit.pipelines.phantom.identities import Person, Visit


def export_name(person: Person, visit: Visit, number: int, extension: str) -> str:
    """Return an export's file name, e.g. ``DOE^JANE_12345678_20240312_3.png``."""
    return f"{person.dicom_name}_{person.patient_id}_{visit.date:%Y%m%d}_{number}.{extension}"


def encode_export(image: np.ndarray, extension: str) -> bytes:
    """Encode a grey or RGB frame as PNG (lossless) or JPEG (quality 92)."""
    if extension == "png":
        return encode_png(image)
    if extension != "jpg":
        raise ValueError(f"exports are png or jpg, not {extension}")
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    ok, buffer = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 92])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buffer.tobytes()
