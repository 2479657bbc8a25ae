"""What a scanner burns into the pixels: patient banner, settings, depth scale and calipers.

Each vendor layout is a list of text lines with an anchor; the patient's identity is
always in the banner or side column outside the scan area, settings sit both outside
and inside it, and calipers are drawn over nodules. Every drawn line is returned as a
:class:`TextBox` so the phantom can say exactly where the burned-in text is.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import cv2
import numpy as np

from thyrokit.pipelines.phantom.identities import Person, Visit
from thyrokit.pipelines.phantom.scanner import Scanner

FONT = cv2.FONT_HERSHEY_SIMPLEX
SMALL = cv2.FONT_HERSHEY_PLAIN


@dataclass(frozen=True)
class TextBox:
    """One burned-in mark: its box (x0, y0, x1, y1, end exclusive), kind and text.

    A text line also keeps where and how large it was drawn (its baseline origin and
    font scale), so :func:`text_ink` can say which pixels its strokes cover; a caliper
    mark, drawn as lines, has none.
    """

    x0: int
    y0: int
    x1: int
    y1: int
    kind: str      # "phi", "settings" or "caliper"
    text: str
    x: int | None = None
    y: int | None = None
    scale: float | None = None


# (kind, template, anchor, x, y): anchor "frame" is the frame's top-left, "frame_r" its
# top-right (text right-aligned), "tl"/"tr"/"bl"/"br" a corner of the scan area.
LAYOUTS: dict[str, tuple[tuple[str, str, str, int, int], ...]] = {
    "ge": (
        ("phi", "{institution}", "frame", 8, 20), ("phi", "{family}, {given}", "frame", 8, 44),
        ("phi", "ID: {patient_id}", "frame", 300, 20), ("phi", "DOB: {birth_iso}", "frame", 300, 44),
        ("phi", "{date_us} {time}", "frame_r", 712, 20),
        ("settings", "{probe}", "frame", 8, 110), ("settings", "Frq {frequency}", "frame", 8, 132),
        ("settings", "Gn {gain}", "frame", 8, 154), ("settings", "D {depth_cm} cm", "frame", 8, 176),
        ("settings", "DR {dynamic_range}", "frame", 8, 198), ("settings", "FR {frame_rate}", "frame", 8, 220),
        ("settings", "{plane}", "tl", 6, 18), ("settings", "MI {mi}  TIs {tis}", "tr", -6, 18),
    ),
    "philips": (
        ("phi", "{institution}", "frame", 6, 18), ("phi", "{given_title} {family_title}", "frame", 6, 38),
        ("phi", "MRN {patient_id}", "frame", 300, 18), ("phi", "{birth_us} {sex}", "frame", 300, 38),
        ("phi", "{date_us}", "frame_r", 714, 18), ("phi", "{time}", "frame_r", 714, 38),
        ("settings", "{probe}", "frame", 606, 100), ("settings", "{frequency}MHz", "frame", 606, 120),
        ("settings", "2D {gain_pct}%", "frame", 606, 140), ("settings", "C {dynamic_range}", "frame", 606, 160),
        ("settings", "P Med", "frame", 606, 180), ("settings", "{frame_rate}Hz", "frame", 606, 200),
        ("settings", "MI {mi} TIS {tis}", "tr", -6, 16), ("settings", "{plane}", "bl", 6, -10),
    ),
    "siemens": (
        ("phi", "{institution}", "frame", 6, 16), ("phi", "{family}^{given}", "frame", 6, 34),
        ("phi", "{patient_id}", "frame", 300, 16), ("phi", "{birth_de}", "frame", 300, 34),
        ("phi", "{date_de} {time}", "frame_r", 634, 16),
        ("settings", "{probe}", "tl", 4, 16), ("settings", "{frequency} MHz", "tl", 4, 34),
        ("settings", "DR {dynamic_range}", "tr", -4, 16), ("settings", "G {gain}dB", "tr", -4, 34),
        ("settings", "{plane}", "bl", 4, -8), ("settings", "FR {frame_rate}", "frame", 4, 420),
    ),
    "canon": (
        ("phi", "{institution}", "frame", 8, 22), ("phi", "{family} {given}", "frame", 8, 48),
        ("phi", "ID {patient_id}", "frame", 8, 70), ("phi", "{birth_iso} {sex}", "frame", 8, 92),
        ("phi", "{date_iso} {time}", "frame", 8, 114),
        ("settings", "{probe}", "frame", 8, 380), ("settings", "{frequency}MHz", "frame", 8, 400),
        ("settings", "G {gain}", "frame", 8, 420), ("settings", "DR {dynamic_range}", "frame", 8, 440),
        ("settings", "FR {frame_rate}", "frame", 8, 460),
        ("settings", "{plane}", "tl", 6, 18), ("settings", "{depth_cm}cm", "br", -6, -8),
    ),
}
SCALES = {"ge": 0.5, "philips": 0.45, "siemens": 0.4, "canon": 0.42}


def text_fields(person: Person, visit: Visit, scanner: Scanner, plane: str, side: str,
                frame_rate: int) -> dict[str, str]:
    """Return the values the layouts' templates name."""
    def us(date: dt.date) -> str:
        return date.strftime("%m/%d/%Y")

    return {
        "institution": scanner.institution,
        "family": person.family, "given": person.given,
        "family_title": person.family.title(), "given_title": person.given.title(),
        "patient_id": person.patient_id, "sex": person.sex,
        "birth_iso": person.birth_date.isoformat(), "birth_us": us(person.birth_date),
        "birth_de": person.birth_date.strftime("%d.%m.%Y"),
        "date_us": us(visit.date), "date_de": visit.date.strftime("%d.%m.%Y"),
        "date_iso": visit.date.isoformat(), "time": visit.time.strftime("%H:%M:%S"),
        "probe": scanner.probe, "frequency": f"{scanner.frequency_mhz:.1f}",
        "gain": f"{50 + scanner.gain_db * 2:.0f}", "gain_pct": f"{55 + scanner.gain_db * 3:.0f}",
        "dynamic_range": f"{scanner.dynamic_range_db:.0f}", "depth_cm": f"{scanner.depth_mm / 10:.1f}",
        "frame_rate": str(frame_rate), "mi": "0.9", "tis": "0.3",
        "plane": f"THYROID {'RT' if side == 'right' else 'LT'} {'TRANS' if plane == 'transverse' else 'LONG'}",
    }


