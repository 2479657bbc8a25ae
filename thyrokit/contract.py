"""The data contract: the tables every stage reads and writes, and their validation.

Two tables carry the dataset (see DESIGN.md): ``images``, one row per de-identified
image or frame, and ``nodules``, one row per finding. ``quarantine`` lists raw files
that could not be made safe, without naming them (raw paths can hold PHI); the
mapping from ``source_hmac`` back to a raw path lives only in the raw zone.

Every table is written with :func:`write_table` and read with :func:`read_table`,
which check columns, types, allowed values, required values and unique keys, and
raise :class:`ContractError` naming the table, the column and the problem.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from thyrokit.atomic import atomic_path

SPLITS = ("train", "validation", "test", "external")
PATHOLOGIES = ("benign", "malignant", "unknown")
LABEL_SOURCES = ("human", "prediction", "pseudo", "synthetic")
TIRADS_LEVELS = ("TR1", "TR2", "TR3", "TR4", "TR5")


class ContractError(ValueError):
    """A table does not meet the data contract."""


@dataclass(frozen=True)
class TableSpec:
    """Columns, types and rules of one contract table."""

    name: str
    schema: dict[str, pl.DataType]
    required: tuple[str, ...]
    key: tuple[str, ...]
    allowed: dict[str, tuple[str, ...]] = field(default_factory=dict)
    sort_by: tuple[str, ...] = ()

    def empty(self) -> pl.DataFrame:
        """Return an empty frame with this table's schema."""
        return pl.DataFrame(schema=self.schema)


IMAGES = TableSpec(
    name="images",
    schema={
        "image_id": pl.String(),
        "patient_id": pl.String(),
        "study_id": pl.String(),
        "series_id": pl.String(),
        "site": pl.String(),
        "device": pl.String(),
        "modality": pl.String(),
        "frame": pl.Int32(),
        "n_frames": pl.Int32(),
        "width": pl.Int32(),
        "height": pl.Int32(),
        "channels": pl.Int8(),
        # (row, col) millimetres per pixel; null where the source carries no calibration.
        "spacing_mm": pl.List(pl.Float64()),
        # (x0, y0, x1, y1) of the kept scan area in the source frame's pixels, end exclusive.
        "crop": pl.List(pl.Int32()),
        # Shard file holding the pixels, relative to the table's folder.
        "path": pl.String(),
        "split": pl.String(),
        "fold": pl.Int8(),
        # Perceptual hash (thyrokit.curate.phash, 16 hex digits) for near-duplicate checks across splits.
        "phash": pl.String(),
        "source_format": pl.String(),
        "source_hmac": pl.String(),
        "tool_version": pl.String(),
        # (slope, intercept): modality value (e.g. Hounsfield units) = pixel * slope + intercept,
        # for stored-value images (CT, NM); null for display pixels (ultrasound, RGB, exports).
        "rescale": pl.List(pl.Float64()),
    },
    required=(
        "image_id", "patient_id", "study_id", "series_id", "site", "device", "modality",
        "frame", "n_frames", "width", "height", "channels", "crop", "path",
        "source_format", "source_hmac", "tool_version",
    ),
    key=("image_id",),
    allowed={"split": SPLITS, "source_format": ("dicom", "png", "jpeg", "synthetic")},
    sort_by=("image_id",),
)

NODULES = TableSpec(
    name="nodules",
    schema={
        "image_id": pl.String(),
        "nodule_id": pl.String(),
        # (x0, y0, x1, y1) in the de-identified image's pixels, end exclusive.
        "bbox": pl.List(pl.Int32()),
        # Shard file holding the nodule's binary mask, relative to the table's folder.
        "mask_path": pl.String(),
        "pathology": pl.String(),
        "tirads": pl.String(),
        "tirads_points": pl.Int8(),
        "composition": pl.String(),
        "echogenicity": pl.String(),
        "shape": pl.String(),
        "margin": pl.String(),
        "echogenic_foci": pl.List(pl.String()),
        "label_source": pl.String(),
        "confidence": pl.Float64(),
        "annotator": pl.String(),
        "generator": pl.String(),
        "updated_at": pl.Datetime("us", "UTC"),
    },
    required=("image_id", "nodule_id", "bbox", "pathology", "label_source"),
    key=("nodule_id",),
    allowed={"pathology": PATHOLOGIES, "label_source": LABEL_SOURCES, "tirads": TIRADS_LEVELS},
    sort_by=("image_id", "nodule_id"),
)

PATCHES = TableSpec(
    name="patches",
    schema={
        # One square patch per nodule, centred on it, resized to a fixed size.
        "nodule_id": pl.String(),
        "image_id": pl.String(),
        "patient_id": pl.String(),
        "site": pl.String(),
        "split": pl.String(),
        "pathology": pl.String(),
        "tirads": pl.String(),
        "label_source": pl.String(),
        # (x0, y0, x1, y1) of the window cut from the image, end exclusive; may reach
        # past the image edge, where the patch is padded.
        "window": pl.List(pl.Int32()),
        # Patch pixels per image pixel, and millimetres per patch pixel where known.
        "scale": pl.Float64(),
        "spacing_mm": pl.List(pl.Float64()),
        "size": pl.Int32(),
        # Shard files holding the patch (key nodule_id) and its mask (key nodule_id).
        "path": pl.String(),
        "mask_path": pl.String(),
    },
    required=("nodule_id", "image_id", "patient_id", "split", "pathology", "label_source",
              "window", "scale", "size", "path", "mask_path"),
    key=("nodule_id",),
    allowed={"split": SPLITS, "pathology": PATHOLOGIES, "label_source": LABEL_SOURCES,
             "tirads": TIRADS_LEVELS},
    sort_by=("nodule_id",),
)

