"""Adversarial DICOM datasets for the de-identification tests: PHI planted everywhere."""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

SECRET = b"test-secret-0123456789abcdef"
US_IMAGE = "1.2.840.10008.5.1.4.1.1.6.1"
PLANTED = ["Doe^Jane^Q", "JANEDOE", "MRN7734521", "19640229", "ACC99887766", "St Olaf General",
           "Dr Hibbert", "Riverside Wing", "SN-44-XK-21", "Station-Thy-7", "Lives at 12 Elm Street",
           "Allergic to penicillin, husband John Doe", "OTHERID55443", "Requested by Dr Nick Riviera",
           "Sister Anne Doe", "PRIVATE-PHI-BLOB"]


def _code(value: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "99LOCAL", "Dr Hibbert"
    return item


def adversarial_dataset(study_uid: str | None = None, sop_uid: str | None = None, patient: str = "MRN7734521") -> Dataset:
    """Return an ultrasound dataset with PHI planted in standard, nested, private and free-text tags."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = US_IMAGE
    ds.SOPClassUID = US_IMAGE
    ds.SOPInstanceUID = sop_uid or "1.2.826.0.1.3680043.2.1125.7734521.1"
    ds.StudyInstanceUID = study_uid or "1.2.826.0.1.3680043.2.1125.7734521.2"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.2.1125.7734521.3"
    ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.2.1125.7734521.4"
    ds.Modality = "US"
    ds.PatientName = "Doe^Jane^Q"
    ds.PatientID = patient
    ds.PatientBirthDate = "19640229"
    ds.PatientSex = "F"
    ds.PatientAge = "058Y"
    ds.AccessionNumber = "ACC99887766"
    ds.StudyDate, ds.SeriesDate, ds.StudyTime = "20220315", "20220315", "101500"
    ds.AcquisitionDateTime = "20220315101733.000000"
    ds.InstitutionName = "St Olaf General"
    ds.InstitutionAddress = "Lives at 12 Elm Street"
    ds.ReferringPhysicianName = "Dr Hibbert"
    ds.InstitutionalDepartmentName = "Riverside Wing"
    ds.DeviceSerialNumber = "SN-44-XK-21"
    ds.StationName = "Station-Thy-7"
    ds.Manufacturer = "Acme Ultrasound"
    ds.StudyDescription = "THYROID US JANEDOE"
    ds.SeriesDescription = "Left lobe Doe^Jane^Q"
    ds.ImageComments = "Allergic to penicillin, husband John Doe"
    ds.AdditionalPatientHistory = "Sister Anne Doe"
    ds.PatientComments = "Lives at 12 Elm Street"
    other = Dataset()
    other.PatientID, other.IssuerOfPatientID = "OTHERID55443", "St Olaf General"
    ds.OtherPatientIDsSequence = Sequence([other])
    request = Dataset()
    request.RequestedProcedureID = "ACC99887766"
    request.ScheduledProcedureStepDescription = "Requested by Dr Nick Riviera"
    ds.RequestAttributesSequence = Sequence([request])
    referenced_patient = Dataset()
    referenced_patient.ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.2.1125.7734521.9"
    referenced_patient.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.1.1"
    ds.ReferencedPatientSequence = Sequence([referenced_patient])
    source = Dataset()
    source.ReferencedSOPClassUID = US_IMAGE
    source.ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.2.1125.7734521.8"
    source.PurposeOfReferenceCodeSequence = Sequence([_code("121320")])
    ds.SourceImageSequence = Sequence([source])
    region = Dataset()
    region.RegionLocationMinX0, region.RegionLocationMinY0 = 10, 20
    region.RegionLocationMaxX1, region.RegionLocationMaxY1 = 90, 70
    region.PhysicalDeltaX, region.PhysicalDeltaY = 0.01, 0.01
    ds.SequenceOfUltrasoundRegions = Sequence([region])
    icon = Dataset()
    icon.Rows, icon.Columns, icon.BitsAllocated, icon.PixelData = 2, 2, 8, b"JANE"
    ds.IconImageSequence = Sequence([icon])
    ds.add_new(0x60000010, "US", 8)
    ds.add_new(0x60003000, "OW", b"Doe^Jane^Q\x00\x00")
    ds.add_new(0x50000000, "UL", 4)
    ds.add_new(0x00290010, "LO", "ACME PRIVATE")
    ds.add_new(0x00291001, "LO", "PRIVATE-PHI-BLOB")
    inner = Dataset()
    inner.add_new(0x00090010, "LO", "NESTED PRIVATE")
    inner.add_new(0x00091001, "LO", "JANEDOE")
    ds.add_new(0x00291002, "SQ", Sequence([inner]))
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = 8, 8, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.zeros((8, 8), np.uint8).tobytes()
    ds.set_original_encoding(False, True)
    return ds
