"""The labels stage: labels shipped with the raw dump, merged with Label Studio's.

The sidecar ``labels/labels.csv`` names raw scan files, whose names hold PHI, so no
table downstream may name them. A label finds its de-identified image the way ingest
named it: the keyed hash of the raw file's bytes and the frame index give the
``image_id`` (:mod:`thyrokit.curate.identity`). Each mask is then cut with the crop box
ingest kept, so it lands on the de-identified image's pixels.

Human labels from Label Studio win over the sidecar, image by image: once an annotator
has labelled an image in Label Studio, every sidecar row of that image is dropped.
"Labelled, no finding" is a label too, so the images that carry human labels are listed
in ``labelled_images.parquet`` whether or not they have nodules.

Problems name a row by its line number in labels.csv and never quote its cells: a
shifted column can put a patient's file name into any of them.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import cv2
import polars as pl

from thyrokit.annotate.tirads import ECHOGENIC_FOCI, FEATURES, parse_foci, tirads_level, tirads_points
from thyrokit.atomic import atomic_path
from thyrokit.contract import IMAGES, NODULES, PATHOLOGIES, TIRADS_LEVELS, conform, read_table, write_table
from thyrokit.curate.identity import image_id, source_hmac
from thyrokit.curate.masks import Box, binarise, crop_to_box, mask_bbox, to_uint8
from thyrokit.parallel import map_batches
from thyrokit.pixels import ShardWriter, encode_png, read_pngs
from thyrokit.secret import pseudonym

SIDECAR_CSV = "labels.csv"
SIDECAR_ANNOTATOR = "sidecar"
NO_FINDING = -1
REQUIRED_COLUMNS = ("file", "frame", "nodule", "mask")
MASKS_FOLDER = "masks"
LABELLED_IMAGES = "labelled_images.parquet"
LABELLED_IMAGES_SCHEMA = {"image_id": pl.String(), "label_source": pl.String(), "annotator": pl.String()}
# The sidecar columns that become nodules columns, with their types.
SIDECAR_NODULE_SCHEMA = {
    "image_id": pl.String(), "nodule_id": pl.String(), "bbox": pl.List(pl.Int32()),
    "mask_path": pl.String(), "pathology": pl.String(), "tirads": pl.String(),
    "tirads_points": pl.Int8(), **{name: pl.String() for name in FEATURES},
    "echogenic_foci": pl.List(pl.String()), "label_source": pl.String(), "annotator": pl.String(),
}


@dataclass(frozen=True)
class Problem:
    """Why one label was skipped (or, for a warning, what was odd about it)."""

    item: str
    reason: str

    def __str__(self) -> str:
        return f"{self.item}: {self.reason}"


@dataclass(frozen=True)
class Hashed:
    """The source_hmac of one raw scan file, or why it could not be read."""

    file: str
    source: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class MaskTask:
    """One sidecar mask to cut: its raw file, the crop box and the de-identified image size."""

    nodule_id: str
    path: str
    crop: Box
    height: int
    width: int


@dataclass(frozen=True)
class MaskCut:
    """A cut mask as PNG bytes with its bbox, or why it could not be cut."""

    nodule_id: str
    png: bytes | None = None
    bbox: Box | None = None
    reason: str | None = None


@dataclass
class LabelsReport:
    """What the labels stage kept and skipped: counts for the metrics file, lines for the log."""

    counts: dict[str, int | dict[str, int]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)


def row_name(line: int) -> str:
    """Return how problems name a labels.csv row."""
    return f"{SIDECAR_CSV} line {line}"


def read_sidecar(path: str | os.PathLike) -> pl.DataFrame:
    """Read labels.csv as text columns plus ``line``, each row's line number in the file."""
    frame = pl.read_csv(path, infer_schema=False)
    missing = [name for name in REQUIRED_COLUMNS if name not in frame.columns]
    if missing:
        raise ValueError(f"{SIDECAR_CSV}: missing column(s) {missing}")
    return frame.with_row_index("line", offset=2)  # line 1 is the header


