"""`thyrokit curate ingest` over a raw tree of real DICOM, PNG and JPEG files, good and bad."""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from pathlib import Path

import cv2
import numpy as np
import polars as pl
import pydicom
import pytest
import yaml
from click.testing import CliRunner
from pydicom.data import get_testdata_files

import dicom_factory as factory
from thyrokit.cli import main
from thyrokit.contract import IMAGES, QUARANTINE, read_table
from thyrokit.pixels import read_image

SECRET = "test-secret-0123456789abcdef"
REPO_PARAMS = Path(__file__).parents[1] / "params.yaml"

GOOD = {
    "st_olaf_general/PAT-0001_Doe/study1/us.dcm":
        factory.us_dataset(factory.fan_image(), regions=[(10, 5, 99, 80)]),
    "st_olaf_general/PAT-0001_Doe/study1/cine.dcm":
        factory.rle(factory.us_dataset(np.stack([factory.fan_image(seed=i, rgb=True) for i in range(3)]))),
    "riverside_clinic/PAT-0002_Roe/s1/ct.dcm": factory.ct_dataset(np.arange(-600, 600).reshape(30, 40)),
}
BAD = {
    "st_olaf_general/PAT-0001_Doe/study1/pdf.dcm": "unsupported_sop_class",
    "st_olaf_general/PAT-0001_Doe/study1/screenshot.dcm": "unsupported_sop_class",
    "st_olaf_general/PAT-0001_Doe/study1/truncated.dcm": "undecodable_pixels",
    "st_olaf_general/PAT-0001_Doe/study1/no_pixels.dcm": "no_pixel_data",
    "st_olaf_general/PAT-0001_Doe/study1/no_patient.dcm": "no_patient",
    "st_olaf_general/PAT-0001_Doe/study1/notes.txt": "not_an_image",
    "st_olaf_general/PAT-0001_Doe/study1/empty.dcm": "empty_file",
    "st_olaf_general/PAT-0001_Doe/study1/broken.jpg": "undecodable_image",
    "Jane_Doe_export.png": "no_patient",  # outside the site/patient/study layout
}
RAW_NAMES = ("st_olaf", "riverside", "unmapped_hospital", "PAT-0001", "PAT-0002", "PAT-0009", "Jane_Doe",
             "Doe/", "study1", ".dcm", ".png", ".jpg")


def write_raw_tree(root: Path) -> Path:
    """Write the good and bad files of this module under `root`/scans; return that folder."""
    scans = root / "scans"
    files = {path: factory.to_bytes(ds) for path, ds in GOOD.items()}
    files["st_olaf_general/PAT-0001_Doe/study1/us_copy.dcm"] = files["st_olaf_general/PAT-0001_Doe/study1/us.dcm"]
    files["unmapped_hospital/PAT-0009_Jane_Doe/visit2/Jane_Doe_frame.png"] = cv2.imencode(
        ".png", factory.fan_image(seed=9))[1].tobytes()
    no_pixels = factory.us_dataset(factory.fan_image(seed=3))
    del no_pixels.PixelData
    no_patient = factory.us_dataset(factory.fan_image(seed=4), patient_id=None)
    truncated = factory.to_bytes(factory.us_dataset(factory.fan_image(seed=5)))
    bad = [
        factory.to_bytes(factory.pdf_dataset()),
        factory.to_bytes(factory.us_dataset(factory.fan_image(seed=6), sop_class=factory.SECONDARY_CAPTURE)),
        truncated[: len(truncated) - 4000],
        factory.to_bytes(no_pixels),
        factory.to_bytes(no_patient),
        b"Doe^Jane 19610203 thyroid follow-up\n",
        b"",
        b"\xff\xd8\xff\xe0" + bytes(100),
        cv2.imencode(".png", factory.fan_image(seed=7))[1].tobytes(),
    ]
    files.update(zip(BAD, bad))
    for path, data in files.items():
        (scans / path).parent.mkdir(parents=True, exist_ok=True)
        (scans / path).write_bytes(data)
    return scans


def write_params(folder: Path, workers: int) -> Path:
    """Write a params file: the repository's ingest section with `workers` and small shards."""
    params = yaml.safe_load(REPO_PARAMS.read_text())
    params["ingest"].update(workers=workers, batch_size=2, shard_mb=1)
    path = folder / f"params-{workers}.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def run(raw: Path, out: Path, params: Path, keys: Path, metrics: Path | None = None):
    args = ["curate", "ingest", str(raw), str(out), "--keys", str(keys), "--params", str(params)]
    if metrics:
        args += ["--metrics", str(metrics)]
    return CliRunner().invoke(main, args, catch_exceptions=False)


