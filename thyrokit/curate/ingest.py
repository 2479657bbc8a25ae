"""Ingest: raw scans to de-identified, scan-area-cropped images, the images table and pixel shards.

This is where PHI stops. Each raw file goes through one pure function,
:func:`ingest_file`, in a clear sequence of steps::

    read -> de-identify header -> identify -> scan area -> crop, blank, redact text -> encode

The header goes through the DICOM PS3.15 Basic Profile (:mod:`thyrokit.curate.deid`);
text burned into the kept scan area is found and zeroed before anything is encoded,
so the first file written from raw data is already de-identified.

It returns either the de-identified frames with their ``images`` rows, or the reason
the file was quarantined; it never raises. :func:`run_ingest` maps it over every file
with :func:`thyrokit.parallel.map_batches` and writes, in ``out_dir``:

- ``images.parquet`` (contract ``images``) and ``pixels/images-NNNNN.parquet`` (PNG shards),
- ``quarantine.parquet`` (contract ``quarantine``): the files that could not be made safe,
- ``audit.jsonl``: one line per raw file, what was kept and dropped, no PHI,
- ``dicom/<source_hmac>.dcm`` when ``ingest.write_dicom`` is on: the de-identified
  header with the redacted, cropped pixels (uncompressed),

and at ``keys_path`` (inside the raw zone) the key table from raw relative path to
``source_hmac`` and image ids: the only output that names raw files.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from pydicom.dataset import Dataset

from thyrokit import __version__
from thyrokit.atomic import atomic_path, write_bytes, write_text
from thyrokit.contract import IMAGES, QUARANTINE, write_table
from thyrokit.curate import identity
from thyrokit.curate.deid import (BurnedInTextError, DeidOptions, HeaderAudit, MalformedElementError, QuarantineError,
                                  deidentify_dataset, redact_scan_area, require_scan_area)
from thyrokit.curate.deid.dicom_output import deidentified_dicom_bytes, shift_ultrasound_regions
from thyrokit.curate.readers import HeaderFacts, RawFileError, RawScan, read_scan
from thyrokit.curate.phash import phash
from thyrokit.curate.scan_area import blank_outside, bounding_box, crop, scan_area
from thyrokit.parallel import map_batches
from thyrokit.pixels import ShardWriter, encode_png
from thyrokit.secret import pseudonym

logger = logging.getLogger(__name__)

STAGE = "ingest"
SHARD_PREFIX = "images"
DICOM_DIR = "dicom"
KEYS_SCHEMA = {
    "path": pl.String(),  # raw file, relative to the raw scans folder: PHI, raw zone only
    "source_hmac": pl.String(),
    "outcome": pl.String(),  # ingested / quarantined / duplicate
    "image_ids": pl.List(pl.String()),
}


@dataclass(frozen=True)
class IngestConfig:
    """Everything :func:`ingest_file` needs besides the file: picklable, so workers get a copy."""

    raw_dir: str
    secret: bytes = field(repr=False)
    path_pattern: str
    sites: dict[str, str]
    export_modality: str = "US"
    crop_modalities: tuple[str, ...] = ("US",)
    scan_threshold: int = 12
    scan_min_fraction: float = 0.05
    deid: DeidOptions = DeidOptions()
    write_dicom: bool = False

    @classmethod
    def from_params(cls, params: dict[str, Any], raw_dir: str | Path, secret: bytes,
                    deid: dict[str, Any] | None = None) -> "IngestConfig":
        """Build the config from the ``ingest`` and ``deid`` sections of params.yaml."""
        scan = params.get("scan_area") or {}
        return cls(
            raw_dir=str(Path(raw_dir).resolve()),
            secret=secret,
            path_pattern=params["path_pattern"],
            sites=dict(params.get("sites") or {}),
            export_modality=params.get("export_modality", "US"),
            crop_modalities=tuple(params.get("crop_modalities", ("US",))),
            scan_threshold=int(scan.get("threshold", 12)),
            scan_min_fraction=float(scan.get("min_fraction", 0.05)),
            deid=DeidOptions.from_params(deid or {}),
            write_dicom=bool(params.get("write_dicom", False)),
        )


@dataclass(frozen=True)
class Identity:
    """The keyed pseudonyms and public site code of one raw file."""

    patient_id: str
    study_id: str
    series_id: str
    site: str


@dataclass
class FileResult:
    """What one raw file became: image rows and their PNGs, or a quarantine reason."""

    source_hmac: str
    rows: list[dict[str, Any]]
    pngs: list[bytes]
    reason: str | None
    audit: dict[str, Any]
    dicom: bytes | None = None  # the de-identified DICOM file, when ingest.write_dicom is on


def discover(raw_dir: str | Path) -> list[str]:
    """Return every file under `raw_dir` as a POSIX path relative to it, sorted."""
    root = Path(raw_dir)
    return sorted(path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file())


def ingest_file(relative_path: str, config: IngestConfig) -> FileResult:
    """De-identify one raw file: read -> header -> identify -> scan area -> crop, blank, redact -> encode."""
    try:
        data = (Path(config.raw_dir) / relative_path).read_bytes()
    except OSError as error:
        # No bytes, no content hash: name it by a keyed hash of its path instead.
        unreadable = identity.source_hmac(config.secret, f"unreadable:{relative_path}".encode())
        return _quarantined(unreadable, RawFileError("unreadable_file", f"the file cannot be read ({error.strerror})"))
    source = identity.source_hmac(config.secret, data)
    try:
        scan = read_scan(data)
        del data
        header, header_audit = deidentify_header(scan, config)
        ids = identify(scan.facts, relative_path, source, config)
        mask, origin = keep_mask(scan, config)
        require_scan_area(_burned_in_annotation(scan), mask)
        box = bounding_box(mask)
        frames, text_boxes = crop_and_redact(scan, mask, box, config)
        rows, pngs = encode_frames(list(frames), scan.facts, ids, source, box, config)
        for index in range(len(frames)):
            header_audit.add_redactions(index, text_boxes)
        dicom = deidentified_dicom(header, frames, box, scan.facts, header_audit) if config.write_dicom else None
    except QuarantineError as error:
        return _quarantined(source, RawFileError(_deid_reason(error), str(error)))
    except RawFileError as error:
        return _quarantined(source, error)
    except Exception as error:  # a bug or an unforeseen file: quarantine it, never stop the run
        return _quarantined(source, RawFileError("internal_error", f"unexpected {type(error).__name__}"))
    audit = {
        "source_hmac": source,
        "outcome": "ingested",
        "format": scan.facts.source_format,
        "modality": rows[0]["modality"],
        "frames": len(rows),
        "kept_header": ["modality", "device", "spacing_mm", "patient/study/series (pseudonymised)"],
        "dropped_header_elements": scan.facts.header_elements,
        "scan_area": origin,
        "crop": list(box),
        "blanked_fraction": round(1.0 - float(mask.mean()), 4),
        "deid": header_audit.to_dict(),
    }
    return FileResult(source_hmac=source, rows=rows, pngs=pngs, reason=None, audit=audit, dicom=dicom)


def deidentify_header(scan: RawScan, config: IngestConfig) -> tuple[Dataset | None, HeaderAudit]:
    """Return a file's header under the Basic Profile (None for PNG/JPEG exports) and its audit."""
    if scan.dataset is None:
        return None, HeaderAudit(method="exported image: no header", codes=[])
    return deidentify_dataset(scan.dataset, config.secret, config.deid)


