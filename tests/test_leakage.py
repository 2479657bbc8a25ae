"""The leakage audit: each kind of leak is found and named; clean splits pass."""

from __future__ import annotations

import json

import cv2
import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from thyrokit.cli import main
from thyrokit.contract import IMAGES, NODULES, conform, write_table
from thyrokit.curate.phash import phash
from thyrokit.pipelines.leakage import audit_leakage, near_duplicates, phash_to_int

DISTANCE = 4


def scan(seed: int, shift: int = 0, noise: float = 0.0) -> np.ndarray:
    """Return an ultrasound-like frame: smooth speckle with a dark nodule shifted `shift` px."""
    rng = np.random.default_rng(seed)
    tissue = cv2.GaussianBlur(rng.random((120, 160)).astype(np.float32), (0, 0), 6)
    tissue = (tissue - tissue.min()) / (tissue.max() - tissue.min())
    rows, cols = np.mgrid[:120, :160]
    nodule = np.exp(-(((cols - 80 - shift) / 20) ** 2 + ((rows - 60) / 15) ** 2))
    image = (0.6 * tissue + 0.4 * (1 - nodule)) * 220
    image += np.random.default_rng(seed * 1000 + shift).normal(0, noise, image.shape) if noise else 0
    return np.clip(image, 0, 255).astype(np.uint8)


def table(rows: list[tuple[str, str, str, str, str | None]]) -> pl.DataFrame:
    """Return an images table from (image_id, patient_id, study_id, split, phash) rows."""
    return conform(pl.DataFrame([{
        "image_id": image, "patient_id": patient, "study_id": study, "series_id": study, "site": "site-A",
        "device": "scanner-A", "modality": "US", "frame": 0, "n_frames": 1, "width": 160, "height": 120,
        "channels": 1, "crop": [0, 0, 160, 120], "path": "pixels/images-00000.parquet", "split": split,
        "phash": hashed, "source_format": "dicom", "source_hmac": f"src-{image}", "tool_version": "test",
    } for image, patient, study, split, hashed in rows]), IMAGES)


def clean_images() -> pl.DataFrame:
    """Return ten patients, each with one distinct scan, spread over the splits."""
    splits = ["train"] * 6 + ["validation", "test", "test", "external"]
    return table([(f"img-{n}", f"pat-{n}", f"study-{n}", split, phash(scan(n)))
                  for n, split in enumerate(splits)])


def audit(images, nodules=None, patches=None):
    return audit_leakage(images, nodules, patches, max_distance=DISTANCE)


def test_a_clean_split_passes():
    report = audit(clean_images())
    assert report["ok"] and all(check["count"] == 0 for check in report["checks"].values())


def test_a_patient_in_two_splits_is_named():
    images = clean_images().with_columns(
        pl.when(pl.col("image_id") == "img-7").then(pl.lit("pat-0")).otherwise("patient_id").alias("patient_id"))
    check = audit(images)["checks"]["patient_in_two_splits"]
    assert check["count"] == 1
    assert check["rows"][0]["patient_id"] == "pat-0" and check["rows"][0]["splits"] == ["test", "train"]


def test_a_study_in_two_splits_is_named_with_its_patients():
    images = clean_images().with_columns(
        pl.when(pl.col("image_id") == "img-9").then(pl.lit("study-1")).otherwise("study_id").alias("study_id"))
    row, = audit(images)["checks"]["study_in_two_splits"]["rows"]
    assert row["study_id"] == "study-1" and row["patient_ids"] == ["pat-1", "pat-9"]
    assert row["splits"] == ["external", "train"]


def test_frames_of_one_cine_clip_filed_under_two_patients_are_found():
    frames = [scan(100, shift=shift) for shift in range(0, 10, 2)]
    clip = [(f"clip-{n}", "pat-A" if n < 3 else "pat-B", "study-A" if n < 3 else "study-B",
             "train" if n < 3 else "test", phash(frame)) for n, frame in enumerate(frames)]
    images = pl.concat([clean_images(), table(clip)])
    pairs = near_duplicates(images, DISTANCE)
    assert len(pairs) > 0
    assert set(pairs.get_column("patient_id")) | set(pairs.get_column("other_patient_id")) == {"pat-A", "pat-B"}
    assert (pairs.get_column("distance") <= DISTANCE).all()


