"""Small real DICOM files for tests: ultrasound, CT and NM, in the transfer syntaxes ingest must read.

Every builder returns the file's bytes, written by pydicom; pixel data is compressed
by pydicom's own encoders (RLE, JPEG 2000) or, for JPEG baseline, by OpenCV and then
encapsulated, as a scanner's export would be.
"""

from __future__ import annotations

import io

import cv2
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    RLELossless,
    UltrasoundImageStorage,
    UltrasoundMultiFrameImageStorage,
    generate_uid,
)

ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
NM_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.20"

# Values a test can look for in outputs: none of them may ever appear there.
PHI = {
    "PatientName": "Doe^Jane",
    "PatientBirthDate": "19610203",
    "InstitutionName": "St Olaf General Hospital",
    "ReferringPhysicianName": "House^Gregory",
    "AccessionNumber": "ACC99887766",
}


def fan_image(height: int = 96, width: int = 128, seed: int = 0, rgb: bool = False) -> np.ndarray:
    """Return a synthetic ultrasound frame: a speckled fan on black, with a text-like bar top left."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    apex_x, apex_y = width / 2, -height * 0.15
    radius = np.hypot(xx - apex_x, yy - apex_y)
    angle = np.degrees(np.arctan2(xx - apex_x, yy - apex_y))
    fan = (radius > height * 0.3) & (radius < height * 1.1) & (np.abs(angle) < 35)
    image = np.zeros((height, width), np.uint8)
    image[fan] = rng.integers(40, 220, size=int(fan.sum()), dtype=np.uint8)
    image[2:5, 2:30] = 255  # burned-in "text" outside the fan
    if rgb:
        return np.stack([image, image, (image * 0.8).astype(np.uint8)], axis=-1)
    return image


def us_dataset(pixels: np.ndarray, *, patient_id: str | None = "PAT-0001", regions: list[tuple] | None = None,
               sop_class: str | None = None) -> Dataset:
    """Return an uncompressed ultrasound dataset holding `pixels` (H, W[, 3]) or (N, H, W[, 3]) uint8."""
    multi = pixels.ndim == 4 or (pixels.ndim == 3 and pixels.shape[-1] != 3)
    rgb = pixels.shape[-1] == 3 and pixels.ndim in (3, 4)
    ds = _base(sop_class or (UltrasoundMultiFrameImageStorage if multi else UltrasoundImageStorage), "US",
               patient_id)
    ds.Manufacturer = "Acme"
    ds.ManufacturerModelName = "Sono 5"
    _set_pixels(ds, pixels, rgb=rgb, multi=multi)
    if regions is not None:
        ds.SequenceOfUltrasoundRegions = Sequence([_region(*region) for region in regions])
    return ds


def ct_dataset(pixels: np.ndarray, *, intercept: float = -1024.0, slope: float = 1.0,
               patient_id: str = "PAT-0002") -> Dataset:
    """Return a CT dataset of signed 16-bit stored values with a rescale to Hounsfield units."""
    ds = _base(CTImageStorage, "CT", patient_id)
    _set_grey(ds, pixels.shape, bits=16, signed=True, photometric="MONOCHROME2")
    ds.RescaleIntercept = intercept
    ds.RescaleSlope = slope
    ds.PixelSpacing = [0.7, 0.8]
    ds.PixelData = pixels.astype("<i2").tobytes()
    return ds


def nm_dataset(pixels: np.ndarray, *, monochrome1: bool = False, patient_id: str = "PAT-0003") -> Dataset:
    """Return a scintigraphy (NM) dataset of unsigned 16-bit counts."""
    ds = _base(NM_IMAGE_STORAGE, "NM", patient_id)
    _set_grey(ds, pixels.shape, bits=16, signed=False, photometric="MONOCHROME1" if monochrome1 else "MONOCHROME2")
    ds.PixelData = pixels.astype("<u2").tobytes()
    return ds


def palette_dataset(indices: np.ndarray, lut: np.ndarray, patient_id: str = "PAT-0004",
                    entry_bits: int = 16) -> Dataset:
    """Return an 8-bit PALETTE COLOR ultrasound dataset; `lut` is (256, 3) with `entry_bits`-bit entries."""
    ds = _base(UltrasoundImageStorage, "US", patient_id)
    _set_grey(ds, indices.shape, bits=8, signed=False, photometric="PALETTE COLOR")
    for name, channel in zip(("Red", "Green", "Blue"), lut.T):
        setattr(ds, f"{name}PaletteColorLookupTableDescriptor", [256, 0, entry_bits])
        setattr(ds, f"{name}PaletteColorLookupTableData", channel.astype("<u2").tobytes())
    ds.PixelData = indices.astype(np.uint8).tobytes()
    return ds


def ybr_dataset(rgb: np.ndarray, patient_id: str = "PAT-0005") -> Dataset:
    """Return an uncompressed YBR_FULL ultrasound dataset whose RGB rendering is `rgb`."""
    ds = us_dataset(rgb, patient_id=patient_id)
    ycc = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)[..., [0, 2, 1]]  # DICOM order is Y, Cb, Cr
    ds.PhotometricInterpretation = "YBR_FULL"
    ds.PixelData = ycc.tobytes()
    return ds


def pdf_dataset(patient_id: str = "PAT-0006") -> Dataset:
    """Return an Encapsulated PDF document, which ingest must refuse."""
    ds = _base(ENCAPSULATED_PDF, "DOC", patient_id)
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = b"%PDF-1.4\n%%EOF\n"
    return ds


def rle(ds: Dataset) -> Dataset:
    """Compress `ds` in place with RLE Lossless and return it."""
    ds.compress(RLELossless)
    return ds


def jpeg2000(ds: Dataset) -> Dataset:
    """Compress `ds` in place with lossless JPEG 2000 and return it."""
    ds.compress(JPEG2000Lossless)
    return ds


def jpeg_baseline(ds: Dataset, quality: int = 95) -> Dataset:
    """Compress a single-frame 8-bit `ds` in place with JPEG baseline (OpenCV) and return it."""
    image = ds.pixel_array
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    ok, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    if image.ndim == 3:
        ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.PixelData = encapsulate([jpeg.tobytes()])
    ds["PixelData"].VR = "OB"
    return ds


def to_bytes(ds: Dataset) -> bytes:
    """Return the DICOM file bytes of `ds` (preamble and file meta included)."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _base(sop_class: str, modality: str, patient_id: str | None) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = uid = generate_uid(entropy_srcs=[sop_class, str(patient_id)])
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = uid
    ds.Modality = modality
    if patient_id is not None:
        ds.PatientID = patient_id
    for keyword, value in PHI.items():
        setattr(ds, keyword, value)
    ds.StudyInstanceUID = generate_uid(entropy_srcs=["study", str(patient_id)])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=["series", str(patient_id), modality])
    return ds


