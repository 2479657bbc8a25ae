"""Ultrasound DICOM files as a scanner writes them: identifying header, scan region, pixels.

Encodings vary as in a real dump: explicit VR little endian, RLE Lossless, JPEG 2000
lossless, JPEG baseline (YBR_FULL_422 for colour) and PALETTE COLOR.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import (
    JPEG2000Lossless,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    RLELossless,
    UID,
)

US_IMAGE = UID("1.2.840.10008.5.1.4.1.1.6.1")
US_MULTIFRAME = UID("1.2.840.10008.5.1.4.1.1.3.1")
ENCODINGS = ("explicit", "rle", "jpeg2000", "jpeg", "palette")
TRANSFER_SYNTAX = {"explicit": ExplicitVRLittleEndian, "rle": RLELossless, "jpeg2000": JPEG2000Lossless,
                   "jpeg": JPEGBaseline8Bit, "palette": ExplicitVRLittleEndian}


@dataclass(frozen=True)
class Header:
    """The header values of one ultrasound file."""

    patient_name: str
    patient_id: str
    birth_date: str          # YYYYMMDD
    sex: str
    institution: str
    referrer: str
    accession: str
    date: str                # YYYYMMDD of study, series and content
    study_time: str          # HHMMSS
    content_time: str
    study_uid: str
    series_uid: str
    sop_uid: str
    series_number: int
    instance_number: int
    manufacturer: str
    model: str
    station: str
    private_creator: str
    series_description: str
    region: tuple[int, int, int, int]
    mm_per_px: float
    frame_time_ms: float = 0.0
    colour_box: tuple[int, int, int, int] | None = None


def identifying_values(header: Header) -> dict[str, str]:
    """Return every identifying header value by its keyword (private tags by their creator)."""
    return {
        "PatientName": header.patient_name, "PatientID": header.patient_id,
        "PatientBirthDate": header.birth_date, "PatientSex": header.sex,
        "InstitutionName": header.institution, "ReferringPhysicianName": header.referrer,
        "AccessionNumber": header.accession, "StudyDate": header.date, "SeriesDate": header.date,
        "ContentDate": header.date, "StudyTime": header.study_time, "ContentTime": header.content_time,
        "StudyInstanceUID": header.study_uid, "SeriesInstanceUID": header.series_uid,
        "SOPInstanceUID": header.sop_uid, "StationName": header.station,
        f"{header.private_creator}:PatientName": header.patient_name,
        f"{header.private_creator}:PatientID": header.patient_id,
    }


def _region_item(box: tuple[int, int, int, int], mm_per_px: float, data_type: int) -> Dataset:
    item = Dataset()
    item.RegionSpatialFormat = 1          # 2D
    item.RegionDataType = data_type       # 1 tissue, 2 colour flow
    item.RegionFlags = 0
    item.RegionLocationMinX0, item.RegionLocationMinY0 = box[0], box[1]
    item.RegionLocationMaxX1, item.RegionLocationMaxY1 = box[2] - 1, box[3] - 1  # inclusive in DICOM
    item.PhysicalUnitsXDirection = 3      # cm
    item.PhysicalUnitsYDirection = 3
    item.PhysicalDeltaX = round(mm_per_px / 10, 6)
    item.PhysicalDeltaY = round(mm_per_px / 10, 6)
    item.ReferencePixelX0 = (box[2] - box[0]) // 2
    item.ReferencePixelY0 = 0
    return item


def build_dataset(header: Header, frames: np.ndarray, encoding: str, lut: np.ndarray | None = None) -> Dataset:
    """Return a DICOM dataset of `frames` (N, H, W) grey, (N, H, W, 3) RGB, or palette indices with `lut`."""
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown DICOM encoding '{encoding}'; expected one of {ENCODINGS}")
    multiframe = frames.shape[0] > 1
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = TRANSFER_SYNTAX[encoding]
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "", "0001"]
    ds.SOPClassUID = US_MULTIFRAME if multiframe else US_IMAGE
    ds.SOPInstanceUID = header.sop_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = header.date
    ds.StudyTime = header.study_time
    ds.SeriesTime = ds.ContentTime = header.content_time
    ds.AccessionNumber = header.accession
    ds.Modality = "US"
    ds.Manufacturer = header.manufacturer
    ds.InstitutionName = header.institution
    ds.ReferringPhysicianName = header.referrer
    ds.StationName = header.station
    ds.StudyDescription = "US THYROID"
    ds.SeriesDescription = header.series_description
    ds.ManufacturerModelName = header.model
    ds.PatientName = header.patient_name
    ds.PatientID = header.patient_id
    ds.PatientBirthDate = header.birth_date
    ds.PatientSex = header.sex
    ds.BodyPartExamined = "THYROID"
    ds.StudyInstanceUID = header.study_uid
    ds.SeriesInstanceUID = header.series_uid
    ds.StudyID = header.accession[-6:]
    ds.SeriesNumber = header.series_number
    ds.InstanceNumber = header.instance_number
    ds.BurnedInAnnotation = "YES"
    regions = [_region_item(header.region, header.mm_per_px, 1)]
    if header.colour_box is not None:
        regions.append(_region_item(header.colour_box, header.mm_per_px, 2))
    ds.SequenceOfUltrasoundRegions = Sequence(regions)
    block = ds.private_block(0x0019, header.private_creator, create=True)
    block.add_new(0x10, "LO", header.patient_name)
    block.add_new(0x11, "LO", header.patient_id)
    if multiframe:
        ds.NumberOfFrames = frames.shape[0]
        ds.FrameTime = header.frame_time_ms
        ds.FrameIncrementPointer = 0x00181063  # Frame Time
        ds.CineRate = int(round(1000 / header.frame_time_ms))
    _set_pixels(ds, frames, encoding, lut)
    return ds


def _set_pixels(ds: Dataset, frames: np.ndarray, encoding: str, lut: np.ndarray | None) -> None:
    colour = frames.ndim == 4
    ds.Rows, ds.Columns = frames.shape[1], frames.shape[2]
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.SamplesPerPixel = 3 if colour else 1
    if colour:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = "RGB" if colour else "MONOCHROME2"
    single = frames[0] if frames.shape[0] == 1 else frames
    if encoding == "palette":
        if lut is None or colour:
            raise ValueError("a PALETTE COLOR file needs index frames and a lookup table")
        ds.PhotometricInterpretation = "PALETTE COLOR"
        for name, channel in zip(("Red", "Green", "Blue"), range(3)):
            setattr(ds, f"{name}PaletteColorLookupTableDescriptor", [256, 0, 8])
            # 8-bit entries are stored in 16-bit words (PS3.3 C.7.6.3.1.6).
            setattr(ds, f"{name}PaletteColorLookupTableData", lut[:, channel].astype("<u2").tobytes())
        ds.PixelData = single.tobytes()
    elif encoding == "jpeg":
        ds.PixelData = encapsulate([_jpeg(frame) for frame in frames])
        ds["PixelData"].VR = "OB"
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionRatio = round(frames[0].nbytes / len(_jpeg(frames[0])), 2)
        ds.LossyImageCompressionMethod = "ISO_10918_1"
        if colour:
            ds.PhotometricInterpretation = "YBR_FULL_422"
    else:
        ds.PixelData = single.tobytes()
        if encoding in ("rle", "jpeg2000"):
            # Keep the planned SOP Instance UID: pydicom would otherwise mint a random one.
            ds.compress(TRANSFER_SYNTAX[encoding], single, generate_instance_uid=False,
                        encoding_plugin="pylibjpeg" if encoding == "jpeg2000" else "")


def _jpeg(frame: np.ndarray) -> bytes:
    """Encode one 8-bit frame as baseline JPEG; colour is stored as YCbCr with 4:2:2 chroma."""
    buffer = io.BytesIO()
    image = Image.fromarray(frame, "RGB" if frame.ndim == 3 else "L")
    image.save(buffer, "JPEG", quality=90, subsampling=1)
    return buffer.getvalue()


def encode_dicom(ds: Dataset) -> bytes:
    """Return the bytes of a DICOM Part 10 file of `ds`."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
