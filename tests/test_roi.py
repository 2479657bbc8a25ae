"""The roi stage: square nodule patches, centred, padded at the edge, pseudolabels on train only."""

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from thyrokit.cli import main
from thyrokit.contract import IMAGES, NODULES, PATCHES, read_table, write_table
from thyrokit.curate.roi import RoiSpec, build_roi, resize_image, square_window
from thyrokit.pixels import encode_png, read_image, write_shards

SPEC = RoiSpec(size=64, context=1.5, min_side=8)


def _image_row(image: str, split: str, height: int, width: int, channels: int) -> dict:
    return {
        "image_id": image, "patient_id": f"pat-{image}", "study_id": "study-1", "series_id": "series-1",
        "site": "site-A", "device": "dev", "modality": "US", "frame": 0, "n_frames": 1, "width": width,
        "height": height, "channels": channels, "crop": [0, 0, width, height], "spacing_mm": [0.1, 0.1],
        "split": split, "source_format": "png", "source_hmac": f"src-{image}", "tool_version": "test",
    }


def _box_mask(shape: tuple[int, int], box: tuple[int, int, int, int]) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    x0, y0, x1, y1 = box
    mask[y0:y1, x0:x1] = 255
    return mask


def _write_nodules(folder: Path, nodules: list[tuple[str, str, tuple, str, str]], shapes: dict) -> Path:
    """Write a nodules table with box-shaped masks; each nodule is (image, nodule, bbox, pathology, source)."""
    where = write_shards([(nodule, encode_png(_box_mask(shapes[image], bbox)))
                          for image, nodule, bbox, _, _ in nodules], folder / "masks", "masks")
    rows = [{"image_id": image, "nodule_id": nodule, "bbox": list(bbox), "mask_path": f"masks/{where[nodule]}",
             "pathology": pathology, "label_source": source}
            for image, nodule, bbox, pathology, source in nodules]
    write_table(pl.DataFrame(rows), folder / "nodules.parquet", NODULES)
    return folder / "nodules.parquet"


@pytest.fixture
def inputs(tmp_path: Path) -> dict:
    """Three images (ingest shards, split table in another folder), human labels and pseudolabels."""
    yy, xx = np.mgrid[0:50, 0:60]
    pixels = {
        "img-a": (100 + yy + xx).astype(np.uint8),                                    # train, grey
        "img-b": np.dstack([np.full((40, 40), v, np.uint8) for v in (200, 100, 50)]),  # test, RGB
        "img-c": np.full((40, 40), 120, np.uint8),                                     # train
    }
    where = write_shards([(key, encode_png(image)) for key, image in pixels.items()],
                         tmp_path / "ingest/pixels", "images")
    splits = {"img-a": "train", "img-b": "test", "img-c": "train"}
    images = pl.DataFrame([_image_row(key, splits[key], *image.shape[:2], 3 if image.ndim == 3 else 1)
                           | {"path": f"../ingest/pixels/{where[key]}"} for key, image in pixels.items()])
    write_table(images, tmp_path / "split/images.parquet", IMAGES)
    shapes = {key: image.shape[:2] for key, image in pixels.items()}
    human = _write_nodules(tmp_path / "labels", [
        ("img-a", "nod-centre", (20, 10, 30, 18), "malignant", "human"),
        ("img-a", "nod-edge", (0, 0, 6, 6), "benign", "human"),
        ("img-b", "nod-colour", (10, 10, 20, 20), "benign", "human"),
    ], shapes)
    pseudo = _write_nodules(tmp_path / "pseudo", [
        ("img-c", "nod-pseudo-train", (5, 5, 15, 15), "benign", "pseudo"),
        ("img-b", "nod-pseudo-test", (20, 20, 30, 30), "malignant", "pseudo"),
    ], shapes)
    return {"images": tmp_path / "split/images.parquet", "nodules": human, "pseudo": pseudo,
            "out": tmp_path / "roi", "pixels": pixels, "root": tmp_path}


def _patch(out: Path, nodule: str) -> tuple[dict, np.ndarray, np.ndarray]:
    row = read_table(out / "patches.parquet", PATCHES).filter(pl.col("nodule_id") == nodule).row(0, named=True)
    return row, read_image(out / row["path"], nodule), read_image(out / row["mask_path"], nodule)


def test_patch_is_centred_on_the_nodule_and_records_its_scale(inputs):
    build_roi(inputs["images"], inputs["nodules"], inputs["out"], SPEC, workers=1)
    row, patch, mask = _patch(inputs["out"], "nod-centre")
    assert row["window"] == [17, 6, 33, 22]   # side 1.5 x 10 = 15, rounded up to 16 to centre exactly
    assert row["scale"] == 4.0 and row["size"] == 64
    assert row["spacing_mm"] == [0.025, 0.025]
    assert patch.shape == mask.shape == (64, 64)
    np.testing.assert_array_equal(patch, resize_image(inputs["pixels"]["img-a"][6:22, 17:33], 64))
    assert set(np.unique(mask)) == {0, 255}
    rows, cols = np.nonzero(mask)
    assert (rows.min() + rows.max() + 1) / 2 == 32 and (cols.min() + cols.max() + 1) / 2 == 32


