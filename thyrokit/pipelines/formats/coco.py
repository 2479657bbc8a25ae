"""COCO detection and instance segmentation: ``coco/<split>.json`` and ``coco/<split>/<image_id>.png``.

One COCO file per split, over the labelled images; one labelled with no finding is an
image without annotations (a negative). Each finding is an
annotation with its box and, where it has a mask, an RLE segmentation from
``pycocotools.mask.encode``; a finding drawn as a box only gets the box as polygon.
Categories are the pathologies (benign 1, malignant 2, unknown 3). A COCO image's
``file_name`` is relative to ``coco/<split>/``.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from pycocotools import mask as mask_utils

from thyrokit.pipelines.formats.jsonfile import write_json
from thyrokit.pipelines.formats.manifest import CLASS_NAMES, NO_FINDING, Release, write_pngs
from thyrokit.pixels import decode_png

FOLDER = "coco"
CATEGORIES = [{"id": index + 1, "name": name, "supercategory": "nodule"}
              for index, name in enumerate(CLASS_NAMES)]


def encode_rle(mask: np.ndarray) -> dict:
    """Return the COCO compressed RLE of a binary mask, with its counts as text (JSON-ready)."""
    rle = mask_utils.encode(np.asfortranarray(mask > 0, dtype=np.uint8))
    return {"size": [int(size) for size in rle["size"]], "counts": rle["counts"].decode("ascii")}


def box_polygon(bbox: list[int]) -> list[list[float]]:
    """Return the box (x0, y0, x1, y1) as a one-polygon COCO segmentation."""
    x0, y0, x1, y1 = (float(value) for value in bbox)
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def coco_split(images: pl.DataFrame, nodules: pl.DataFrame, rles: dict[str, dict]) -> dict:
    """Return the COCO dataset of `images` and their `nodules`; `rles` holds the masked ones."""
    images = images.sort("image_id")
    image_ids = {image_id: index + 1 for index, image_id in enumerate(images.get_column("image_id"))}
    coco_images = [
        {"id": image_ids[row["image_id"]], "file_name": f"{row['image_id']}.png",
         "width": row["width"], "height": row["height"]}
        for row in images.iter_rows(named=True)
    ]
    annotations = []
    for row in nodules.filter(pl.col("image_id").is_in(images.get_column("image_id").implode())) \
            .sort("image_id", "nodule_id").iter_rows(named=True):
        x0, y0, x1, y1 = row["bbox"]
        rle = rles.get(row["nodule_id"])
        annotations.append({
            "id": len(annotations) + 1,
            "image_id": image_ids[row["image_id"]],
            "category_id": CLASS_NAMES.index(row["pathology"]) + 1,
            "bbox": [x0, y0, x1 - x0, y1 - y0],
            "area": int(mask_utils.area(_bytes_counts(rle))) if rle else (x1 - x0) * (y1 - y0),
            "segmentation": rle if rle else box_polygon(row["bbox"]),
            "iscrowd": 0,
            "nodule_id": row["nodule_id"],
        })
    return {"images": coco_images, "annotations": annotations, "categories": CATEGORIES,
            "info": {"description": "thyrokit release", "version": "1.0"}}


def _bytes_counts(rle: dict) -> dict:
    return {"size": rle["size"], "counts": rle["counts"].encode("ascii")}


def write_coco(release: Release) -> int:
    """Write one COCO file and image folder per split; return how many annotations."""
    images = release.manifest.filter((pl.col("n_nodules") > 0) | (pl.col("pathology") == NO_FINDING))
    masked = release.nodules.filter(pl.col("image_id").is_in(images.get_column("image_id").implode()))
    rles = {nodule_id: encode_rle(decode_png(png))
            for nodule_id, png in release.pngs(masked, "nodule_id", "mask_path")}
    root = release.folder / FOLDER
    destination = {image_id: root / split / f"{image_id}.png"
                   for image_id, split in images.select("image_id", "split").iter_rows()}
    write_pngs(release.pngs(images, "image_id", "path"), destination)
    total = 0
    for split in sorted(images.get_column("split").unique()):
        dataset = coco_split(images.filter(pl.col("split") == split), release.nodules, rles)
        write_json(root / f"{split}.json", dataset)
        total += len(dataset["annotations"])
    return total
