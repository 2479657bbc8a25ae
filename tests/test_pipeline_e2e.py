"""End to end: `dvc repro` of the real dvc.yaml on a small phantom, in a temp git repo."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import yaml

from pipeline_project import make_project, repro, run, small_params
from thyrokit.contract import IMAGES, NODULES, read_table
from thyrokit.pixels import read_image

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A small demo project after one full `dvc repro`."""
    base = tmp_path_factory.mktemp("e2e")
    root = make_project(base / "project", small_params(), remote=base / "remote")
    ran = repro(root)
    return root, ran


def test_first_repro_runs_every_stage(project):
    root, ran = project
    stages = set(run(["dvc", "stage", "list", "--name-only"], root).stdout.split())
    assert stages == set(ran)


def test_every_split_is_populated_and_patient_grouped(project):
    root, _ = project
    manifest = pl.read_parquet(root / "data/release/manifest.parquet")
    counts = manifest.group_by("split").len()
    assert set(counts.get_column("split")) == {"train", "validation", "test", "external"}
    assert counts.get_column("len").min() > 0
    splits_per_patient = manifest.group_by("patient_id").agg(pl.col("split").n_unique())
    assert splits_per_patient.get_column("split").max() == 1


def test_external_comes_only_from_held_out_sites(project):
    root, _ = project
    params = yaml.safe_load((root / "params.yaml").read_text())
    held_out = set(params["split"]["external_sites"])
    manifest = pl.read_parquet(root / "data/release/manifest.parquet")
    external_sites = set(manifest.filter(pl.col("split") == "external").get_column("site"))
    other_sites = set(manifest.filter(pl.col("split") != "external").get_column("site"))
    assert external_sites == held_out
    assert not other_sites & held_out


def test_images_decode_and_masks_align(project):
    root, _ = project
    folder = root / "data/interim/split"
    images = read_table(folder / "images.parquet", IMAGES)
    nodules = read_table(root / "data/interim/labels/nodules.parquet", NODULES)
    assert nodules.height > 0
    sizes = {row["image_id"]: row for row in images.iter_rows(named=True)}
    for row in nodules.head(20).iter_rows(named=True):
        image_row = sizes[row["image_id"]]
        image = read_image(folder / image_row["path"], row["image_id"])
        mask = read_image(root / "data/interim/labels" / row["mask_path"], row["nodule_id"])
        assert image.shape[:2] == (image_row["height"], image_row["width"])
        assert mask.shape == image.shape[:2]
        ys, xs = np.nonzero(mask)
        assert [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] == row["bbox"]


def test_no_raw_names_reach_the_release(project):
    root, _ = project
    phi = json.loads((root / "data/raw/truth/phi.json").read_text())
    values = {value for entry in phi.values() for value in _strings(entry) if len(value) >= 6}
    names = [str(path.relative_to(root / "data/release")) for path in (root / "data/release").rglob("*")]
    leaked = [name for name in names if any(value in name for value in values)]
    assert not leaked


def test_second_repro_runs_nothing(project):
    root, _ = project
    assert repro(root) == []


def test_modeller_gets_and_imports_the_release_by_tag(project, tmp_path):
    root, _ = project
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "release v1"], root)
    run(["git", "tag", "v1"], root)
    run(["dvc", "push", "-q"], root)
    expected = pl.read_parquet(root / "data/release/manifest.parquet")

    run(["dvc", "get", str(root), "data/release", "--rev", "v1", "-o", str(tmp_path / "got")], tmp_path)
    assert pl.read_parquet(tmp_path / "got/manifest.parquet").equals(expected)

    consumer = tmp_path / "consumer"
    consumer.mkdir()
    run(["git", "init", "-q"], consumer)
    run(["dvc", "init", "-q"], consumer)
    run(["dvc", "import", str(root), "data/release", "--rev", "v1", "-o", "thyroid"], consumer)
    assert pl.read_parquet(consumer / "thyroid/manifest.parquet").equals(expected)
    assert "rev: v1" in (consumer / "thyroid.dvc").read_text()


def test_changing_a_split_param_reruns_split_and_what_follows(project):
    root, _ = project
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["split"]["seed"] += 1
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    ran = repro(root)
    assert "split" in ran
    assert not {"ingest", "labels"} & set(ran)
    assert not any(stage.startswith("demo") for stage in ran)


def _strings(entry) -> list[str]:
    if isinstance(entry, str):
        return [entry]
    if isinstance(entry, dict):
        return [s for value in entry.values() for s in _strings(value)]
    if isinstance(entry, list):
        return [s for value in entry for s in _strings(value)]
    return []
