"""A MONAI datalist, ``monai_datalist.json``, over the segmentation pairs.

Shaped for ``monai.data.load_decathlon_datalist(path, data_list_key=..., base_dir=release)``:
``training`` (train, with each image's cross-validation fold), ``validation``,
``test`` and ``external``; paths are relative to the release folder and point into
``segmentation/``, which is written with it.
"""

from __future__ import annotations

import polars as pl

from thyrokit.pipelines.formats.jsonfile import write_json
from thyrokit.pipelines.formats.manifest import Release
from thyrokit.pipelines.formats.segmentation import segmentation_paths

FILE = "monai_datalist.json"
KEYS = {"train": "training", "validation": "validation", "test": "test", "external": "external"}


def monai_datalist(manifest: pl.DataFrame) -> dict[str, list[dict]]:
    """Return the datalist of every image with a mask, by split."""
    rows = manifest.filter(pl.col("mask_path").is_not_null()).sort("image_id")
    files = segmentation_paths(rows).with_columns(rows.get_column("fold"))
    datalist: dict[str, list[dict]] = {key: [] for key in KEYS.values()}
    for row in files.iter_rows(named=True):
        entry = {"image": row["image"], "label": row["label"]}
        if row["split"] == "train":
            entry["fold"] = row["fold"]
        datalist[KEYS[row["split"]]].append(entry)
    return datalist


def write_monai(release: Release) -> int:
    """Write the datalist; return how many entries it holds."""
    datalist = monai_datalist(release.manifest)
    write_json(release.folder / FILE, datalist)
    return sum(len(entries) for entries in datalist.values())
