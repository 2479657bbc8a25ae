"""The labels stage: sidecar labels land on the de-identified images; Label Studio wins."""

import json
from pathlib import Path

import cv2
import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from thyrokit.annotate.labels import LABELLED_IMAGES, build_labels, merge_labels, read_labelled_images
from thyrokit.cli import main
from thyrokit.contract import IMAGES, NODULES, read_table, write_table
from thyrokit.curate.identity import image_id, source_hmac
from thyrokit.pixels import encode_png, read_image, write_shards

SECRET = b"labels-test-secret-0123456789"
PHI_NAME = "Smith^Jane"
SCAN_A = f"site_one/{PHI_NAME}_1/study/a.png"      # one frame, cropped to (5, 3, 35, 28)
SCAN_B = f"site_one/{PHI_NAME}_1/study/cine.dcm"   # two frames, cropped to (0, 0, 20, 20)
SCAN_Q = f"site_one/{PHI_NAME}_1/study/quarantined.png"
CROP_A = (5, 3, 35, 28)
CROP_B = (0, 0, 20, 20)
CSV_HEADER = "file,frame,nodule,mask,pathology,composition,echogenicity,shape,margin,echogenic_foci,tirads_points,tirads\n"


def _mask(shape: tuple[int, int], box: tuple[int, int, int, int] | None) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    if box is not None:
        x0, y0, x1, y1 = box
        mask[y0:y1, x0:x1] = 255
    return mask


def _image_row(secret: bytes, data: bytes, frame: int, crop: tuple[int, int, int, int]) -> dict:
    x0, y0, x1, y1 = crop
    source = source_hmac(secret, data)
    return {
        "image_id": image_id(secret, source, frame), "patient_id": "pat-1", "study_id": "study-1",
        "series_id": "series-1", "site": "site-A", "device": "dev", "modality": "US", "frame": frame,
        "n_frames": 2, "width": x1 - x0, "height": y1 - y0, "channels": 1, "crop": list(crop),
        "path": "pixels/images-00000.parquet", "source_format": "png", "source_hmac": source,
        "tool_version": "test",
    }


@pytest.fixture
def raw(tmp_path: Path) -> dict:
    """A raw zone with three scans (one quarantined by ingest), labels.csv, masks and an ingest output."""
    scans, labels, ingest = tmp_path / "raw/scans", tmp_path / "raw/labels", tmp_path / "ingest"
    rng = np.random.default_rng(0)
    data = {name: encode_png(rng.integers(0, 255, (30, 40), np.uint8)) for name in (SCAN_A, SCAN_B, SCAN_Q)}
    for name, content in data.items():
        (scans / name).parent.mkdir(parents=True, exist_ok=True)
        (scans / name).write_bytes(content)
    images = [_image_row(SECRET, data[SCAN_A], 0, CROP_A), _image_row(SECRET, data[SCAN_B], 0, CROP_B),
              _image_row(SECRET, data[SCAN_B], 1, CROP_B)]
    write_table(pl.DataFrame(images), ingest / "images.parquet", IMAGES)
    (labels / "masks").mkdir(parents=True)
    cv2.imwrite(str(labels / "masks/a0.png"), _mask((30, 40), (10, 8, 15, 12)))
    cv2.imwrite(str(labels / "masks/a1.png"), _mask((30, 40), None))
    cv2.imwrite(str(labels / "masks/a2.png"), _mask((30, 40), (0, 0, 4, 30)))   # outside the crop box
    cv2.imwrite(str(labels / "masks/b0.png"), _mask((30, 40), (2, 2, 6, 7)))
    (labels / "masks/broken.png").write_text("not a png")
    rows = [
        f"{SCAN_A},0,0,masks/a0.png,malignant,solid,hypoechoic,taller_than_wide,irregular,punctate+macrocalcifications,13,TR5",
        f"{SCAN_A},0,1,masks/a1.png,benign,,,,,,,",                   # line 3: empty mask
        f"{SCAN_B},1,-1,,,,,,,,,",                                    # line 4: labelled, no finding
        f"{SCAN_A.replace('a.png', 'gone.png')},0,0,masks/a0.png,benign,,,,,,,",  # line 5: missing scan
        f"{SCAN_Q},0,0,masks/a0.png,benign,,,,,,,",                   # line 6: quarantined by ingest
        f"{SCAN_A},0,2,masks/a2.png,benign,,,,,,,",                   # line 7: empty inside the crop
        f"{SCAN_B},0,0,masks/broken.png,benign,,,,,,,",               # line 8: unreadable mask
        f"{SCAN_B},0,1,masks/b0.png,{PHI_NAME},,,,,,,",               # line 9: bad pathology
        f"{SCAN_B},0,2,masks/b0.png,unknown,spongiform,,,,,,TR3",     # line 10: spongiform beats the given level
    ]
    (labels / "labels.csv").write_text(CSV_HEADER + "\n".join(rows) + "\n")
    ids = {name: image_id(SECRET, source_hmac(SECRET, data[name]), 0) for name in (SCAN_A, SCAN_B)}
    ids["B1"] = images[2]["image_id"]
    return {"labels": labels, "ingest": ingest, "out": tmp_path / "out", "ids": ids, "root": tmp_path}


