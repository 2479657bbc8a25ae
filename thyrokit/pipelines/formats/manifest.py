"""The native release: a manifest of images, the labels and patches it carries, and their pixel shards.

Every other format is rendered from this one, and the modeller's loader reads it, so
all of them agree on which images, labels and patches each split holds::

    manifest.parquet   one row per image: ids, site, device, split, fold, image-level label
    nodules.parquet    the findings the release carries (the nodules contract)
    patches.parquet    real and synthetic nodule patches (the patches contract)
    pixels/            images-*, masks-* (union mask per image, key image_id),
                       nodule-masks-* (key nodule_id), patches-*, patch-masks-* (key nodule_id)

Shard paths in the three tables are relative to the release folder.

An image's label in the manifest is one of three states:

* labelled with findings: ``label_source`` set, ``pathology`` benign/malignant/unknown,
  ``n_nodules`` > 0, ``mask_path`` the union of its nodules' masks;
* labelled, no finding (a human looked and found no nodule): ``label_source`` "human",
  ``pathology`` "none", ``n_nodules`` 0, ``mask_path`` an all-zero mask, so
  segmentation formats carry it as a negative;
* unlabelled: ``label_source``, ``pathology`` and ``mask_path`` null.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from tqdm.auto import tqdm

from thyrokit.atomic import write_bytes
from thyrokit.contract import (IMAGES, LABEL_SOURCES, NODULES, PATCHES, PATHOLOGIES, SPLITS, TableSpec,
                               write_table)
from thyrokit.pixels import ShardWriter, decode_png, encode_png, iter_shard

log = logging.getLogger(__name__)

PIXELS = "pixels"
# Labels that only the train split may carry: they come from models, not from a human.
TRAIN_ONLY_SOURCES = ("pseudo", "synthetic")
# Category order of every format (COCO ids 1.., YOLO ids 0.., loader labels 0..).
CLASS_NAMES = PATHOLOGIES
# The pathology of an image a human labelled as holding no nodule.
NO_FINDING = "none"

# Columns the manifest takes from the images table as they are.
IMAGE_COLUMNS = ("image_id", "patient_id", "study_id", "series_id", "site", "device", "modality", "frame",
                 "n_frames", "width", "height", "channels", "spacing_mm", "split", "fold")

MANIFEST = TableSpec(
    name="manifest",
    schema={
        **{name: IMAGES.schema[name] for name in IMAGE_COLUMNS},
        # Where the image's labels came from (human, or pseudo on train only); null = unlabelled.
        "label_source": pl.String(),
        # Malignant if any nodule is, else benign if any is, else unknown; "none" = a human
        # labelled it and found no nodule; null = unlabelled.
        "pathology": pl.String(),
        "n_nodules": pl.Int32(),
        # Shard files of the image and of the union mask of its nodules (0/255), key image_id.
        # mask_path is null for an unlabelled image and for one with a nodule drawn as a box only;
        # a labelled image with no finding has an all-zero mask.
        "path": pl.String(),
        "mask_path": pl.String(),
    },
    required=("image_id", "patient_id", "series_id", "site", "split", "frame", "n_frames",
              "width", "height", "channels", "n_nodules", "path"),
    key=("image_id",),
    allowed={"split": SPLITS, "pathology": (*PATHOLOGIES, NO_FINDING), "label_source": LABEL_SOURCES},
    sort_by=("image_id",),
)


@dataclass(frozen=True)
class Release:
    """A written native release: its folder and its three tables (shard paths relative to the folder)."""

    folder: Path
    manifest: pl.DataFrame
    nodules: pl.DataFrame
    patches: pl.DataFrame

    def pngs(self, frame: pl.DataFrame, key: str, column: str) -> Iterator[tuple[str, bytes]]:
        """Yield (key, png) of `frame`'s rows from this release's shards."""
        return iter_pngs(frame, key, column, base=self.folder)


def release_labels(images: pl.DataFrame, nodules: pl.DataFrame, no_finding: Iterable[str] = ()) -> pl.DataFrame:
    """Return the findings the release carries: human ones anywhere, pseudo/synthetic on train only.

    A model's label never stands beside a human's on the same image (nor on an image
    a human labelled as `no_finding`), and pre-label predictions (waiting for review)
    never ship.
    """
    on_image = nodules.join(images.select("image_id", "split"), on="image_id", how="inner")
    human_images = on_image.filter(pl.col("label_source") == "human").get_column("image_id").to_list()
    keep = (pl.col("label_source") == "human") | (
        pl.col("label_source").is_in(TRAIN_ONLY_SOURCES)
        & (pl.col("split") == "train")
        & ~pl.col("image_id").is_in(sorted({*human_images, *no_finding}))
    )
    kept = on_image.filter(keep).drop("split")
    dropped = nodules.height - kept.height
    if dropped:
        log.info("export: %d finding(s) not released (prediction, model label off train, "
                 "or image not in the release)", dropped)
    return kept.sort("image_id", "nodule_id")


def release_patches(patches: pl.DataFrame, labels: pl.DataFrame,
                    synthetic: pl.DataFrame | None = None) -> pl.DataFrame:
    """Return the patches of released findings, plus synthetic patches, which must be train."""
    real = patches.filter(pl.col("nodule_id").is_in(labels.get_column("nodule_id").implode()))
    if synthetic is None or synthetic.is_empty():
        return real.sort("nodule_id")
    off_train = synthetic.filter(pl.col("split") != "train").height
    if off_train:
        log.warning("export: %d synthetic patch(es) outside the train split not released", off_train)
    synthetic = synthetic.filter(pl.col("split") == "train").with_columns(
        label_source=pl.lit("synthetic"))
    return pl.concat([real, synthetic]).sort("nodule_id")


def build_manifest(images: pl.DataFrame, labels: pl.DataFrame, no_finding: Iterable[str] = ()) -> pl.DataFrame:
    """Return one manifest row per image with a split, with its image-level label.

    Images in `no_finding` (labelled by a human, no nodule) that carry no released
    finding get pathology "none" and label_source "human".
    """
    per_image = labels.group_by("image_id").agg(
        n_nodules=pl.len().cast(pl.Int32),
        label_source=pl.col("label_source").min(),  # human < pseudo < synthetic
        pathology=pl.when((pl.col("pathology") == "malignant").any()).then(pl.lit("malignant"))
        .when((pl.col("pathology") == "benign").any()).then(pl.lit("benign"))
        .otherwise(pl.lit("unknown")),
    )
    without_split = images.filter(pl.col("split").is_null()).height
    if without_split:
        log.warning("export: %d image(s) without a split not released", without_split)
    frame = (
        images.filter(pl.col("split").is_not_null())
        .join(per_image, on="image_id", how="left")
        .with_columns(pl.col("n_nodules").fill_null(0), mask_path=pl.lit(None, pl.String()))
    )
    negative = (pl.col("n_nodules") == 0) & pl.col("image_id").is_in(sorted(set(no_finding)))
    frame = frame.with_columns(
        pl.when(negative).then(pl.lit("human")).otherwise(pl.col("label_source")).alias("label_source"),
        pl.when(negative).then(pl.lit(NO_FINDING)).otherwise(pl.col("pathology")).alias("pathology"),
    )
    return frame.select([name for name in MANIFEST.schema]).sort("image_id")


def resolve_paths(frame: pl.DataFrame, column: str, table_dir: str | os.PathLike) -> pl.DataFrame:
    """Return `frame` with the shard paths in `column`, relative to `table_dir`, made absolute."""
    base = str(Path(table_dir).resolve())
    return frame.with_columns(
        pl.when(pl.col(column).is_not_null()).then(pl.lit(base + os.sep) + pl.col(column)).alias(column))


def iter_pngs(frame: pl.DataFrame, key: str, column: str, base: str | os.PathLike = "") -> Iterator[tuple[str, bytes]]:
    """Yield (key, png) for every row of `frame` whose shard (in `column`, under `base`) holds it.

    Each shard is read once, a row group at a time; rows come in shard order. A key
    whose shard is missing or does not hold it is logged and skipped.
    """
    rows = frame.filter(pl.col(column).is_not_null())
    found: set[str] = set()
    for shard, group in sorted(rows.group_by(column), key=lambda item: item[0][0]):
        wanted = set(group.get_column(key).to_list())
        path = Path(base) / shard[0]
        if not path.is_file():
            continue
        for name, png in iter_shard(path):
            if name in wanted and name not in found:
                found.add(name)
                yield name, png
    for name in sorted(set(rows.get_column(key).to_list()) - found):
        log.warning("export: %s: no pixels in its shard; left out", name)


def copy_pixels(frame: pl.DataFrame, key: str, column: str, out_dir: str | os.PathLike,
                prefix: str, max_bytes: int) -> pl.DataFrame:
    """Copy the pixels of `frame`'s rows into new shards under ``out_dir/pixels``.

    Returns `frame` with `column` pointing at the new shards (relative to `out_dir`);
    rows whose pixels could not be found get a null there.
    """
    where: dict[str, str] = {}
    with ShardWriter(Path(out_dir) / PIXELS, prefix, max_bytes) as writer:
        for name, png in tqdm(iter_pngs(frame, key, column), total=frame.height, desc=f"export {prefix}",
                              unit="item", disable=None):
            where[name] = f"{PIXELS}/{writer.add(name, png)}"
    return frame.with_columns(
        pl.col(key).replace_strict(where, default=None, return_dtype=pl.String()).alias(column))


def union_mask(masks: Iterable[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Return the 0/255 union of binary masks, of size `shape`."""
    union = np.zeros(shape, dtype=bool)
    for mask in masks:
        union |= mask > 0
    return union.astype(np.uint8) * 255


