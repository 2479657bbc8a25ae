"""The actions of DICOM PS3.15 (2026c) Annex E Table E.1-1, and the options that relax them.

The Basic Application Level Confidentiality Profile is data: ``basic_profile_2026c.csv``
(group, element, keyword, action) lists what happens to each attribute. The option
columns of the table are not in that file; the attributes each option keeps (K) or
cleans (C) are listed below from the standard's option columns (E.3.5 to E.3.10).

Resolved actions, as :func:`action_table` returns them:

- ``X`` remove, ``Z`` empty value, ``D`` dummy value (a keyed pseudonym where one exists),
- ``K`` keep (sequences: keep and clean their items), ``C`` clean (dates shifted,
  descriptive text reduced to safe words), ``U`` replace UIDs with keyed ones.

A combined code picks by the attribute's type in the IOD. Without the IOD tables we
take the branch that removes the most while the object stays valid: X/Z, X/D and
X/Z/D remove; Z/D empties, except PatientID, which gets its keyed pseudonym (type 1
in several IODs and the key of every dataset table); X/Z/U* keeps the reference
sequence with every UID inside replaced, so images still point at each other.
"""

from __future__ import annotations

import csv
from functools import lru_cache
from importlib import resources

from pydicom.datadict import dictionary_VR
from pydicom.tag import Tag

from thyrokit.curate.deid.options import DeidOptions

STANDARD = "DICOM PS3.15 2026c Annex E Table E.1-1"
PROFILE_FILE = "basic_profile_2026c.csv"

# CID 7050 De-identification Method codes (DCM), by the option they name.
CODE_BASIC = ("113100", "Basic Application Confidentiality Profile")
CODE_CLEAN_PIXEL = ("113101", "Clean Pixel Data Option")
CODE_CLEAN_DESCRIPTORS = ("113105", "Clean Descriptors Option")
CODE_MODIFIED_DATES = ("113107", "Retain Longitudinal Temporal Information Modified Dates Option")
CODE_PATIENT_CHARACTERISTICS = ("113108", "Retain Patient Characteristics Option")
CODE_DEVICE_IDENTITY = ("113109", "Retain Device Identity Option")
CODE_SAFE_PRIVATE = ("113111", "Retain Safe Private Option")
CODE_INSTITUTION_IDENTITY = ("113112", "Retain Institution Identity Option")

COMBINED_CHOICE = {"X/Z": "X", "X/D": "X", "X/Z/D": "X", "Z/D": "Z", "X/Z/U*": "U"}
DUMMY_NOT_EMPTY = frozenset({"PatientID"})

PATIENT_CHARACTERISTICS = frozenset({
    "PatientAge", "PatientSex", "PatientSexNeutered", "PatientSize", "PatientWeight",
    "EthnicGroup", "SmokingStatus", "PregnancyStatus",
})
DEVICE_IDENTITY = frozenset({
    "DeviceSerialNumber", "StationName", "DeviceUID", "DeviceDescription", "DeviceLabel",
    "DetectorID", "GantryID", "GeneratorID", "PlateID", "CassetteID", "SecondaryCaptureDeviceID",
    "HardcopyCreationDeviceID", "ModifyingDeviceID", "PerformedStationName", "ScheduledStationName",
    "StationAETitle", "SourceManufacturer", "TransducerIdentificationSequence", "UDISequence",
    "UniqueDeviceIdentifier", "ManufacturerDeviceIdentifier", "DeviceAlternateIdentifier",
    "XRayDetectorID", "XRaySourceID", "LensMake", "LensModel", "LensSerialNumber",
    "LensSpecification", "LongDeviceDescription", "DeviceSettingDescription",
    "TreatmentMachineName", "SourceSerialNumber",
})
INSTITUTION_IDENTITY = frozenset({
    "InstitutionName", "InstitutionAddress", "InstitutionCodeSequence",
    "InstitutionalDepartmentName", "InstitutionalDepartmentTypeCodeSequence",
})
DESCRIPTORS = frozenset({
    "AcquisitionComments", "AcquisitionDeviceProcessingDescription", "AcquisitionProtocolDescription",
    "AdditionalPatientHistory", "AdmittingDiagnosesDescription", "DerivationDescription",
    "FrameComments", "ImageComments", "ImagePresentationComments", "ImagingServiceRequestComments",
    "PatientComments", "PerformedProcedureStepDescription", "ProtocolName", "ReasonForStudy",
    "RequestedProcedureDescription", "ScheduledProcedureStepDescription", "SeriesDescription",
    "StudyComments", "StudyDescription", "RequestedContrastAgent", "ContrastBolusAgent",
})
# Dates whose shifted value would still single a patient out together with the age.
NEVER_SHIFTED = frozenset({"PatientBirthDate", "PatientBirthTime"})
DATE_VRS = frozenset({"DA", "DT", "TM"})


def read_basic_profile() -> dict[int, tuple[str, str]]:
    """Return the Basic Profile as {tag: (keyword, action code)}, repeating groups at their base."""
    table = {}
    text = resources.files("thyrokit.curate.deid").joinpath(PROFILE_FILE).read_text("utf-8")
    for row in csv.DictReader(text.splitlines()):
        tag = int(Tag(int(row["group"], 16), int(row["element"], 16)))
        table[tag] = (row["keyword"], row["action"])
    return table


def _vr(tag: int) -> str:
    try:
        return dictionary_VR(tag)
    except KeyError:
        return ""


def _resolve(keyword: str, code: str, vr: str, options: DeidOptions) -> str:
    """Return the single action for one attribute under `options`."""
    if options.retain_longitudinal_modified_dates and vr in DATE_VRS and keyword not in NEVER_SHIFTED:
        return "C"
    if options.retain_patient_characteristics and keyword in PATIENT_CHARACTERISTICS:
        return "K"
    if options.retain_device_identity and keyword in DEVICE_IDENTITY:
        return "U" if vr == "UI" else "K"
    if options.retain_institution_identity and keyword in INSTITUTION_IDENTITY:
        return "K"
    if options.clean_descriptors and keyword in DESCRIPTORS:
        return "C"
    if code == "Z/D" and keyword in DUMMY_NOT_EMPTY:
        return "D"
    return COMBINED_CHOICE.get(code, code)


@lru_cache(maxsize=8)
def action_table(options: DeidOptions) -> dict[int, tuple[str, str]]:
    """Return {tag: (keyword, resolved action)} for every attribute the profile lists."""
    return {tag: (keyword, _resolve(keyword, code, _vr(tag), options))
            for tag, (keyword, code) in read_basic_profile().items()}


def method_codes(options: DeidOptions, clean_pixels: bool = False) -> list[tuple[str, str]]:
    """Return the CID 7050 codes naming the profile and every option applied."""
    codes = [CODE_BASIC]
    if clean_pixels:
        codes.append(CODE_CLEAN_PIXEL)
    for applied, code in (
        (options.clean_descriptors, CODE_CLEAN_DESCRIPTORS),
        (options.retain_longitudinal_modified_dates, CODE_MODIFIED_DATES),
        (options.retain_patient_characteristics, CODE_PATIENT_CHARACTERISTICS),
        (options.retain_device_identity, CODE_DEVICE_IDENTITY),
        (bool(options.safe_private), CODE_SAFE_PRIVATE),
        (options.retain_institution_identity, CODE_INSTITUTION_IDENTITY),
    ):
        if applied:
            codes.append(code)
    return codes