def crop_and_redact(scan: RawScan, mask: np.ndarray, box: tuple[int, int, int, int],
                    config: IngestConfig) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """Return the frames cropped to `box` with text zeroed inside the scan area, and the text boxes.

    Outside the scan area every pixel is zeroed. Text is searched only in modalities that
    are cropped (ultrasound): a CT or NM slice keeps its full frame, and there a bright
    thin edge of bone would pass for a stroke.
    """
    if _modality(scan.facts, config) not in config.crop_modalities:
        cropped = crop(mask, box)
        return np.stack([blank_outside(crop(frame, box), cropped) for frame in scan.frames]), []
    return redact_scan_area(scan.frames, mask)


def deidentified_dicom(header: Dataset | None, frames: np.ndarray, box: tuple[int, int, int, int],
                       facts: HeaderFacts, header_audit: HeaderAudit) -> bytes | None:
    """Return the de-identified DICOM file of the stored frames, regions moved into the crop."""
    if header is None:
        return None
    shift_ultrasound_regions(header, box)
    return deidentified_dicom_bytes(header, frames, header_audit, rescale=facts.rescale)


def identify(facts: HeaderFacts, relative_path: str, source: str, config: IngestConfig) -> Identity:
    """Return the pseudonyms and site of a file; raise :class:`RawFileError` if the patient is unknown."""
    match = re.match(config.path_pattern, relative_path)
    groups = match.groupdict() if match else {}
    if facts.source_format == "dicom":
        patient = facts.patient
        if not patient:
            raise RawFileError("no_patient", "the DICOM header has no PatientID")
        study = facts.study or source
        series = facts.series or source
    else:
        patient = groups.get("patient")
        if not patient:
            raise RawFileError("no_patient", "the path does not match ingest.path_pattern, so the patient is unknown")
        # Study folder names ("study1") repeat across patients, so they are qualified by patient.
        study = f"{patient}/{groups['study']}" if groups.get("study") else source
        series = source
    return Identity(
        patient_id=identity.patient_id(config.secret, patient),
        study_id=identity.study_id(config.secret, study),
        series_id=identity.series_id(config.secret, series),
        site=site_code(groups.get("site"), config),
    )


