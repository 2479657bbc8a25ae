"""Synthetic ultrasound frames with known burned-in text, to measure the text redactor.

A frame is speckle in a scan area on a black screen, with bright calcifications and
a capsule line (tissue the redactor must leave alone), Doppler colour flow in colour
frames, and text and caliper crosses drawn inside the scan area whose ink is known.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

Box = tuple[int, int, int, int]

WORDS = ("SMITH^JOHN", "12/03/2024", "L LOBE TRANS", "1.42 cm", "TIRADS 4", "ID 0042137",
         "Dist 0.83cm", "RT SAG", "Gain 54", "12L-RS", "ST OLAF GENERAL", "x", "A", "7")
FONTS = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_PLAIN, cv2.FONT_HERSHEY_DUPLEX)


@dataclass(frozen=True)
class SyntheticFrame:
    """A frame, its scan area, the ink of its burned-in text and one box per text item.

    A text item's box is its line's full height as the font sets it (room above the
    capitals, descender space below the baseline), as a device's text field is, joined
    with its ink; a caliper cross's box is its ink.
    """

    image: np.ndarray
    keep_mask: np.ndarray
    ink: np.ndarray
    text_boxes: list[Box]


def synthetic_frame(seed: int, height: int = 360, width: int = 480, colour: bool = False,
                    texts: int = 5, calipers: int = 3) -> SyntheticFrame:
    """Return a synthetic ultrasound frame with `texts` strings and `calipers` crosses burned in."""
    rng = np.random.default_rng(seed)
    keep = np.zeros((height, width), dtype=np.uint8)
    top, bottom = height // 10, height - height // 12
    cv2.fillConvexPoly(keep, np.array([[width * 3 // 8, top], [width * 5 // 8, top],
                                       [width - width // 16, bottom], [width // 16, bottom]], np.int32), 1)
    keep = keep.astype(bool)
    speckle = rng.rayleigh(45.0, size=(height, width)).astype(np.float32)
    speckle = cv2.GaussianBlur(speckle, (3, 3), 0.8) + 20
    grey = np.where(keep, np.clip(speckle, 0, 255), 0).astype(np.uint8)
    _draw_tissue(grey, keep, rng)
    image = cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB) if colour else grey
    if colour:
        _draw_flow(image, keep, rng)
    ink = np.zeros((height, width), dtype=bool)
    boxes = []
    inner = cv2.erode(keep.astype(np.uint8), np.ones((25, 25), np.uint8)).astype(bool)
    ys, xs = np.nonzero(inner)
    taken = np.zeros((height, width), dtype=bool)  # devices do not print text over text
    for index in range(texts + calipers):
        layer = np.zeros((height, width), dtype=np.uint8)
        line = None
        pick = rng.integers(len(ys))
        x, y = int(xs[pick]), int(ys[pick])
        if index < texts:
            word = WORDS[rng.integers(len(WORDS))]
            scale = float(rng.uniform(0.35, 0.6))
            x = min(x, width - cv2.getTextSize(word, FONTS[0], scale, 1)[0][0] - 30)
            font = FONTS[rng.integers(len(FONTS))]
            cv2.putText(layer, word, (x, y), font, scale, 255, 1, cv2.LINE_AA)
            (text_width, text_height), baseline = cv2.getTextSize(word, font, scale, 1)
            line = (x - 1, y - text_height - 2, x + text_width + 2, y + baseline + 1)
        else:
            marker = (cv2.MARKER_CROSS, cv2.MARKER_TILTED_CROSS)[rng.integers(2)]
            cv2.drawMarker(layer, (x, y), 255, marker, int(rng.integers(7, 14)), 1)
        drawn = (layer > 64) & keep
        if not drawn.any() or (cv2.dilate(drawn.astype(np.uint8), np.ones((9, 9), np.uint8)) & taken).any():
            continue
        taken |= drawn
        _paint(image, layer, colour, rng)
        ink |= drawn
        rows, cols = np.flatnonzero(drawn.any(axis=1)), np.flatnonzero(drawn.any(axis=0))
        box = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
        if line is not None:
            box = (max(min(box[0], line[0]), 0), max(min(box[1], line[1]), 0),
                   min(max(box[2], line[2]), width), min(max(box[3], line[3]), height))
        boxes.append(box)
    image[~keep] = 0
    return SyntheticFrame(image=image, keep_mask=keep, ink=ink, text_boxes=boxes)


def _draw_tissue(grey: np.ndarray, keep: np.ndarray, rng: np.random.Generator) -> None:
    """Draw what looks like text to a naive detector: calcifications and a capsule line."""
    height, width = grey.shape
    centre = (width // 2, height // 2)
    cv2.ellipse(grey, centre, (width // 3, height // 4), 0, 200, 340, 210, 2, cv2.LINE_AA)
    ys, xs = np.nonzero(keep)
    for _ in range(8):
        pick = rng.integers(len(ys))
        cv2.circle(grey, (int(xs[pick]), int(ys[pick])), int(rng.integers(1, 4)), 245, -1, cv2.LINE_AA)


def _draw_flow(image: np.ndarray, keep: np.ndarray, rng: np.random.Generator) -> None:
    """Draw Doppler colour flow: red and blue vessels of varying brightness."""
    height, width = keep.shape
    for colour in ((230, 40, 30), (30, 60, 230)):
        centre = (int(rng.integers(width // 3, 2 * width // 3)), int(rng.integers(height // 3, 2 * height // 3)))
        cv2.ellipse(image, centre, (int(rng.integers(10, 40)), int(rng.integers(4, 10))),
                    float(rng.uniform(0, 180)), 0, 360, colour, -1, cv2.LINE_AA)


def _paint(image: np.ndarray, layer: np.ndarray, colour: bool, rng: np.random.Generator) -> None:
    """Blend text drawn (anti-aliased) in `layer` into `image` in white, yellow or green."""
    alpha = (layer.astype(np.float32) / 255.0)
    if colour:
        ink = np.array(((255, 255, 255), (255, 255, 0), (0, 255, 0), (0, 255, 255))[rng.integers(4)], np.float32)
        alpha = alpha[..., None]
    else:
        ink = np.float32(rng.choice((255, 235, 220)))
    blended = image.astype(np.float32) * (1 - alpha) + ink * alpha
    image[...] = np.clip(blended, 0, 255).astype(np.uint8)


def redaction_scores(frame: SyntheticFrame, redacted: np.ndarray) -> tuple[float, float]:
    """Return (share of text boxes whose ink is fully removed, share of other scan pixels untouched)."""
    changed = np.any(np.atleast_3d(redacted != frame.image), axis=2)
    zeroed = np.all(np.atleast_3d(redacted == 0), axis=2)
    removed = [bool(zeroed[y0:y1, x0:x1][frame.ink[y0:y1, x0:x1]].all()) for x0, y0, x1, y1 in frame.text_boxes]
    outside_text = frame.keep_mask.copy()
    for x0, y0, x1, y1 in frame.text_boxes:
        outside_text[y0:y1, x0:x1] = False
    untouched = 1.0 - float(changed[outside_text].mean()) if outside_text.any() else 1.0
    return (float(np.mean(removed)) if removed else 1.0), untouched
