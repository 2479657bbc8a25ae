"""The de-identification options of DICOM PS3.15 Annex E that ``params.yaml`` selects.

Each field is one profile option (E.3) or one limit of ours; :meth:`DeidOptions.from_params`
reads the ``deid`` section of params.yaml and :meth:`DeidOptions.to_params` writes it back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class DeidOptions:
    """Which Annex E profile options apply, and the limits of the checks."""

    # Shift every date by one keyed per-patient offset, so intervals between a patient's
    # studies survive (Retain Longitudinal Temporal Information with Modified Dates, 113107).
    retain_longitudinal_modified_dates: bool = True
    # The most days a patient's dates move back; the shift lies in [1, this].
    date_shift_max_days: int = 365
    # Keep age, sex, size, weight, smoking and pregnancy status (113108).
    retain_patient_characteristics: bool = True
    # Keep serial numbers, station names and other device identifiers (113109).
    retain_device_identity: bool = False
    # Keep institution name, address and department (113112).
    retain_institution_identity: bool = False
    # Keep descriptive text cleaned to words on a safe list (113105).
    clean_descriptors: bool = True
    # Extra words a descriptor may keep, beyond the built-in list (upper case).
    descriptor_words: tuple[str, ...] = ()
    # Private elements known to carry no identity, as "gggg,PRIVATE CREATOR,ee" (113111);
    # empty means every private element goes.
    safe_private: tuple[str, ...] = ()
    # A private element larger than this is quarantined, not silently dropped: it usually
    # embeds a whole report or image that someone should look at.
    max_private_bytes: int = 16 * 1024 * 1024
    # Secondary-capture objects are screenshots of a workstation: identity anywhere.
    allow_secondary_capture: bool = False

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> DeidOptions:
        """Return the options in the ``deid`` section of params.yaml; unknown keys are an error."""
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(f"deid: unknown option(s) {unknown}; known options are {sorted(known)}")
        values = {name: tuple(value) if isinstance(value, list) else value
                  for name, value in params.items()}
        options = cls(**values)
        options.parse_safe_private()  # fail on a malformed entry now, not on the first file
        return options

    def to_params(self) -> dict[str, Any]:
        """Return the options as a params.yaml mapping (lists for tuples)."""
        return {name: list(value) if isinstance(value, tuple) else value
                for name, value in asdict(self).items()}

    def parse_safe_private(self) -> frozenset[tuple[int, str, int]]:
        """Return the safe private elements as (group, creator, element byte) triples."""
        parsed = set()
        for entry in self.safe_private:
            parts = [part.strip() for part in entry.split(",")]
            try:
                group, creator, element = int(parts[0], 16), parts[1], int(parts[2], 16)
            except (IndexError, ValueError):
                raise ValueError(
                    f"deid.safe_private: '{entry}' is not 'gggg,PRIVATE CREATOR,ee'") from None
            if group % 2 == 0 or not 0 <= element <= 0xFF:
                raise ValueError(f"deid.safe_private: '{entry}' is not a private element")
            parsed.add((group, creator, element))
        return frozenset(parsed)