@pytest.fixture
def ingested(tmp_path, monkeypatch, caplog):
    """One ingest run over the module's raw tree, on one worker."""
    monkeypatch.setenv("THYROKIT_SECRET", SECRET)
    raw = write_raw_tree(tmp_path / "raw")
    out, keys, metrics = tmp_path / "out", tmp_path / "raw" / "private" / "keys.parquet", tmp_path / "ingest.json"
    with caplog.at_level(logging.INFO):
        result = run(raw, out, write_params(tmp_path, workers=1), keys, metrics)
    assert result.exit_code == 0, result.output
    return {"raw": raw, "out": out, "keys": keys, "metrics": metrics, "result": result, "log": caplog.text,
            "tmp": tmp_path}


def test_good_files_become_images_with_pixels_and_pseudonyms(ingested):
    images = read_table(ingested["out"] / "images.parquet", IMAGES)
    assert images.height == 1 + 3 + 1 + 1  # us, 3-frame cine, ct, png export
    by_format = images.group_by("modality", "source_format").len().sort("modality", "source_format").rows()
    assert by_format == [("CT", "dicom", 1), ("US", "dicom", 4), ("US", "png", 1)]
    assert sorted(images.get_column("site").unique())[:2] == ["site-A", "site-B"]
    unmapped = images.filter(pl.col("source_format") == "png").row(0, named=True)
    assert unmapped["site"].startswith("site-") and len(unmapped["site"]) == 13
    assert images.filter(pl.col("modality") == "US").get_column("patient_id").n_unique() == 2
    for row in images.iter_rows(named=True):
        pixels = read_image(ingested["out"] / row["path"], row["image_id"])
        assert pixels.shape[:2] == (row["height"], row["width"])
    us = images.filter(pl.col("n_frames") == 1, pl.col("modality") == "US", pl.col("source_format") == "dicom")
    assert us.get_column("crop").to_list() == [[10, 5, 100, 81]]  # from the header's tissue region
    assert us.get_column("spacing_mm").to_list() == [pytest.approx([0.15, 0.1])]
    ct = images.filter(pl.col("modality") == "CT").row(0, named=True)
    slope, intercept = ct["rescale"]
    pixels = read_image(ingested["out"] / ct["path"], ct["image_id"])
    assert pixels[0, 0] * slope + intercept == -600 - 1024  # Hounsfield survives the round trip
    assert ct["crop"] == [0, 0, 40, 30]  # CT keeps its whole frame


def test_bad_files_are_quarantined_with_a_reason_and_logged_by_hmac(ingested):
    quarantine = read_table(ingested["out"] / "quarantine.parquet", QUARANTINE)
    keys = pl.read_parquet(ingested["keys"])
    reasons = dict(zip(quarantine.get_column("source_hmac"), quarantine.get_column("reason")))
    for path, kind in BAD.items():
        source = keys.filter(pl.col("path") == path).row(0, named=True)["source_hmac"]
        assert reasons[source].startswith(kind + ":"), path
        assert f"quarantined {source}: {kind}" in ingested["log"]
    assert quarantine.height == len(BAD)
    assert "key table" in ingested["result"].output
    metrics = json.loads(ingested["metrics"].read_text())
    assert metrics["files"] == len(GOOD) + len(BAD) + 2 and metrics["duplicates"] == 1
    assert metrics["quarantined_by_reason"]["unsupported_sop_class"] == 2
    assert metrics["frames"] == 6 and metrics["frames_per_s"] > 0


def test_key_table_maps_every_raw_path_and_the_duplicate_is_ingested_once(ingested):
    keys = pl.read_parquet(ingested["keys"])
    on_disk = sorted(p.relative_to(ingested["raw"]).as_posix() for p in ingested["raw"].rglob("*") if p.is_file())
    assert keys.get_column("path").to_list() == on_disk
    original, copy = (keys.filter(pl.col("path").str.ends_with(name)).row(0, named=True)
                      for name in ("study1/us.dcm", "us_copy.dcm"))
    assert original["source_hmac"] == copy["source_hmac"]
    assert (original["outcome"], copy["outcome"]) == ("ingested", "duplicate")
    images = read_table(ingested["out"] / "images.parquet", IMAGES)
    assert sorted(images.get_column("image_id")) == sorted(keys.get_column("image_ids").explode().drop_nulls())


