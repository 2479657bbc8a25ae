"""PHI value collection from the raw zone and the audit of outputs, through the real CLI."""

from __future__ import annotations

import hashlib
import json
import shutil

import cv2
import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner
from deid_fixtures import SECRET, adversarial_dataset

from thyrokit.cli import main
from thyrokit.curate.deid import DeidOptions, deidentify_dataset
from thyrokit.curate.deid.audit import is_chosen
from thyrokit.curate.deid.dicom_output import encode_dicom
from thyrokit.curate.deid.phi_values import collect_phi_values
from thyrokit.pixels import encode_png

needs_tesseract = pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract-ocr is not installed")


def make_raw(tmp_path):
    study = tmp_path / "raw" / "scans" / "st_olaf_general" / "MRN7734521_doe" / "study1"
    study.mkdir(parents=True)
    ds = adversarial_dataset()
    ds.PatientName = "Li^Jane"
    (study / "a.dcm").write_bytes(encode_dicom(ds))
    return tmp_path / "raw" / "scans", ds


def make_clean_outputs(tmp_path, ds):
    out = tmp_path / "out"
    out.mkdir()
    deid, audit = deidentify_dataset(ds, SECRET, DeidOptions())
    (out / "img-0001.dcm").write_bytes(encode_dicom(deid))
    # A real PNG with the name in bytes after its end: image bytes are no text.
    pl.DataFrame({"patient_id": [deid.PatientID], "sex": ["F"], "note": ["blacksmith janet"],
                  "png": [encode_png(np.zeros((8, 8), np.uint8)) + b" Jane"]}).write_parquet(out / "images.parquet")
    (out / "audit.jsonl").write_text(json.dumps(audit.to_dict()) + "\n")
    return out


def clean_project(tmp_path):
    """Raw scans with their PHI value set collected, and clean outputs: (outputs folder, PHI file)."""
    raw, ds = make_raw(tmp_path)
    phi = tmp_path / "private" / "phi_values.json"
    assert CliRunner().invoke(main, ["curate", "phi-values", str(raw), str(phi)]).exit_code == 0
    return make_clean_outputs(tmp_path, ds), phi


def run_audit(out, phi):
    return CliRunner().invoke(main, ["curate", "audit", str(out), "--phi", str(phi)])


def test_collected_values_hold_names_ids_uids_but_not_short_values(tmp_path):
    raw, _ = make_raw(tmp_path)
    values = collect_phi_values(raw)
    for value in ("jane", "mrn7734521", "st olaf general", "19640229", "1964-02-29", "acc99887766",
                  "st_olaf_general", "1.2.826.0.1.3680043.2.1125.7734521.1", "sn-44-xk-21"):
        assert value in values, value
    assert "li" not in values and "f" not in values
    assert "1.2.840.10008.5.1.4.1.1.6.1" not in values  # a SOP class is no identifier


def test_clean_outputs_pass_and_planted_values_fail_without_being_printed(tmp_path):
    out, phi = clean_project(tmp_path)
    result = run_audit(out, phi)
    assert result.exit_code == 0, result.output

    pl.DataFrame({"caption": ["seen by Jane in ST OLAF  General"], "Jane": [1]}).write_parquet(out / "labels.parquet")
    (out / "MRN7734521_export.json").write_text("{}")
    leaked = adversarial_dataset()
    (out / "leak.dcm").write_bytes(encode_dicom(leaked))
    result = run_audit(out, phi)
    assert result.exit_code == 1
    assert "labels.parquet: column caption holds a" in result.output
    assert "labels.parquet: a column name holds a PatientName value" in result.output
    assert "<name withheld>: file name holds a PatientID value" in result.output
    assert "leak.dcm: PatientName holds a PatientName value" in result.output
    for value in ("Jane", "MRN7734521", "Olaf", "7734521"):
        assert value.lower() not in result.output.lower(), value


def test_an_id_inside_a_decimal_number_is_not_a_finding_but_a_standalone_one_is():
    from thyrokit.curate.deid.audit import PhiMatcher

    matcher = PhiMatcher({"445833": "StudyID"})
    assert matcher.kinds("0 0.437500 0.410227 0.445833 0.425000") == []
    assert matcher.kinds("study 445833.") == ["StudyID"]
    assert matcher.kinds("id=445833,x") == ["StudyID"]


