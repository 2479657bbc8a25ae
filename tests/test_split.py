"""Splits: patient-grouped, stratified, external by site/device, k folds, stable across versions."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from thyrokit.cli import main
from thyrokit.contract import IMAGES, NODULES, read_table, write_table
from thyrokit.pipelines.leakage import audit_leakage, look_alike_patients, summarise
from thyrokit.pipelines.split import (
    ASSIGNMENT, SplitError, SplitParams, allocate, apply_assignment, assign_splits, nnunet_folds,
    patient_table,
)
from thyrokit.pipelines.split_report import suspected_duplicates
from thyrokit.pixels import encode_png, read_image, write_shards

PARAMS = SplitParams(seed=13, ratios={"train": 0.7, "validation": 0.15, "test": 0.15}, folds=5,
                     external_sites=("site-D",), external_devices=("scanner-X",))
SITES = ("site-A", "site-B", "site-C", "site-D")


def make_dataset(first: int, count: int, seed: int = 0, frames: int = 3) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Return images and nodules tables of patients first..first+count (20% malignant, 40% benign)."""
    rng = np.random.default_rng(seed + first)
    images, nodules = [], []
    for number in range(first, first + count):
        patient = f"pat-{number:05d}"
        site = SITES[int(rng.integers(len(SITES)))]
        label = rng.choice(["malignant", "benign", "none"], p=[0.2, 0.4, 0.4])
        for frame in range(frames):
            image = f"img-{number:05d}-{frame}"
            images.append({
                "image_id": image, "patient_id": patient, "study_id": f"study-{number:05d}",
                "series_id": f"series-{number:05d}", "site": site, "device": "scanner-A",
                "modality": "US", "frame": frame, "n_frames": frames, "width": 64, "height": 48,
                "channels": 1, "crop": [0, 0, 64, 48], "path": "pixels/images-00000.parquet",
                "source_format": "dicom", "source_hmac": f"src-{number:05d}", "tool_version": "test",
            })
            if label != "none" and frame == 0:
                nodules.append({
                    "image_id": image, "nodule_id": f"nod-{number:05d}", "bbox": [4, 4, 20, 20],
                    "pathology": str(label), "tirads": f"TR{int(rng.integers(1, 6))}", "label_source": "human",
                })
    return (pl.DataFrame(images), pl.DataFrame(nodules))


