"""The export stage end to end: which images and labels a release carries, determinism, the command."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from click.testing import CliRunner

from export_fixtures import FINDINGS, HEIGHT, PSEUDO, WIDTH, disc, make_inputs, scan
from thyrokit.cli import main
from thyrokit.contract import IMAGES, NODULES, PATCHES, read_table, write_table
from thyrokit.pipelines.export import ExportInputs, ExportParams, export_release
from thyrokit.pipelines.formats.manifest import MANIFEST
from thyrokit.pixels import read_image, rebase_paths


def inputs_of(paths: dict[str, Path], params_file: Path | None = None) -> ExportInputs:
    return ExportInputs(paths["images"], paths["nodules"], paths["patches"], paths["synthetic"],
                        paths["pseudo"], paths["splits-final"], paths["leakage"], paths["metrics-dir"],
                        params_file, labelled_images=paths["labelled-images"])


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[dict[str, Path], Path, dict]:
    root = tmp_path_factory.mktemp("export")
    paths = make_inputs(root / "interim")
    summary = export_release(inputs_of(paths), root / "release", ExportParams())
    return paths, root / "release", summary


def files_of(folder: Path) -> dict[str, bytes]:
    return {path.relative_to(folder).as_posix(): path.read_bytes()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def test_manifest_has_image_level_labels(exported):
    _, release, _ = exported
    manifest = read_table(release / "manifest.parquet", MANIFEST).filter(pl.col("label_source").is_not_null())
    labels = {row["image_id"]: (row["pathology"], row["n_nodules"], row["label_source"])
              for row in manifest.iter_rows(named=True)}
    assert labels["img-p00"] == ("malignant", 2, "human")  # one benign and one malignant nodule
    assert labels["img-p20"] == ("unknown", 1, "human")
    assert labels["img-p11"] == ("benign", 1, "pseudo")  # unlabelled train image, pseudolabelled
    assert labels["img-p01"] == ("none", 0, "human")  # labelled, no finding
    assert labels["img-p51"] == ("none", 0, "human")
    assert "img-p21" not in labels  # nobody looked at it: still unlabelled


def test_no_finding_blocks_a_pseudolabel_and_counts_in_the_summary(exported, tmp_path):
    paths, _, summary = exported
    assert summary["images_by_class"]["train"]["none"] == 1
    assert summary["images_by_class"]["external"]["none"] == 1
    listing = pl.read_parquet(paths["labelled-images"])
    listing = pl.concat([listing, listing.head(1).with_columns(image_id=pl.lit("img-p11"))])
    listing.write_parquet(tmp_path / "labelled_images.parquet")
    inputs = inputs_of(paths)
    inputs = ExportInputs(**{**inputs.__dict__, "labelled_images": tmp_path / "labelled_images.parquet"})
    export_release(inputs, tmp_path / "release", ExportParams(formats=()))
    manifest = read_table(tmp_path / "release" / "manifest.parquet", MANIFEST)
    row = manifest.filter(pl.col("image_id") == "img-p11").row(0, named=True)
    assert (row["pathology"], row["label_source"], row["n_nodules"]) == ("none", "human", 0)
    nodules = read_table(tmp_path / "release" / "nodules.parquet", NODULES)
    assert "nod-p1" not in nodules.get_column("nodule_id").to_list()  # a human said: no nodule here


def test_only_train_carries_model_labels(exported):
    _, release, _ = exported
    manifest = read_table(release / "manifest.parquet", MANIFEST)
    nodules = read_table(release / "nodules.parquet", NODULES)
    patches = read_table(release / "patches.parquet", PATCHES)
    machine = ~pl.col("label_source").is_in(["human"])
    assert set(manifest.filter(machine).get_column("split")) == {"train"}
    assert set(patches.filter(machine).get_column("split")) == {"train"}
    released = set(nodules.get_column("nodule_id"))
    assert "nod-p2" not in released  # pseudolabel on a test image
    assert "nod-i" not in released  # a pre-label prediction, not reviewed
    assert manifest.filter(pl.col("image_id") == "img-p41").get_column("label_source").to_list() == [None]


def test_release_pixels_are_the_input_pixels_and_union_masks(exported):
    _, release, _ = exported
    manifest = read_table(release / "manifest.parquet", MANIFEST)
    row = manifest.filter(pl.col("image_id") == "img-p00").row(0, named=True)
    assert not Path(row["path"]).is_absolute() and row["path"].startswith("pixels/")
    image = read_image(release / row["path"], "img-p00")
    assert np.array_equal(image, scan("img-p00", FINDINGS + PSEUDO))
    mask = read_image(release / row["mask_path"], "img-p00")
    expected = np.maximum(disc((12, 12), 5), disc((34, 26), 6))
    assert mask.shape == (HEIGHT, WIDTH) and np.array_equal(mask, expected)


def test_summary_counts_are_flat_numbers(exported):
    _, release, summary = exported
    assert json.loads((release / "summary.json").read_text()) == summary
    assert summary["images"] == {"total": 15, "train": 9, "validation": 2, "test": 2, "external": 2}
    assert summary["patches_by_class"]["train"]["malignant"] == 1
    assert summary["synthetic_patches_by_class"] == {"benign": 2, "malignant": 2, "unknown": 0}

    def leaves(value):
        return [leaf for child in value.values() for leaf in leaves(child)] if isinstance(value, dict) else [value]
    assert all(isinstance(leaf, int) for leaf in leaves(summary))


def test_re_export_is_byte_identical_and_replaces_the_old_release(exported, tmp_path):
    paths, release, _ = exported
    again = tmp_path / "release"
    export_release(inputs_of(paths), again, ExportParams())
    assert files_of(again) == files_of(release)
    (again / "stale.txt").write_text("from an earlier run")
    export_release(inputs_of(paths), again, ExportParams(formats=("segmentation",)))
    assert not (again / "stale.txt").exists() and not (again / "coco").exists()


def test_refuses_to_overwrite_a_folder_that_is_not_a_release(exported, tmp_path):
    paths, _, _ = exported
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not empty"):
        export_release(inputs_of(paths), tmp_path, ExportParams())
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_image_without_pixels_is_left_out_not_fatal(exported, tmp_path, caplog):
    paths, _, _ = exported
    images = read_table(paths["images"], IMAGES)
    ghost = images.filter(pl.col("image_id") == "img-p50").with_columns(image_id=pl.lit("img-ghost"))
    broken = dict(paths, images=tmp_path / "split" / "images.parquet")
    both = rebase_paths(pl.concat([images, ghost]), "path", paths["images"].parent, broken["images"].parent)
    write_table(both, broken["images"], IMAGES)
    summary = export_release(inputs_of(broken), tmp_path / "release", ExportParams(formats=()))
    assert summary["images"]["total"] == 15
    assert "img-ghost: no pixels" in caplog.text


def test_command_writes_the_release_and_its_metrics(exported, tmp_path):
    paths, _, _ = exported
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"export": {"formats": ["coco", "yolo"], "nnunet_dataset_id": 7}}))
    metrics = shutil.copytree(paths["metrics-dir"], tmp_path / "metrics")
    (metrics / "export.json").write_text('{"from": "an earlier run"}')
    options = [arg for name, path in dict(paths, **{"metrics-dir": metrics}).items()
               for arg in (f"--{name}", str(path))]
    arguments = ["export", *options, "--metrics", str(metrics / "export.json"), "--params", str(params)]
    result = CliRunner().invoke(main, [*arguments, str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "15 images" in result.output and "formats coco, yolo" in result.output
    assert (tmp_path / "out" / "coco" / "train.json").is_file() and not (tmp_path / "out" / "nnunet").exists()
    assert (metrics / "export.json").read_bytes() == (tmp_path / "out" / "summary.json").read_bytes()
    card = (tmp_path / "out" / "card.md").read_text()
    assert "### prelabel" in card and "### export" not in card and "earlier run" not in card


def test_command_names_an_unknown_format(exported, tmp_path):
    paths, _, _ = exported
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"export": {"formats": ["coco", "voc"]}}))
    options = [arg for name, path in paths.items() for arg in (f"--{name}", str(path))]
    result = CliRunner().invoke(main, ["export", *options, "--params", str(params), str(tmp_path / "out")])
    assert result.exit_code != 0
    assert "unknown format(s) ['voc']" in result.output
