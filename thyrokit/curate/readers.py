"""Read one raw file (DICOM, PNG or JPEG) into pixel frames and a few whitelisted header facts.

This is where raw bytes become arrays. Everything a later step may use from a DICOM
header is copied into :class:`HeaderFacts`. The raw identifiers it keeps (PatientID,
study and series UIDs) and the parsed header itself (:attr:`RawScan.dataset`) exist only
to be pseudonymised and de-identified by the caller, inside the same worker: neither
travels further.

What the stored pixels mean:

- ultrasound and other display images (``uint8``; grey, RGB): as displayed.
  YBR colour is converted to RGB, PALETTE COLOR is looked up to RGB (8 bits a channel),
  MONOCHROME1 is inverted so that higher always means brighter.
- CT, NM and other images with more than 8 bits or a Modality LUT: ``uint16`` stored
  values kept exactly, never windowed. Signed values are shifted by +32768 into
  ``uint16``, and the shift is folded into :attr:`HeaderFacts.rescale`, so that for
  every such image ``modality value (e.g. Hounsfield units) = pixel * slope + intercept``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import cv2
import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_color_lut, get_decoder
from pydicom.uid import UID

SIGNED_SHIFT = 32768

# Image storage SOP classes that ingest accepts. Everything else (encapsulated PDF,
# structured reports, secondary-capture screenshots, presentation states, other
# modalities) is quarantined: it is either not an image of the thyroid or not a scan.
SUPPORTED_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.6.1": "US",  # Ultrasound Image Storage
    "1.2.840.10008.5.1.4.1.1.3.1": "US",  # Ultrasound Multi-frame Image Storage
    "1.2.840.10008.5.1.4.1.1.6": "US",  # Ultrasound Image Storage (Retired)
    "1.2.840.10008.5.1.4.1.1.3": "US",  # Ultrasound Multi-frame Image Storage (Retired)
    "1.2.840.10008.5.1.4.1.1.2": "CT",  # CT Image Storage
    "1.2.840.10008.5.1.4.1.1.2.1": "CT",  # Enhanced CT Image Storage
    "1.2.840.10008.5.1.4.1.1.20": "NM",  # Nuclear Medicine Image Storage (scintigraphy)
}

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"


class RawFileError(ValueError):
    """A raw file cannot be ingested; the message is safe to log.

    `kind` is a short stable code (for counting), the message says what is wrong
    without quoting any header value or path.
    """

    def __init__(self, kind: str, message: str):
        super().__init__(f"{kind}: {message}")
        self.kind = kind


@dataclass(frozen=True)
class UltrasoundRegion:
    """One entry of SequenceOfUltrasoundRegions: a box in pixels and its calibration."""

    box: tuple[int, int, int, int]  # (x0, y0, x1, y1), end exclusive
    is_tissue: bool  # a 2D image of tissue (not a Doppler trace, not a colour bar)
    spacing_mm: tuple[float, float] | None  # (row, col) millimetres per pixel, if calibrated in cm


@dataclass(frozen=True)
class HeaderFacts:
    """The whitelisted facts of one raw file: all that leaves the reader."""

    source_format: str  # dicom, png, jpeg
    modality: str | None = None
    patient: str | None = None  # raw PatientID: pseudonymise, never output
    study: str | None = None  # raw StudyInstanceUID: pseudonymise, never output
    series: str | None = None  # raw SeriesInstanceUID: pseudonymise, never output
    device: str = "unknown"  # Manufacturer + ManufacturerModelName
    pixel_spacing_mm: tuple[float, float] | None = None  # PixelSpacing (row, col)
    us_regions: tuple[UltrasoundRegion, ...] = ()
    # (slope, intercept) mapping stored pixels to modality values; None for display pixels.
    rescale: tuple[float, float] | None = None
    header_elements: int = 0  # how many top-level elements the header had (for the audit)


@dataclass(frozen=True)
class RawScan:
    """Pixel frames of one raw file and its whitelisted facts."""

    frames: np.ndarray  # (N, H, W) or (N, H, W, 3), uint8 or uint16
    facts: HeaderFacts
    dataset: Dataset | None = None  # the raw DICOM header (PHI): de-identify it, never output it


def read_scan(data: bytes) -> RawScan:
    """Read the bytes of one raw file; raise :class:`RawFileError` if it is not a usable image."""
    if not data:
        raise RawFileError("empty_file", "the file is empty")
    if data.startswith(PNG_MAGIC) or data.startswith(JPEG_MAGIC):
        return read_exported_image(data)
    return read_dicom(data)


def read_exported_image(data: bytes) -> RawScan:
    """Read a PNG or JPEG export as one frame (grey or RGB, 8 or 16 bits)."""
    source_format = "png" if data.startswith(PNG_MAGIC) else "jpeg"
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise RawFileError("undecodable_image", f"the {source_format.upper()} data cannot be decoded")
    if image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    elif image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if image.dtype not in (np.uint8, np.uint16):
        raise RawFileError("unsupported_pixels", f"{image.dtype} pixels are not supported")
    return RawScan(frames=image[np.newaxis], facts=HeaderFacts(source_format=source_format))


def read_dicom(data: bytes) -> RawScan:
    """Read a DICOM file: check its SOP class, decode its frames, keep the whitelisted facts."""
    ds = parse_dicom(data)
    sop_class = str(ds.get("SOPClassUID", "") or "")
    if not sop_class:
        raise RawFileError("unsupported_sop_class", "the header has no SOP Class UID")
    if sop_class not in SUPPORTED_SOP_CLASSES:
        raise RawFileError("unsupported_sop_class", f"{_uid_name(sop_class)} is not a supported image type")
    if "PixelData" not in ds:
        raise RawFileError("no_pixel_data", "the DICOM file has no pixel data")
    frames, rescale = decode_frames(ds)
    return RawScan(frames=frames, facts=dicom_facts(ds, rescale, SUPPORTED_SOP_CLASSES[sop_class]), dataset=ds)


def parse_dicom(data: bytes) -> Dataset:
    """Parse DICOM bytes (with or without the 128-byte preamble) into a dataset."""
    has_preamble = len(data) > 132 and data[128:132] == b"DICM"
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=not has_preamble)
    except InvalidDicomError:
        raise RawFileError("not_an_image", "not a DICOM, PNG or JPEG file") from None
    except Exception as error:  # pydicom raises many types for damaged files
        raise RawFileError("unreadable_dicom", f"the DICOM header cannot be parsed ({type(error).__name__})") from None
    if not has_preamble and not _looks_like_dicom(ds):
        raise RawFileError("not_an_image", "not a DICOM, PNG or JPEG file")
    return ds


def _looks_like_dicom(ds: Dataset) -> bool:
    """Tell a preamble-less DICOM dataset from arbitrary bytes that force-parsing accepted."""
    try:
        return "SOPClassUID" in ds or "PixelData" in ds
    except Exception:
        return False


def decode_frames(ds: Dataset) -> tuple[np.ndarray, tuple[float, float] | None]:
    """Return all frames as (N, H, W[, 3]) uint8/uint16 and the (slope, intercept) that applies."""
    syntax = _transfer_syntax(ds)
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        raise RawFileError("unsupported_transfer_syntax", f"{_uid_name(syntax)} cannot be decoded") from None
    if not decoder.is_available:
        raise RawFileError("unsupported_transfer_syntax", f"no installed plugin decodes {_uid_name(syntax)}")
    try:
        pixels, meta = decoder.as_array(ds, as_rgb=True)
    except Exception as error:  # damaged or truncated pixel data: pydicom raises many types
        raise RawFileError(
            "undecodable_pixels", f"the {_uid_name(syntax)} pixel data cannot be decoded ({type(error).__name__})"
        ) from None
    samples = int(meta.get("samples_per_pixel", 1))
    n_frames = int(meta.get("number_of_frames", 1))
    if n_frames == 1:
        pixels = pixels[np.newaxis]
    photometric = str(meta.get("photometric_interpretation", ""))
    if photometric == "PALETTE COLOR":
        return _palette_to_rgb(pixels, ds), None
    if samples == 3:
        if not photometric.startswith("RGB") and photometric not in ("YBR_ICT", "YBR_RCT"):
            raise RawFileError("unsupported_pixels", f"{photometric} colour cannot be converted to RGB")
        return _to_display_depth(pixels), None
    if samples != 1:
        raise RawFileError("unsupported_pixels", f"{samples} samples per pixel are not supported")
    if photometric == "MONOCHROME1":
        pixels = _invert(pixels, int(ds.get("BitsStored", 8) or 8))
    return _grey_with_rescale(pixels, ds)


def dicom_facts(ds: Dataset, rescale: tuple[float, float] | None, modality: str) -> HeaderFacts:
    """Copy the whitelisted facts out of a DICOM dataset; `modality` is the SOP class's own."""
    return HeaderFacts(
        source_format="dicom",
        modality=modality,
        patient=_text(ds, "PatientID"),
        study=_text(ds, "StudyInstanceUID"),
        series=_text(ds, "SeriesInstanceUID"),
        device=" ".join(filter(None, (_text(ds, "Manufacturer"), _text(ds, "ManufacturerModelName")))) or "unknown",
        pixel_spacing_mm=_pixel_spacing(ds),
        us_regions=_safe_regions(ds),
        rescale=rescale,
        header_elements=len(ds),
    )


