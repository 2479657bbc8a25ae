"""Read text in pixels with ``tesseract``, where it is installed; it is optional, never required.

Burned-in text is small (a 10-pixel banner font) and drawn light on dark or over
speckle, so callers hand in a prepared grey view (:func:`upscale` makes small fonts
readable). One tesseract process runs per image on one thread: callers parallelise
over images, and a hung process is stopped after :data:`TIMEOUT_S`.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import cv2
import numpy as np

Box = tuple[int, int, int, int]

TIMEOUT_S = 60.0   # seconds one image may take; a 720x540 frame takes about 0.3
TSV_FIELDS = 12    # level page block par line word left top width height conf text
WORD_LEVEL = "5"
MIN_WORD_CHARS = 2       # letters or digits in a word: tissue specks are read as one ('e', '+')
MAX_GLYPH_ASPECT = 2.0   # a character is at most this many times as wide as its line is high


def tesseract_available() -> bool:
    """Return True if the tesseract binary is on PATH."""
    return shutil.which("tesseract") is not None


def upscale(image: np.ndarray, factor: int) -> np.ndarray:
    """Return `image` enlarged `factor` times (bicubic), so small fonts reach tesseract's glyph size."""
    if factor <= 1:
        return image
    return cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)


def run_tesseract(image: np.ndarray, psm: int, tsv: bool = False) -> str | None:
    """Return tesseract's text (or TSV) for a uint8 grey `image`; "" without tesseract, None if it failed."""
    binary = shutil.which("tesseract")
    if binary is None:
        return ""
    ok, png = cv2.imencode(".png", image)
    command = [binary, "stdin", "stdout", "--psm", str(psm), *(["tsv"] if tsv else [])]
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}  # one thread: callers run many images at once
    try:
        result = subprocess.run(command, input=png.tobytes(), capture_output=True, env=env,
                                timeout=TIMEOUT_S, check=False)
    except (subprocess.TimeoutExpired, OSError):
        return None
    return result.stdout.decode("utf-8", errors="replace") if ok and result.returncode == 0 else None


def parse_tsv_words(tsv: str, min_confidence: float, factor: int = 1) -> list[Box]:
    """Return the boxes of the words of tesseract TSV output at `min_confidence` or above, divided by `factor`."""
    boxes = []
    for fields in (line.split("\t") for line in tsv.splitlines()[1:]):
        if len(fields) == TSV_FIELDS and fields[0] == WORD_LEVEL and is_word(fields, min_confidence):
            x, y, w, h = (int(value) for value in fields[6:10])
            boxes.append((x // factor, y // factor, -(-(x + w) // factor), -(-(y + h) // factor)))
    return boxes


def is_word(fields: list[str], min_confidence: float) -> bool:
    """Return True if a TSV word row is confident text: letters or digits, not a tissue line or speck."""
    text, width, height = fields[11].strip(), int(fields[8]), int(fields[9])
    return (float(fields[10]) >= min_confidence and sum(char.isalnum() for char in text) >= MIN_WORD_CHARS
            and width <= MAX_GLYPH_ASPECT * height * len(text))
