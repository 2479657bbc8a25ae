"""Keyed identifiers of raw files, images, patients, studies and series.

Every id that leaves the raw zone is derived here from the secret, so the same raw
data and secret always give the same ids, and any stage that reads a raw file (ingest,
the labels stage) arrives at the same image id without a lookup table.
"""

from __future__ import annotations

from thyrokit.secret import keyed_digest, pseudonym


def source_hmac(secret: bytes, data: bytes) -> str:
    """Return the keyed content hash of one raw file: its id in every output."""
    return keyed_digest(secret, "source", data)[:32]


def image_id(secret: bytes, source: str, frame: int) -> str:
    """Return the id of frame `frame` of the raw file whose source_hmac is `source`."""
    return pseudonym(secret, "img", f"{source}:{frame}", length=20)


def patient_id(secret: bytes, raw_patient: str) -> str:
    """Return the pseudonym of a raw patient identifier (PatientID, or one parsed from a path)."""
    return pseudonym(secret, "pat", raw_patient.strip())


def study_id(secret: bytes, raw_study: str) -> str:
    """Return the pseudonym of a raw study identifier (StudyInstanceUID, or a study folder)."""
    return pseudonym(secret, "study", raw_study.strip())


def series_id(secret: bytes, raw_series: str) -> str:
    """Return the pseudonym of a raw series identifier (SeriesInstanceUID, or the file itself)."""
    return pseudonym(secret, "series", raw_series.strip())
