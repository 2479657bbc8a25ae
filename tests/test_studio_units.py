"""Label Studio JSON without a server: brush RLE, the labelling config, task building, export reading."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from label_studio_sdk.converter.brush import decode_rle as sdk_decode_rle

from studio_data import HEIGHT, WIDTH, disc
from thyrokit.annotate.studio import config
from thyrokit.annotate.studio.agreement import dice, iou
from thyrokit.annotate.studio.pull import PullReport, box_to_pixels, pull_tables
from thyrokit.annotate.studio.rle import RleError, decode_mask, decode_rle, encode_mask
from thyrokit.annotate.studio.tasks import (box_result, box_value, brush_result, choice_result, prediction,
                                            prediction_result, prediction_score)
from thyrokit.annotate.tirads import ECHOGENIC_FOCI, FEATURES
from thyrokit.contract import NODULES, read_table
from thyrokit.pixels import read_image

SIZES = {"img-a": (HEIGHT, WIDTH), "img-b": (HEIGHT, WIDTH), "img-c": (HEIGHT, WIDTH)}


def test_brush_rle_round_trip_is_pixel_exact_and_0_255():
    mask = np.random.default_rng(0).random((37, 53)) > 0.6  # ragged, many runs
    rle = encode_mask(mask.astype(np.uint8))  # 0/1 in: Label Studio needs 255 to show it
    assert np.array_equal(decode_rle(rle, 37 * 53 * 4), sdk_decode_rle(bytes(rle)))
    alpha = sdk_decode_rle(bytes(rle)).reshape(37, 53, 4)[:, :, 3]
    assert set(np.unique(alpha)) == {0, 255}
    assert np.array_equal(decode_mask(rle, 37, 53), np.where(mask, 255, 0).astype(np.uint8))


def test_a_wrong_sized_rle_is_refused():
    rle = encode_mask(disc(0))
    with pytest.raises(RleError, match="RLE holds 3072 pixels, the image has 40x64"):
        decode_mask(rle, 40, WIDTH)
    with pytest.raises(RleError):
        decode_mask(rle[:5], HEIGHT, WIDTH)


def test_config_choices_are_the_tirads_tables():
    for feature, choices in FEATURES.items():
        assert config.choice_values(feature) == tuple(choices)
    assert config.choice_values("echogenic_foci") == tuple(ECHOGENIC_FOCI)
    assert set(config.choice_values(config.PATHOLOGY)) == set(config.PATHOLOGY_TO_CONTRACT)


def test_box_percent_coordinates_come_back_to_the_same_pixels():
    for box in [(0, 0, WIDTH, HEIGHT), (3, 7, 20, 31), (63, 47, 64, 48)]:
        assert box_to_pixels(box_value(box, HEIGHT, WIDTH), HEIGHT, WIDTH) == box


def test_the_most_uncertain_image_gets_the_lowest_score():
    assert prediction_score(2.5) < prediction_score(0.9) < prediction_score(0.1) <= 1.0


def test_a_prediction_outside_the_config_is_refused_before_sending():
    good = prediction_result([{"nodule_id": "n", "bbox": [5, 5, 20, 20], "pathology": "malignant",
                               "composition": "solid", "echogenic_foci": ["punctate"]}], {}, HEIGHT, WIDTH)
    assert prediction(good, 0.3, "v1")["result"] == good
    with pytest.raises(ValueError, match="pathology"):
        prediction(good + [choice_result("n0-box", "pathology", ["cancer"])], 0.3, "v1")
    with pytest.raises(ValueError, match="mask is 40x64"):
        prediction_result([{"nodule_id": "n", "bbox": [5, 5, 20, 20]}], {"n": np.zeros((40, WIDTH), np.uint8)},
                          HEIGHT, WIDTH)


def annotation(annotation_id: int, user: int, updated_at: str, result: list[dict]) -> dict:
    return {"id": annotation_id, "completed_by": user, "updated_at": updated_at,
            "created_at": updated_at, "was_cancelled": False, "result": result}


def nodule(region: str, mask: np.ndarray, pathology: str = "benign", **features: str) -> list[dict]:
    return [brush_result(region, mask), choice_result(region, "pathology", [pathology])] + [
        choice_result(region, name, [value]) for name, value in features.items()]


def test_pull_reads_masks_boxes_choices_and_resolves_conflicts(tmp_path):
    a, b = disc(3), disc(9, radius=5)
    features = {"composition": "solid", "echogenicity": "hypoechoic", "shape": "taller_than_wide",
                "margin": "smooth"}
    box_only = box_result("r2", (40, 30, 50, 40), HEIGHT, WIDTH)
    tasks = [
        {"id": 1, "data": {"image_id": "img-a"}, "annotations": [
            annotation(10, 1, "2026-01-01T10:00:00Z", nodule("r1", a, "malignant", **features)
                       + [choice_result("r1", "echogenic_foci", ["punctate"])]
                       + [box_result("r1b", (10, 5, 24, 19), HEIGHT, WIDTH), box_only]),
            annotation(11, 2, "2026-01-01T09:00:00Z", nodule("r9", b)),  # older: loses, counted in agreement
        ]},
        {"id": 2, "data": {"image_id": "img-b"}, "annotations": [
            annotation(12, 1, "2026-01-02T10:00:00Z", []),
            annotation(16, 2, "2026-01-05T10:00:00Z", nodule("w", np.full((HEIGHT // 2, WIDTH), 255, np.uint8)))]},
        {"id": 3, "data": {"image_id": "img-gone"}, "annotations": [annotation(13, 1, "2026-01-02T10:00:00Z", [])]},
        {"id": 4, "data": {"image_id": "img-c"}, "annotations": [
            annotation(14, 1, "2026-01-02T10:00:00Z", [brush_result("x", a) | {"from_name": "lesion"}]),
            annotation(15, 2, "2026-01-03T10:00:00Z", nodule("e", np.zeros_like(a)))]},
    ]
    report = PullReport()
    out = tmp_path / "label_studio.parquet"
    pull_tables(tasks, SIZES, out, report)
    table = read_table(out, NODULES)

    a_rows = table.filter(pl.col("image_id") == "img-a").sort("nodule_id")
    assert a_rows.height == 2 and set(a_rows.get_column("label_source")) == {"human"}
    drawn = a_rows.filter(pl.col("mask_path").is_not_null()).row(0, named=True)
    assert np.array_equal(read_image(tmp_path / drawn["mask_path"], drawn["nodule_id"]), a)
    assert drawn["pathology"] == "malignant" and drawn["tirads_points"] == 2 + 2 + 3 + 0 + 3
    assert drawn["tirads"] == "TR5" and drawn["echogenic_foci"] == ["punctate"]
    assert drawn["annotator"] == "ls-user-1" and drawn["updated_at"].hour == 10
    boxed = a_rows.filter(pl.col("mask_path").is_null()).row(0, named=True)
    assert boxed["bbox"] == [40, 30, 50, 40] and boxed["pathology"] == "unknown"

    [pair] = report.agreement
    assert (pair["kept"], pair["other"]) == (10, 11)
    assert pair["dice"] == round(dice(a | np.pad(np.ones((10, 10), np.uint8), ((30, 8), (40, 14))) * 255, b), 4)
    assert 0 < pair["iou"] < pair["dice"] < 1

    labelled = pl.read_parquet(tmp_path / "labelled_images.parquet")
    assert labelled.get_column("image_id").to_list() == ["img-a", "img-b", "img-c"]  # img-b: no finding
    assert report.counts["images_no_finding"] == 2  # img-b, and img-c whose only region was empty
    problems = "\n".join(report.problems)
    assert "task 3 is for image img-gone, not in the images table" in problems
    assert "task 4 annotation 14: 'from_name' 'lesion' not found" in problems
    assert "task 4 annotation 15: region e has an empty mask" in problems
    assert "task 2 annotation 16: region w was drawn on a 24x64 image, the image is 48x64; skipped" in problems


def test_agreement_of_identical_and_disjoint_masks():
    a = disc(0)
    assert dice(a, a) == iou(a, a) == 1.0
    assert dice(a, np.zeros_like(a)) == iou(a, np.zeros_like(a)) == 0.0
