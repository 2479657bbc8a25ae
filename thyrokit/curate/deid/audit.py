"""Search every output for the identifying values of the raw zone; name file and field, never the value.

What is searched: DICOM headers (every element, in sequences and private groups too),
Parquet tables (string, list-of-string and non-image binary columns), JSON, JSONL,
CSV, YAML and text files, every file and folder name, and PNG pixels (PNG files and
PNG cells of Parquet shards) through OCR where ``tesseract`` is installed: each
distinct image once, in a process pool; an image that cannot be decoded is reported
as one that cannot be checked. A value matches only as a whole token (``smith``
is not found in ``blacksmith``), and short values are never searched
(:func:`~thyrokit.curate.deid.phi_values.is_searchable`), so sex codes and counters
raise no false alarms.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import polars as pl
import pydicom
from pydicom.errors import InvalidDicomError

from thyrokit.curate.deid.burned_in_text import stroke_brightness, stroke_mask, to_uint8
from thyrokit.curate.deid.ocr import run_tesseract, tesseract_available, upscale
from thyrokit.parallel import map_batches

TEXT_SUFFIXES = frozenset({".json", ".jsonl", ".csv", ".tsv", ".txt", ".yaml", ".yml", ".md", ".html", ".xml"})
PNG_MAGIC = b"\x89PNG"
OCR_SCALE = 2          # PNGs are read enlarged this many times: banner fonts are about 10 pixels high ...
OCR_MAX_SIDE = 1600    # ... unless that makes a side longer than this many pixels
OCR_FIELD = "pixels (OCR)"


@dataclass(frozen=True)
class Finding:
    """An identifying value of kind `kind` found in `field` of the output file `path`."""

    path: str
    field: str
    kind: str

    def __str__(self) -> str:
        return f"{self.path}: {self.field} holds a {self.kind} value"


@dataclass(frozen=True)
class Audit:
    """The findings of an audit, the files it searched and the PNG images it read by OCR."""

    findings: list[Finding]
    files: int
    images: int           # PNG images found (files and Parquet cells); 0 without tesseract
    distinct_images: int  # of which distinct
    images_read: int = 0  # distinct images OCR read: all of them unless `ocr_fraction` < 1


@dataclass(frozen=True)
class PngSource:
    """PNG images to read by OCR: the file `path` (printed as `shown`), or its Parquet binary `column`."""

    path: Path
    shown: str
    column: str | None
    field: str            # how a finding names where in the file: never a value


class PhiMatcher:
    """Finds whole-token occurrences of a set of normalised values in text."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        ordered = sorted(values, key=len, reverse=True)
        alternatives = "|".join(re.escape(value).replace(r"\ ", r"\s+") for value in ordered)
        # Whole tokens only; digits after or before a decimal point belong to a number
        # (a YOLO coordinate 0.445833 does not hold the ID 445833).
        self.pattern = re.compile(
            rf"(?<![0-9a-z])(?<![0-9]\.)(?:{alternatives})(?![0-9a-z])(?!\.[0-9])"
        ) if ordered else None

    def kinds(self, text: str) -> list[str]:
        """Return the kinds of the values found in `text`, sorted and unique."""
        if self.pattern is None or not text:
            return []
        found = {self.values.get(" ".join(match.group(0).split()), "PHI")
                 for match in self.pattern.finditer(text.lower())}
        return sorted(found)


def audit_outputs(roots: list[str | os.PathLike], values: dict[str, str], workers: int | None = None,
                  ocr_fraction: float = 1.0) -> Audit:
    """Return every place under `roots` where a value of `values` appears, and how much was read.

    OCR reads `ocr_fraction` of the distinct PNG images (chosen by their content hash,
    so the same outputs always get the same share); every other byte is always searched.
    """
    matcher = PhiMatcher(values)
    ocr = ocr_available()
    findings: list[Finding] = []
    sources: list[PngSource] = []
    files = 0
    for path in _walk(roots):
        shown = safe_path(path, matcher)
        findings += [Finding(shown, "file name", kind) for kind in matcher.kinds(path.name)]
        if path.is_file():
            files += 1
            findings += [Finding(shown, field, kind) for field, kind in _scan_file(path, matcher)]
            sources += png_sources(path, shown, matcher) if ocr else []
    pixel_findings, images, distinct, read = read_pngs(sources, matcher, workers, ocr_fraction)
    return Audit(findings + pixel_findings, files, images, distinct, read)


def _walk(roots: list[str | os.PathLike]) -> Iterator[Path]:
    for root in map(Path, roots):
        yield from [root] if root.is_file() else sorted(root.rglob("*"))


def png_sources(path: Path, shown: str, matcher: PhiMatcher) -> list[PngSource]:
    """Return where the file `path` may hold PNG images: itself, or its binary Parquet columns."""
    suffix = path.suffix.lower()
    if suffix == ".png":
        return [PngSource(path, shown, None, OCR_FIELD)]
    if suffix == ".parquet":
        schema = pl.read_parquet_schema(path)
        return [PngSource(path, shown, name, f"column {safe_name(name, matcher)} {OCR_FIELD}")
                for name, dtype in schema.items() if dtype == pl.Binary]
    return []