def site_code(folder: str | None, config: IngestConfig) -> str:
    """Return the public code of a raw site folder: mapped in params, else keyed; never the name."""
    if not folder:
        return "unknown"
    return config.sites.get(folder) or pseudonym(config.secret, "site", folder, length=8)


def keep_mask(scan: RawScan, config: IngestConfig) -> tuple[np.ndarray, str]:
    """Return the keep-mask of a file's frames and its origin (regions, detected or full)."""
    if _modality(scan.facts, config) not in config.crop_modalities:
        return np.ones(scan.frames.shape[1:3], dtype=bool), "full"
    tissue = [region.box for region in scan.facts.us_regions if region.is_tissue]
    return scan_area(scan.frames, tissue, config.scan_threshold, config.scan_min_fraction)


def spacing_mm(facts: HeaderFacts) -> tuple[float, float] | None:
    """Return (row, col) mm per pixel: the largest calibrated tissue region's, else PixelSpacing."""
    calibrated = [r for r in facts.us_regions if r.is_tissue and r.spacing_mm is not None]
    if calibrated:
        largest = max(calibrated, key=lambda r: (r.box[2] - r.box[0]) * (r.box[3] - r.box[1]))
        return largest.spacing_mm
    return facts.pixel_spacing_mm


def encode_frames(frames: list[np.ndarray], facts: HeaderFacts, ids: Identity, source: str,
                  box: tuple[int, int, int, int], config: IngestConfig) -> tuple[list[dict[str, Any]], list[bytes]]:
    """Return the ``images`` rows (without ``path``) and PNG bytes of a file's de-identified frames."""
    spacing = spacing_mm(facts)
    rows, pngs = [], []
    for index, frame in enumerate(frames):
        pngs.append(encode_png(np.ascontiguousarray(frame)))
        rows.append({
            "image_id": identity.image_id(config.secret, source, index),
            "patient_id": ids.patient_id,
            "study_id": ids.study_id,
            "series_id": ids.series_id,
            "site": ids.site,
            "device": facts.device,
            "modality": _modality(facts, config),
            "frame": index,
            "n_frames": len(frames),
            "width": frame.shape[1],
            "height": frame.shape[0],
            "channels": 3 if frame.ndim == 3 else 1,
            "spacing_mm": list(spacing) if spacing else None,
            "crop": list(box),
            "phash": phash(frame),
            "source_format": facts.source_format,
            "source_hmac": source,
            "tool_version": __version__,
            "rescale": list(facts.rescale) if facts.rescale else None,
        })
    return rows, pngs


@dataclass
class IngestSummary:
    """Counts of one ingest run, for the metrics file and the closing message."""

    files: int = 0
    ingested: int = 0
    duplicates: int = 0
    frames: int = 0
    quarantined: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def metrics(self) -> dict[str, Any]:
        """Return the metrics as a JSON-ready dict."""
        seconds = max(self.seconds, 1e-9)
        return {
            "files": self.files,
            "ingested": self.ingested,
            "duplicates": self.duplicates,
            "frames": self.frames,
            "quarantined": sum(self.quarantined.values()),
            "quarantined_by_reason": dict(sorted(self.quarantined.items())),
            "seconds": round(self.seconds, 3),
            "files_per_s": round(self.files / seconds, 2),
            "frames_per_s": round(self.frames / seconds, 2),
        }