def write_union_masks(manifest: pl.DataFrame, nodules: pl.DataFrame, out_dir: str | os.PathLike,
                      max_bytes: int) -> pl.DataFrame:
    """Write each image's union mask into ``pixels/masks-*`` and fill the manifest's mask_path.

    Only images all of whose findings have a mask get one: a finding drawn as a box only
    would otherwise read as background. An image labelled with no finding gets an
    all-zero mask. Masks are folded in as they stream from the shards, so memory holds
    only images whose findings are not all read yet.
    """
    complete = nodules.group_by("image_id").agg(
        pl.col("mask_path").is_not_null().all().alias("complete"), pl.len().alias("count"))
    complete = complete.filter("complete").join(
        manifest.select("image_id", "height", "width"), on="image_id")
    expected = {row["image_id"]: row for row in complete.iter_rows(named=True)}
    image_of = dict(nodules.select("nodule_id", "image_id").iter_rows())
    partial: dict[str, tuple[np.ndarray, int]] = {}
    where: dict[str, str] = {}
    with ShardWriter(Path(out_dir) / PIXELS, "masks", max_bytes) as writer:
        for nodule_id, png in iter_pngs(nodules, "nodule_id", "mask_path", base=out_dir):
            image_id = image_of[nodule_id]
            if image_id not in expected:
                continue
            shape = (expected[image_id]["height"], expected[image_id]["width"])
            union, seen = partial.pop(image_id, (np.zeros(shape, np.uint8), 0))
            mask = decode_png(png)
            if mask.shape != shape:
                log.warning("export: %s: mask is %s, image is %s; image has no mask",
                            nodule_id, mask.shape, shape)
                expected.pop(image_id)
                continue
            union = union_mask([union, mask], shape)
            if seen + 1 < expected[image_id]["count"]:
                partial[image_id] = (union, seen + 1)
            else:
                where[image_id] = f"{PIXELS}/{writer.add(image_id, encode_png(union))}"
        negatives = manifest.filter(pl.col("pathology") == NO_FINDING).sort("image_id")
        for image_id, height, width in negatives.select("image_id", "height", "width").iter_rows():
            where[image_id] = f"{PIXELS}/{writer.add(image_id, encode_png(np.zeros((height, width), np.uint8)))}"
    return manifest.with_columns(
        pl.col("image_id").replace_strict(where, default=None, return_dtype=pl.String()).alias("mask_path"))