def read_pngs(sources: list[PngSource], matcher: PhiMatcher, workers: int | None = None,
              fraction: float = 1.0) -> tuple[list[Finding], int, int, int]:
    """Return the findings of OCR over the PNG images of `sources`, and how many images it found,
    how many distinct, and how many of those it read (`fraction` of them, chosen by content hash)."""
    kinds: dict[bytes, list[str] | None] = {}
    places: list[tuple[PngSource, bytes]] = []
    chosen = 0

    def distinct() -> Iterator[tuple[bytes, bytes]]:
        nonlocal chosen
        for source, png in _png_images(sources):
            digest = hashlib.sha256(png).digest()
            places.append((source, digest))
            if digest not in kinds:
                kinds[digest] = []
                if is_chosen(digest, fraction):
                    chosen += 1
                    yield digest, png

    for digest, text in map_batches(_ocr_item, distinct(), workers=workers, desc="OCR of PNG pixels"):
        kinds[digest] = None if text is None else matcher.kinds(text)
    found: set[Finding] = set()
    for source, digest in places:
        read = kinds[digest]
        if read is None:
            found.add(Finding(source.shown, f"{source.field}: an unreadable image (cannot be checked)", "unknown"))
        else:
            found |= {Finding(source.shown, source.field, kind) for kind in read}
    return sorted(found, key=lambda f: (f.path, f.field, f.kind)), len(places), len(kinds), chosen


def is_chosen(digest: bytes, fraction: float) -> bool:
    """Return True for about `fraction` of all digests: those whose first 8 bytes fall below it."""
    return fraction >= 1.0 or int.from_bytes(digest[:8], "big") < fraction * 2**64


def _png_images(sources: list[PngSource]) -> Iterator[tuple[PngSource, bytes]]:
    for source in sources:
        if source.column is None:
            yield source, source.path.read_bytes()
        else:
            column = pl.read_parquet(source.path, columns=[source.column]).get_column(source.column)
            yield from ((source, value) for value in column.drop_nulls() if value.startswith(PNG_MAGIC))


def _ocr_item(item: tuple[bytes, bytes]) -> tuple[bytes, str | None]:
    digest, png = item
    return digest, ocr_text(png)


def safe_path(path: Path, matcher: PhiMatcher) -> str:
    """Return `path` for printing, each name that holds an identifying value withheld."""
    return "/".join(safe_name(part, matcher) for part in path.parts)


def safe_name(name: str, matcher: PhiMatcher) -> str:
    """Return `name` for printing, or ``<name withheld>`` if it holds an identifying value."""
    return "<name withheld>" if matcher.kinds(name) else name


def _scan_file(path: Path, matcher: PhiMatcher) -> Iterator[tuple[str, str]]:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        yield from _scan_parquet(path, matcher)
    elif suffix in TEXT_SUFFIXES:
        yield from (("text", kind) for kind in matcher.kinds(path.read_text("utf-8", errors="replace")))
    elif suffix in (".dcm", "") and _is_dicom(path):
        yield from _scan_dicom(path, matcher)


def _is_dicom(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(132)[128:132] == b"DICM"


def _scan_dicom(path: Path, matcher: PhiMatcher) -> Iterator[tuple[str, str]]:
    try:
        ds = pydicom.dcmread(path)
    except (InvalidDicomError, OSError, ValueError, EOFError):
        yield "unreadable DICOM (cannot be checked)", "unknown"
        return
    for element in ds.iterall():
        if element.VR == "SQ" or element.tag == 0x7FE00010:
            continue
        value = element.value
        text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
        for kind in matcher.kinds(text):
            yield f"{element.keyword or element.tag}", kind


def _scan_parquet(path: Path, matcher: PhiMatcher) -> Iterator[tuple[str, str]]:
    frame = pl.read_parquet(path)
    for name, dtype in frame.schema.items():
        yield from (("a column name", kind) for kind in matcher.kinds(name))
        column = frame.get_column(name)
        if dtype == pl.Binary:
            # Image bytes are read by OCR (read_pngs), other bytes as text.
            texts = (value.decode("latin-1") for value in column.drop_nulls() if not value.startswith(PNG_MAGIC))
        elif dtype == pl.String or dtype == pl.List(pl.String):
            texts = (str(value) for value in column.drop_nulls())
        else:
            continue
        kinds = sorted({kind for text in texts for kind in matcher.kinds(text)})
        yield from ((f"column {safe_name(name, matcher)}", kind) for kind in kinds)


def ocr_views(image: np.ndarray) -> list[np.ndarray]:
    """Return the grey views OCR reads an image in: its brightness enlarged, and its bright strokes dark on white.

    The first reads text on a plain background (banners, labels) in small fonts; the
    second text drawn over speckle, which tesseract cannot separate from it unaided.
    """
    brightness = stroke_brightness(image)
    scale = OCR_SCALE if max(brightness.shape) * OCR_SCALE <= OCR_MAX_SIDE else 1
    strokes = np.where(stroke_mask(brightness, np.ones(brightness.shape, bool)), 0, 255).astype(np.uint8)
    return [upscale(brightness, scale), strokes]


def decode_any_png(png: bytes) -> np.ndarray | None:
    """Return a PNG's pixels as grey or BGR uint8 (alpha dropped); None if it cannot be decoded."""
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)
    return None if image is None else to_uint8(image)


def ocr_text(png: bytes) -> str | None:
    """Return the text tesseract reads in a PNG image ("" without tesseract); None if it cannot be read."""
    image = decode_any_png(png)
    if image is None:
        return None
    texts = [run_tesseract(view, psm=3) for view in ocr_views(image)]
    return None if None in texts else "\n".join(texts)


def ocr_available() -> bool:
    """Return True if PNG pixels can be checked by OCR here."""
    return tesseract_available()