def test_nodule_at_the_edge_is_padded_with_zero(inputs):
    build_roi(inputs["images"], inputs["nodules"], inputs["out"], SPEC, workers=1)
    row, patch, mask = _patch(inputs["out"], "nod-edge")
    assert row["window"] == [-2, -2, 8, 8]
    # 2 image px of padding = 12.8 patch px; enlarging blends about one image px at the border.
    assert row["scale"] == 6.4
    assert not patch[:9].any() and not patch[:, :9].any()
    assert patch[16:, 16:].min() >= 100   # the image itself is never 0
    rows, cols = np.nonzero(mask)   # nearest neighbour at a scale of 6.4 moves edges by under a pixel
    assert abs((rows.min() + rows.max() + 1) / 2 - 32) <= 0.5 and abs((cols.min() + cols.max() + 1) / 2 - 32) <= 0.5


def test_colour_frames_give_grey_patches(inputs):
    build_roi(inputs["images"], inputs["nodules"], inputs["out"], SPEC, workers=1)
    _, patch, _ = _patch(inputs["out"], "nod-colour")
    assert patch.ndim == 2
    assert int(patch[32, 32]) == round(0.299 * 200 + 0.587 * 100 + 0.114 * 50)


def test_pseudolabels_only_for_train_images(inputs):
    report = build_roi(inputs["images"], inputs["nodules"], inputs["out"], SPEC, pseudo_path=inputs["pseudo"],
                       workers=1)
    patches = read_table(inputs["out"] / "patches.parquet", PATCHES)
    assert sorted(patches.get_column("nodule_id")) == ["nod-centre", "nod-colour", "nod-edge", "nod-pseudo-train"]
    assert report.counts["pseudo_outside_train"] == 1
    assert report.counts["patches_by_label_source"] == {"human": 3, "pseudo": 1}
    assert patches.filter(pl.col("nodule_id") == "nod-colour").get_column("split").item() == "test"


def test_unreadable_mask_is_reported_and_the_rest_kept(inputs):
    nodules = read_table(inputs["nodules"], NODULES)
    broken = nodules.with_columns(
        pl.when(pl.col("nodule_id") == "nod-edge").then(pl.lit("masks/gone.parquet")).otherwise(pl.col("mask_path"))
        .alias("mask_path"))
    write_table(broken, inputs["nodules"], NODULES)
    report = build_roi(inputs["images"], inputs["nodules"], inputs["out"], SPEC, workers=1)
    assert report.problems == ["nodule nod-edge: mask pixels missing or not decodable"]
    assert report.counts["patches"] == 2


def test_same_inputs_give_identical_bytes(inputs):
    again = inputs["root"] / "again"
    build_roi(inputs["images"], inputs["nodules"], inputs["out"], SPEC, pseudo_path=inputs["pseudo"], workers=1)
    build_roi(inputs["images"], inputs["nodules"], again, SPEC, pseudo_path=inputs["pseudo"], workers=2)
    first = {p.relative_to(inputs["out"]): p.read_bytes() for p in inputs["out"].rglob("*") if p.is_file()}
    second = {p.relative_to(again): p.read_bytes() for p in again.rglob("*") if p.is_file()}
    assert sorted(map(str, first)) == ["montage.png", "patches.parquet", "pixels/masks-00000.parquet",
                                       "pixels/patches-00000.parquet"]
    assert first == second


@pytest.mark.parametrize(
    ("bbox", "window"),
    [((10, 10, 20, 20), (7, 7, 23, 23)),   # 1.5 x 10 = 15, made 16 to centre exactly
     ((0, 0, 2, 2), (-3, -3, 5, 5)),       # tiny nodule: the smallest side, 8, wins
     ((4, 4, 11, 8), (2, 0, 13, 11))],     # ceil(1.5 x 7) = 11; the short axis sits half a pixel off
)
def test_square_window(bbox, window):
    assert square_window(bbox, 1.5, 8) == window


def test_cli_reads_params_and_writes_metrics(inputs):
    params = inputs["root"] / "params.yaml"
    params.write_text("roi:\n  size: 32\n  context: 2.0\n  min_side: 8\n  workers: 1\n  montage_per_class: 4\n")
    metrics = inputs["root"] / "metrics/roi.json"
    result = CliRunner().invoke(main, [
        "curate", "roi", str(inputs["images"]), str(inputs["nodules"]), str(inputs["out"]),
        "--pseudo", str(inputs["root"] / "absent.parquet"), "--metrics", str(metrics), "--params", str(params)])
    assert result.exit_code == 0, result.output
    assert json.loads(metrics.read_text())["patches"] == 3
    assert set(read_table(inputs["out"] / "patches.parquet", PATCHES).get_column("size")) == {32}
    assert (inputs["out"] / "montage.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