def ultrasound_regions(ds: Dataset) -> tuple[UltrasoundRegion, ...]:
    """Return the calibrated regions of SequenceOfUltrasoundRegions (empty if absent or malformed)."""
    regions = []
    for item in ds.get("SequenceOfUltrasoundRegions", None) or ():
        try:
            x0, y0 = int(item.RegionLocationMinX0), int(item.RegionLocationMinY0)
            x1, y1 = int(item.RegionLocationMaxX1) + 1, int(item.RegionLocationMaxY1) + 1
        except (AttributeError, TypeError, ValueError):
            continue  # a region without a location cannot guide the crop
        if x1 <= x0 or y1 <= y0:
            continue
        spacing = None
        if item.get("PhysicalUnitsXDirection") == 3 and item.get("PhysicalUnitsYDirection") == 3:  # 3 = cm
            dx, dy = item.get("PhysicalDeltaX"), item.get("PhysicalDeltaY")
            if dx and dy and float(dx) > 0 and float(dy) > 0:
                spacing = (abs(float(dy)) * 10.0, abs(float(dx)) * 10.0)
        is_tissue = item.get("RegionSpatialFormat") == 1 and item.get("RegionDataType") == 1
        regions.append(UltrasoundRegion(box=(x0, y0, x1, y1), is_tissue=is_tissue, spacing_mm=spacing))
    return tuple(regions)


