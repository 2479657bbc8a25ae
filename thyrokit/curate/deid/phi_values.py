"""The identifying values seen in the raw zone, collected so outputs can be searched for them.

:func:`collect_phi_values` reads every DICOM header under the raw scans (sequences
included) and the folder names, and keeps each identifying value with its kind
(``PatientName``, ``folder``, ...). The set is itself PHI: it is written only to the raw
zone (``data/private/phi_values.json``) and read by :mod:`thyrokit.curate.deid.audit`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from thyrokit.atomic import write_text
from thyrokit.curate.deid.uids import CLASS_UID_KEYWORDS, is_well_known

MIN_LENGTH = 4  # shorter values (sex 'F', two-letter names) would match everywhere
MIN_DIGITS = 6  # all-digit values shorter than this are counters and sizes in any output
PHI_KEYWORDS = frozenset({
    "PatientName", "PatientID", "PatientBirthDate", "PatientBirthName", "PatientMotherBirthName",
    "PatientAddress", "PatientTelephoneNumbers", "OtherPatientIDs", "OtherPatientNames",
    "IssuerOfPatientID", "AccessionNumber", "StudyID", "MedicalRecordLocator",
    "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName",
    "ReferringPhysicianName", "PerformingPhysicianName", "NameOfPhysiciansReadingStudy",
    "PhysiciansOfRecord", "RequestingPhysician", "OperatorsName", "ConsultingPhysicianName",
    "StationName", "DeviceSerialNumber", "ResponsiblePerson", "ResponsibleOrganization",
})
_NAME_SPLIT = re.compile(r"[\^=\s,]+")


def normalise(text: str) -> str:
    """Return `text` lower-cased with runs of white space made single spaces."""
    return " ".join(text.lower().split())


def value_variants(kind: str, value: str, vr: str) -> set[str]:
    """Return the normalised forms under which `value` may reappear (name parts, date formats)."""
    value = value.strip().strip("\x00")
    variants = {normalise(value)}
    if vr == "PN":
        parts = [part for part in _NAME_SPLIT.split(value) if part]
        variants |= {normalise(part) for part in parts}
        variants.add(normalise(" ".join(parts)))
    if vr == "DA" and len(value) == 8 and value.isdigit():
        year, month, day = value[:4], value[4:6], value[6:]
        variants |= {f"{year}-{month}-{day}", f"{day}/{month}/{year}", f"{month}/{day}/{year}", f"{day}.{month}.{year}"}
    return {variant for variant in variants if is_searchable(variant)}


def is_searchable(value: str) -> bool:
    """Return True if `value` is long enough to search for without false alarms."""
    return len(value) >= (MIN_DIGITS if value.isdigit() else MIN_LENGTH)


def dataset_phi(ds: Dataset) -> Iterator[tuple[str, str]]:
    """Yield (kind, value) for every identifying value in `ds` and its sequences."""
    for element in ds.iterall():
        keyword = element.keyword or ""
        if element.VR == "SQ" or element.value in (None, ""):
            continue
        values = element.value if element.VM > 1 else [element.value]
        if keyword in PHI_KEYWORDS:
            for value in values:
                for variant in value_variants(keyword, str(value), element.VR):
                    yield keyword, variant
        elif element.VR == "UI" and keyword not in CLASS_UID_KEYWORDS:
            for value in values:
                if not is_well_known(str(value)):
                    yield "UID", normalise(str(value))


def collect_phi_values(raw_dir: str | os.PathLike) -> dict[str, str]:
    """Return {normalised value: kind} for the DICOM headers and folder names under `raw_dir`."""
    root = Path(raw_dir)
    found: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        if path.is_dir():
            for variant in value_variants("folder", path.name, "LO"):
                found.setdefault(variant, "folder")
            continue
        for kind, value in _file_phi(path):
            found.setdefault(value, kind)
    return dict(sorted(found.items()))


def _file_phi(path: Path) -> Iterable[tuple[str, str]]:
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError, EOFError, AttributeError, KeyError):
        return []  # not DICOM, or unreadable: ingest quarantines it, nothing reaches outputs
    try:
        return list(dataset_phi(ds))
    except Exception:  # a damaged element further in: keep what the top level gives
        return []


def write_phi_values(values: dict[str, str], path: str | os.PathLike) -> None:
    """Write the PHI value set to `path` (raw zone only), atomically."""
    write_text(path, json.dumps({"min_length": MIN_LENGTH, "values": values}, indent=1, sort_keys=True) + "\n")


def read_phi_values(path: str | os.PathLike) -> dict[str, str]:
    """Return {normalised value: kind} from a PHI value set file."""
    data = json.loads(Path(path).read_text("utf-8"))
    return {normalise(value): kind for value, kind in data["values"].items() if is_searchable(normalise(value))}