def run_ingest(raw_dir: str | Path, out_dir: str | Path, keys_path: str | Path, config: IngestConfig, *,
               workers: int | None = None, batch_size: int = 8,
               shard_bytes: int = 256 * 1024 * 1024) -> IngestSummary:
    """Ingest every file under `raw_dir` into `out_dir`; write the key table at `keys_path`."""
    started = time.perf_counter()
    out_dir = Path(out_dir)
    pixels_dir = out_dir / "pixels"
    pixels_dir.mkdir(parents=True, exist_ok=True)
    dicom_dir = out_dir / DICOM_DIR
    if dicom_dir.exists():
        for stale in dicom_dir.glob("*.dcm"):
            stale.unlink()
    paths = discover(raw_dir)
    summary = IngestSummary(files=len(paths))
    image_rows: list[dict[str, Any]] = []
    quarantine_rows: list[dict[str, str]] = []
    keys: list[dict[str, Any]] = []
    audit: list[dict[str, Any]] = []
    seen: set[str] = set()
    reasons: Counter[str] = Counter()
    work = partial(ingest_file, config=config)
    with ShardWriter(pixels_dir, SHARD_PREFIX, shard_bytes) as shards:
        for path, result in zip(paths, map_batches(work, paths, workers=workers, batch_size=batch_size,
                                                   desc="ingest")):
            outcome = "quarantined" if result.reason else "ingested"
            if result.source_hmac in seen:
                # Identical bytes give identical ids: keep the first copy, note the others.
                outcome, summary.duplicates = "duplicate", summary.duplicates + 1
                result.audit = {"source_hmac": result.source_hmac, "outcome": "duplicate"}
            elif result.reason:
                reasons[result.reason.split(":", 1)[0]] += 1
                quarantine_rows.append({"source_hmac": result.source_hmac, "stage": STAGE, "reason": result.reason})
                logger.warning("quarantined %s: %s", result.source_hmac, result.reason)
            else:
                summary.ingested += 1
                summary.frames += len(result.rows)
                for row, png in zip(result.rows, result.pngs):
                    row["path"] = f"pixels/{shards.add(row['image_id'], png)}"
                    image_rows.append(row)
                if result.dicom is not None:
                    write_bytes(dicom_dir / f"{result.source_hmac}.dcm", result.dicom)
            seen.add(result.source_hmac)
            keys.append({"path": path, "source_hmac": result.source_hmac, "outcome": outcome,
                         "image_ids": [row["image_id"] for row in result.rows] if outcome == "ingested" else []})
            audit.append(result.audit)
    _remove_stale_shards(pixels_dir, shards.written)
    write_table(pl.DataFrame(image_rows, schema=IMAGES.schema) if image_rows else IMAGES.empty(),
                out_dir / "images.parquet", IMAGES)
    write_table(pl.DataFrame(quarantine_rows, schema=QUARANTINE.schema) if quarantine_rows else QUARANTINE.empty(),
                out_dir / "quarantine.parquet", QUARANTINE)
    write_text(out_dir / "audit.jsonl", "".join(
        json.dumps(line, sort_keys=True) + "\n"
        for line in sorted(audit, key=lambda line: (line["source_hmac"], line["outcome"]))))
    write_keys(keys, keys_path)
    summary.quarantined = dict(reasons)
    summary.seconds = time.perf_counter() - started
    return summary


def write_keys(keys: list[dict[str, Any]], path: str | Path) -> None:
    """Write the raw path <-> source_hmac key table (raw zone only) atomically."""
    frame = pl.DataFrame(keys, schema=KEYS_SCHEMA).sort("path")
    with atomic_path(path) as tmp:
        frame.write_parquet(tmp, compression="zstd")


def _quarantined(source: str, error: RawFileError) -> FileResult:
    audit = {"source_hmac": source, "outcome": "quarantined", "reason": str(error)}
    return FileResult(source_hmac=source, rows=[], pngs=[], reason=str(error), audit=audit)


def _burned_in_annotation(scan: RawScan) -> str | None:
    return str(scan.dataset.get("BurnedInAnnotation", "") or "") if scan.dataset is not None else None


def _deid_reason(error: QuarantineError) -> str:
    """Return the quarantine code of a de-identification error."""
    if isinstance(error, BurnedInTextError):
        return "burned_in_text"
    if isinstance(error, MalformedElementError):
        return "malformed_element"
    return "unsupported_content"


def _modality(facts: HeaderFacts, config: IngestConfig) -> str:
    return facts.modality or config.export_modality


def _remove_stale_shards(folder: Path, written: list[Path]) -> None:
    """Delete shards a previous, larger run left behind, so the folder holds exactly this run's."""
    keep = {path.name for path in written}
    for path in folder.glob(f"{SHARD_PREFIX}-*.parquet"):
        if path.name not in keep:
            path.unlink()
