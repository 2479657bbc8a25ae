"""Per-patient date shifts: every date of one patient moves back by the same keyed number of days.

That keeps the intervals between a patient's studies (Retain Longitudinal Temporal
Information with Modified Dates) while hiding the real dates. Times of day are kept:
a shift by whole days leaves them as they were.
"""

from __future__ import annotations

from datetime import date, timedelta

from thyrokit.secret import keyed_digest


def date_shift_days(secret: bytes, patient_key: str, max_days: int) -> int:
    """Return the keyed shift of one patient's dates, in days: a value in [-max_days, -1]."""
    if max_days < 1:
        raise ValueError(f"deid.date_shift_max_days must be at least 1, not {max_days}")
    return -(1 + int(keyed_digest(secret, "date-shift", patient_key.strip())[:12], 16) % max_days)


def shift_date(value: str, days: int) -> str:
    """Return the DA value ``YYYYMMDD`` moved by `days`; ValueError if it is not a date."""
    text = value.strip()
    if len(text) != 8 or not text.isdigit():
        raise ValueError("not a DA value")
    moved = date(int(text[:4]), int(text[4:6]), int(text[6:])) + timedelta(days=days)
    return moved.strftime("%Y%m%d") if moved.year >= 1 else "00010101"


def shift_datetime(value: str, days: int) -> str:
    """Return the DT value with its date part moved by `days`, time and offset kept."""
    text = value.strip()
    return shift_date(text[:8], days) + text[8:]
