"""Finding the ultrasound scan area, cropping to it and blanking the rest."""

from __future__ import annotations

import numpy as np

import dicom_factory as factory
from thyrokit.curate.scan_area import (
    blank_outside,
    bounding_box,
    crop,
    detect_scan_area,
    mask_from_boxes,
    scan_area,
    to_grey_uint8,
)


def test_detected_fan_keeps_the_tissue_and_drops_the_burned_in_text():
    image = factory.fan_image(height=192, width=256)
    mask = detect_scan_area(image)
    tissue = image > 0
    tissue[:10, :64] = False  # the text bar
    assert mask[tissue].mean() > 0.97
    assert not mask[2:5, 2:30].any()
    x0, y0, x1, y1 = bounding_box(mask)
    assert y0 > 5 and x1 - x0 < 256  # the crop starts below the text and is narrower than the screen


def test_dark_cyst_at_the_edge_of_a_rectangle_stays_inside_the_area():
    rng = np.random.default_rng(1)
    image = np.zeros((120, 160), np.uint8)
    image[20:110, 30:140] = rng.integers(50, 200, (90, 110))
    image[20:50, 30:60] = 0  # anechoic cyst touching the corner
    mask = detect_scan_area(image)
    assert bounding_box(mask) == (30, 20, 140, 110)


def test_blank_frame_keeps_the_whole_frame():
    assert detect_scan_area(np.zeros((50, 60), np.uint8)).all()


def test_header_regions_win_over_detection_and_cine_frames_share_one_mask():
    frames = np.stack([factory.fan_image(seed=i) for i in range(4)])
    mask, origin = scan_area(frames, [(0, 0, 10, 10), (20, 20, 40, 30)])
    assert origin == "regions"
    assert mask.sum() == 100 + 200
    mask, origin = scan_area(frames)
    assert origin == "detected" and mask.shape == frames.shape[1:]


def test_crop_and_blank_leave_only_the_kept_pixels():
    image = np.full((10, 12, 3), 9, np.uint8)
    mask = mask_from_boxes([(2, 3, 6, 8)], (10, 12))
    mask[3, 2] = False
    kept = crop(blank_outside(image, mask), bounding_box(mask))
    assert kept.shape == (5, 4, 3)
    assert (kept[0, 0] == 0).all() and (kept[1:, :] == 9).all()
    assert (image == 9).all()  # the input is not modified


def test_sixteen_bit_images_are_scaled_to_8_bit_for_detection():
    image = np.array([[1000, 2000], [3000, 3000]], np.uint16)
    np.testing.assert_array_equal(to_grey_uint8(image), [[0, 128], [255, 255]])