UNCERTAINTY = TableSpec(
    name="uncertainty",
    schema={
        # One row per image the pre-label model predicted: how unsure it is, and the
        # annotation order (rank 0 = most informative, shown to annotators first).
        "image_id": pl.String(),
        "uncertainty": pl.Float64(),
        "rank": pl.Int32(),
        "model_version": pl.String(),
    },
    required=("image_id", "uncertainty", "rank", "model_version"),
    key=("image_id",),
    sort_by=("rank",),
)

QUARANTINE = TableSpec(
    name="quarantine",
    schema={
        "source_hmac": pl.String(),
        "stage": pl.String(),
        "reason": pl.String(),
    },
    required=("source_hmac", "stage", "reason"),
    key=("source_hmac", "stage"),
    sort_by=("stage", "source_hmac"),
)

TABLES = {spec.name: spec for spec in (IMAGES, NODULES, PATCHES, UNCERTAINTY, QUARANTINE)}


def conform(frame: pl.DataFrame, spec: TableSpec) -> pl.DataFrame:
    """Return `frame` with the table's columns, order and types, validated.

    Columns the contract knows but `frame` lacks are added as nulls; extra columns
    are an error, so a typo never silently drops data.
    """
    extra = [name for name in frame.columns if name not in spec.schema]
    if extra:
        raise ContractError(f"{spec.name}: unknown column(s) {extra}; the contract has {list(spec.schema)}")
    columns = []
    for name, dtype in spec.schema.items():
        if name not in frame.columns:
            columns.append(pl.lit(None, dtype=dtype).alias(name))
            continue
        try:
            columns.append(frame.get_column(name).cast(dtype, strict=True))
        except Exception as error:  # polars raises several exception types for bad casts
            raise ContractError(
                f"{spec.name}: column '{name}' cannot be read as {dtype}: {error}"
            ) from None
    # A literal column alone would broadcast to one row, so an empty input stays empty explicitly.
    conformed = frame.select(columns) if frame.height else spec.empty()
    validate(conformed, spec)
    if spec.sort_by:
        conformed = conformed.sort(list(spec.sort_by))
    return conformed


def validate(frame: pl.DataFrame, spec: TableSpec) -> None:
    """Raise :class:`ContractError` if `frame` breaks any rule of `spec`."""
    if list(frame.schema.items()) != list(spec.schema.items()):
        raise ContractError(f"{spec.name}: schema is {dict(frame.schema)}, expected {spec.schema}")
    for name in spec.required:
        nulls = frame.get_column(name).null_count()
        if nulls:
            raise ContractError(f"{spec.name}: column '{name}' is required but has {nulls} null value(s)")
    for name, values in spec.allowed.items():
        present = frame.get_column(name).drop_nulls().unique().to_list()
        bad = sorted(set(present) - set(values))
        if bad:
            raise ContractError(f"{spec.name}: column '{name}' has values {bad} outside {list(values)}")
    if frame.height and frame.select(spec.key).is_duplicated().any():
        dupes = frame.filter(frame.select(spec.key).is_duplicated()).select(spec.key).unique().head(5)
        raise ContractError(
            f"{spec.name}: key {list(spec.key)} is not unique, e.g. {dupes.rows()}"
        )
    for name in ("crop", "bbox"):  # "window" may reach past the image edge, so it is not checked
        if name in frame.columns:
            _check_boxes(frame, spec, name)


def _check_boxes(frame: pl.DataFrame, spec: TableSpec, name: str) -> None:
    boxes = frame.get_column(name).drop_nulls()
    if boxes.is_empty():
        return
    if not (boxes.list.len() == 4).all():
        raise ContractError(f"{spec.name}: column '{name}' must hold 4 numbers (x0, y0, x1, y1)")
    x0, y0, x1, y1 = (boxes.list.get(i) for i in range(4))
    if not ((x1 > x0) & (y1 > y0) & (x0 >= 0) & (y0 >= 0)).all():
        raise ContractError(f"{spec.name}: column '{name}' has empty or negative boxes")


def write_table(frame: pl.DataFrame, path: str | os.PathLike, spec: TableSpec) -> pl.DataFrame:
    """Validate `frame` against `spec` and write it atomically as Parquet; return what was written."""
    conformed = conform(frame, spec)
    with atomic_path(path) as tmp:
        conformed.write_parquet(tmp, compression="zstd", statistics=True)
    return conformed


def read_table(path: str | os.PathLike, spec: TableSpec) -> pl.DataFrame:
    """Read a Parquet table and validate it against `spec`."""
    path = Path(path)
    if not path.is_file():
        raise ContractError(f"{spec.name}: no table at {path}")
    try:
        frame = pl.read_parquet(path)
    except Exception as error:
        raise ContractError(f"{spec.name}: {path} is not a readable Parquet file: {error}") from None
    try:
        return conform(frame, spec)
    except ContractError as error:
        raise ContractError(f"{error} (in {path})") from None
