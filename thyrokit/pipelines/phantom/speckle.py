"""B-mode image formation: speckle from random scatterers, a point spread function,
attenuation, time-gain and focal zone, and log compression to 8-bit grey."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from thyrokit.pipelines.phantom.anatomy import TissueMaps


@dataclass(frozen=True)
class Settings:
    """Scanner settings that shape the B-mode image."""

    psf_mm: tuple[float, float]   # Gaussian point spread (axial, lateral) sigma in mm
    focus_mm: float               # depth of the transmit focus
    gain_db: float
    dynamic_range_db: float
    attenuation_per_mm: float     # what time-gain compensation leaves of tissue attenuation


def scatterers(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Return a field of complex Gaussian scatterers (unit power), whose echo magnitude is Rayleigh."""
    real = rng.standard_normal(shape, dtype=np.float32)
    imag = rng.standard_normal(shape, dtype=np.float32)
    return (real + 1j * imag).astype(np.complex64) / np.float32(math.sqrt(2))


def moved_scatterers(base: np.ndarray, rng: np.random.Generator, shift_lines: int, width: int,
                     decorrelation: float) -> np.ndarray:
    """Return the scatterers of a cine frame: the base field moved with the probe, partly renewed."""
    margin = (base.shape[1] - width) // 2
    start = int(np.clip(margin - shift_lines, 0, base.shape[1] - width))
    moved = base[:, start:start + width]
    fresh = scatterers(rng, moved.shape)
    return (math.sqrt(1 - decorrelation) * moved + math.sqrt(decorrelation) * fresh).astype(np.complex64)


def form_bmode(maps: TissueMaps, field: np.ndarray, depth_mm: np.ndarray, sample_mm: float,
               line_mm: float, settings: Settings) -> np.ndarray:
    """Return the uint8 B-mode image of tissue maps on a beam grid (rows `sample_mm` apart, lines `line_mm`)."""
    amplitude = np.power(np.float32(10.0), maps.echo_db / np.float32(20.0)) + maps.bright
    transmission = np.exp(-np.cumsum(maps.attenuation * np.float32(sample_mm), axis=0))
    gain = np.exp(-settings.attenuation_per_mm * depth_mm) * (
        1.0 + 0.5 * np.exp(-(((depth_mm - settings.focus_mm) / 6.0) ** 2)))
    source = (amplitude * transmission * gain + maps.reverb).astype(np.float32)
    sigma_rows, sigma_lines = settings.psf_mm[0] / sample_mm, settings.psf_mm[1] / line_mm
    # Blurring unit-power scatterers with a Gaussian PSF scales their power by 1/(4 pi sx sy).
    norm = np.float32(math.sqrt(4 * math.pi * sigma_rows * sigma_lines))
    real = cv2.GaussianBlur(source * field.real, (0, 0), sigmaX=sigma_lines, sigmaY=sigma_rows)
    imag = cv2.GaussianBlur(source * field.imag, (0, 0), sigmaX=sigma_lines, sigmaY=sigma_rows)
    envelope = np.hypot(real, imag) * norm
    # Scanners compound several looks and smooth after detection, which softens speckle nulls.
    envelope = cv2.GaussianBlur(envelope, (0, 0), sigmaX=max(sigma_lines * 0.8, 0.6), sigmaY=max(sigma_rows * 0.8, 0.6))
    return log_compress(envelope, settings.gain_db, settings.dynamic_range_db)


def log_compress(envelope: np.ndarray, gain_db: float, dynamic_range_db: float) -> np.ndarray:
    """Map echo amplitude to uint8 grey over a dynamic range in dB; thyroid sits near mid-grey."""
    noise_floor = 10 ** (-(dynamic_range_db - 2) / 20)
    db = 20 * np.log10(envelope + np.float32(noise_floor))
    grey = (db + gain_db + 0.58 * dynamic_range_db) * (255.0 / dynamic_range_db)
    return np.clip(grey, 0, 255).astype(np.uint8)
