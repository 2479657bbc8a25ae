"""YOLO detection: ``yolo/images/<split>/*.png``, ``yolo/labels/<split>/*.txt`` and ``yolo/data.yaml``.

One label line per finding, ``class x_centre y_centre width height``, normalised to
[0, 1] by the image size; classes are the pathologies (benign 0, malignant 1,
unknown 2). An image labelled with no finding has an empty label file (a background
image). ``data.yaml`` has no ``path``, so trainers resolve the folders beside it.
"""

from __future__ import annotations

import polars as pl
import yaml

from thyrokit.atomic import write_text
from thyrokit.pipelines.formats.manifest import CLASS_NAMES, NO_FINDING, Release, write_pngs

FOLDER = "yolo"
SPLIT_KEYS = {"train": "train", "validation": "val", "test": "test", "external": "external"}


def yolo_line(class_index: int, bbox: list[int], width: int, height: int) -> str:
    """Return one YOLO label line for a box (x0, y0, x1, y1) in an image of `width` x `height`."""
    x0, y0, x1, y1 = bbox
    values = ((x0 + x1) / 2 / width, (y0 + y1) / 2 / height, (x1 - x0) / width, (y1 - y0) / height)
    return f"{class_index} " + " ".join(f"{min(max(value, 0.0), 1.0):.6f}" for value in values)


def write_yolo(release: Release) -> int:
    """Write images, label files and data.yaml for the labelled images; return how many images."""
    root = release.folder / FOLDER
    images = release.manifest.filter((pl.col("n_nodules") > 0) | (pl.col("pathology") == NO_FINDING))
    for image_id, split in images.filter(pl.col("n_nodules") == 0).select("image_id", "split").iter_rows():
        write_text(root / "labels" / split / f"{image_id}.txt", "")
    boxes = release.nodules.join(images.select("image_id", "width", "height", "split"), on="image_id")
    for (image_id, split), group in sorted(boxes.group_by("image_id", "split"), key=lambda item: item[0]):
        lines = [yolo_line(CLASS_NAMES.index(row["pathology"]), row["bbox"], row["width"], row["height"])
                 for row in group.sort("nodule_id").iter_rows(named=True)]
        write_text(root / "labels" / split / f"{image_id}.txt", "\n".join(lines) + "\n")
    destination = {image_id: root / "images" / split / f"{image_id}.png"
                   for image_id, split in images.select("image_id", "split").iter_rows()}
    count = write_pngs(release.pngs(images, "image_id", "path"), destination)
    splits = sorted(images.get_column("split").unique())
    data = {SPLIT_KEYS[split]: f"images/{split}" for split in splits}
    data |= {"nc": len(CLASS_NAMES), "names": dict(enumerate(CLASS_NAMES))}
    write_text(root / "data.yaml", yaml.safe_dump(data, sort_keys=True))
    return count
