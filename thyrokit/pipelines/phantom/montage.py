"""A contact sheet of phantom frames, so a person sees what the phantom looks like."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pydicom

from thyrokit.atomic import write_bytes
from thyrokit.pixels import encode_png


def read_frame(path: Path, frame: int = 0) -> np.ndarray:
    """Return one frame of a phantom DICOM file as grey or RGB uint8 pixels."""
    ds = pydicom.dcmread(path)
    pixels = ds.pixel_array
    if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1:
        pixels = pixels[frame]
    if ds.PhotometricInterpretation == "PALETTE COLOR":
        pixels = pydicom.pixels.apply_color_lut(pixels, ds)
    return np.asarray(pixels, np.uint8)


def write_montage(out: Path, dicom_files: list[str], tiles: int = 12, tile_width: int = 400) -> None:
    """Write truth/montage.png: a grid of frames of varied sites, colour and cine files."""
    picked, seen = [], set()
    for name in dicom_files:                       # one of each (site, kind) first, in file order
        kind = (name.split("/")[0], len(picked) % 3)
        if kind not in seen and len(picked) < tiles:
            seen.add(kind)
            picked.append(name)
    thumbs = []
    for name in picked:
        image = read_frame(out / "scans" / name)
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
        height = int(round(image.shape[0] * tile_width / image.shape[1]))
        thumbs.append(cv2.resize(image, (tile_width, height), interpolation=cv2.INTER_AREA))
    if not thumbs:
        return
    tile_height = max(thumb.shape[0] for thumb in thumbs)
    columns = 4
    rows = math.ceil(len(thumbs) / columns)
    canvas = np.full((rows * (tile_height + 4), columns * (tile_width + 4), 3), 40, np.uint8)
    for number, thumb in enumerate(thumbs):
        top, left = (number // columns) * (tile_height + 4), (number % columns) * (tile_width + 4)
        canvas[top:top + thumb.shape[0], left:left + thumb.shape[1]] = thumb
    write_bytes(out / "truth" / "montage.png", encode_png(canvas))