def scan_frame(seed: int, banner: str = "") -> np.ndarray:
    """Return a cropped ultrasound frame (speckle on black), `banner` burned in at a scanner's banner size."""
    rng = np.random.default_rng(seed)
    image = np.zeros((300, 400), np.uint8)
    image[60:280, 40:360] = np.clip(rng.rayleigh(40.0, (220, 320)) + 20, 0, 255).astype(np.uint8)
    # GE's banner scale (thyrokit.pipelines.phantom.chrome.SCALES): capitals about 10 pixels high.
    cv2.putText(image, banner, (8, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.5, 255, 1, cv2.LINE_AA)
    return image


@needs_tesseract
def test_a_name_burned_into_output_pixels_fails_the_audit_naming_file_and_field_not_the_name(tmp_path):
    out, phi = clean_project(tmp_path)
    (out / "frames").mkdir()
    for seed in range(3):
        (out / "frames" / f"frame-{seed}.png").write_bytes(encode_png(scan_frame(seed, "THYROID RT TRANS")))
    leaked = scan_frame(1, "DOE, JANE   MRN7734521")
    (out / "frames" / "frame-1.png").write_bytes(encode_png(leaked))
    pl.DataFrame({"key": ["a", "b"], "png": [encode_png(scan_frame(0)), encode_png(leaked)]}).write_parquet(
        out / "images-00000.parquet")
    report = tmp_path / "phi_audit.json"

    result = CliRunner().invoke(main, ["curate", "audit", str(out), "--phi", str(phi), "--report", str(report)])
    assert result.exit_code == 1, result.output
    assert "frame-1.png: pixels (OCR) holds a PatientName value" in result.output
    assert "frame-1.png: pixels (OCR) holds a PatientID value" in result.output
    assert "images-00000.parquet: column png pixels (OCR) holds a PatientName value" in result.output
    assert "frame-0.png" not in result.output and "frame-2.png" not in result.output
    for value in ("jane", "doe", "7734521"):
        assert value not in result.output.lower(), value
    counts = json.loads(report.read_text())
    # The leaked frame is in the shard too: read once.
    assert (counts["png_images"], counts["distinct_png_images"], counts["distinct_png_images_read"]) == (6, 5, 5)

    redacted = leaked.copy()
    redacted[:45] = 0  # the banner, blanked as the ingest crop does
    (out / "frames" / "frame-1.png").write_bytes(encode_png(redacted))
    (out / "images-00000.parquet").unlink()
    result = run_audit(out, phi)
    assert result.exit_code == 0, result.output
    assert "OCR read 4 of 4 distinct PNG images" in result.output

    # A share of the images: the same ones on every run, chosen by content hash.
    (out / "frames" / "frame-1.png").write_bytes(encode_png(leaked))
    runs = [CliRunner().invoke(main, ["curate", "audit", str(out), "--phi", str(phi), "--ocr-fraction", "0.5",
                                      "--report", str(report)]) for _ in range(2)]
    assert runs[0].output == runs[1].output
    pngs = [path.read_bytes() for path in out.rglob("*.png")] + [
        cell for path in out.rglob("*.parquet") for column in pl.read_parquet(path).select(pl.col(pl.Binary))
        for cell in column if cell.startswith(b"\x89PNG")]
    digests = {hashlib.sha256(png).digest() for png in pngs}
    assert len(digests) == 4
    assert json.loads(report.read_text())["distinct_png_images_read"] == sum(is_chosen(d, 0.5) for d in digests)
    leaked_is_read = is_chosen(hashlib.sha256(encode_png(leaked)).digest(), 0.5)
    assert runs[0].exit_code == (1 if leaked_is_read else 0), runs[0].output


def test_the_ocr_share_is_about_the_fraction_asked_for():
    digests = [hashlib.sha256(str(i).encode()).digest() for i in range(4000)]
    assert sum(is_chosen(d, 0.25) for d in digests) == pytest.approx(1000, abs=90)
    assert all(is_chosen(d, 1.0) for d in digests) and not any(is_chosen(d, 0.0) for d in digests)


@needs_tesseract
def test_an_output_png_that_cannot_be_decoded_is_reported_as_unchecked(tmp_path):
    out, phi = clean_project(tmp_path)
    (out / "frame.png").write_bytes(encode_png(scan_frame(0, "DOE, JANE"))[:60])  # truncated
    result = run_audit(out, phi)
    assert result.exit_code == 1
    assert "frame.png: pixels (OCR): an unreadable image (cannot be checked)" in result.output
