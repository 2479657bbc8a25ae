"""The sites' ultrasound scanners and the scan geometry of a linear or sector probe.

Anatomy is described in millimetres: ``X`` across the probe (0 at the centre of the
scan area, positive to the image's right), ``Y`` straight down from the probe's
centre, and ``D`` the depth below the skin along the beam. Echoes are formed on a
"beam grid" (rows = depth samples, columns = scan lines) and, for a sector probe,
scan-converted to the pixel grid of the scan area.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np


@dataclass(frozen=True)
class Scanner:
    """One site's ultrasound device: identity, frame layout, probe and file habits."""

    site: str                            # raw site folder name (params.yaml ingest.sites)
    institution: str
    manufacturer: str
    model: str
    station: str
    private_creator: str
    probe: str
    frequency_mhz: float
    frame_size: tuple[int, int]          # (width, height) of a frame in pixels
    region: tuple[int, int, int, int]    # scan area (x0, y0, x1, y1) in the frame, end exclusive
    depth_mm: float
    sector_deg: float                    # 0 for a linear probe
    probe_radius_mm: float               # radius of a curved probe face (sector only)
    layout: str                          # which text layout chrome.py draws
    file_name: str                       # DICOM file name pattern, formatted with n and uid
    # DICOM encoding -> weight. RLE is rarer than in real dumps: pydicom's RLE encoder is slow.
    encodings: tuple[tuple[str, float], ...]
    gain_db: float
    dynamic_range_db: float


SCANNERS: tuple[Scanner, ...] = (
    Scanner("st_olaf_general", "ST. OLAF GENERAL HOSPITAL", "GE Healthcare", "LOGIQ E10",
            "SOG-US-02", "SYNTH GEMS US 1.0", "ML6-15", 12.0, (720, 540), (120, 64, 600, 504),
            40.0, 0.0, 0.0, "ge", "US{n:04d}.dcm",
            (("explicit", 0.9), ("rle", 0.1)), 0.0, 60.0),
    Scanner("riverside_clinic", "RIVERSIDE COMMUNITY CLINIC", "Philips", "EPIQ 7G",
            "RCC-EPIQ1", "SYNTH PHILIPS US 1.0", "eL18-4", 11.0, (720, 540), (150, 62, 570, 482),
            38.0, 0.0, 0.0, "philips", "I{n:07d}.dcm",
            (("explicit", 0.6), ("jpeg2000", 0.4)), 2.0, 58.0),
    Scanner("northgate_medical", "NORTHGATE MEDICAL CENTER", "Siemens Healthineers",
            "ACUSON Sequoia", "NMC-SEQ-7", "SYNTH SIEMENS US 1.0", "C8-3", 7.5, (640, 480),
            (70, 58, 570, 470), 50.0, 70.0, 28.0, "siemens", "{uid}.dcm",
            (("explicit", 0.8), ("rle", 0.2)), -1.0, 62.0),
    Scanner("lakeside_university", "LAKESIDE UNIVERSITY HOSPITAL", "Canon Medical Systems",
            "Aplio i800", "LUH-APLIO3", "SYNTH CANON US 1.0", "i18LX5", 14.0, (720, 540),
            (250, 36, 700, 486), 40.0, 0.0, 0.0, "canon", "IM_{n:04d}.dcm",
            (("explicit", 0.5), ("jpeg", 0.5)), 1.0, 60.0),
)


