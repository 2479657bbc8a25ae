"""The nnU-Net v2 raw dataset: ``nnunet/Dataset<ID>_Thyroid/``.

``imagesTr/<case>_0000.png`` and ``labelsTr/<case>.png`` (0 background, 1 nodule)
hold train and validation (images labelled with no finding too, with all-zero labels), since nnU-Net runs its own cross-validation; the folds
come from the split stage in ``splits_final.json`` (to copy into nnU-Net's
preprocessed folder), so its validation folds never mix patients. ``imagesTs``
(and ``labelsTs``, for scoring) hold test and external. A case is an image_id.
PNGs are read by nnU-Net's NaturalImage2DIO; colour images are stored grey, so
every case has the one channel that dataset.json declares.
"""

from __future__ import annotations

import cv2
import numpy as np
import polars as pl

from thyrokit.pipelines.formats.jsonfile import write_json
from thyrokit.pipelines.formats.manifest import Release, write_pngs
from thyrokit.pixels import decode_png, encode_png

FOLDER = "nnunet"
TRAINING_SPLITS = ("train", "validation")


def dataset_folder(dataset_id: int) -> str:
    """Return nnU-Net's folder name for dataset `dataset_id`, e.g. ``Dataset501_Thyroid``."""
    if not 1 <= dataset_id <= 999:
        raise ValueError(f"nnU-Net dataset ids run 1..999, not {dataset_id}")
    return f"Dataset{dataset_id:03d}_Thyroid"


def grey_png(png: bytes) -> bytes:
    """Return `png` as a one-channel PNG (unchanged if it already is one)."""
    image = decode_png(png)
    return png if image.ndim == 2 else encode_png(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))


def label_png(png: bytes) -> bytes:
    """Return a 0/255 mask PNG as nnU-Net's 0/1 label PNG."""
    return encode_png((decode_png(png) > 0).astype(np.uint8))


def dataset_json(training: pl.DataFrame) -> dict:
    """Return dataset.json for the training cases."""
    modalities = sorted(training.get_column("modality").drop_nulls().unique())
    return {
        "channel_names": {"0": modalities[0] if len(modalities) == 1 else "image"},
        "labels": {"background": 0, "nodule": 1},
        "numTraining": training.height,
        "file_ending": ".png",
        "name": "Thyroid",
        "overwrite_image_reader_writer": "NaturalImage2DIO",
    }


def fold_splits(training: pl.DataFrame) -> list[dict[str, list[str]]]:
    """Return nnU-Net splits from the manifest's fold column: fold k validates on the cases of fold k."""
    folds = sorted(training.get_column("fold").drop_nulls().unique())
    cases = training.sort("image_id")
    return [
        {"train": cases.filter(pl.col("fold") != fold).get_column("image_id").to_list(),
         "val": cases.filter(pl.col("fold") == fold).get_column("image_id").to_list()}
        for fold in folds
    ]


def restrict_splits(splits: list[dict[str, list[str]]], cases: set[str]) -> list[dict[str, list[str]]]:
    """Return the split stage's folds keeping only `cases`; raise if a fold is left empty."""
    kept = [{part: sorted(set(fold[part]) & cases) for part in ("train", "val")} for fold in splits]
    for index, fold in enumerate(kept):
        if not fold["train"] or not fold["val"]:
            raise ValueError(f"splits_final.json: fold {index} has no exported case in its "
                             f"{'train' if not fold['train'] else 'val'} part")
    return kept


def write_nnunet(release: Release, dataset_id: int,
                 splits_final: list[dict[str, list[str]]] | None = None) -> int:
    """Write the raw dataset, dataset.json and splits_final.json; return the number of training cases."""
    root = release.folder / FOLDER / dataset_folder(dataset_id)
    cases = release.manifest.filter(pl.col("mask_path").is_not_null())
    training = cases.filter(pl.col("split").is_in(TRAINING_SPLITS))
    is_training = set(training.get_column("image_id"))
    images = {case: root / ("imagesTr" if case in is_training else "imagesTs") / f"{case}_0000.png"
              for case in cases.get_column("image_id")}
    labels = {case: root / ("labelsTr" if case in is_training else "labelsTs") / f"{case}.png"
              for case in cases.get_column("image_id")}
    write_pngs(((case, grey_png(png)) for case, png in release.pngs(cases, "image_id", "path")), images)
    write_pngs(((case, label_png(png)) for case, png in release.pngs(cases, "image_id", "mask_path")), labels)
    folds = restrict_splits(splits_final, is_training) if splits_final else fold_splits(training)
    write_json(root / "dataset.json", dataset_json(training))
    write_json(root / "splits_final.json", folds)
    return training.height
