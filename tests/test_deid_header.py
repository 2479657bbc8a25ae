"""Header de-identification on adversarial DICOM files and on every file pydicom ships."""

from __future__ import annotations

import io
import warnings

import pydicom
import pytest
from pydicom.data import get_testdata_files
from deid_fixtures import PLANTED, SECRET, US_IMAGE, adversarial_dataset
from pydicom.dataset import Dataset

from thyrokit.curate import identity
from thyrokit.curate.deid import DeidOptions, QuarantineError, deidentify_dataset
from thyrokit.curate.deid.dicom_output import encode_dicom

def deidentified_bytes(ds: Dataset, secret: bytes = SECRET, options: DeidOptions = DeidOptions()) -> bytes:
    out, _ = deidentify_dataset(ds, secret, options)
    return encode_dicom(out)


@pytest.mark.parametrize("options", [DeidOptions(), DeidOptions(clean_descriptors=False,
                                                                retain_longitudinal_modified_dates=False)])
def test_no_planted_value_survives_anywhere(options):
    data = deidentified_bytes(adversarial_dataset(), options=options).lower()
    for value in PLANTED + ["JANEDOE", "Doe", "1.2.826.0.1.3680043.2.1125.7734521"]:
        assert value.lower().encode() not in data, value
    assert b"20220315" not in data  # dates are shifted or gone


def test_profile_markers_pseudonyms_and_kept_attributes():
    out, audit = deidentify_dataset(adversarial_dataset(), SECRET, DeidOptions())
    assert out.PatientIdentityRemoved == "YES"
    assert out.PatientID == identity.patient_id(SECRET, "MRN7734521")  # equals the tables' patient_id
    codes = [item.CodeValue for item in out.DeidentificationMethodCodeSequence]
    assert codes == ["113100", "113105", "113107", "113108"]
    assert out.PatientSex == "F" and out.PatientAge == "058Y"  # Retain Patient Characteristics
    assert out.SOPClassUID == US_IMAGE and out.Manufacturer == "Acme Ultrasound"
    assert out.StudyDescription == "THYROID US"  # Clean Descriptors keeps safe words only
    assert "InstitutionName" not in out and "IconImageSequence" not in out
    assert not any(tag.is_private or tag.group in (0x6000, 0x5000) for tag in out.keys())
    region = out.SequenceOfUltrasoundRegions[0]
    assert region.RegionLocationMaxX1 == 90 and region.PhysicalDeltaX == 0.01
    assert out.SOPInstanceUID.startswith("2.25.") and out.SourceImageSequence[0].ReferencedSOPClassUID == US_IMAGE
    assert audit.actions["PatientName"] == "Z" and audit.actions["StudyDate"] == "C"
    assert audit.private_removed == 2
    assert "Doe" not in str(audit.to_dict())


def test_dates_shift_per_patient_keeping_intervals():
    first = adversarial_dataset()
    later = adversarial_dataset(study_uid="1.2.3.99")
    later.StudyDate = "20230315"
    a, _ = deidentify_dataset(first, SECRET, DeidOptions())
    b, _ = deidentify_dataset(later, SECRET, DeidOptions())
    from datetime import datetime
    days = (datetime.strptime(b.StudyDate, "%Y%m%d") - datetime.strptime(a.StudyDate, "%Y%m%d")).days
    assert days == 365 and a.StudyDate != "20220315"
    assert a.AcquisitionDateTime[8:] == "101733.000000"  # time of day kept


def test_same_secret_byte_identical_other_secret_different():
    assert deidentified_bytes(adversarial_dataset()) == deidentified_bytes(adversarial_dataset())
    a, _ = deidentify_dataset(adversarial_dataset(), SECRET, DeidOptions())
    b, _ = deidentify_dataset(adversarial_dataset(), b"another-secret-0123456789", DeidOptions())
    assert a.PatientID != b.PatientID and a.StudyInstanceUID != b.StudyInstanceUID
    assert a.SOPClassUID == b.SOPClassUID


def test_uid_references_consistent_across_files_of_a_study():
    image = adversarial_dataset(sop_uid="1.2.3.4.5.100")
    other = adversarial_dataset(sop_uid="1.2.3.4.5.101")
    other.SourceImageSequence[0].ReferencedSOPInstanceUID = "1.2.3.4.5.100"
    a, _ = deidentify_dataset(image, SECRET, DeidOptions())
    b, _ = deidentify_dataset(other, SECRET, DeidOptions())
    assert b.SourceImageSequence[0].ReferencedSOPInstanceUID == a.SOPInstanceUID
    assert a.StudyInstanceUID == b.StudyInstanceUID and a.SOPInstanceUID != b.SOPInstanceUID
    assert a.file_meta.MediaStorageSOPInstanceUID == a.SOPInstanceUID