def test_masks_land_pixel_exact_on_the_cropped_image(raw):
    build_labels(raw["labels"], raw["ingest"], raw["out"], SECRET, workers=1)
    nodules = read_table(raw["out"] / "nodules.parquet", NODULES)
    nodule = nodules.filter(pl.col("image_id") == raw["ids"][SCAN_A]).row(0, named=True)
    mask = read_image(raw["out"] / nodule["mask_path"], nodule["nodule_id"])
    expected = _mask((25, 30), (10 - 5, 8 - 3, 15 - 5, 12 - 3))
    np.testing.assert_array_equal(mask, expected)
    assert nodule["bbox"] == [5, 5, 10, 9]
    assert (nodule["label_source"], nodule["annotator"], nodule["pathology"]) == ("human", "sidecar", "malignant")
    assert (nodule["tirads_points"], nodule["tirads"]) == (13, "TR5")
    assert nodule["echogenic_foci"] == ["macrocalcifications", "punctate"]


def test_bad_rows_are_reported_by_line_and_skipped_and_the_rest_kept(raw):
    report = build_labels(raw["labels"], raw["ingest"], raw["out"], SECRET, workers=1)
    reasons = {int(problem.item.rsplit(" ", 1)[1]): problem.reason for problem in report.problems}
    assert sorted(reasons) == [3, 5, 6, 7, 8, 9]
    assert "empty" in reasons[3] and "empty" in reasons[7]
    assert "not found" in reasons[5]
    assert "ingest" in reasons[6]
    assert "readable" in reasons[8]
    assert "pathology" in reasons[9]
    nodules = read_table(raw["out"] / "nodules.parquet", NODULES)
    assert nodules.height == 2
    spongiform = nodules.filter(pl.col("composition") == "spongiform").row(0, named=True)
    assert (spongiform["tirads_points"], spongiform["tirads"]) == (0, "TR1")
    assert [str(warning.item) for warning in report.warnings] == ["labels.csv line 10"]
    assert report.counts["skipped"] == 6 and report.counts["nodules"] == 2


def test_labelled_no_finding_images_are_kept(raw):
    report = build_labels(raw["labels"], raw["ingest"], raw["out"], SECRET, workers=1)
    labelled = read_labelled_images(raw["out"] / LABELLED_IMAGES)
    assert sorted(labelled.get_column("image_id")) == sorted([raw["ids"][SCAN_A], raw["ids"][SCAN_B], raw["ids"]["B1"]])
    assert set(labelled.get_column("label_source")) == {"human"}
    assert report.counts["labelled_images_no_finding"] == 1


def test_no_raw_name_reaches_outputs_or_messages(raw):
    report = build_labels(raw["labels"], raw["ingest"], raw["out"], SECRET, workers=1)
    messages = " ".join(str(problem) for problem in report.problems + report.warnings)
    assert "Smith" not in messages and ".png" not in messages
    for path in raw["out"].rglob("*"):
        if path.is_file():
            assert b"Smith" not in path.read_bytes() and PHI_NAME not in str(path)


