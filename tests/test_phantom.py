"""The demo phantom: a realistic, deterministic raw dump with exact ground truth."""

import hashlib
import json
import re
from pathlib import Path

import cv2
import numpy as np
import polars as pl
import pydicom
import pytest
import yaml
from click.testing import CliRunner

from thyrokit.cli import main
from thyrokit.pipelines.phantom import generate_phantom
from thyrokit.pipelines.phantom.anatomy import View, make_textures, nodule_masks, sample_neck
from thyrokit.pipelines.phantom.chrome import text_fields
from thyrokit.pipelines.phantom.frames import render_frame
from thyrokit.pipelines.phantom.generate import sample_nodule
from thyrokit.pipelines.phantom.montage import read_frame
from thyrokit.pipelines.phantom.identities import make_person, make_visits
from thyrokit.pipelines.phantom.scanner import SCANNERS, geometry_of, pixel_coordinates, scan_mask
from thyrokit.pipelines.phantom.speckle import scatterers

PATIENTS, SEED = 6, 11
ROOT = Path(__file__).resolve().parents[1]


def _make(out: Path, seed: int = SEED, workers: int = 1) -> Path:
    generate_phantom(out, PATIENTS, seed, workers=workers)
    return out


@pytest.fixture(scope="module")
def dump(tmp_path_factory) -> Path:
    return _make(tmp_path_factory.mktemp("phantom") / "raw")


def _csv(dump: Path, name: str) -> pl.DataFrame:
    overrides = {"patient_id": pl.String()} if name.endswith("manifest.csv") else {}
    return pl.read_csv(dump / name, infer_schema_length=None, schema_overrides=overrides)


def _digests(folder: Path) -> dict[str, str]:
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def _in_box(box, region) -> bool:
    return box[0] >= region[0] and box[1] >= region[1] and box[2] <= region[2] and box[3] <= region[3]


def _overlaps(box, region) -> bool:
    return box[0] < region[2] and region[0] < box[2] and box[1] < region[3] and region[1] < box[3]


def test_every_dicom_decodes_and_every_encoding_is_used(dump):
    manifest = _csv(dump, "truth/manifest.csv").filter(pl.col("format") == "dicom")
    syntaxes, photometrics = set(), set()
    for row in manifest.iter_rows(named=True):
        ds = pydicom.dcmread(dump / "scans" / row["file"])
        pixels = ds.pixel_array
        expected = (row["height"], row["width"]) + ((3,) if row["channels"] == 3 and
                                                    ds.PhotometricInterpretation != "PALETTE COLOR" else ())
        assert pixels.shape == ((row["frames"],) if row["frames"] > 1 else ()) + expected, row["file"]
        assert ds.SOPClassUID == ("1.2.840.10008.5.1.4.1.1.3.1" if row["cine"] else "1.2.840.10008.5.1.4.1.1.6.1")
        assert pixels.max() > 100  # real content, not an empty frame
        syntaxes.add(ds.file_meta.TransferSyntaxUID.name)
        photometrics.add(ds.PhotometricInterpretation)
    assert {"Explicit VR Little Endian", "RLE Lossless", "JPEG Baseline (Process 1)",
            "JPEG 2000 Image Compression (Lossless Only)"} <= syntaxes
    assert {"MONOCHROME2", "PALETTE COLOR"} <= photometrics
    assert manifest.get_column("cine").any() and manifest.get_column("colour").any()
    assert manifest.get_column("site").n_unique() == 4