def test_no_phi_raw_names_or_paths_in_any_output_or_log(ingested):
    out = ingested["out"]
    names = [p.relative_to(out).as_posix() for p in out.rglob("*")]
    assert sorted(names) == ["audit.jsonl", "images.parquet", "pixels", "pixels/images-00000.parquet",
                             "quarantine.parquet"]
    forbidden = [*factory.PHI.values(), *RAW_NAMES, str(ingested["raw"])]
    for path in [*out.rglob("*.parquet"), out / "audit.jsonl", ingested["metrics"]]:
        data = path.read_bytes()
        leaked = [value for value in forbidden if value.encode() in data]
        assert not leaked, f"{path.name} holds {leaked}"
    shown = ingested["log"] + ingested["result"].output.replace(str(ingested["keys"]), "KEYS")
    assert not [value for value in forbidden if value in shown]
    audit = [json.loads(line) for line in (out / "audit.jsonl").read_text().splitlines()]
    assert len(audit) == len(GOOD) + len(BAD) + 2
    assert {line["outcome"] for line in audit} == {"ingested", "quarantined", "duplicate"}


def test_same_input_and_secret_give_byte_identical_outputs_whatever_the_workers(ingested, monkeypatch):
    tmp = ingested["tmp"]
    again_out, again_keys = tmp / "again", tmp / "again-keys.parquet"
    assert run(ingested["raw"], again_out, write_params(tmp, workers=2), again_keys).exit_code == 0
    first = {p.relative_to(ingested["out"]): p.read_bytes() for p in ingested["out"].rglob("*") if p.is_file()}
    second = {p.relative_to(again_out): p.read_bytes() for p in again_out.rglob("*") if p.is_file()}
    assert first == second
    assert ingested["keys"].read_bytes() == again_keys.read_bytes()

    monkeypatch.setenv("THYROKIT_SECRET", "another-secret-fedcba9876543210")
    other_out = tmp / "other"
    assert run(ingested["raw"], other_out, write_params(tmp, workers=1), tmp / "other-keys.parquet").exit_code == 0
    for column in ("image_id", "patient_id"):
        mine = set(read_table(ingested["out"] / "images.parquet", IMAGES).get_column(column))
        theirs = set(read_table(other_out / "images.parquet", IMAGES).get_column(column))
        assert mine and not mine & theirs


def test_missing_secret_stops_before_anything_is_written(tmp_path, monkeypatch):
    monkeypatch.delenv("THYROKIT_SECRET", raising=False)
    monkeypatch.delenv("THYROKIT_SECRET_FILE", raising=False)
    raw = write_raw_tree(tmp_path / "raw")
    result = CliRunner().invoke(main, ["curate", "ingest", str(raw), str(tmp_path / "out"),
                                       "--keys", str(tmp_path / "keys.parquet"),
                                       "--params", str(write_params(tmp_path, workers=1))])
    assert result.exit_code != 0
    assert "THYROKIT_SECRET" in result.output
    assert not (tmp_path / "out").exists() and not (tmp_path / "keys.parquet").exists()


def test_every_pydicom_test_file_is_ingested_or_quarantined(tmp_path, monkeypatch):
    monkeypatch.setenv("THYROKIT_SECRET", SECRET)
    raw = tmp_path / "scans"
    sources = [Path(name) for name in get_testdata_files() if Path(name).is_file()]
    for index, source in enumerate(sources):
        target = raw / f"{index:03d}" / source.name
        target.parent.mkdir(parents=True)
        shutil.copyfile(source, target)
    metrics = tmp_path / "metrics.json"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = run(raw, tmp_path / "out", write_params(tmp_path, workers=2), tmp_path / "keys.parquet", metrics)
    assert result.exit_code == 0, result.output
    counts = json.loads(metrics.read_text())
    assert counts["files"] == len(sources)
    assert counts["ingested"] + counts["quarantined"] + counts["duplicates"] == len(sources)
    assert counts["ingested"] >= 10 and "internal_error" not in counts["quarantined_by_reason"]
    images = read_table(tmp_path / "out" / "images.parquet", IMAGES)
    assert images.height == counts["frames"]
    assert set(images.get_column("site")) == {"unknown"}  # no file sits in a site/patient/study layout