def test_retain_options_keep_device_and_institution():
    options = DeidOptions(retain_device_identity=True, retain_institution_identity=True)
    out, _ = deidentify_dataset(adversarial_dataset(), SECRET, options)
    assert out.DeviceSerialNumber == "SN-44-XK-21" and out.InstitutionName == "St Olaf General"
    assert {"113109", "113112"} <= {item.CodeValue for item in out.DeidentificationMethodCodeSequence}


def test_safe_private_kept_with_its_creator():
    options = DeidOptions(safe_private=("0029,ACME PRIVATE,01",))
    out, audit = deidentify_dataset(adversarial_dataset(), SECRET, options)
    assert out[0x00291001].value == "PRIVATE-PHI-BLOB" and out[0x00290010].value == "ACME PRIVATE"
    assert 0x00291002 not in out and audit.private_kept == 1


def test_options_round_trip_and_reject_unknown():
    options = DeidOptions(safe_private=("0029,ACME PRIVATE,01",), descriptor_words=("LOBECTOMY",))
    assert DeidOptions.from_params(options.to_params()) == options
    with pytest.raises(ValueError, match="unknown option"):
        DeidOptions.from_params({"retain_uids": True})
    with pytest.raises(ValueError, match="safe_private"):
        DeidOptions.from_params({"safe_private": ["0028,X,01"]})


@pytest.mark.parametrize("damage, reason", [
    ("truncated", "truncated"), ("wrong_vr", "VR"), ("huge_private", "max_private_bytes"),
    ("report", "SR"), ("screenshot", "secondary-capture"),
])
def test_damaged_or_unsupported_files_are_quarantined_with_phi_free_reason(damage, reason):
    ds = adversarial_dataset()
    if damage == "truncated":
        ds.PixelData = ds.PixelData[:10]
    elif damage == "wrong_vr":
        ds.add_new(0x00080070, "US", 7)  # Manufacturer (kept) is LO
    elif damage == "huge_private":
        ds.add_new(0x00291003, "OB", b"\x00" * 1024)
    elif damage == "report":
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.33"
    else:
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    options = DeidOptions(max_private_bytes=512)
    with pytest.raises(QuarantineError, match=reason) as caught:
        deidentify_dataset(ds, SECRET, options)
    assert not any(value.lower() in str(caught.value).lower() for value in PLANTED)


def test_every_pydicom_test_file_is_deidentified_or_quarantined():
    outcomes = {"ok": 0, "quarantined": 0}
    for path in get_testdata_files():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ds = pydicom.dcmread(path, force=True)
            except Exception:
                continue  # not readable at all: ingest's reader quarantines it
            try:
                out, audit = deidentify_dataset(ds, SECRET, DeidOptions())
            except QuarantineError:
                outcomes["quarantined"] += 1
                continue
            pydicom.dcmwrite(io.BytesIO(), out)
            outcomes["ok"] += 1
            assert out.PatientIdentityRemoved == "YES"
            assert not any(tag.is_private for tag in out.keys())
    assert outcomes["ok"] >= 100 and outcomes["quarantined"] >= 1


def written(ds: Dataset) -> bytes:
    """Return the bytes pydicom writes for `ds` (explicit VR little endian)."""
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, implicit_vr=False, little_endian=True)
    return buffer.getvalue()


@pytest.mark.parametrize("keyword, value", [
    ("SOPInstanceUID", "2.25.123"), ("StudyDate", ["20200101", "20200102"]), ("PatientName", "ANONYMIZED"),
    ("StudyTime", "101010.5"), ("AccessionNumber", ""), ("StudyDescription", "THYROID US"),
])
def test_pre_encoded_values_write_the_bytes_pydicom_writes(keyword, value):
    # The header pass writes new text values already encoded; a file must come out as if pydicom had encoded them.
    from pydicom.datadict import dictionary_VR
    from pydicom.dataelem import DataElement
    from pydicom.tag import Tag

    from thyrokit.curate.deid.header import new_element

    tag = Tag(keyword)
    decoded, encoded = Dataset(), Dataset()
    decoded[tag] = DataElement(tag, dictionary_VR(tag), value)
    encoded[tag] = new_element(tag, dictionary_VR(tag), value)
    assert written(encoded) == written(decoded)
    assert encoded[tag].value == decoded[tag].value


def test_a_file_read_back_deidentifies_to_the_same_bytes_as_its_decoded_copy():
    # Unchanged sequences and elements stay as read; decoding everything first must not change the output.
    data = encode_dicom(adversarial_dataset())
    raw, decoded = pydicom.dcmread(io.BytesIO(data)), pydicom.dcmread(io.BytesIO(data))
    for element in decoded.iterall():
        element.value  # noqa: B018 - decodes every element in place
    assert deidentified_bytes(raw) == deidentified_bytes(decoded)