def conformed(images: pl.DataFrame, nodules: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    from thyrokit.contract import conform

    return conform(images, IMAGES), conform(nodules, NODULES)


def run_split(images, nodules, params=PARAMS, previous=None):
    images, nodules = conformed(images, nodules)
    patients = patient_table(images, nodules, params)
    assignment, _ = assign_splits(patients, params, previous)
    return apply_assignment(images, assignment), assignment, patients


def test_allocate_keeps_every_running_count_within_one_of_its_share():
    ratios = (0.7, 0.15, 0.15)
    chosen = allocate([1] * 50, ["benign"] * 50, ratios)
    for end in range(1, 51):
        for index, ratio in enumerate(ratios):
            assert abs(chosen[:end].count(index) - ratio * end) < 1
    # Stored counts are honoured: a bin already over its share gets nothing new.
    assert allocate([1] * 4, ["benign"] * 4, [0.5, 0.5], {"benign": [0, 10]}) == [0, 0, 0, 0]


def test_allocate_fills_the_whole_from_many_tiny_strata():
    chosen = allocate([1] * 40, [f"stratum-{n // 2}" for n in range(40)], [0.5, 0.25, 0.25])
    assert [chosen.count(index) for index in range(3)] == [20, 10, 10]


def test_every_patient_is_in_exactly_one_split_and_external_is_held_out_sites_and_devices():
    images, nodules = make_dataset(0, 300)
    # Patient 0 also has an image from the external site, patient 1 one from the external device.
    extra = images.filter(pl.col("patient_id").is_in(["pat-00000", "pat-00001"]) & (pl.col("frame") == 0))
    extra = extra.with_columns(
        (pl.col("image_id") + "-elsewhere").alias("image_id"),
        pl.when(pl.col("patient_id") == "pat-00000").then(pl.lit("site-D")).otherwise("site").alias("site"),
        pl.when(pl.col("patient_id") == "pat-00001").then(pl.lit("scanner-X")).otherwise("device").alias("device"),
    )
    placed, _, _ = run_split(pl.concat([images, extra]), nodules)

    assert placed.get_column("split").null_count() == 0
    assert placed.group_by("patient_id").agg(pl.col("split").n_unique()).get_column("split").max() == 1
    external_patients = set(placed.filter(pl.col("split") == "external").get_column("patient_id"))
    held_out = set(placed.filter((pl.col("site") == "site-D") | (pl.col("device") == "scanner-X"))
                   .get_column("patient_id"))
    assert external_patients == held_out
    assert {"pat-00000", "pat-00001"} <= external_patients  # external wins for the whole patient


def test_ratios_and_label_proportions_hold_in_every_split():
    placed, assignment, patients = run_split(*make_dataset(0, 1200))
    development = assignment.join(patients, on="patient_id").filter(pl.col("split") != "external")
    for split, ratio in PARAMS.ratios.items():
        members = development.filter(pl.col("split") == split)
        assert abs(members.height / development.height - ratio) < 0.01
        for label in ("malignant", "benign", "unlabelled"):
            overall = (development.get_column("label") == label).mean()
            assert abs((members.get_column("label") == label).mean() - overall) < 0.03, (split, label)


def test_folds_partition_the_development_patients_evenly():
    placed, assignment, patients = run_split(*make_dataset(0, 500))
    development = assignment.filter(pl.col("split").is_in(["train", "validation"]))
    assert development.get_column("fold").null_count() == 0
    assert assignment.filter(pl.col("split").is_in(["test", "external"])).get_column("fold").null_count() == \
        assignment.filter(pl.col("split").is_in(["test", "external"])).height
    per_fold = development.join(patients, on="patient_id").group_by("label", "fold").len()
    for label in ("malignant", "benign", "unlabelled"):
        sizes = per_fold.filter(pl.col("label") == label).get_column("len")
        assert sizes.len() == PARAMS.folds and sizes.max() - sizes.min() <= 1

    folds = nnunet_folds(placed, PARAMS.folds)
    development_images = set(placed.filter(pl.col("split").is_in(["train", "validation"])).get_column("image_id"))
    patient_of = dict(placed.select("image_id", "patient_id").iter_rows())
    seen_in_val: set[str] = set()
    for fold in folds:
        assert set(fold["train"]) | set(fold["val"]) == development_images
        assert not {patient_of[i] for i in fold["train"]} & {patient_of[i] for i in fold["val"]}
        seen_in_val |= set(fold["val"])
    assert seen_in_val == development_images


def test_patients_sharing_a_study_share_a_split():
    images, nodules = make_dataset(0, 200)
    # Two patient ids for one study (a re-registered patient): one group, one split.
    images = images.with_columns(
        pl.when(pl.col("patient_id") == "pat-00007").then(pl.lit("study-00003")).otherwise("study_id").alias("study_id")
    )
    placed, _, _ = run_split(images, nodules)
    splits = placed.filter(pl.col("study_id") == "study-00003").get_column("split").unique()
    assert splits.len() == 1


def test_adding_patients_never_moves_an_existing_one_and_proportions_approach_the_ratios():
    first_images, first_nodules = make_dataset(0, 300)
    _, first, _ = run_split(first_images, first_nodules)

    new_images, new_nodules = make_dataset(300, 600)
    # Version 2 also labels a patient that was unlabelled, and changes the ratios.
    relabel = first_images.join(first_nodules, on="image_id", how="anti").filter(pl.col("frame") == 0).head(1)
    extra_nodule = pl.DataFrame([{"image_id": relabel.item(0, "image_id"), "nodule_id": "nod-new",
                                  "bbox": [1, 1, 5, 5], "pathology": "malignant", "label_source": "human"}])
    changed = SplitParams(**{**PARAMS.__dict__, "ratios": {"train": 0.6, "validation": 0.2, "test": 0.2}})
    images = pl.concat([first_images, new_images])
    nodules = pl.concat([first_nodules, new_nodules, extra_nodule], how="diagonal_relaxed")
    _, second, patients = run_split(images, nodules, changed, previous=first)

    before = first.join(second, on="patient_id", suffix="_v2")
    assert before.height == first.height
    assert before.filter((pl.col("split") != pl.col("split_v2")) | pl.col("fold").ne_missing(pl.col("fold_v2"))).is_empty()
    development = second.filter(pl.col("split") != "external")
    for split, ratio in changed.ratios.items():
        assert abs((development.get_column("split") == split).mean() - ratio) < 0.02


def test_a_patient_dropped_from_the_data_keeps_its_row_for_when_it_returns():
    images, nodules = make_dataset(0, 100)
    _, first, _ = run_split(images, nodules)
    fewer = images.filter(pl.col("patient_id") != "pat-00005")
    _, second, _ = run_split(fewer, nodules.filter(pl.col("image_id").is_in(fewer.get_column("image_id").implode())),
                             previous=first)
    assert second.equals(first)


def test_changing_the_fold_count_under_a_stored_assignment_is_refused():
    images, nodules = make_dataset(0, 50)
    _, first, _ = run_split(images, nodules)
    ten = SplitParams(**{**PARAMS.__dict__, "folds": 10})
    with pytest.raises(SplitError, match="split.folds is 10"):
        run_split(images, nodules, ten, previous=first)


@pytest.mark.parametrize("section, reason", [
    ({"ratios": {"train": 0.7, "validation": 0.2, "test": 0.2}}, "sum to 1"),
    ({"ratios": {"train": 0.7, "holdout": 0.3}}, "unknown split"),
    ({"ratios": {"train": 1.0}, "folds": 1}, "folds"),
])
def test_bad_split_params_say_what_is_wrong(section, reason):
    with pytest.raises(SplitError, match=reason):
        SplitParams.from_params(section)


def write_inputs(folder, images: pl.DataFrame, nodules: pl.DataFrame) -> tuple:
    """Write the tables and one real pixel shard, as ingest and labels would."""
    ingest = folder / "ingest"
    rows = [(image, encode_png(np.full((48, 64), index % 256, np.uint8)))
            for index, image in enumerate(images.get_column("image_id").to_list())]
    where = write_shards(rows, ingest / "pixels", "images")
    images = images.with_columns(pl.col("image_id").replace_strict({k: f"pixels/{v}" for k, v in where.items()})
                                 .alias("path"))
    write_table(images, ingest / "images.parquet", IMAGES)
    write_table(nodules, folder / "labels" / "nodules.parquet", NODULES)
    params = folder / "params.yaml"
    params.write_text(
        "split:\n  seed: 13\n  ratios: {train: 0.7, validation: 0.15, test: 0.15}\n"
        "  external_sites: [site-D]\n  external_devices: []\n  folds: 5\n  phash_max_distance: 4\n"
    )
    return ingest / "images.parquet", folder / "labels" / "nodules.parquet", params


def test_split_command_writes_every_output_twice_byte_identical(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    images_path, nodules_path, params = write_inputs(tmp_path, *make_dataset(0, 60))
    outputs = {}
    for run in ("a", "b"):
        result = CliRunner().invoke(main, [
            "split", str(images_path), str(nodules_path), f"out-{run}",
            "--assignment", f"splits-{run}/assignment.parquet", "--params", str(params),
            "--metrics", f"metrics-{run}/split.json",
        ])
        assert result.exit_code == 0, result.output
        outputs[run] = {name: (tmp_path / f"out-{run}" / name).read_bytes() for name in
                        ("images.parquet", "splits_final.json", "leakage.json", "split_composition.png")}
        outputs[run]["assignment"] = (tmp_path / f"splits-{run}" / "assignment.parquet").read_bytes()
        outputs[run]["metrics"] = (tmp_path / f"metrics-{run}" / "split.json").read_bytes()
    assert outputs["a"] == outputs["b"]

    placed = read_table(tmp_path / "out-a" / "images.parquet", IMAGES)
    first = placed.row(0, named=True)
    assert read_image(tmp_path / "out-a" / first["path"], first["image_id"]).shape == (48, 64)
    assert json.loads(outputs["a"]["leakage.json"])["ok"] is True
    metrics = json.loads(outputs["a"]["metrics"])
    assert metrics["patients_new"] == 60 and metrics["leakage_violations"] == 0
    assert read_table(tmp_path / "splits-a" / "assignment.parquet", ASSIGNMENT).height == 60


def test_split_command_fails_naming_the_study_that_leaks(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    images, nodules = make_dataset(0, 40)
    images_path, nodules_path, params = write_inputs(tmp_path, images, nodules)
    args = ["split", str(images_path), str(nodules_path), "out", "--assignment", "assignment.parquet",
            "--params", str(params)]
    assert CliRunner().invoke(main, args).exit_code == 0
    assignment = read_table("assignment.parquet", ASSIGNMENT)
    stored = (tmp_path / "assignment.parquet").read_bytes()
    train, test = (assignment.filter(pl.col("split") == name).item(0, "patient_id") for name in ("train", "test"))
    # A later version files one test patient's image under a train patient's study.
    moved = images.with_columns(
        pl.when(pl.col("patient_id") == test)
        .then(pl.lit(images.filter(pl.col("patient_id") == train).item(0, "study_id")))
        .otherwise("study_id").alias("study_id"))
    write_inputs(tmp_path, moved, nodules)
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0
    assert "study in two splits" in result.output and train in result.output
    assert json.loads((tmp_path / "out" / "leakage.json").read_text())["checks"]["study_in_two_splits"]["count"] == 1
    assert (tmp_path / "assignment.parquet").read_bytes() == stored  # the failed run changed nothing there


def test_a_failed_first_run_writes_no_assignment_to_lock_its_leak_in(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    images, nodules = make_dataset(0, 40)
    external = images.filter(pl.col("site") == "site-D").item(0, "image_id")
    pseudo = pl.DataFrame([{"image_id": external, "nodule_id": "nod-pseudo", "bbox": [4, 4, 20, 20],
                            "pathology": "benign", "label_source": "pseudo"}])
    images_path, nodules_path, params = write_inputs(tmp_path, images, pl.concat([nodules, pseudo], how="diagonal"))
    args = ["split", str(images_path), str(nodules_path), "out", "--assignment", "assignment.parquet",
            "--params", str(params)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0 and "assignment.parquet not updated" in result.output
    assert not (tmp_path / "assignment.parquet").exists()
    report = json.loads((tmp_path / "out" / "leakage.json").read_text())
    assert report["checks"]["machine_made_outside_train"]["count"] == 1  # still says what leaked
    write_inputs(tmp_path, images, nodules)  # the pseudolabel is dropped: the run passes and stores it
    assert CliRunner().invoke(main, args).exit_code == 0
    assert read_table(tmp_path / "assignment.parquet", ASSIGNMENT).height == 40


@pytest.mark.slow
def test_dvc_repro_keeps_the_persisted_assignment_across_two_dataset_versions(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    def run(*args: str) -> None:
        subprocess.run(args, cwd=tmp_path, check=True, capture_output=True)

    thyrokit = Path(sys.executable).parent / "thyrokit"
    run("git", "init", "-q")
    run(sys.executable, "-m", "dvc", "init", "-q")
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n  split:\n"
        f"    cmd: {thyrokit} split ingest/images.parquet labels/nodules.parquet out"
        " --assignment splits/assignment.parquet --metrics metrics/split.json\n"
        "    deps: [ingest/images.parquet, labels/nodules.parquet]\n"
        "    params: [split]\n"
        "    outs:\n      - out\n      - splits/assignment.parquet:\n          persist: true\n"
        "    metrics:\n      - metrics/split.json:\n          cache: false\n"
    )
    images, nodules = make_dataset(0, 80)
    write_inputs(tmp_path, images, nodules)
    run(sys.executable, "-m", "dvc", "repro", "-q")
    first = read_table(tmp_path / "splits" / "assignment.parquet", ASSIGNMENT)

    more_images, more_nodules = make_dataset(80, 80)
    write_inputs(tmp_path, pl.concat([images, more_images]), pl.concat([nodules, more_nodules]))
    run(sys.executable, "-m", "dvc", "repro", "-q")
    second = read_table(tmp_path / "splits" / "assignment.parquet", ASSIGNMENT)
    assert second.height == 160
    assert second.join(first, on="patient_id", how="semi").equals(first)
    assert json.loads((tmp_path / "metrics" / "split.json").read_text())["patients_kept"] == 80


def test_split_command_reports_bad_params_in_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    images_path, nodules_path, params = write_inputs(tmp_path, *make_dataset(0, 5))
    params.write_text("split:\n  ratios: {train: 0.9, test: 0.2}\n")
    result = CliRunner().invoke(main, ["split", str(images_path), str(nodules_path), "out",
                                       "--assignment", "assignment.parquet", "--params", str(params)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: split.ratios must be non-negative and sum to 1, got {'train': 0.9, 'test': 0.2}"]
    assert not (tmp_path / "out").exists() and not (tmp_path / "assignment.parquet").exists()


def with_hashes(images: pl.DataFrame, copies: dict[str, str] | None = None, seed: int = 0) -> pl.DataFrame:
    """Give every image a random phash; `copies` maps an image to the image whose hash it repeats, 1 bit off."""
    rng = np.random.default_rng(seed)
    hashes = dict(zip(images.get_column("image_id").to_list(),
                      (int(value) for value in rng.integers(0, 2**63, images.height, dtype=np.uint64))))
    for image, original in (copies or {}).items():
        hashes[image] = hashes[original] ^ 1
    return images.with_columns(pl.col("image_id").replace_strict({k: f"{v:016x}" for k, v in hashes.items()}).alias("phash"))


def linked_split(images, nodules, params=PARAMS, previous=None):
    images, nodules = conformed(images, nodules)
    look_alikes = look_alike_patients(images, params.phash_max_distance)
    patients = patient_table(images, nodules, params, look_alikes)
    assignment, _ = assign_splits(patients, params, previous)
    return assignment, patients, suspected_duplicates(look_alikes, patients, assignment)


def split_of(assignment: pl.DataFrame) -> dict[str, str]:
    return dict(assignment.select("patient_id", "split").iter_rows())


def apart_without_links(images, nodules) -> tuple[str, str]:
    """Return two development patients that a split without look-alike links puts in different splits."""
    _, assignment, _ = run_split(images, nodules)
    where = split_of(assignment)
    train = next(p for p, s in sorted(where.items()) if s == "train")
    other = next(p for p, s in sorted(where.items()) if s in ("validation", "test"))
    return train, other


def test_two_patients_with_a_near_identical_image_share_a_split_and_are_reported():
    images, nodules = make_dataset(0, 40)
    first, second = apart_without_links(images, nodules)
    copy = {f"img-{second[4:]}-1": f"img-{first[4:]}-2"}
    assignment, _, duplicates = linked_split(with_hashes(images, copy), nodules)
    assert split_of(assignment)[first] == split_of(assignment)[second]
    folds = dict(assignment.select("patient_id", "fold").iter_rows())
    assert folds[first] == folds[second]
    row, = duplicates.to_dicts()
    assert (row["patient_id"], row["other_patient_id"], row["distance"], row["status"]) == (first, second, 1, "linked")
    assert (row["image_id"], row["other_image_id"]) == (f"img-{first[4:]}-2", f"img-{second[4:]}-1")


def test_a_chain_of_look_alikes_stops_at_the_group_cap_and_says_so():
    images, nodules = make_dataset(0, 12, frames=1)
    # Each patient's scan is one bit from the previous one's: a chain over all 12.
    base = int(with_hashes(images.head(1)).get_column("phash")[0], 16)
    images = images.with_columns(pl.Series("phash", [f"{base ^ ((1 << n) - 1):016x}" for n in range(12)]))
    params = dataclasses.replace(PARAMS, phash_max_distance=1, max_group_patients=4, external_sites=())
    _, patients, duplicates = linked_split(images, nodules, params)
    sizes = patients.group_by("group").len().get_column("len").sort(descending=True).to_list()
    assert sizes == [4, 4, 4]
    assert duplicates.height == 11
    assert duplicates.get_column("status").value_counts().sort("status").rows() == [
        ("linked", 9), ("not linked: group cap", 2)]


def test_a_stored_assignment_wins_over_look_alike_links_and_new_look_alikes_follow_it():
    images, nodules = make_dataset(0, 40)
    first, second = apart_without_links(images, nodules)
    _, stored, _ = run_split(images, nodules)
    later, later_nodules = make_dataset(40, 5)
    newcomer = "pat-00040"
    newcomer_external = later.filter(pl.col("patient_id") == newcomer).get_column("site").is_in(PARAMS.external_sites).any()
    host = next(p for p, split in sorted(split_of(stored).items())
                if p not in (first, second) and (split == "external") == newcomer_external)
    copies = {f"img-{second[4:]}-1": f"img-{first[4:]}-2", "img-00040-0": f"img-{host[4:]}-0"}
    grown = with_hashes(pl.concat([images, later]), copies)
    assignment, _, duplicates = linked_split(grown, pl.concat([nodules, later_nodules]), previous=stored)
    where, before = split_of(assignment), split_of(stored)
    assert all(where[patient] == split for patient, split in before.items())  # no stored patient moves
    assert where[newcomer] == where[host]
    statuses = {(row["patient_id"], row["other_patient_id"]): row["status"] for row in duplicates.to_dicts()}
    assert statuses[(first, second)] == "apart: stored assignment"
    assert statuses[(host, newcomer)] == "linked"
    placed = apply_assignment(conformed(grown, nodules)[0], assignment)
    report = audit_leakage(placed, max_distance=PARAMS.phash_max_distance)
    assert not report["ok"] and "assignment.parquet" in summarise(report)
    assert {row["patient_id"] for row in report["checks"]["near_duplicate_across_splits"]["rows"]} <= {first, second}


def test_a_look_alike_across_the_external_boundary_is_reported_but_never_linked():
    images, nodules = make_dataset(0, 40)
    where = split_of(run_split(images, nodules)[1])
    outside = next(p for p, split in sorted(where.items()) if split == "external")
    inside = next(p for p, split in sorted(where.items()) if split == "train")
    copy = {f"img-{inside[4:]}-1": f"img-{outside[4:]}-0"}
    assignment, _, duplicates = linked_split(with_hashes(images, copy), nodules)
    placed_where = split_of(assignment)
    assert (placed_where[outside], placed_where[inside]) == ("external", "train")
    row, = duplicates.to_dicts()
    assert row["status"] == "apart: external site"
    placed = apply_assignment(conformed(with_hashes(images, copy), nodules)[0], assignment)
    report = audit_leakage(placed, max_distance=PARAMS.phash_max_distance)
    assert report["ok"]
    assert report["warnings"]["look_alike_across_external_boundary"]["count"] == 1
