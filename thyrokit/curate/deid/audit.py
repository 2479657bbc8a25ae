"""Search every output for the identifying values of the raw zone; name file and field, never the value.

What is searched: DICOM headers (every element, in sequences and private groups too),
Parquet tables (string, list-of-string and non-image binary columns), JSON, JSONL,
CSV, YAML and text files, every file and folder name, and PNG pixels through OCR
where ``tesseract`` is installed. A value matches only as a whole token (``smith``
is not found in ``blacksmith``), and short values are never searched
(:func:`~thyrokit.curate.deid.phi_values.is_searchable`), so sex codes and counters
raise no false alarms.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pydicom
from pydicom.errors import InvalidDicomError

TEXT_SUFFIXES = frozenset({".json", ".jsonl", ".csv", ".tsv", ".txt", ".yaml", ".yml", ".md", ".html", ".xml"})
PNG_MAGIC = b"\x89PNG"


@dataclass(frozen=True)
class Finding:
    """An identifying value of kind `kind` found in `field` of the output file `path`."""

    path: str
    field: str
    kind: str

    def __str__(self) -> str:
        return f"{self.path}: {self.field} holds a {self.kind} value"


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


def audit_outputs(roots: list[str | os.PathLike], values: dict[str, str]) -> list[Finding]:
    """Return every place under `roots` where a value of `values` appears."""
    matcher = PhiMatcher(values)
    findings: list[Finding] = []
    for root in roots:
        root = Path(root)
        paths = [root] if root.is_file() else sorted(root.rglob("*"))
        for path in paths:
            shown = safe_path(path, matcher)
            findings += [Finding(shown, "file name", kind) for kind in matcher.kinds(path.name)]
            if path.is_file():
                findings += [Finding(shown, field, kind) for field, kind in _scan_file(path, matcher)]
    return findings


def safe_path(path: Path, matcher: PhiMatcher) -> str:
    """Return `path` for printing, each name that holds an identifying value withheld."""
    return "/".join("<name withheld>" if matcher.kinds(part) else part for part in path.parts)


def _scan_file(path: Path, matcher: PhiMatcher) -> Iterator[tuple[str, str]]:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        yield from _scan_parquet(path, matcher)
    elif suffix in TEXT_SUFFIXES:
        yield from (("text", kind) for kind in matcher.kinds(path.read_text("utf-8", errors="replace")))
    elif suffix == ".png":
        yield from (("pixels (OCR)", kind) for kind in matcher.kinds(ocr_text(path.read_bytes())))
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
        column = frame.get_column(name)
        if dtype == pl.Binary:
            # Image bytes are read by OCR where it is installed, other bytes as text.
            texts = (ocr_text(value) if value.startswith(PNG_MAGIC) else value.decode("latin-1")
                     for value in column.drop_nulls() if ocr_available() or not value.startswith(PNG_MAGIC))
        elif dtype == pl.String or dtype == pl.List(pl.String):
            texts = (str(value) for value in column.drop_nulls())
        else:
            continue
        kinds = sorted({kind for text in texts for kind in matcher.kinds(text)})
        yield from ((f"column {name}", kind) for kind in kinds)
        yield from ((f"column name {name}", kind) for kind in matcher.kinds(name))


def ocr_text(png: bytes) -> str:
    """Return the text tesseract reads in a PNG image; empty when tesseract is not installed."""
    binary = shutil.which("tesseract")
    if binary is None:
        return ""
    result = subprocess.run([binary, "stdin", "stdout"], input=png, capture_output=True, check=False)
    return result.stdout.decode("utf-8", errors="replace")


def ocr_available() -> bool:
    """Return True if PNG pixels can be checked by OCR here."""
    return shutil.which("tesseract") is not None