def write_release(images: pl.DataFrame, nodules: pl.DataFrame, patches: pl.DataFrame,
                  out_dir: str | os.PathLike, max_bytes: int, no_finding: Iterable[str] = ()) -> Release:
    """Write the native release from tables whose shard paths are absolute.

    `no_finding` names images a human labelled as holding no nodule. Images whose
    pixels are missing are left out, with their findings and patches.
    """
    out_dir = Path(out_dir)
    manifest = build_manifest(images, nodules, no_finding)
    manifest = copy_pixels(manifest, "image_id", "path", out_dir, "images", max_bytes)
    manifest = manifest.filter(pl.col("path").is_not_null())
    released = manifest.get_column("image_id").implode()
    nodules = nodules.filter(pl.col("image_id").is_in(released))
    nodules = copy_pixels(nodules, "nodule_id", "mask_path", out_dir, "nodule-masks", max_bytes)
    patches = patches.filter(pl.col("image_id").is_in(released) | (pl.col("label_source") == "synthetic"))
    patches = copy_pixels(patches, "nodule_id", "path", out_dir, "patches", max_bytes)
    patches = patches.filter(pl.col("path").is_not_null())
    patches = copy_pixels(patches, "nodule_id", "mask_path", out_dir, "patch-masks", max_bytes)
    patches = patches.filter(pl.col("mask_path").is_not_null())
    manifest = write_union_masks(manifest, nodules, out_dir, max_bytes)
    manifest = write_table(manifest, out_dir / "manifest.parquet", MANIFEST)
    nodules = write_table(nodules, out_dir / "nodules.parquet", NODULES)
    patches = write_table(patches, out_dir / "patches.parquet", PATCHES)
    return Release(out_dir, manifest, nodules, patches)


def write_pngs(pairs: Iterable[tuple[str, bytes]], destination: dict[str, Path]) -> int:
    """Write each (key, png) to ``destination[key]``; return how many were written."""
    count = 0
    for key, png in tqdm(pairs, total=len(destination), desc="export files", unit="file", disable=None):
        write_bytes(destination[key], png)
        count += 1
    return count