def test_cine_clips_move_and_carry_a_mask_per_frame(dump):
    manifest = _csv(dump, "truth/manifest.csv")
    truth = _csv(dump, "truth/nodules.csv")
    cine = manifest.filter(pl.col("cine"))
    assert cine.height
    for row in cine.iter_rows(named=True):
        assert 8 <= row["frames"] <= 16
        rows = truth.filter(pl.col("file") == row["file"])
        assert sorted(rows.get_column("frame").unique().to_list()) == list(range(row["frames"]))
        found = rows.filter(pl.col("nodule") >= 0)
        if found.height:  # the probe sways, so the nodule's box moves between frames
            assert found.group_by("patient_nodule").agg(pl.col("x0").n_unique()).get_column("x0").max() > 1
        clip = dump / "scans" / row["file"]
        first, middle = read_frame(clip, 0), read_frame(clip, row["frames"] // 4)
        assert not np.array_equal(first, middle)


def test_header_holds_the_identifiers_phi_json_lists(dump):
    phi = json.loads((dump / "truth/phi.json").read_text())
    manifest = _csv(dump, "truth/manifest.csv")
    assert set(phi) == set(manifest.get_column("file"))
    for row in manifest.filter(pl.col("format") == "dicom").iter_rows(named=True):
        ds = pydicom.dcmread(dump / "scans" / row["file"], stop_before_pixels=True)
        header = phi[row["file"]]["header"]
        for keyword in ("PatientName", "PatientID", "PatientBirthDate", "InstitutionName",
                        "ReferringPhysicianName", "AccessionNumber", "StudyDate", "StudyInstanceUID"):
            assert str(ds[keyword].value) == header[keyword], (row["file"], keyword)
        creator = next(key.split(":")[0] for key in header if key.endswith(":PatientName"))
        assert ds.private_block(0x0019, creator)[0x10].value == header["PatientName"]
        assert ds.BurnedInAnnotation == "YES"
        region = ds.SequenceOfUltrasoundRegions[0]
        assert (region.RegionLocationMinX0, region.RegionLocationMinY0,
                region.RegionLocationMaxX1 + 1, region.RegionLocationMaxY1 + 1) == (
            row["region_x0"], row["region_y0"], row["region_x1"], row["region_y1"])
        assert region.PhysicalUnitsXDirection == 3
        assert region.PhysicalDeltaX == pytest.approx(row["mm_per_px"] / 10, rel=1e-4)


def test_studies_and_series_share_uids_and_names_follow_the_raw_layout(dump):
    manifest = _csv(dump, "truth/manifest.csv")
    pattern = re.compile(yaml.safe_load((ROOT / "params.yaml").read_text())["ingest"]["path_pattern"])
    phi = json.loads((dump / "truth/phi.json").read_text())
    studies = {}
    for row in manifest.iter_rows(named=True):
        match = pattern.match(row["file"])
        assert match and match["site"] == row["site"] and match["patient"] == row["patient_id"], row["file"]
        for part in phi[row["file"]]["path"]:
            assert part in row["file"]
        if row["format"] != "dicom":
            assert row["patient_id"] in Path(row["file"]).name and "^" in Path(row["file"]).name
            continue
        ds = pydicom.dcmread(dump / "scans" / row["file"], stop_before_pixels=True)
        studies.setdefault(match["study"], set()).add(ds.StudyInstanceUID)
    assert all(len(uids) == 1 for uids in studies.values())


def test_burned_in_text_sits_where_text_boxes_say(dump):
    manifest = _csv(dump, "truth/manifest.csv")
    boxes = _csv(dump, "truth/text_boxes.csv")
    phi = json.loads((dump / "truth/phi.json").read_text())
    regions = {row["file"]: (row["region_x0"], row["region_y0"], row["region_x1"], row["region_y1"])
               for row in manifest.iter_rows(named=True)}
    inside_settings = 0
    for row in boxes.iter_rows(named=True):
        box, region = (row["x0"], row["y0"], row["x1"], row["y1"]), regions[row["file"]]
        if row["kind"] == "phi":
            assert not _overlaps(box, region), row
            assert row["text"] in phi[row["file"]]["burned_in"]
        elif row["kind"] == "caliper":
            assert _in_box(box, region), row
        else:
            inside_settings += _in_box(box, region)
    assert inside_settings and (boxes.get_column("kind") == "caliper").any()
    first = manifest.filter(pl.col("format") == "dicom").row(0, named=True)
    image = read_frame(dump / "scans" / first["file"])
    grey = image if image.ndim == 2 else image.max(axis=2)
    for row in boxes.filter((pl.col("file") == first["file"]) & (pl.col("frame") == 0)).iter_rows(named=True):
        assert grey[row["y0"]:row["y1"], row["x0"]:row["x1"]].max() > 150, row  # the text is really drawn
    names = {value for entry in phi.values() for value in entry["values"]}
    assert {row["patient_id"] for row in manifest.iter_rows(named=True)} <= names


def test_label_masks_match_their_rows(dump):
    labels = _csv(dump, "labels/labels.csv")
    manifest = _csv(dump, "truth/manifest.csv")
    truth = _csv(dump, "truth/nodules.csv")
    files = {row["file"]: row for row in manifest.iter_rows(named=True)}
    labelled = set(manifest.filter(pl.col("labelled")).get_column("file"))
    assert labels.height and set(labels.get_column("file")) == labelled
    for row in labels.iter_rows(named=True):
        info = files[row["file"]]
        if row["nodule"] == -1:
            assert row["mask"] is None and row["pathology"] is None
            continue
        mask = cv2.imread(str(dump / "labels" / row["mask"]), cv2.IMREAD_UNCHANGED)
        assert mask.shape == (info["height"], info["width"])
        assert set(np.unique(mask)) == {0, 255}
        ys, xs = np.nonzero(mask)
        region = (info["region_x0"], info["region_y0"], info["region_x1"], info["region_y1"])
        assert _in_box((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1), region)
        match = truth.filter((pl.col("file") == row["file"]) & (pl.col("frame") == row["frame"]) &
                             (pl.col("nodule") == row["nodule"])).row(0, named=True)
        assert (match["x0"], match["y0"], match["x1"], match["y1"]) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        assert row["pathology"] in ("benign", "malignant") and row["tirads"].startswith("TR")
    assert all(re.fullmatch(r"masks/\d{6}\.png", name) for name in labels.get_column("mask").drop_nulls())


def test_about_30_percent_of_files_are_labelled_and_truth_covers_every_frame(dump):
    manifest = _csv(dump, "truth/manifest.csv")
    truth = _csv(dump, "truth/nodules.csv")
    assert 0.15 <= manifest.get_column("labelled").mean() <= 0.45
    frames = truth.select("file", "frame").unique().height
    assert frames == manifest.get_column("frames").sum()


def test_malignant_nodules_look_malignant():
    """Solid malignant nodules are darker than the parenchyma they replace, and darker than solid
    benign ones (cysts are anechoic whatever their pathology); they are more often taller than wide."""
    rng = np.random.default_rng(5)
    scanner = SCANNERS[0]
    geometry = geometry_of(scanner)
    x, y, _ = pixel_coordinates(geometry)
    x0, y0, x1, y1 = scanner.region
    person, visit = make_person(rng, 0, 1), make_visits(rng, 1)[0]
    view = View("right", "transverse", (0.0, 0.0))
    fields = text_fields(person, visit, scanner, view.plane, view.side, 30)
    contrast = {"benign": [], "malignant": []}
    for pathology, values in contrast.items():
        while len(values) < 24:
            nodule = sample_nodule(rng, pathology, "right")
            if nodule.features.composition != "solid":
                continue
            neck, textures = sample_neck(rng, [nodule]), make_textures(rng)
            speckle = scatterers(rng, (geometry.height, geometry.lines))
            mask = nodule_masks(neck, view, [nodule], x, y, scan_mask(geometry))[0]
            # The same neck and speckle without the nodule: the lobe the nodule replaces.
            with_nodule, without = (render_frame(scanner, neck, view, shown, textures, speckle, fields)
                                    .image[y0:y1, x0:x1][mask].astype(float).mean() for shown in ([nodule], []))
            values.append(with_nodule - without)
    assert np.mean(contrast["malignant"]) < np.mean(contrast["benign"]) - 5
    assert np.mean(contrast["malignant"]) < -15
    draws = [sample_nodule(rng, pathology, "left") for pathology in ("benign", "malignant") for _ in range(200)]
    tall = {p: np.mean([n.features.shape == "taller_than_wide" for n in draws if n.pathology == p])
            for p in ("benign", "malignant")}
    points = {p: np.mean([n.features.points for n in draws if n.pathology == p]) for p in ("benign", "malignant")}
    assert tall["malignant"] > tall["benign"] + 0.2 and points["malignant"] > points["benign"] + 3


def test_same_seed_same_bytes_other_seed_other_bytes(dump, tmp_path):
    again = _digests(_make(tmp_path / "again", workers=2))  # however many processes made it
    assert again == _digests(dump)
    other = _digests(_make(tmp_path / "other", seed=SEED + 1))
    assert not set(other.items()) & {item for item in again.items() if item[0].startswith("scans/")}


def test_cli_writes_a_dump_and_refuses_zero_patients_or_a_used_folder(tmp_path):
    runner = CliRunner()
    command = ["demo-data", str(tmp_path / "raw"), "--patients", "1", "--seed", "3", "--workers", "1"]
    result = runner.invoke(main, command)
    assert result.exit_code == 0, result.output
    assert "1 patients" in result.output and (tmp_path / "raw/truth/montage.png").is_file()
    refused = runner.invoke(main, ["demo-data", str(tmp_path / "none"), "--patients", "0"])
    assert refused.exit_code != 0 and "--patients" in refused.output
    again = runner.invoke(main, ["demo-data", str(tmp_path / "raw"), "--patients", "1", "--workers", "1"])
    assert again.exit_code != 0 and "not empty" in again.output
