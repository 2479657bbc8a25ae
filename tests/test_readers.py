"""Reading raw DICOM, PNG and JPEG files into frames and whitelisted facts."""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
from pydicom.data import get_testdata_files

import dicom_factory as factory
from thyrokit.curate.readers import RawFileError, RawScan, read_scan


def read(ds) -> RawScan:
    return read_scan(factory.to_bytes(ds))


@pytest.mark.parametrize("compress", [lambda ds: ds, factory.rle, factory.jpeg2000],
                         ids=["uncompressed", "rle", "jpeg2000"])
def test_lossless_syntaxes_give_back_the_exact_pixels(compress):
    image = factory.fan_image()
    scan = read(compress(factory.us_dataset(image)))
    assert scan.frames.shape == (1, *image.shape)
    assert scan.frames.dtype == np.uint8
    np.testing.assert_array_equal(scan.frames[0], image)


def test_jpeg_baseline_grey_and_ybr_colour_decode_close_to_the_original():
    grey = factory.fan_image()
    scan = read(factory.jpeg_baseline(factory.us_dataset(grey)))
    assert np.abs(scan.frames[0].astype(int) - grey).mean() < 6
    rgb = np.zeros((64, 64, 3), np.uint8)
    rgb[..., 0], rgb[16:48, 16:48, 1] = 200, 150
    scan = read(factory.jpeg_baseline(factory.us_dataset(rgb)))
    assert scan.frames.shape == (1, 64, 64, 3)
    assert np.abs(scan.frames[0].astype(int) - rgb).mean() < 6  # YBR_FULL_422 came back as RGB


def test_ybr_full_is_converted_to_rgb():
    rgb = factory.fan_image(rgb=True)
    scan = read(factory.ybr_dataset(rgb))
    assert np.abs(scan.frames[0].astype(int) - rgb).max() <= 3


def test_palette_colour_is_looked_up_to_8_bit_rgb():
    indices = np.arange(256, dtype=np.uint8).reshape(16, 16)
    lut = np.stack([np.arange(256), 255 - np.arange(256), np.full(256, 7)], axis=1) * 257  # 16-bit entries
    scan = read(factory.palette_dataset(indices, lut))
    assert scan.frames.dtype == np.uint8
    assert scan.frames.shape == (1, 16, 16, 3)
    np.testing.assert_array_equal(scan.frames[0, 0, 5], [5, 250, 7])


def test_palette_with_8_bit_entries_keeps_its_colours():
    indices = np.arange(256, dtype=np.uint8).reshape(16, 16)
    lut = np.stack([np.arange(256), 255 - np.arange(256), np.full(256, 7)], axis=1)  # 8-bit entries
    scan = read(factory.palette_dataset(indices, lut, entry_bits=8))
    np.testing.assert_array_equal(scan.frames[0, 0, 5], [5, 250, 7])


def test_multi_frame_rgb_rle_keeps_every_frame():
    cine = np.stack([factory.fan_image(seed=i, rgb=True) for i in range(3)])
    scan = read(factory.rle(factory.us_dataset(cine)))
    np.testing.assert_array_equal(scan.frames, cine)


def test_signed_ct_is_stored_losslessly_with_a_rescale_to_hounsfield():
    hounsfield = np.array([[-1024, -1000, 0], [40, 1000, 3071]])
    stored = hounsfield + 1024
    scan = read(factory.ct_dataset(stored - 2048, intercept=1024.0))  # signed stored values, some negative
    slope, intercept = scan.facts.rescale
    assert scan.frames.dtype == np.uint16
    np.testing.assert_array_equal(scan.frames[0] * slope + intercept, hounsfield)
    assert scan.facts.modality == "CT"
    assert scan.facts.pixel_spacing_mm == (0.7, 0.8)


def test_monochrome1_is_inverted_so_higher_means_brighter():
    counts = np.array([[0, 10], [60000, 65535]], dtype=np.uint16)
    scan = read(factory.nm_dataset(counts, monochrome1=True))
    np.testing.assert_array_equal(scan.frames[0], 65535 - counts)
    assert scan.facts.rescale == (1.0, 0.0)


def test_ultrasound_regions_become_end_exclusive_boxes_with_spacing_in_mm():
    ds = factory.us_dataset(factory.fan_image(), regions=[(10, 5, 99, 80), (0, 85, 127, 95, 0.02, False)])
    tissue, doppler = read(ds).facts.us_regions
    assert tissue.box == (10, 5, 100, 81) and tissue.is_tissue
    assert tissue.spacing_mm == pytest.approx((0.15, 0.1))
    assert not doppler.is_tissue


def test_only_whitelisted_facts_leave_the_reader():
    facts = read(factory.us_dataset(factory.fan_image())).facts
    assert facts.device == "Acme Sono 5"
    kept = {str(value) for value in vars(facts).values()}
    for phi in factory.PHI.values():
        assert not any(phi in value for value in kept)


def test_png_and_jpeg_exports_are_read_as_one_rgb_or_grey_frame():
    rgb = factory.fan_image(rgb=True)
    png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()
    scan = read_scan(png)
    np.testing.assert_array_equal(scan.frames[0], rgb)
    assert scan.facts.source_format == "png" and scan.facts.patient is None
    jpeg = cv2.imencode(".jpg", factory.fan_image())[1].tobytes()
    assert read_scan(jpeg).frames.shape == (1, 96, 128)


@pytest.mark.parametrize("data, kind", [
    (b"", "empty_file"),
    (b"patient list: Doe^Jane 19610203\n" * 20, "not_an_image"),
    (b"\xff\xd8\xff\xe0" + b"\x00" * 64, "undecodable_image"),
    (factory.to_bytes(factory.pdf_dataset()), "unsupported_sop_class"),
    (factory.to_bytes(factory.us_dataset(factory.fan_image(), sop_class=factory.SECONDARY_CAPTURE)),
     "unsupported_sop_class"),
])
def test_bad_input_is_refused_with_a_kind_and_no_phi(data, kind):
    with pytest.raises(RawFileError) as refused:
        read_scan(data)
    assert refused.value.kind == kind
    assert not any(phi in str(refused.value) for phi in factory.PHI.values())


def test_truncated_pixel_data_and_missing_pixel_data_are_refused():
    data = factory.to_bytes(factory.us_dataset(factory.fan_image()))
    with pytest.raises(RawFileError, match="undecodable_pixels|unreadable_dicom"):
        read_scan(data[: len(data) // 2])
    ds = factory.us_dataset(factory.fan_image())
    del ds.PixelData
    with pytest.raises(RawFileError, match="no_pixel_data"):
        read(ds)


def test_every_pydicom_test_file_is_read_or_refused_never_crashes():
    files = [Path(name) for name in get_testdata_files() if Path(name).is_file()]
    assert len(files) > 150
    read_count = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in files:
            try:
                scan = read_scan(path.read_bytes())
            except RawFileError:
                continue
            assert scan.frames.dtype in (np.uint8, np.uint16) and scan.frames.ndim in (3, 4)
            read_count += 1
    assert read_count >= 10
