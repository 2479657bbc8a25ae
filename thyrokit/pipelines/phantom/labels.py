"""The tables the phantom writes beside the scans: labels sidecar and ground truth.

``labels/labels.csv`` is what a hospital might ship (a minority of images labelled);
``truth/`` holds what only a phantom can know: every nodule of every frame, every
planted identifier, every burned-in text box, and a manifest of the files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import polars as pl

from thyrokit.atomic import write_text

LABEL_COLUMNS = {
    "file": pl.String(), "frame": pl.Int32(), "nodule": pl.Int32(), "mask": pl.String(),
    "pathology": pl.String(), "composition": pl.String(), "echogenicity": pl.String(),
    "shape": pl.String(), "margin": pl.String(), "echogenic_foci": pl.String(),
    "tirads_points": pl.Int32(), "tirads": pl.String(),
}
TRUTH_COLUMNS = {
    **LABEL_COLUMNS,
    "patient_nodule": pl.Int32(),  # which of the patient's nodules, the same across images
    "x0": pl.Int32(), "y0": pl.Int32(), "x1": pl.Int32(), "y1": pl.Int32(),
    "area_px": pl.Int32(), "labelled": pl.Boolean(),
}
TEXT_BOX_COLUMNS = {
    "file": pl.String(), "frame": pl.Int32(), "x0": pl.Int32(), "y0": pl.Int32(),
    "x1": pl.Int32(), "y1": pl.Int32(), "kind": pl.String(), "text": pl.String(),
    # A text line's baseline origin and font scale (empty for a caliper mark): where its ink is.
    "x": pl.Int32(), "y": pl.Int32(), "scale": pl.Float64(),
}
MANIFEST_COLUMNS = {
    "file": pl.String(), "format": pl.String(), "frames": pl.Int32(), "width": pl.Int32(),
    "height": pl.Int32(), "channels": pl.Int32(), "site": pl.String(), "device": pl.String(),
    "patient_id": pl.String(), "modality": pl.String(), "colour": pl.Boolean(), "cine": pl.Boolean(),
    "encoding": pl.String(), "region_x0": pl.Int32(), "region_y0": pl.Int32(),
    "region_x1": pl.Int32(), "region_y1": pl.Int32(), "mm_per_px": pl.Float64(),
    "source_file": pl.String(), "labelled": pl.Boolean(),
}


def write_csv(rows: list[dict], columns: dict[str, pl.DataType], path: str | os.PathLike,
              sort_by: list[str]) -> pl.DataFrame:
    """Write rows as a CSV with exactly `columns`, sorted, atomically; return the frame."""
    frame = pl.DataFrame(rows, schema=columns, orient="row") if rows else pl.DataFrame(schema=columns)
    frame = frame.sort(sort_by)
    write_text(path, frame.write_csv())
    return frame


def write_phi(phi: dict[str, dict], path: str | os.PathLike) -> None:
    """Write the planted identifiers per file as sorted, indented JSON."""
    write_text(Path(path), json.dumps(phi, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