def _set_grey(ds: Dataset, shape: tuple[int, int], *, bits: int, signed: bool, photometric: str) -> None:
    """Set the image pixel module of a one-sample-per-pixel image (pixel data not included)."""
    ds.Rows, ds.Columns = shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = int(signed)


def _set_pixels(ds: Dataset, pixels: np.ndarray, *, rgb: bool, multi: bool) -> None:
    ds.Rows, ds.Columns = pixels.shape[1:3] if multi else pixels.shape[:2]
    if multi:
        ds.NumberOfFrames = pixels.shape[0]
    ds.SamplesPerPixel = 3 if rgb else 1
    ds.PhotometricInterpretation = "RGB" if rgb else "MONOCHROME2"
    if rgb:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()


def _region(x0: int, y0: int, x1: int, y1: int, delta_cm: float | None = 0.01, tissue: bool = True) -> Dataset:
    """One SequenceOfUltrasoundRegions item; (x1, y1) inclusive, as DICOM stores them."""
    item = Dataset()
    item.RegionSpatialFormat = 1 if tissue else 3  # 1 = 2D, 3 = spectral
    item.RegionDataType = 1 if tissue else 3  # 1 = tissue, 3 = PW spectral Doppler
    item.RegionFlags = 0
    item.RegionLocationMinX0, item.RegionLocationMinY0 = x0, y0
    item.RegionLocationMaxX1, item.RegionLocationMaxY1 = x1, y1
    if delta_cm is None:
        item.PhysicalUnitsXDirection = item.PhysicalUnitsYDirection = 0  # none
        item.PhysicalDeltaX = item.PhysicalDeltaY = 1.0
    else:
        item.PhysicalUnitsXDirection = item.PhysicalUnitsYDirection = 3  # cm
        item.PhysicalDeltaX, item.PhysicalDeltaY = delta_cm, delta_cm * 1.5
    return item