def put_text(image: np.ndarray, text: str, x: int, y: int, scale: float, value: int, kind: str) -> TextBox:
    """Draw `text` with its baseline at (x, y) and return its box, clipped to the image."""
    (width, height), baseline = cv2.getTextSize(text, FONT, scale, 1)
    _draw(image, text, x, y, scale, value)
    box = (max(x - 1, 0), max(y - height - 2, 0), min(x + width + 2, image.shape[1]),
           min(y + baseline + 1, image.shape[0]))
    return TextBox(*box, kind, text, x, y, scale)


def text_ink(text: str, x: int, y: int, scale: float, shape: tuple[int, int]) -> np.ndarray:
    """Return the bool (H, W) pixels that `text`, drawn as :func:`put_text` draws it, covers at least half."""
    coverage = np.zeros(shape, np.uint8)
    _draw(coverage, text, x, y, scale, 255)
    return coverage >= 128


def _draw(image: np.ndarray, text: str, x: int, y: int, scale: float, value: int) -> None:
    cv2.putText(image, text, (x, y), FONT, scale, value, 1, cv2.LINE_AA)


def _anchor(anchor: str, x: int, y: int, width: int, frame_width: int,
            region: tuple[int, int, int, int]) -> tuple[int, int]:
    if anchor == "frame":
        return x, y
    if anchor == "frame_r":
        return x - width, y
    x0, y0, x1, y1 = region
    left = x0 + x if anchor in ("tl", "bl") else x1 + x - width
    top = y0 + y if anchor in ("tl", "tr") else y1 + y
    return left, top