@dataclass(frozen=True)
class ScanGeometry:
    """Where echoes come from: the scan area's size in pixels, its scale, and the probe shape."""

    width: int
    height: int
    mm_per_px: float
    sector_deg: float = 0.0
    probe_radius_mm: float = 0.0

    @property
    def is_sector(self) -> bool:
        """Whether the probe fans out (curved array) rather than scanning straight down."""
        return self.sector_deg > 0

    @property
    def lines(self) -> int:
        """Scan lines of the beam grid: half the pixel columns, enough for the lateral resolution."""
        return max(self.width // 2, 1)

    @property
    def line_mm(self) -> float:
        """Spacing of scan lines at the probe face (linear) or at 15 mm depth (sector)."""
        if not self.is_sector:
            return self.width * self.mm_per_px / self.lines
        return (self.probe_radius_mm + 15.0) * 2 * self.half_angle / self.lines

    @property
    def depth_mm(self) -> float:
        """Imaging depth below the skin."""
        return self.height * self.mm_per_px

    @property
    def half_angle(self) -> float:
        """Half the fan's opening in radians, narrowed so the fan fits the scan area."""
        outer = self.probe_radius_mm + self.depth_mm
        fits = math.asin(min(1.0, self.width * self.mm_per_px / 2 / outer))
        return min(math.radians(self.sector_deg) / 2, fits)


def geometry_of(scanner: Scanner) -> ScanGeometry:
    """Return the scan geometry of a scanner's scan area."""
    x0, y0, x1, y1 = scanner.region
    return ScanGeometry(x1 - x0, y1 - y0, scanner.depth_mm / (y1 - y0), scanner.sector_deg,
                        scanner.probe_radius_mm)


@lru_cache(maxsize=8)
def beam_coordinates(geometry: ScanGeometry) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (X, Y, D) in mm of every beam sample, each of shape (rows, lines)."""
    rows, lines, mm = geometry.height, geometry.lines, geometry.mm_per_px
    depth = ((np.arange(rows, dtype=np.float32) + 0.5) * mm)[:, None]
    if not geometry.is_sector:
        across = ((np.arange(lines, dtype=np.float32) + 0.5 - lines / 2) * geometry.line_mm)[None, :]
        return _frozen(np.broadcast_to(across, (rows, lines)), np.broadcast_to(depth, (rows, lines)),
                       np.broadcast_to(depth, (rows, lines)))
    half = geometry.half_angle
    theta = (-half + (np.arange(lines, dtype=np.float32) + 0.5) * (2 * half / lines))[None, :]
    radius = geometry.probe_radius_mm + depth
    x = radius * np.sin(theta)
    y = radius * np.cos(theta) - geometry.probe_radius_mm
    return _frozen(x, y, np.broadcast_to(depth, (rows, lines)))


@lru_cache(maxsize=8)
def pixel_coordinates(geometry: ScanGeometry) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (X, Y, D) in mm of every pixel of the scan area, each of shape (height, width)."""
    mm = geometry.mm_per_px
    x = ((np.arange(geometry.width, dtype=np.float32) + 0.5 - geometry.width / 2) * mm)[None, :]
    y = ((np.arange(geometry.height, dtype=np.float32) + 0.5) * mm)[:, None]
    x, y = np.broadcast_to(x, (geometry.height, geometry.width)), np.broadcast_to(y, (geometry.height, geometry.width))
    if not geometry.is_sector:
        return _frozen(x, y, y)
    depth = np.hypot(x, y + geometry.probe_radius_mm) - geometry.probe_radius_mm
    return _frozen(x, y, depth)


@lru_cache(maxsize=8)
def scan_mask(geometry: ScanGeometry) -> np.ndarray:
    """Return the (height, width) bool mask of scan-area pixels that hold echoes."""
    if not geometry.is_sector:
        return _frozen(np.ones((geometry.height, geometry.width), bool))[0]
    map_x, map_y = _sector_tables(geometry)
    inside = (map_x >= 0) & (map_x <= geometry.lines - 1) & (map_y >= 0) & (map_y <= geometry.height - 1)
    return _frozen(inside)[0]


def scan_convert(beam: np.ndarray, geometry: ScanGeometry) -> np.ndarray:
    """Resample a beam-grid image onto the scan area's pixels."""
    if not geometry.is_sector:
        return cv2.resize(beam, (geometry.width, geometry.height), interpolation=cv2.INTER_LINEAR)
    map_x, map_y = _sector_tables(geometry)
    return cv2.remap(beam, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


@lru_cache(maxsize=8)
def _sector_tables(geometry: ScanGeometry) -> tuple[np.ndarray, np.ndarray]:
    """Fractional beam-grid (line, row) of every scan-area pixel; outside the fan is -1."""
    x, y, _ = pixel_coordinates(geometry)
    radius = np.hypot(x, y + geometry.probe_radius_mm)
    theta = np.arctan2(x, y + geometry.probe_radius_mm)
    half = geometry.half_angle
    row = (radius - geometry.probe_radius_mm) / geometry.mm_per_px - 0.5
    line = (theta + half) / (2 * half) * geometry.lines - 0.5
    outside = (row < -0.5) | (row > geometry.height - 0.5) | (np.abs(theta) > half)
    row = np.where(outside, -1, np.clip(row, 0, geometry.height - 1)).astype(np.float32)
    line = np.where(outside, -1, np.clip(line, 0, geometry.lines - 1)).astype(np.float32)
    return _frozen(line, row)


def _frozen(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Return read-only contiguous copies, so cached grids are never changed by a caller."""
    out = []
    for array in arrays:
        array = np.ascontiguousarray(array)
        array.setflags(write=False)
        out.append(array)
    return tuple(out)