def inside(root: Path, relative: str) -> Path | None:
    """Return `root`/`relative` if it stays inside `root`, else None."""
    path = (root / relative).resolve()
    return path if path.is_relative_to(root.resolve()) else None


def hash_source(secret: bytes, scans_dir: str, file: str) -> Hashed:
    """Return the source_hmac of the raw scan `file`, relative to `scans_dir`."""
    path = inside(Path(scans_dir), file)
    if path is None:
        return Hashed(file, reason="scan path points outside scans/")
    try:
        return Hashed(file, source=source_hmac(secret, path.read_bytes()))
    except FileNotFoundError:
        return Hashed(file, reason="scan file not found")
    except OSError:
        return Hashed(file, reason="scan file not readable")


def cut_mask(task: MaskTask) -> MaskCut:
    """Read one sidecar mask, cut it with the crop box; return it as 0/255 PNG with its bbox."""
    mask = cv2.imread(task.path, cv2.IMREAD_UNCHANGED)
    if mask is None:
        return MaskCut(task.nodule_id, reason="mask file missing or not a readable image")
    x0, y0, x1, y1 = task.crop
    if mask.shape[0] < y1 or mask.shape[1] < x1:
        return MaskCut(task.nodule_id, reason="mask is smaller than the scan it labels")
    binary = binarise(crop_to_box(mask, task.crop))
    if binary.shape != (task.height, task.width):
        return MaskCut(task.nodule_id, reason="cropped mask and de-identified image differ in size")
    bbox = mask_bbox(binary)
    if bbox is None:
        return MaskCut(task.nodule_id, reason="mask is empty inside the scan area")
    return MaskCut(task.nodule_id, png=encode_png(to_uint8(binary)), bbox=bbox)


def _whole_number(text: str | None, name: str) -> int | None:
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{name} is not a whole number") from None


def resolve_tirads(choices: dict[str, str | None], foci: tuple[str, ...] | None,
                   given_points: int | None, given_level: str | None) -> tuple[int | None, str | None]:
    """Return (points, level): from the features where they suffice, else as given.

    A spongiform nodule scores 0 even with its other features missing; any other
    nodule needs all five features to be scored.
    """
    points = given_points
    if choices["composition"] == "spongiform":
        points = 0
    elif all(choices.values()) and foci is not None:
        points = tirads_points(**choices, echogenic_foci=foci)
    return points, tirads_level(points) if points is not None else given_level


def parse_row(row: dict) -> dict:
    """Return a sidecar row's frame, nodule index, pathology and TI-RADS fields, checked.

    Raises ValueError naming the column at fault (never quoting its value). A TI-RADS
    total or level that the features contradict is kept from the features, with a
    ``warning``.
    """
    frame = _whole_number(row["frame"], "frame")
    nodule = _whole_number(row["nodule"], "nodule")
    if not row["file"]:
        raise ValueError("file is empty")
    if frame is None or frame < 0:
        raise ValueError("frame is missing or negative")
    if nodule is None or nodule < NO_FINDING:
        raise ValueError(f"nodule must be {NO_FINDING} (no finding) or an index 0, 1, ...")
    if nodule == NO_FINDING:
        return {"frame": frame, "nodule": nodule}
    if not row["mask"]:
        raise ValueError("nodule row has no mask")
    pathology = row.get("pathology") or "unknown"
    if pathology not in PATHOLOGIES:
        raise ValueError(f"pathology is not one of {list(PATHOLOGIES)}")
    choices = {name: row.get(name) or None for name in FEATURES}
    for name, choice in choices.items():
        if choice is not None and choice not in FEATURES[name]:
            raise ValueError(f"{name} is not one of {list(FEATURES[name])}")
    try:
        foci = parse_foci(row["echogenic_foci"]) if row.get("echogenic_foci") else None
    except ValueError:
        raise ValueError(f"echogenic_foci must be '+'-joined names from {list(ECHOGENIC_FOCI)}, "
                         f"'none' alone") from None
    given_points = _whole_number(row.get("tirads_points"), "tirads_points")
    given_level = row.get("tirads") or None
    if given_level is not None and given_level not in TIRADS_LEVELS:
        raise ValueError(f"tirads is not one of {list(TIRADS_LEVELS)}")
    points, level = resolve_tirads(choices, foci, given_points, given_level)
    warning = None
    if (given_points, given_level) != (points, level) and (given_points, given_level) != (None, None):
        warning = (f"TI-RADS given as {given_points} points / {given_level}, the features give "
                   f"{points} / {level}; using the features")
    return {
        "frame": frame, "nodule": nodule, "pathology": pathology, "tirads": level,
        "tirads_points": points, **choices,
        "echogenic_foci": list(foci) if foci is not None else None, "warning": warning,
    }


