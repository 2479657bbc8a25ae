"""Burned-in text redaction on synthetic frames, and de-identified DICOM output."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pydicom
import pytest

from thyrokit.curate.deid import (BurnedInTextError, DeidOptions, deidentify_dataset, redact_burned_in_text,
                                  redact_frames, redact_scan_area, require_scan_area)
from thyrokit.curate.deid.burned_in_text import tesseract_boxes
from thyrokit.curate.deid.dicom_output import shift_ultrasound_regions, write_deidentified_dicom
from thyrokit.curate.deid.synthetic import redaction_scores, synthetic_frame

from deid_fixtures import SECRET, adversarial_dataset


@pytest.mark.parametrize("colour", [False, True])
def test_text_is_removed_and_tissue_left_alone(colour):
    removed, untouched = [], []
    for seed in range(24):
        frame = synthetic_frame(seed, colour=colour)
        redacted, boxes = redact_burned_in_text(frame.image, frame.keep_mask)
        share_removed, share_untouched = redaction_scores(frame, redacted)
        removed.append(share_removed)
        untouched.append(share_untouched)
        assert not redacted[~frame.keep_mask].any()  # everything outside the scan area is blank
    # Measured with tesseract's boxes too: 96.2% (grey) and 95.9% (colour) of boxes removed, 99.08% /
    # 99.05% untouched; small dim crosses and words half over a bright tissue line are what is missed.
    assert np.mean(removed) >= 0.9
    assert np.mean(untouched) >= 0.99


@pytest.mark.parametrize("degrees", [0, 12, -25])
def test_text_drawn_across_a_bright_tissue_line_is_removed_and_the_line_kept(degrees):
    frame = synthetic_frame(6, texts=0, calipers=0)
    image = frame.image.copy()
    tissue_line = np.zeros(image.shape, dtype=np.uint8)  # a capsule or fascia as bright as the text
    dx, dy = 120 * np.cos(np.radians(degrees)), 120 * np.sin(np.radians(degrees))
    cv2.line(tissue_line, (round(240 - dx), round(200 - dy)), (round(240 + dx), round(200 + dy)), 1, 2, cv2.LINE_AA)
    image[tissue_line > 0] = 210
    ink = np.zeros(image.shape, dtype=np.uint8)
    cv2.putText(ink, "SMITH^JOHN", (195, 205), cv2.FONT_HERSHEY_SIMPLEX, 0.45, 255, 1, cv2.LINE_AA)
    written = ink > 64
    image[written] = 255
    redacted, _ = redact_burned_in_text(image, frame.keep_mask)
    assert not redacted[written].any()
    beside = (tissue_line > 0) & frame.keep_mask
    beside &= ~cv2.dilate(written.astype(np.uint8), np.ones((25, 25), np.uint8)).astype(bool)
    assert np.mean(redacted[beside] == image[beside]) > 0.9  # the line itself is tissue and stays


def test_crossing_dotted_caliper_lines_are_removed_and_the_nodule_kept():
    frame = synthetic_frame(4, texts=0, calipers=0)
    image = frame.image.copy()
    dots = np.zeros(image.shape, dtype=bool)
    dots[180, 200:300:5] = True   # a transverse and an anteroposterior caliper line, crossing
    dots[130:230:5, 250] = True
    image[dots] = 255
    redacted, boxes = redact_burned_in_text(image, frame.keep_mask)
    assert not redacted[dots].any()
    nodule = np.zeros(image.shape, dtype=bool)
    nodule[140:220, 210:290] = True
    nodule &= ~cv2.dilate(dots.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    # Measured 96.9%: a line goes as a 3-pixel band along its dots, not the box the pair spans.
    assert np.mean(redacted[nodule] == image[nodule]) > 0.95


def test_dotted_line_dots_swallowed_by_a_bright_spot_are_removed():
    frame = synthetic_frame(4, texts=0, calipers=0)
    image = frame.image.copy()
    cv2.ellipse(image, (250, 180), (7, 3), 0, 0, 360, 200, -1)  # a bright spot the line runs through
    dots = np.zeros(image.shape, dtype=bool)
    dots[180, 200:300:5] = True  # its middle dots touch the spot and join it: no longer dot-sized
    image[dots] = 255
    redacted, _ = redact_burned_in_text(image, frame.keep_mask)
    assert not redacted[dots].any()


def test_caliper_cross_drawn_over_a_bright_spot_is_removed_and_the_spot_kept():
    frame = synthetic_frame(4, texts=0, calipers=0)
    image = frame.image.copy()
    cv2.ellipse(image, (250, 181), (9, 3), 0, 0, 360, 190, -1)  # the nodule's bright rim, where a caliper sits
    spot = image != frame.image
    cross = np.zeros(image.shape, dtype=np.uint8)
    cv2.line(cross, (246, 182), (254, 182), 1, 1)
    cv2.line(cross, (250, 178), (250, 186), 1, 1)
    image[cross > 0] = 255
    redacted, _ = redact_burned_in_text(image, frame.keep_mask)
    assert not redacted[cross > 0].any()
    beside = spot.copy()
    beside[:, 245:256] = False  # the spot beyond the cross's box, padded by a pixel, is tissue and stays
    assert (redacted[beside] == image[beside]).all()


def draw_caliper(image: np.ndarray, start: tuple[int, int], end: tuple[int, int]) -> None:
    """Draw two "x" end crosses with a dot every 5 pixels between them, as scanners mark a measurement."""
    steps = max(int(np.hypot(end[0] - start[0], end[1] - start[1]) // 5), 1)
    for step in range(1, steps):
        t = step / steps
        image[round(start[1] + t * (end[1] - start[1])), round(start[0] + t * (end[0] - start[0]))] = 255
    for x, y in (start, end):
        cv2.line(image, (x - 3, y - 3), (x + 3, y + 3), 255, 1)
        cv2.line(image, (x - 3, y + 3), (x + 3, y - 3), 255, 1)


def test_caliper_end_crosses_and_dots_are_removed_long_and_short_lines_alike():
    frame = synthetic_frame(5, texts=0, calipers=0)
    image = frame.image.copy()
    draw_caliper(image, (200, 150), (260, 150))  # end crosses a dot spacing past the line's last dots
    draw_caliper(image, (230, 250), (230, 261))  # a short measurement: one dot between its crosses
    drawn = image != frame.image
    redacted, _ = redact_burned_in_text(image, frame.keep_mask)
    assert not redacted[drawn].any()
    tissue = frame.keep_mask & ~cv2.dilate(drawn.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    assert np.mean(redacted[tissue] == image[tissue]) > 0.99


@pytest.mark.parametrize("inside", [2, 3, 5])
def test_a_glyph_the_crop_edge_cuts_is_removed_with_the_rest_of_the_crop_untouched(inside):
    frame = synthetic_frame(7, texts=0, calipers=0)
    image = frame.image.copy()
    keep = np.zeros(image.shape, dtype=bool)
    keep[60:300, 100:400] = True  # the scanner's tissue region: a depth-scale digit sits just right of it
    ink = np.zeros(image.shape, dtype=np.uint8)
    cv2.putText(ink, "2", (400 - inside, 200), cv2.FONT_HERSHEY_SIMPLEX, 0.35, 255, 1, cv2.LINE_AA)
    image = np.maximum(image, ink)
    stored, boxes = redact_scan_area(image[None], keep)
    crop = (slice(60, 300), slice(100, 400))
    inked = ink[crop] >= 128
    assert inked.any() and not stored[0][inked].any()
    assert stored[0].shape == (240, 300) and all(x1 <= 300 and y1 <= 240 for _, _, x1, y1 in boxes)
    assert np.mean(stored[0] == image[crop]) > 0.998


def test_a_glyph_the_crop_edge_cuts_is_removed_from_16_bit_frames_too():
    frame = synthetic_frame(7, texts=0, calipers=0)
    keep = np.zeros(frame.image.shape, dtype=bool)
    keep[60:300, 100:400] = True
    ink = np.zeros(frame.image.shape, dtype=np.uint8)
    cv2.putText(ink, "2", (397, 200), cv2.FONT_HERSHEY_SIMPLEX, 0.35, 255, 1, cv2.LINE_AA)
    image = np.maximum(frame.image, ink).astype(np.uint16) * 16  # 12-bit data, as some scanners store it
    stored, _ = redact_scan_area(image[None], keep)
    inked = ink[60:300, 100:400] >= 128
    assert stored.dtype == np.uint16 and inked.any() and not stored[0][inked].any()


def test_frame_without_text_is_untouched_inside_scan_area():
    frame = synthetic_frame(3, texts=0, calipers=0)
    redacted, boxes = redact_burned_in_text(frame.image, frame.keep_mask)
    assert boxes == [] or np.mean(redacted[frame.keep_mask] == frame.image[frame.keep_mask]) > 0.995


def test_uint16_and_cine_frames():
    frame = synthetic_frame(5)
    image16 = frame.image.astype(np.uint16) * 16
    redacted, boxes = redact_burned_in_text(image16, frame.keep_mask)
    assert redacted.dtype == np.uint16 and boxes
    cine = np.stack([frame.image, frame.image])
    frames, cine_boxes = redact_frames(cine, frame.keep_mask)
    assert frames.shape == cine.shape and np.array_equal(frames[0], frames[1]) and cine_boxes


def test_mask_of_wrong_size_is_a_clear_error():
    frame = synthetic_frame(1)
    with pytest.raises(ValueError, match="keep_mask"):
        redact_burned_in_text(frame.image, frame.keep_mask[:10])


def test_regions_shift_with_the_crop():
    ds = adversarial_dataset()
    shift_ultrasound_regions(ds, (5, 10, 60, 60))
    region = ds.SequenceOfUltrasoundRegions[0]
    assert (region.RegionLocationMinX0, region.RegionLocationMinY0) == (5, 10)
    assert (region.RegionLocationMaxX1, region.RegionLocationMaxY1) == (54, 49)
    assert region.PhysicalDeltaX == 0.01


def test_written_dicom_reads_back_with_redacted_pixels(tmp_path):
    out, audit = deidentify_dataset(adversarial_dataset(), SECRET, DeidOptions())
    frame = synthetic_frame(2, height=120, width=160)
    redacted, boxes = redact_burned_in_text(frame.image, frame.keep_mask)
    audit.add_redactions(0, boxes)
    path = tmp_path / "deid.dcm"
    write_deidentified_dicom(path, out, redacted[None], audit)
    back = pydicom.dcmread(path)
    assert np.array_equal(back.pixel_array, redacted)
    assert back.BurnedInAnnotation == "NO"
    assert "113101" in [item.CodeValue for item in back.DeidentificationMethodCodeSequence]
    assert audit.to_dict()["redacted"]["0"] == [list(box) for box in boxes]
    assert b"Doe" not in path.read_bytes()


def test_burned_in_text_without_a_scan_area_is_quarantined():
    whole = np.ones((20, 30), dtype=bool)
    with pytest.raises(BurnedInTextError, match="BurnedInAnnotation"):
        require_scan_area("YES", whole)
    require_scan_area("NO", whole)
    require_scan_area("YES", synthetic_frame(1).keep_mask)


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract-ocr is not installed")
def test_tesseract_finds_a_bold_word_in_the_scan_area_and_it_is_redacted():
    frame = synthetic_frame(0, texts=0, calipers=0)
    image = frame.image.copy()
    ink = np.zeros(image.shape, np.uint8)
    cv2.putText(ink, "JOHNSON", (170, 200), cv2.FONT_HERSHEY_SIMPLEX, 1.0, 255, 2, cv2.LINE_AA)
    image[ink > 0] = np.maximum(image[ink > 0], ink[ink > 0])
    word = ink > 128
    boxes = tesseract_boxes(image, frame.keep_mask)
    assert len(boxes) == 1
    x0, y0, x1, y1 = boxes[0]
    assert word[y0:y1, x0:x1].sum() > 0.8 * word.sum()  # the box holds the word
    redacted, _ = redact_burned_in_text(image, frame.keep_mask)
    assert np.mean(redacted[word] == 0) > 0.8
    assert tesseract_boxes(frame.image, frame.keep_mask) == []  # tissue alone reads as no words
