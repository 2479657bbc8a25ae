"""Segmentation pairs: ``segmentation/<split>/images/<image_id>.png`` and ``masks/<image_id>.png``.

One pair per image that has a mask: the union of its nodules' masks, 0/255, the
size of the image; all zero for an image labelled with no finding (a negative).
An image labelled with a box only has no pair.
"""

from __future__ import annotations

import polars as pl

from thyrokit.pipelines.formats.manifest import Release, write_pngs

FOLDER = "segmentation"


def segmentation_paths(frame: pl.DataFrame) -> pl.DataFrame:
    """Return `frame`'s image_id and split with the release-relative image and mask file of each pair."""
    return frame.select(
        "image_id", "split",
        image=pl.format(f"{FOLDER}/{{}}/images/{{}}.png", "split", "image_id"),
        label=pl.format(f"{FOLDER}/{{}}/masks/{{}}.png", "split", "image_id"),
    )


def write_segmentation(release: Release) -> int:
    """Write an image/mask pair for every image with a mask; return how many pairs."""
    rows = release.manifest.filter(pl.col("mask_path").is_not_null())
    files = segmentation_paths(rows)
    images = dict(zip(files["image_id"], (release.folder / path for path in files["image"])))
    masks = dict(zip(files["image_id"], (release.folder / path for path in files["label"])))
    write_pngs(release.pngs(rows, "image_id", "path"), images)
    return write_pngs(release.pngs(rows, "image_id", "mask_path"), masks)
