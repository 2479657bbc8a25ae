"""The `annotate prelabel` and `pseudolabel` commands on a tiny on-disk dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from click.testing import CliRunner

from prelabel_data import write_blob_dataset
from thyrokit.annotate.model.outputs import load_model
from thyrokit.cli import main
from thyrokit.contract import IMAGES, NODULES, UNCERTAINTY, read_table
from thyrokit.pixels import read_image

PARAMS = """
prelabel: {size: 32, channels: 8, depth: 2, steps: 60, batch_size: 8, threads: 1, mc_samples: 2, min_area: 4,
           ema_decay: 0.9}
pseudolabel: {steps: 40, ramp: 20, label_fractions: [0.1, 0.3], min_confidence: 0.6}
"""


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("prelabel")
    write_blob_dataset(root, {"train": 40, "validation": 12, "test": 6},
                       {"train": 0.5, "validation": 1.0, "test": 0.5}, size=40)
    (root / "params.yaml").write_text(PARAMS)
    return root


def invoke(root: Path, command: str, out: str, *extra: str, params: str = "params.yaml"):
    return CliRunner().invoke(main, [
        "annotate", command, str(root / "split/images.parquet"), str(root / "labels"), str(root / out),
        "--params", str(root / params), "--model-dir", str(root / out / "model"),
        "--metrics", str(root / out / "metrics.json"), "--plots", str(root / out / "plots"), *extra,
    ], catch_exceptions=False)


def run(root: Path, command: str, out: str, *extra: str) -> None:
    result = invoke(root, command, out, *extra)
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def prelabelled(dataset) -> Path:
    run(dataset, "prelabel", "pre")
    return dataset / "pre"


def unlabelled_ids(root: Path, split: str | None = None) -> set[str]:
    images = read_table(root / "split/images.parquet", IMAGES)
    labelled = set(pl.read_parquet(root / "labels/labelled_images.parquet").get_column("image_id"))
    if split:
        images = images.filter(pl.col("split") == split)
    return set(images.get_column("image_id")) - labelled


def test_prelabel_ranks_and_predicts_every_unlabelled_image(dataset, prelabelled):
    ranking = read_table(prelabelled / "uncertainty.parquet", UNCERTAINTY)
    assert set(ranking.get_column("image_id")) == unlabelled_ids(dataset)
    assert ranking.get_column("rank").to_list() == list(range(ranking.height))
    assert ranking.get_column("uncertainty").is_sorted(descending=True)
    nodules = read_table(prelabelled / "nodules.parquet", NODULES)
    assert nodules.height > 0 and set(nodules.get_column("image_id")) <= unlabelled_ids(dataset)
    version = ranking.get_column("model_version")[0]
    assert set(nodules.get_column("label_source")) == {"prediction"}
    assert set(nodules.get_column("annotator")) == {f"model:{version}"}
    first = nodules.row(0, named=True)
    mask = read_image(prelabelled / first["mask_path"], first["nodule_id"])
    assert mask.shape == (40, 40) and set(np.unique(mask)) == {0, 255}
    x0, y0, x1, y1 = first["bbox"]
    assert mask[y0:y1, x0:x1].sum() == mask.sum()  # the box holds the whole mask


def test_prelabel_metrics_plots_and_model_round_trip(prelabelled):
    metrics = json.loads((prelabelled / "metrics.json").read_text())
    assert set(metrics["validation"]) == {"dice", "nodule_dice", "false_nodule_rate", "iou", "box_ap50", "auc",
                                          "n_images", "n_pathology_patients", "n_malignant_patients"}
    assert metrics["validation"]["n_images"] == 12 and metrics["validation"]["dice"] > 0.3
    assert (prelabelled / "plots/plots/metrics/train/loss.tsv").is_file()
    curve = json.loads((prelabelled / "plots/pr_curve.json").read_text())
    assert curve and {"precision", "recall", "threshold"} == set(curve[0])
    model, config, version = load_model(prelabelled / "model", torch.device("cpu"))
    assert config.size == 32 and version == metrics["model_version"]


def test_prelabel_is_byte_identical_on_a_rerun(dataset, prelabelled):
    run(dataset, "prelabel", "pre_again")
    for name in ("nodules.parquet", "uncertainty.parquet", "masks/masks-00000.parquet",
                 "model/model.safetensors", "model/config.json", "metrics.json"):
        assert (prelabelled / name).read_bytes() == (dataset / "pre_again" / name).read_bytes(), name


def test_pseudolabels_only_unlabelled_train_images_and_reports_label_fractions(dataset, prelabelled):
    run(dataset, "pseudolabel", "pseudo", "--start-model", str(prelabelled / "model"))
    nodules = read_table(dataset / "pseudo/nodules.parquet", NODULES)
    assert nodules.height > 0
    assert set(nodules.get_column("image_id")) <= unlabelled_ids(dataset, "train")
    assert set(nodules.get_column("label_source")) == {"pseudo"}
    assert nodules.get_column("confidence").min() >= 0.6
    metrics = json.loads((dataset / "pseudo/metrics.json").read_text())
    for key in ("labels_10pct", "labels_30pct"):
        gain_bounds = {f"{metric}_gain_{end}" for metric in ("dice", "auc") for end in ("low", "high")}
        assert {f"{metric}_{model}" for metric in ("dice", "auc", "nodule_dice", "false_nodule_rate")
                for model in ("supervised", "semi_supervised")} | {"n_labelled"} | gain_bounds \
            | {"n_labelled_pathology_patients", "n_labelled_malignant_patients"} == set(metrics[key])
        assert metrics[key]["n_labelled_malignant_patients"] <= metrics[key]["n_labelled_pathology_patients"]
        assert metrics[key]["dice_gain_low"] <= metrics[key]["dice_gain_high"]
    assert metrics["labels_10pct"]["n_labelled"] == 2 and metrics["labels_30pct"]["n_labelled"] == 6
    assert 0 < metrics["validation_n_malignant_patients"] < metrics["validation_n_pathology_patients"] <= 12
    _, _, start_version = load_model(prelabelled / "model", torch.device("cpu"))
    recorded = json.loads((dataset / "pseudo/model/config.json").read_text())
    assert recorded["started_from"] == start_version and recorded["version"] == metrics["model_version"]
    assert recorded["fine_tuning"]["steps"] == 40 and recorded["fine_tuning"]["pixel_threshold"] == 0.9
    assert recorded["fine_tuning"]["pathology_weight"] == 1.0


def test_pseudolabel_refuses_a_prelabel_model_trained_with_other_settings(dataset, prelabelled):
    (dataset / "other.yaml").write_text(PARAMS.replace("steps: 60", "steps: 61"))
    result = invoke(dataset, "pseudolabel", "pseudo_other", "--start-model", str(prelabelled / "model"),
                    params="other.yaml")
    assert result.exit_code == 2
    assert "other prelabel settings (steps)" in result.output and "run the prelabel stage" in result.output
    assert not (dataset / "pseudo_other").exists()


def test_an_image_without_pixels_is_skipped_with_a_line_naming_it(tmp_path):
    images_path, _ = write_blob_dataset(tmp_path, {"train": 12, "validation": 4, "test": 3},
                                        {"train": 0.5, "validation": 1.0}, size=32)
    images = pl.read_parquet(images_path)
    broken = images.with_columns(
        pl.when(pl.col("image_id") == "tes001").then(pl.lit("pixels/missing.parquet"))
        .otherwise(pl.col("path")).alias("path"))
    broken.write_parquet(images_path)
    (tmp_path / "params.yaml").write_text(PARAMS.replace("steps: 60", "steps: 4"))
    result = CliRunner().invoke(main, [
        "annotate", "prelabel", str(images_path), str(tmp_path / "labels"), str(tmp_path / "pre"),
        "--params", str(tmp_path / "params.yaml"), "--model-dir", str(tmp_path / "model"),
        "--metrics", str(tmp_path / "metrics.json"), "--plots", str(tmp_path / "plots"),
    ])
    assert result.exit_code == 0, result.output
    assert "tes001: no pixels in shard missing.parquet" in result.output
    ranked = read_table(tmp_path / "pre/uncertainty.parquet", UNCERTAINTY).get_column("image_id")
    assert "tes001" not in ranked and "tes000" in ranked
