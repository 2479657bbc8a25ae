"""Each release format, loaded back the way its consumer reads it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from pycocotools.coco import COCO

from export_fixtures import disc, make_inputs
from thyrokit.pipelines.export import ExportInputs, ExportParams, export_release
from thyrokit.pipelines.formats.nnunet import dataset_folder, restrict_splits
from thyrokit.pixels import decode_png


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("formats")
    paths = make_inputs(root / "interim")
    inputs = ExportInputs(paths["images"], paths["nodules"], paths["patches"], paths["synthetic"],
                          paths["pseudo"], paths["splits-final"], paths["leakage"], paths["metrics-dir"],
                          labelled_images=paths["labelled-images"])
    export_release(inputs, root / "release", ExportParams(nnunet_dataset_id=42))
    return root / "release"


def png(path: Path) -> np.ndarray:
    return decode_png(path.read_bytes())


def test_coco_loads_with_pycocotools_and_masks_match(release):
    coco = COCO(str(release / "coco" / "train.json"))
    assert [category["name"] for category in coco.loadCats(coco.getCatIds())] == ["benign", "malignant", "unknown"]
    by_file = {image["file_name"]: image for image in coco.dataset["images"]}
    image = by_file["img-p00.png"]
    annotations = coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]]))
    assert sorted(coco.cats[a["category_id"]]["name"] for a in annotations) == ["benign", "malignant"]
    malignant = next(a for a in annotations if coco.cats[a["category_id"]]["name"] == "malignant")
    assert np.array_equal(coco.annToMask(malignant), disc((34, 26), 6) > 0)
    x, y, w, h = malignant["bbox"]
    assert (x, y, x + w, y + h) == (28, 20, 41, 33)
    for name in by_file:
        assert (release / "coco" / "train" / name).is_file()
    assert not any(a["nodule_id"] == "nod-p2" for a in COCO(str(release / "coco" / "test.json")).dataset["annotations"])
    negative = by_file["img-p01.png"]  # labelled, no finding: an image without annotations
    assert coco.getAnnIds(imgIds=[negative["id"]]) == [] and (release / "coco" / "train" / "img-p01.png").is_file()
    assert "img-p21.png" not in by_file  # unlabelled: not a negative


def test_yolo_labels_parse_and_lie_in_unit_square(release):
    data = yaml.safe_load((release / "yolo" / "data.yaml").read_text())
    assert data["names"] == {0: "benign", 1: "malignant", 2: "unknown"} and data["val"] == "images/validation"
    label_files = sorted((release / "yolo" / "labels").rglob("*.txt"))
    assert len(label_files) == 10
    for path in label_files:
        split = path.parent.name
        image = png(release / "yolo" / "images" / split / f"{path.stem}.png")
        for line in path.read_text().splitlines():
            fields = line.split()
            assert len(fields) == 5 and int(fields[0]) in (0, 1, 2)
            assert all(0.0 <= float(value) <= 1.0 for value in fields[1:])
        assert image.shape == (40, 48)
    two = (release / "yolo" / "labels" / "train" / "img-p00.txt").read_text().splitlines()
    assert [line.split()[0] for line in two] == ["0", "1"]
    for split, negative in (("train", "img-p01"), ("external", "img-p51")):  # labelled, no finding
        assert (release / "yolo" / "labels" / split / f"{negative}.txt").read_text() == ""
        assert (release / "yolo" / "images" / split / f"{negative}.png").is_file()
    assert not (release / "yolo" / "labels" / "train" / "img-p21.txt").exists()  # unlabelled


def test_nnunet_dataset_json_matches_its_layout(release):
    root = release / "nnunet" / dataset_folder(42)
    dataset = json.loads((root / "dataset.json").read_text())
    images = sorted(path.name for path in (root / "imagesTr").iterdir())
    labels = sorted(path.name for path in (root / "labelsTr").iterdir())
    assert dataset["numTraining"] == len(images) == len(labels) == 7
    assert dataset["file_ending"] == ".png" and dataset["labels"] == {"background": 0, "nodule": 1}
    assert dataset["channel_names"] == {"0": "US"}
    assert [re.sub(r"_0000\.png$", ".png", name) for name in images] == labels
    for name in labels:
        assert set(np.unique(png(root / "labelsTr" / name))) <= {0, 1}
    assert not png(root / "labelsTr" / "img-p01.png").any()  # labelled, no finding: all background
    cases = {name[:-4] for name in labels}
    folds = json.loads((root / "splits_final.json").read_text())
    assert len(folds) == 2
    for fold in folds:
        assert set(fold["train"]) | set(fold["val"]) == cases and not set(fold["train"]) & set(fold["val"])
    assert {path.name for path in (root / "imagesTs").iterdir()} == {
        "img-p40_0000.png", "img-p50_0000.png", "img-p51_0000.png"}


def test_nnunet_folds_that_lose_every_case_are_an_error():
    with pytest.raises(ValueError, match="fold 0 has no exported case in its val part"):
        restrict_splits([{"train": ["a", "b"], "val": ["c"]}], {"a", "b"})


def test_monai_datalist_points_at_existing_pairs(release):
    datalist = json.loads((release / "monai_datalist.json").read_text())
    assert sorted(datalist) == ["external", "test", "training", "validation"]
    assert len(datalist["training"]) == 6 and all("fold" in entry for entry in datalist["training"])
    for entries in datalist.values():
        for entry in entries:
            image, mask = png(release / entry["image"]), png(release / entry["label"])
            assert image.shape == mask.shape and set(np.unique(mask)) <= {0, 255}


def test_segmentation_masks_are_union_of_nodules(release):
    mask = png(release / "segmentation" / "train" / "masks" / "img-p00.png")
    assert np.array_equal(mask, np.maximum(disc((12, 12), 5), disc((34, 26), 6)))
    for split in ("train", "validation", "test", "external"):
        images = sorted(path.name for path in (release / "segmentation" / split / "images").iterdir())
        assert images == sorted(path.name for path in (release / "segmentation" / split / "masks").iterdir())
    negative = png(release / "segmentation" / "train" / "masks" / "img-p01.png")  # labelled, no finding
    assert negative.shape == (40, 48) and not negative.any()
    assert not (release / "segmentation" / "train" / "masks" / "img-p21.png").exists()  # unlabelled


def test_imagefolder_holds_patches_with_stable_class_folders(release):
    root = release / "imagefolder"
    for split in ("train", "validation", "test", "external"):
        assert sorted(path.name for path in (root / split).iterdir()) == ["benign", "malignant"]
    train = {path.name for path in (root / "train").rglob("*.png")}
    assert {"syn-benign0.png", "syn-malignant1.png", "nod-b.png"} <= train
    assert not any(path.name.startswith("syn-") for split in ("validation", "test", "external")
                   for path in (root / split).rglob("*.png"))
    assert not (root / "train" / "unknown").exists()  # nod-d is unknown: not a class by default
    assert png(root / "train" / "malignant" / "nod-b.png").shape == (16, 16)


def test_cine_clips_are_ordered_frames(release):
    clips = json.loads((release / "cine" / "clips.json").read_text())["clips"]
    assert len(clips) == 1
    clip = clips[0]
    assert clip["image_ids"] == ["img-cine0", "img-cine1", "img-cine2"]
    assert clip["frames"] == [f"train/ser-cine/{index:04d}.png" for index in range(3)]
    assert clip["pathology"] == "benign" and clip["frame_pathology"] == [None, "benign", None]
    manifest = pl.read_parquet(release / "manifest.parquet")
    for image_id, frame in zip(clip["image_ids"], clip["frames"]):
        path = manifest.filter(pl.col("image_id") == image_id).get_column("path").item()
        shard = pl.read_parquet(release / path).filter(pl.col("key") == image_id)
        assert (release / "cine" / frame).read_bytes() == shard.get_column("png").item()