def _safe_regions(ds: Dataset) -> tuple[UltrasoundRegion, ...]:
    try:
        return ultrasound_regions(ds)
    except Exception:  # a damaged sequence is the same as a missing one: the image decides
        return ()


def _transfer_syntax(ds: Dataset) -> UID:
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if syntax:
        return UID(str(syntax))
    # Files without a file meta header (raw ACR-NEMA style) are implicit or explicit little endian.
    return pydicom.uid.ImplicitVRLittleEndian if ds.is_implicit_VR else pydicom.uid.ExplicitVRLittleEndian


def _palette_to_rgb(pixels: np.ndarray, ds: Dataset) -> np.ndarray:
    try:
        rgb = apply_color_lut(pixels, ds)
    except Exception as error:
        raise RawFileError("unsupported_pixels", f"the colour palette cannot be applied ({type(error).__name__})") from None
    # The descriptor's third value is the bits of each palette entry: 8-bit entries come
    # back as uint16 holding 0-255, 16-bit ones use the full range.
    entry_bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
    if rgb.dtype == np.uint16:
        rgb = rgb.astype(np.uint8) if entry_bits <= 8 else (rgb >> 8).astype(np.uint8)
    return rgb


def _to_display_depth(pixels: np.ndarray) -> np.ndarray:
    if pixels.dtype == np.uint8 or pixels.dtype == np.uint16:
        return pixels
    if pixels.min() >= 0 and pixels.max() <= np.iinfo(np.uint16).max:
        return pixels.astype(np.uint16)
    raise RawFileError("unsupported_pixels", f"{pixels.dtype} colour pixels do not fit 16 bits")


def _invert(pixels: np.ndarray, bits_stored: int) -> np.ndarray:
    if np.issubdtype(pixels.dtype, np.signedinteger):
        return (-1 - pixels.astype(np.int64)).astype(pixels.dtype)
    return ((1 << bits_stored) - 1 - pixels.astype(np.int64)).clip(0).astype(pixels.dtype)


def _grey_with_rescale(pixels: np.ndarray, ds: Dataset) -> tuple[np.ndarray, tuple[float, float] | None]:
    """Fit grey stored values into uint8/uint16 losslessly and say how to get modality values back."""
    has_rescale = "RescaleSlope" in ds or "RescaleIntercept" in ds
    if pixels.dtype == np.uint8 and not has_rescale:
        return pixels, None
    slope = _number(ds, "RescaleSlope", 1.0)
    intercept = _number(ds, "RescaleIntercept", 0.0)
    shift = SIGNED_SHIFT if np.issubdtype(pixels.dtype, np.signedinteger) else 0
    if pixels.dtype not in (np.uint8, np.uint16):
        wide = pixels.astype(np.int64) + shift
        if wide.size and (wide.min() < 0 or wide.max() > np.iinfo(np.uint16).max):
            raise RawFileError("unsupported_pixels", "pixel values do not fit 16 bits")
        pixels = wide.astype(np.uint16)
    # pixel = stored + shift, so modality value = (pixel - shift) * slope + intercept.
    return pixels, (slope, intercept - shift * slope)


def _number(ds: Dataset, keyword: str, default: float) -> float:
    try:
        value = ds.get(keyword, None)
        return float(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        raise RawFileError("unsupported_pixels", f"{keyword} is not a number") from None


def _pixel_spacing(ds: Dataset) -> tuple[float, float] | None:
    try:
        row, col = (float(v) for v in ds.get("PixelSpacing", None) or ())
    except (TypeError, ValueError):
        return None
    return (row, col) if row > 0 and col > 0 else None


def _text(ds: Dataset, keyword: str) -> str | None:
    try:
        value = ds.get(keyword, None)
    except Exception:  # a damaged element is the same as a missing one
        return None
    text = str(value).strip() if value is not None else ""
    return text or None


def _uid_name(uid: str) -> str:
    """Return the standard name of a UID; never echo a non-standard value, which could be anything."""
    if uid in pydicom.uid.UID_dictionary:
        return UID(uid).name
    return "a non-standard UID"