def draw_layout(image: np.ndarray, layout: str, fields: dict[str, str],
                region: tuple[int, int, int, int], value: int = 255) -> list[TextBox]:
    """Burn a vendor layout's text lines into `image` in place; return their boxes."""
    scale = SCALES[layout]
    boxes = []
    for kind, template, anchor, x, y in LAYOUTS[layout]:
        text = template.format(**fields)
        width = cv2.getTextSize(text, FONT, scale, 1)[0][0]
        left, top = _anchor(anchor, x, y, width, image.shape[1], region)
        boxes.append(put_text(image, text, left, top, scale, value, kind))
    return boxes


def draw_depth_scale(image: np.ndarray, region: tuple[int, int, int, int], depth_mm: float,
                     focus_mm: float, value: int = 255) -> list[TextBox]:
    """Draw centimetre ticks, their numbers and the focus marker just right of the scan area."""
    x0, y0, x1, y1 = region
    px_per_cm = (y1 - y0) / depth_mm * 10
    boxes = []
    for cm in range(0, int(depth_mm // 10) + 1):
        y = int(round(y0 + cm * px_per_cm))
        cv2.line(image, (x1 + 2, y), (x1 + 7, y), value, 1)
        if cm:
            boxes.append(put_text(image, str(cm), x1 + 9, min(y + 4, image.shape[0] - 2), 0.35, value, "settings"))
    focus_y = int(round(y0 + focus_mm / 10 * px_per_cm))
    triangle = np.array([[x1 + 2, focus_y], [x1 + 7, focus_y - 3], [x1 + 7, focus_y + 3]], np.int32)
    cv2.fillConvexPoly(image, triangle, value)
    return boxes


def caliper_ends(mask: np.ndarray) -> tuple[tuple[tuple[int, int], tuple[int, int]], ...]:
    """Return the (transverse, anteroposterior) caliper end points of a nodule mask, frame pixels."""
    ys, xs = np.nonzero(mask)
    cy, cx = int(round(ys.mean())), int(round(xs.mean()))
    row = np.nonzero(mask[cy])[0]
    col = np.nonzero(mask[:, cx])[0]
    pairs = []
    if row.size:
        pairs.append(((int(row[0]), cy), (int(row[-1]), cy)))
    if col.size:
        pairs.append(((cx, int(col[0])), (cx, int(col[-1]))))
    return tuple(pairs)


def draw_calipers(image: np.ndarray, pairs, mm_per_px: float, region: tuple[int, int, int, int],
                  first_number: int, marker: str, value: int = 255) -> list[TextBox]:
    """Draw caliper marks with a dotted line between each pair, and their length in the scan area."""
    boxes = []
    x0, _, _, y1 = region
    for offset, (start, end) in enumerate(pairs):
        length = float(np.hypot(end[0] - start[0], end[1] - start[1]))
        steps = max(int(length // 5), 1)
        for step in range(1, steps):
            t = step / steps
            point = (int(round(start[0] + t * (end[0] - start[0]))), int(round(start[1] + t * (end[1] - start[1]))))
            cv2.circle(image, point, 0, value, -1)
        for x, y in (start, end):
            if marker == "+":
                cv2.line(image, (x - 4, y), (x + 4, y), value, 1)
                cv2.line(image, (x, y - 4), (x, y + 4), value, 1)
            else:
                cv2.line(image, (x - 3, y - 3), (x + 3, y + 3), value, 1)
                cv2.line(image, (x - 3, y + 3), (x + 3, y - 3), value, 1)
        number = first_number + offset
        bx0, by0 = min(start[0], end[0]) - 4, min(start[1], end[1]) - 4
        bx1, by1 = max(start[0], end[0]) + 5, max(start[1], end[1]) + 5
        boxes.append(TextBox(max(bx0, 0), max(by0, 0), min(bx1, image.shape[1]), min(by1, image.shape[0]),
                             "caliper", f"{marker}{number}"))
        text = f"{number} D {length * mm_per_px / 10:.2f} cm"
        boxes.append(put_text(image, text, x0 + 8, y1 - 30 - 16 * (number - 1), 0.4, value, "caliper"))
    return boxes