def nodule_id(secret: bytes, image: str, nodule: int) -> str:
    """Return the keyed id of nodule number `nodule` of image `image`."""
    return pseudonym(secret, "nod", f"{image}:{nodule}")


def resolve_rows(sidecar: pl.DataFrame, scans_dir: Path, labels_dir: Path, images: pl.DataFrame,
                 secret: bytes, workers: int | None, report: LabelsReport) -> list[dict]:
    """Return the sidecar rows whose scan, frame and mask path are found, with image_id and crop.

    Rows that fail are added to `report` and left out.
    """
    files = sorted(set(sidecar.get_column("file").drop_nulls().to_list()))
    hashed = {item.file: item for item in map_batches(
        partial(hash_source, secret, str(scans_dir)), files, workers=workers, desc="hash scans")}
    boxes = {image: (tuple(crop), height, width) for image, crop, height, width in
             images.select("image_id", "crop", "height", "width").iter_rows()}
    rows, seen = [], set()
    for row in sidecar.iter_rows(named=True):
        where = row_name(row["line"])
        try:
            parsed = parse_row(row)
        except ValueError as error:
            report.problems.append(Problem(where, str(error)))
            continue
        scan = hashed[row["file"]]
        if scan.source is None:
            report.problems.append(Problem(where, scan.reason))
            continue
        image = image_id(secret, scan.source, parsed["frame"])
        if image not in boxes:
            report.problems.append(Problem(where, "image not in the ingest output (quarantined, or no such frame)"))
            continue
        if (image, parsed["nodule"]) in seen:
            report.problems.append(Problem(where, "repeats an earlier row's image and nodule"))
            continue
        mask_file = inside(labels_dir, row["mask"]) if parsed["nodule"] != NO_FINDING else None
        if parsed["nodule"] != NO_FINDING and mask_file is None:
            report.problems.append(Problem(where, "mask path points outside labels/"))
            continue
        if parsed.pop("warning", None):
            report.warnings.append(Problem(where, "TI-RADS points/level disagree with the features; using the features"))
        seen.add((image, parsed["nodule"]))
        crop, height, width = boxes[image]
        rows.append(parsed | {"line": row["line"], "image_id": image, "mask_file": str(mask_file),
                              "crop": crop, "height": height, "width": width})
    return rows


def cut_sidecar_masks(rows: list[dict], secret: bytes, writer: ShardWriter, workers: int | None,
                      report: LabelsReport) -> pl.DataFrame:
    """Cut the masks of sidecar nodule rows into `writer`; return their nodules table rows."""
    nodules = sorted(
        (row | {"nodule_id": nodule_id(secret, row["image_id"], row["nodule"])}
         for row in rows if row["nodule"] != NO_FINDING),
        key=lambda row: row["nodule_id"],
    )
    tasks = [MaskTask(row["nodule_id"], row["mask_file"], row["crop"], row["height"], row["width"])
             for row in nodules]
    kept = []
    for row, cut in zip(nodules, map_batches(cut_mask, tasks, workers=workers, desc="cut masks")):
        if cut.png is None:
            report.problems.append(Problem(row_name(row["line"]), cut.reason))
            continue
        kept.append({name: row.get(name) for name in SIDECAR_NODULE_SCHEMA} | {
            "bbox": list(cut.bbox), "mask_path": f"{MASKS_FOLDER}/{writer.add(cut.nodule_id, cut.png)}",
            "label_source": "human", "annotator": SIDECAR_ANNOTATOR,
        })
    return pl.DataFrame(kept, schema=SIDECAR_NODULE_SCHEMA)


