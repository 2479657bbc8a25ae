"""Made-up patients, physicians and visits: the identifiers the phantom plants."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

FAMILY_NAMES = (
    "ABERNATHY", "BRANDVOLD", "CASTELLANO", "DRUMMOND", "EKWUEME", "FONTAINE", "GALLAGHER",
    "HALVORSEN", "IBARRA", "JANKOWSKI", "KOVALENKO", "LINDQVIST", "MONTGOMERY", "NAKASHIMA",
    "OKONKWO", "PELLETIER", "QUINTERO", "ROSENTHAL", "SVENSSON", "TREMBLAY", "UCHIDA",
    "VASQUEZ", "WHITFIELD", "YAMAMOTO", "ZELENKA",
)
GIVEN_NAMES = {
    "F": ("AGNES", "BEATRIZ", "CLARA", "DAGMAR", "EVELYN", "FATIMA", "GRETA", "HILDE",
          "INGRID", "JOSEPHINE", "LEONOR", "MARGIT", "NADIA", "OLIVE", "ROSALIND"),
    "M": ("ANSELM", "BRUNO", "CORNELIUS", "DESMOND", "EMIL", "FREDRIK", "GUSTAVO", "HAMISH",
          "IGNATIUS", "JASPER", "LEANDER", "MATTHIAS", "OSWALD", "RUFUS", "TOBIAS"),
}
PHYSICIANS = ("HARTLEY^ELEANOR", "OYELARAN^SAMUEL", "BERGSTROM^ASTRID", "MORETTI^PAOLO",
              "FAIRWEATHER^JUDITH", "ADEYEMI^KOFI")
FIRST_EXAM = dt.date(2021, 1, 4)


@dataclass(frozen=True)
class Person:
    """A made-up patient."""

    patient_id: str
    family: str
    given: str
    sex: str                 # "F" or "M"
    birth_date: dt.date

    @property
    def dicom_name(self) -> str:
        """The DICOM PersonName form, FAMILY^GIVEN."""
        return f"{self.family}^{self.given}"


@dataclass(frozen=True)
class Visit:
    """One study of a patient: when, who referred, and its accession number."""

    date: dt.date
    time: dt.time
    referrer: str
    accession: str


def patient_id(index: int, seed: int) -> str:
    """Return an 8-digit medical record number, unique per patient index for a given seed."""
    # An affine map with a multiplier coprime to 10**8 is a bijection, so ids never collide.
    return f"{(index * 7_368_787 + seed * 1_000_003 + 10_234_567) % 10**8:08d}"


def make_person(rng: np.random.Generator, index: int, seed: int) -> Person:
    """Draw a made-up patient; thyroid nodules are about four times as common in women."""
    sex = "F" if rng.random() < 0.78 else "M"
    birth = dt.date(1940, 1, 1) + dt.timedelta(days=int(rng.integers(0, 365 * 62)))
    return Person(
        patient_id=patient_id(index, seed),
        family=str(rng.choice(FAMILY_NAMES)),
        given=str(rng.choice(GIVEN_NAMES[sex])),
        sex=sex,
        birth_date=birth,
    )


def make_visits(rng: np.random.Generator, count: int) -> list[Visit]:
    """Draw `count` studies of one patient, the later ones follow-ups 6 to 18 months apart."""
    date = FIRST_EXAM + dt.timedelta(days=int(rng.integers(0, 3 * 365)))
    visits = []
    for _ in range(count):
        time = dt.time(int(rng.integers(7, 18)), int(rng.integers(0, 60)), int(rng.integers(0, 60)))
        visits.append(Visit(date, time, str(rng.choice(PHYSICIANS)), f"A{rng.integers(10**7, 10**8)}"))
        date += dt.timedelta(days=int(rng.integers(180, 540)))
    return visits