def test_a_noisy_re_export_under_another_id_is_found_and_unrelated_scans_are_not():
    original = scan(200)
    images = pl.concat([clean_images(), table([
        ("export-1", "pat-X", "study-X", "train", phash(original)),
        ("export-2", "pat-Y", "study-Y", "validation", phash(scan(200, noise=8.0))),
    ])])
    row, = audit(images)["checks"]["near_duplicate_across_splits"]["rows"]
    assert {row["image_id"], row["other_image_id"]} == {"export-1", "export-2"}


def test_banded_search_finds_exactly_what_all_pairs_comparison_finds():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2**63, 400, dtype=np.uint64) * np.uint64(2)
    # Near copies at 0..7 flipped bits, so pairs straddle the threshold.
    flips = [np.bitwise_or.reduce(np.uint64(1) << rng.choice(64, k, replace=False).astype(np.uint64), initial=np.uint64(0))
             for k in rng.integers(0, 8, 400)]
    hashes = np.concatenate([base, base ^ np.array(flips, dtype=np.uint64)])
    splits = rng.choice(["train", "validation", "test"], hashes.size)
    images = table([(f"img-{n:04d}", f"pat-{n:04d}", f"study-{n:04d}", str(split), f"{int(value):016x}")
                    for n, (value, split) in enumerate(zip(hashes, splits))])
    for distance in (0, 3, DISTANCE, 6):
        found = {tuple(sorted(pair)) for pair in near_duplicates(images, distance).select("image_id", "other_image_id").iter_rows()}
        values = phash_to_int(images.get_column("phash"))
        ids, split_of = images.get_column("image_id").to_list(), images.get_column("split").to_list()
        expected = set()
        for a in range(len(ids)):
            close = np.flatnonzero(np.bitwise_count(values[a] ^ values[a + 1:]) <= distance) + a + 1
            expected |= {(ids[a], ids[b]) for b in close if split_of[a] != split_of[b]}
        assert found == expected, distance
        assert distance == 0 or expected


def test_synthetic_and_pseudo_labelled_data_outside_train_is_named():
    images = clean_images().with_columns(
        pl.when(pl.col("image_id") == "img-6").then(pl.lit("synthetic")).otherwise("source_format").alias("source_format"))
    nodules = conform(pl.DataFrame([
        {"image_id": "img-0", "nodule_id": "n-ok", "bbox": [1, 1, 9, 9], "pathology": "benign", "label_source": "pseudo"},
        {"image_id": "img-7", "nodule_id": "n-pseudo", "bbox": [1, 1, 9, 9], "pathology": "benign", "label_source": "pseudo"},
        {"image_id": "img-8", "nodule_id": "n-pred", "bbox": [1, 1, 9, 9], "pathology": "benign", "label_source": "prediction"},
        {"image_id": "img-gone", "nodule_id": "n-synth", "bbox": [1, 1, 9, 9], "pathology": "malignant", "label_source": "synthetic"},
    ]), NODULES)
    rows = audit(images, nodules)["checks"]["machine_made_outside_train"]["rows"]
    assert [(row["image_id"], row["nodule_id"], row["split"]) for row in rows] == [
        ("img-6", None, "validation"), ("img-7", "n-pseudo", "test"), ("img-gone", "n-synth", None)]


def test_images_without_a_split_are_reported():
    images = clean_images().with_columns(
        pl.when(pl.col("image_id") == "img-3").then(None).otherwise("split").alias("split"))
    assert audit(images)["checks"]["image_without_split"]["rows"] == [{"image_id": "img-3", "patient_id": "pat-3"}]


def test_a_hash_that_is_not_a_64_bit_phash_is_refused_clearly():
    with pytest.raises(ValueError, match="16 hex digits"):
        phash_to_int(pl.Series(["abc"]))


def test_audit_command_exits_non_zero_naming_the_rows(tmp_path):
    images = clean_images().with_columns(
        pl.when(pl.col("image_id") == "img-7").then(pl.lit("pat-0")).otherwise("patient_id").alias("patient_id"))
    write_table(images, tmp_path / "images.parquet", IMAGES)
    write_table(NODULES.empty(), tmp_path / "nodules.parquet", NODULES)
    (tmp_path / "params.yaml").write_text("split:\n  phash_max_distance: 4\n")
    result = CliRunner().invoke(main, ["audit-leakage", str(tmp_path / "images.parquet"),
                                       str(tmp_path / "nodules.parquet"), str(tmp_path / "leakage.json"),
                                       "--params", str(tmp_path / "params.yaml")])
    assert result.exit_code == 1
    assert "patient in two splits: pat-0 (test, train)" in result.output
    assert json.loads((tmp_path / "leakage.json").read_text())["ok"] is False