def labelled_images(image_ids: list[str], label_source: str, annotator: str) -> pl.DataFrame:
    """Return a labelled-images table listing `image_ids` once each."""
    frame = pl.DataFrame({"image_id": sorted(set(image_ids))}, schema={"image_id": pl.String()})
    return frame.with_columns(label_source=pl.lit(label_source), annotator=pl.lit(annotator))


def write_labelled_images(frame: pl.DataFrame, path: str | os.PathLike) -> None:
    """Write a labelled-images table (image_id, label_source, annotator), sorted, atomically."""
    frame = frame.select(list(LABELLED_IMAGES_SCHEMA)).cast(LABELLED_IMAGES_SCHEMA).sort("image_id")
    if frame.get_column("image_id").is_duplicated().any():
        raise ValueError(f"{LABELLED_IMAGES}: an image is listed twice")
    with atomic_path(path) as tmp:
        frame.write_parquet(tmp, compression="zstd")


def read_labelled_images(path: str | os.PathLike) -> pl.DataFrame:
    """Read a labelled-images table."""
    return pl.read_parquet(path).select(list(LABELLED_IMAGES_SCHEMA)).cast(LABELLED_IMAGES_SCHEMA)


def read_studio_export(path: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Return the human nodules of a Label Studio export and the images its annotators labelled.

    The export (written by ``thyrokit annotate pull``) is a nodules table; beside it,
    ``labelled_images.parquet`` lists every image annotated in Label Studio, including
    those with no finding. Without that file the images with human nodules stand for it.
    """
    nodules = read_table(path, NODULES).filter(pl.col("label_source") == "human")
    listing = path.parent / LABELLED_IMAGES
    if listing.is_file():
        labelled = read_labelled_images(listing).filter(pl.col("label_source") == "human")
    else:
        labelled = nodules.group_by("image_id").agg(pl.lit("human").alias("label_source"),
                                                    pl.col("annotator").min())
    return nodules, labelled


def merge_labels(sidecar: pl.DataFrame, studio: pl.DataFrame,
                 studio_images: Iterable[str] = ()) -> pl.DataFrame:
    """Return `sidecar` rows of images Label Studio did not label, plus `studio`'s human rows.

    The replacement is image-level: an image labelled in Label Studio (it has a human
    row in `studio`, or is named in `studio_images`, which lists images annotated with
    no finding) keeps only Label Studio's rows. Works on nodules and labelled-images
    tables alike.
    """
    human = studio.filter(pl.col("label_source") == "human")
    replaced = set(human.get_column("image_id").to_list()) | set(studio_images or ())
    kept = sidecar.filter(~pl.col("image_id").is_in(sorted(replaced)))
    merged = pl.concat([kept, human.select(sidecar.columns).cast(sidecar.schema)])
    return merged.sort("image_id", maintain_order=True)


def copy_masks(nodules: pl.DataFrame, from_dir: Path, writer: ShardWriter) -> pl.DataFrame:
    """Copy the masks of `nodules` (shards relative to `from_dir`) into `writer`; rewrite mask_path."""
    moved: dict[str, str] = {}
    with_masks = nodules.filter(pl.col("mask_path").is_not_null()).sort("nodule_id")
    for (shard,), group in with_masks.group_by("mask_path", maintain_order=True):
        keys = group.get_column("nodule_id").to_list()
        pngs = read_pngs(from_dir / shard, keys)
        moved |= {key: f"{MASKS_FOLDER}/{writer.add(key, pngs[key])}" for key in keys}
    return nodules.with_columns(pl.col("nodule_id").replace_strict(moved, default=None).alias("mask_path"))


def build_labels(labels_dir: str | os.PathLike, ingest_dir: str | os.PathLike, out_dir: str | os.PathLike,
                 secret: bytes, studio_export: str | os.PathLike | None = None,
                 workers: int | None = None) -> LabelsReport:
    """Write ``nodules.parquet``, mask shards and ``labelled_images.parquet`` into `out_dir`.

    Reads labels.csv and its masks from `labels_dir` (scans from its sibling ``scans/``),
    the ingest output from `ingest_dir`, and the Label Studio export if the file exists.
    """
    labels_dir, out_dir = Path(labels_dir), Path(out_dir)
    report = LabelsReport()
    images = read_table(Path(ingest_dir) / "images.parquet", IMAGES)
    studio_nodules, studio_labelled = NODULES.empty(), labelled_images([], "human", SIDECAR_ANNOTATOR)
    if studio_export is not None and Path(studio_export).is_file():
        studio_nodules, studio_labelled = read_studio_export(Path(studio_export))
        studio_nodules = drop_unknown_images(studio_nodules, images, report)
        studio_labelled = studio_labelled.join(images.select("image_id"), on="image_id", how="semi")
    replaced = set(studio_labelled.get_column("image_id").to_list()) | set(
        studio_nodules.get_column("image_id").to_list())

    csv = labels_dir / SIDECAR_CSV
    sidecar = read_sidecar(csv) if csv.is_file() else None
    rows = resolve_rows(sidecar, labels_dir.parent / "scans", labels_dir, images, secret, workers,
                        report) if sidecar is not None else []
    # Rows of images labelled in Label Studio would be dropped by the merge: skip their masks.
    replaced_sidecar_images = {row["image_id"] for row in rows} & replaced
    rows = [row for row in rows if row["image_id"] not in replaced]

    masks_dir = out_dir / MASKS_FOLDER
    masks_dir.mkdir(parents=True, exist_ok=True)
    for stale in masks_dir.glob(f"{MASKS_FOLDER}-*.parquet"):
        stale.unlink()
    with ShardWriter(masks_dir, MASKS_FOLDER) as writer:
        sidecar_nodules = cut_sidecar_masks(rows, secret, writer, workers, report)
        if studio_nodules.height:
            studio_nodules = copy_masks(studio_nodules, Path(studio_export).parent, writer)

    sidecar_labelled = labelled_images(
        [row["image_id"] for row in rows if row["nodule"] == NO_FINDING]
        + sidecar_nodules.get_column("image_id").to_list(), "human", SIDECAR_ANNOTATOR)
    nodules = write_table(merge_labels(conform(sidecar_nodules, NODULES), studio_nodules, replaced),
                          out_dir / "nodules.parquet", NODULES)
    labelled = merge_labels(sidecar_labelled, studio_labelled, replaced)
    write_labelled_images(labelled, out_dir / LABELLED_IMAGES)

    report.counts = {
        "sidecar_rows": sidecar.height if sidecar is not None else 0,
        "skipped": len(report.problems),
        "skipped_by_reason": dict(sorted(Counter(problem.reason for problem in report.problems).items())),
        "tirads_warnings": len(report.warnings),
        "nodules": nodules.height,
        "nodules_sidecar": sidecar_nodules.height,
        "nodules_label_studio": studio_nodules.height,
        "labelled_images": labelled.height,
        "labelled_images_no_finding": labelled.join(nodules, on="image_id", how="anti").height,
        "sidecar_images_replaced_by_label_studio": len(replaced_sidecar_images),
    }
    return report


def drop_unknown_images(nodules: pl.DataFrame, images: pl.DataFrame, report: LabelsReport) -> pl.DataFrame:
    """Return `nodules` on images of the ingest output; report the others."""
    unknown = nodules.join(images.select("image_id"), on="image_id", how="anti")
    for nodule in unknown.get_column("nodule_id").to_list():
        report.problems.append(Problem(f"Label Studio nodule {nodule}", "image not in the ingest output"))
    return nodules.join(unknown.select("nodule_id"), on="nodule_id", how="anti")