def text_scan(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Return a 240x320 speckle scan with a name and a date burned inside it, and the ink mask."""
    rng = np.random.default_rng(seed)
    image = np.zeros((240, 320), np.uint8)
    image[20:230, 30:300] = cv2.GaussianBlur(rng.rayleigh(40.0, (210, 270)).astype(np.float32), (3, 3), 0.8).clip(
        0, 200).astype(np.uint8) + 20
    ink = np.zeros_like(image)
    for text, y in (("DOE JANE", 60), ("03/02/1961", 200)):
        cv2.putText(ink, text, (50, y), cv2.FONT_HERSHEY_SIMPLEX, 0.5, 255, 1, cv2.LINE_AA)
    image[ink > 0] = np.maximum(image[ink > 0], ink[ink > 0])
    return image, ink > 128


@pytest.fixture
def text_ingest(tmp_path, monkeypatch):
    """Ingest one ultrasound DICOM (text burned inside its tissue region) and its PNG export, DICOM output on."""
    monkeypatch.setenv("THYROKIT_SECRET", SECRET)
    image, ink = text_scan()
    ds = factory.us_dataset(image, regions=[(30, 20, 299, 229)])
    ds.BurnedInAnnotation = "YES"
    scans = tmp_path / "raw" / "scans" / "st_olaf_general" / "PAT-0001_Doe" / "study1"
    scans.mkdir(parents=True)
    (scans / "us.dcm").write_bytes(factory.to_bytes(ds))
    (scans / "Doe_Jane.png").write_bytes(cv2.imencode(".png", image)[1].tobytes())
    params = yaml.safe_load(REPO_PARAMS.read_text())
    params["ingest"].update(workers=1, write_dicom=True)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    out = tmp_path / "out"
    result = run(tmp_path / "raw" / "scans", out, tmp_path / "params.yaml", tmp_path / "raw" / "keys.parquet")
    assert result.exit_code == 0, result.output
    return {"out": out, "image": image, "ink": ink}


def test_text_burned_inside_the_scan_area_is_gone_from_the_stored_pngs(text_ingest):
    images = read_table(text_ingest["out"] / "images.parquet", IMAGES)
    assert sorted(images.get_column("source_format")) == ["dicom", "png"]
    for row in images.iter_rows(named=True):
        x0, y0, x1, y1 = row["crop"]
        ink = text_ingest["ink"][y0:y1, x0:x1]
        assert ink.sum() > 100  # the text lies inside the kept area, so the crop alone cannot remove it
        stored = read_image(text_ingest["out"] / row["path"], row["image_id"])
        assert not stored[ink].any(), row["source_format"]
        # A text line's box spans its full height (descender space below the baseline): 7 rows either side.
        tissue = ~cv2.dilate(text_ingest["ink"].astype(np.uint8), np.ones((15, 9), np.uint8)).astype(bool)[y0:y1, x0:x1]
        raw = text_ingest["image"][y0:y1, x0:x1]
        assert (stored[tissue] == raw[tissue]).mean() >= 0.99
    audit = [json.loads(line) for line in (text_ingest["out"] / "audit.jsonl").read_text().splitlines()]
    assert all(line["deid"]["redacted"]["0"] for line in audit)
    dicom_audit = next(line for line in audit if line["format"] == "dicom")
    assert dicom_audit["deid"]["actions"]["PatientName"] in ("Z", "D")


def test_dicom_output_reads_back_with_the_profile_applied_and_no_planted_phi(text_ingest):
    written = sorted((text_ingest["out"] / "dicom").glob("*.dcm"))
    assert len(written) == 1  # the PNG export has no header to write back
    data = written[0].read_bytes()
    assert not [value for value in [*factory.PHI.values(), "PAT-0001"] if value.encode() in data]
    ds = pydicom.dcmread(written[0])
    assert ds.PatientIdentityRemoved == "YES" and ds.BurnedInAnnotation == "NO"
    codes = [item.CodeValue for item in ds.DeidentificationMethodCodeSequence]
    assert codes[:2] == ["113100", "113101"]
    images = read_table(text_ingest["out"] / "images.parquet", IMAGES).filter(pl.col("source_format") == "dicom")
    row = images.row(0, named=True)
    assert ds.PatientID == row["patient_id"]
    stored = read_image(text_ingest["out"] / row["path"], row["image_id"])
    assert np.array_equal(ds.pixel_array, stored)
    region = ds.SequenceOfUltrasoundRegions[0]
    assert (region.RegionLocationMinX0, region.RegionLocationMinY0) == (0, 0)
    assert (region.RegionLocationMaxX1 + 1, region.RegionLocationMaxY1 + 1) == (row["width"], row["height"])
