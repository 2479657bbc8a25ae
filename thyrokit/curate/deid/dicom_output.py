"""Write a de-identified DICOM file: profile-cleaned header, redacted uncompressed pixels.

Optional output beside the PNG shards, for consumers that want DICOM. The pixels are
written native (uncompressed, explicit VR little endian); where they were cropped, the
ultrasound regions are shifted into the crop rather than dropped, so calibration
(PhysicalDeltaX/Y) survives.
"""

from __future__ import annotations

import io
import os

import numpy as np
from pydicom import dcmwrite
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from thyrokit.atomic import write_bytes
from thyrokit.curate.deid.header import HeaderAudit, add_clean_pixel_code

Box = tuple[int, int, int, int]
_REGION_X = ("RegionLocationMinX0", "RegionLocationMaxX1")
_REGION_Y = ("RegionLocationMinY0", "RegionLocationMaxY1")


def shift_ultrasound_regions(ds: Dataset, crop: Box) -> None:
    """Move SequenceOfUltrasoundRegions into the crop (x0, y0, x1, y1); drop regions left outside it."""
    if "SequenceOfUltrasoundRegions" not in ds:
        return
    x0, y0, x1, y1 = crop
    kept = []
    for region in ds.SequenceOfUltrasoundRegions:
        if not all(name in region for name in _REGION_X + _REGION_Y):
            continue
        moved_x = [int(region[name].value) - x0 for name in _REGION_X]
        moved_y = [int(region[name].value) - y0 for name in _REGION_Y]
        xs = [min(max(value, 0), x1 - x0 - 1) for value in moved_x]
        ys = [min(max(value, 0), y1 - y0 - 1) for value in moved_y]
        if xs[1] <= xs[0] or ys[1] <= ys[0]:
            continue
        for name, value in zip(_REGION_X + _REGION_Y, xs + ys):
            region[name].value = value
        # The reference pixel is relative to the region's corner, which clipping moves.
        for axis, moved, clipped in (("X0", moved_x[0], xs[0]), ("Y0", moved_y[0], ys[0])):
            if f"ReferencePixel{axis}" in region:
                region[f"ReferencePixel{axis}"].value = int(region[f"ReferencePixel{axis}"].value) - (clipped - moved)
        kept.append(region)
    ds.SequenceOfUltrasoundRegions = kept


def set_pixels(ds: Dataset, frames: np.ndarray, text_removed: bool, audit: HeaderAudit,
               rescale: tuple[float, float] | None = None) -> None:
    """Store `frames` (N, H, W[, 3]) uncompressed in `ds` and say truthfully whether text remains.

    `rescale` is the (slope, intercept) that maps the stored `frames` to modality values
    (readers shift signed pixels into uint16 and fold the shift into the intercept).
    """
    frames = np.ascontiguousarray(frames)
    colour = frames.ndim == 4
    ds.Rows, ds.Columns = int(frames.shape[1]), int(frames.shape[2])
    ds.SamplesPerPixel = 3 if colour else 1
    ds.PhotometricInterpretation = "RGB" if colour else "MONOCHROME2"
    if colour:
        ds.PlanarConfiguration = 0
    elif "PlanarConfiguration" in ds:
        del ds.PlanarConfiguration
    bits = 8 if frames.dtype == np.uint8 else 16
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits, bits - 1, 0
    if len(frames) > 1 or "NumberOfFrames" in ds:
        ds.NumberOfFrames = len(frames)
    for name in ("PixelPaddingValue", "SmallestImagePixelValue", "LargestImagePixelValue",
                 "PaletteColorLookupTableUID", "RedPaletteColorLookupTableDescriptor",
                 "GreenPaletteColorLookupTableDescriptor", "BluePaletteColorLookupTableDescriptor",
                 "RedPaletteColorLookupTableData", "GreenPaletteColorLookupTableData",
                 "BluePaletteColorLookupTableData"):
        if name in ds:
            delattr(ds, name)
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = f"{rescale[0]:.10g}", f"{rescale[1]:.10g}"
    ds.PixelData = frames.astype(np.uint8 if bits == 8 else np.uint16).tobytes()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.BurnedInAnnotation = "NO" if text_removed else "YES"
    if text_removed:
        add_clean_pixel_code(ds, audit)


def encode_dicom(ds: Dataset) -> bytes:
    """Return `ds` as the bytes of a DICOM file (preamble, file meta, explicit VR little endian)."""
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True, implicit_vr=False, little_endian=True)
    return buffer.getvalue()


def deidentified_dicom_bytes(ds: Dataset, frames: np.ndarray, audit: HeaderAudit, text_removed: bool = True,
                             rescale: tuple[float, float] | None = None) -> bytes:
    """Return the de-identified `ds` with the redacted `frames` as the bytes of a DICOM file."""
    set_pixels(ds, frames, text_removed, audit, rescale)
    return encode_dicom(ds)


def write_deidentified_dicom(path: str | os.PathLike, ds: Dataset, frames: np.ndarray,
                             audit: HeaderAudit, text_removed: bool = True,
                             rescale: tuple[float, float] | None = None) -> None:
    """Write the de-identified `ds` with the redacted `frames` as a DICOM file at `path`, atomically."""
    write_bytes(path, deidentified_dicom_bytes(ds, frames, audit, text_removed, rescale))