def test_same_inputs_give_identical_bytes(raw):
    build_labels(raw["labels"], raw["ingest"], raw["out"], SECRET, workers=1)
    build_labels(raw["labels"], raw["ingest"], raw["root"] / "again", SECRET, workers=2)
    first = {p.relative_to(raw["out"]): p.read_bytes() for p in raw["out"].rglob("*") if p.is_file()}
    second = {p.relative_to(raw["root"] / "again"): p.read_bytes() for p in (raw["root"] / "again").rglob("*") if p.is_file()}
    assert first == second and len(first) == 3  # nodules, labelled images, one mask shard


def _nodule(image: str, nodule: str, source: str = "human", annotator: str = "sidecar") -> dict:
    return {"image_id": image, "nodule_id": nodule, "bbox": [0, 0, 2, 2], "pathology": "unknown",
            "label_source": source, "annotator": annotator}


def test_label_studio_human_labels_replace_the_sidecar_image_by_image():
    sidecar = pl.DataFrame([_nodule("img-1", "n1"), _nodule("img-2", "n2"), _nodule("img-2", "n2b"),
                            _nodule("img-4", "n4")])
    studio = pl.DataFrame([_nodule("img-2", "s2", annotator="ann-7"),
                           _nodule("img-4", "p4", source="prediction", annotator="model")])
    merged = merge_labels(sidecar, studio, studio_images=["img-1"])
    # img-1: labelled "no finding" in Label Studio; img-2: re-labelled; img-4: only a prediction there.
    assert merged.select("image_id", "nodule_id").rows() == [("img-2", "s2"), ("img-4", "n4")]


def test_label_studio_export_is_merged_with_its_masks(raw):
    studio_dir = raw["root"] / "annotations"
    image_a, image_b1 = raw["ids"][SCAN_A], raw["ids"]["B1"]
    studio_mask = _mask((25, 30), (1, 1, 4, 3))
    where = write_shards([("nod-studio", encode_png(studio_mask))], studio_dir / "masks", "masks")
    studio = pl.DataFrame([_nodule(image_a, "nod-studio", annotator="ann-1")
                           | {"bbox": [1, 1, 4, 3], "mask_path": f"masks/{where['nod-studio']}"}])
    write_table(studio, studio_dir / "label_studio.parquet", NODULES)
    # The annotator also saw image B frame 1 and the image B frame 0 and found nothing on B0.
    pl.DataFrame({"image_id": [image_a, raw["ids"][SCAN_B]], "label_source": ["human"] * 2,
                  "annotator": ["ann-1"] * 2}).write_parquet(studio_dir / LABELLED_IMAGES)
    report = build_labels(raw["labels"], raw["ingest"], raw["out"], SECRET,
                          studio_export=studio_dir / "label_studio.parquet", workers=1)
    nodules = read_table(raw["out"] / "nodules.parquet", NODULES)
    assert nodules.get_column("nodule_id").to_list() == ["nod-studio"]
    row = nodules.row(0, named=True)
    np.testing.assert_array_equal(read_image(raw["out"] / row["mask_path"], "nod-studio"), studio_mask)
    labelled = read_labelled_images(raw["out"] / LABELLED_IMAGES).sort("image_id")
    assert dict(labelled.select("image_id", "annotator").rows()) == {
        image_a: "ann-1", raw["ids"][SCAN_B]: "ann-1", image_b1: "sidecar"}
    assert report.counts["sidecar_images_replaced_by_label_studio"] == 2


def test_cli_writes_tables_and_metrics(raw, monkeypatch):
    monkeypatch.setenv("THYROKIT_SECRET", SECRET.decode())
    params = raw["root"] / "params.yaml"
    params.write_text("labels:\n  workers: 1\n")
    metrics = raw["root"] / "metrics/labels.json"
    result = CliRunner().invoke(main, [
        "annotate", "labels", str(raw["labels"]), str(raw["ingest"]), str(raw["out"]),
        "--label-studio", str(raw["root"] / "absent.parquet"), "--metrics", str(metrics),
        "--params", str(params)])
    assert result.exit_code == 0, result.output
    counts = json.loads(metrics.read_text())
    assert (counts["nodules"], counts["skipped"], counts["labelled_images"]) == (2, 6, 3)
    assert "labels.csv line 6: image not in the ingest output" in result.output
