"""Nodule ROI patches: one square grey patch and mask per nodule, centred on it, fixed size.

The window cut around a nodule is ``context`` times its bbox's longer side (at least
``min_side`` image pixels), centred on the bbox; where it reaches past the image edge
the patch is padded with 0 and the recorded ``window`` says so. The window is resized
to ``size`` x ``size``: area interpolation for the image, nearest neighbour then a
re-threshold for the mask, so the mask stays binary. Colour frames (Doppler overlays,
RGB exports) are converted to grey with the ITU-R BT.601 luma weights (OpenCV's
RGB2GRAY), since every model downstream reads one channel.

Human-labelled nodules give patches in every split. Pseudolabels come from a model
trained on train images, so they are used for train images only: a pseudolabel on a
validation, test or external image would let a model grade itself.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import polars as pl

from thyrokit.contract import IMAGES, NODULES, PATCHES, read_table, write_table
from thyrokit.curate.masks import Box, binarise, to_uint8
from thyrokit.parallel import map_batches
from thyrokit.pixels import ShardWriter, decode_png, encode_png

PIXELS_FOLDER = "pixels"
PATCH_PREFIX = "patches"
MASK_PREFIX = "masks"


@dataclass(frozen=True)
class RoiSpec:
    """How patches are cut: output side, context factor and smallest window side."""

    size: int
    context: float
    min_side: int = 8


@dataclass(frozen=True)
class NoduleRef:
    """One nodule to cut: its id, bbox and mask PNG (None where its shard lacks it)."""

    nodule_id: str
    bbox: Box
    mask_png: bytes | None


@dataclass(frozen=True)
class ImageTask:
    """One image's PNG (None where its shard lacks it) and the nodules to cut from it.

    Tasks carry their pixels, so workers read no files: Parquet readers are not safe
    to use in a forked worker, and self-contained tasks also suit a distributed engine.
    """

    image_id: str
    png: bytes | None
    nodules: tuple[NoduleRef, ...]


@dataclass(frozen=True)
class Patch:
    """A cut patch and mask as PNG bytes with their window and scale, or why it failed."""

    nodule_id: str
    png: bytes | None = None
    mask_png: bytes | None = None
    window: Box | None = None
    scale: float | None = None
    reason: str | None = None


@dataclass
class RoiReport:
    """What the roi stage cut and skipped."""

    counts: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def square_window(bbox: Box, context: float, min_side: int) -> Box:
    """Return the square window (x0, y0, x1, y1) of side context x the bbox's longer side, centred on it.

    The side takes the parity of the longer bbox side, so the window centres exactly
    on that axis; on the other it may sit half a pixel off.
    """
    x0, y0, x1, y1 = bbox
    longest = max(x1 - x0, y1 - y0)
    side = max(min_side, math.ceil(round(context * longest, 6)))
    side += (side - longest) % 2
    left, top = (x0 + x1 - side) // 2, (y0 + y1 - side) // 2
    return left, top, left + side, top + side


def cut_window(image: np.ndarray, window: Box) -> np.ndarray:
    """Return the part of `image` under `window`, padded with 0 where it leaves the image."""
    x0, y0, x1, y1 = window
    height, width = image.shape[:2]
    out = np.zeros((y1 - y0, x1 - x0, *image.shape[2:]), dtype=image.dtype)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = image[sy0:sy1, sx0:sx1]
    return out


def to_grey(image: np.ndarray) -> np.ndarray:
    """Return a grey (H, W) image; RGB is converted with the BT.601 luma weights."""
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """Return `image` resized to size x size with area interpolation."""
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Return a 0/255 mask resized to size x size, nearest neighbour, still 0/255."""
    return to_uint8(binarise(cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST)))


def cut_patch(image: np.ndarray, mask: np.ndarray, bbox: Box,
              spec: RoiSpec) -> tuple[np.ndarray, np.ndarray, Box, float]:
    """Return (patch, patch mask, window, scale) of the nodule at `bbox`; scale is patch px per image px."""
    window = square_window(bbox, spec.context, spec.min_side)
    patch = resize_image(cut_window(to_grey(image), window), spec.size)
    patch_mask = resize_mask(cut_window(mask, window), spec.size)
    return patch, patch_mask, window, spec.size / (window[2] - window[0])


def cut_image_patches(spec: RoiSpec, task: ImageTask) -> list[Patch]:
    """Cut every nodule patch of one image; a nodule that fails gets a Patch with a reason."""
    try:
        image = decode_png(task.png) if task.png is not None else None
    except ValueError:
        image = None
    if image is None:
        return [Patch(ref.nodule_id, reason="image pixels missing or not decodable") for ref in task.nodules]
    patches = []
    for ref in task.nodules:
        try:
            mask = decode_png(ref.mask_png) if ref.mask_png is not None else None
        except ValueError:
            mask = None
        if mask is None:
            patches.append(Patch(ref.nodule_id, reason="mask pixels missing or not decodable"))
        elif mask.shape[:2] != image.shape[:2]:
            patches.append(Patch(ref.nodule_id, reason="mask and image differ in size"))
        else:
            patch, patch_mask, window, scale = cut_patch(image, mask, ref.bbox, spec)
            patches.append(Patch(ref.nodule_id, encode_png(patch), encode_png(patch_mask), window, scale))
    return patches


def select_nodules(images: pl.DataFrame, human: pl.DataFrame, pseudo: pl.DataFrame) -> tuple[pl.DataFrame, dict]:
    """Return the nodules to cut joined with their image's row, and counts of what was left out.

    Human labels are kept in every split; pseudolabels only on train images.
    """
    human = human.filter(pl.col("label_source") == "human")
    pseudo = pseudo.filter(pl.col("label_source") == "pseudo")
    on_images = images.filter(pl.col("split").is_not_null())
    both = pl.concat([human.with_columns(pl.lit(False).alias("is_pseudo")),
                      pseudo.with_columns(pl.lit(True).alias("is_pseudo"))])
    joined = both.join(on_images, on="image_id", how="inner")
    kept = joined.filter(~pl.col("is_pseudo") | (pl.col("split") == "train"))
    counts = {
        "nodules_without_split_image": both.height - joined.height,
        "pseudo_outside_train": joined.height - kept.height,
    }
    return kept, counts


def read_found(shard: str, keys: list[str]) -> dict[str, bytes]:
    """Return the PNG bytes of those `keys` that the shard file holds; none if it is unreadable."""
    try:
        found = pl.scan_parquet(shard).filter(pl.col("key").is_in(keys)).collect()
    except (OSError, pl.exceptions.PolarsError):
        return {}
    return dict(zip(found.get_column("key").to_list(), found.get_column("png").to_list()))


def image_tasks(nodules: pl.DataFrame) -> Iterator[ImageTask]:
    """Yield one task per image of `nodules` (sorted by image_shard), reading each shard once.

    `nodules` carries each image's absolute ``image_shard`` and each mask's ``mask_shard``;
    one image shard's wanted pixels are held in memory at a time.
    """
    for (shard,), in_shard in nodules.group_by("image_shard", maintain_order=True):
        images = read_found(shard, in_shard.get_column("image_id").unique().to_list())
        masks: dict[str, bytes] = {}
        for (mask_shard,), group in in_shard.group_by("mask_shard", maintain_order=True):
            masks |= read_found(mask_shard, group.get_column("nodule_id").to_list())
        for (image,), group in in_shard.group_by("image_id", maintain_order=True):
            refs = tuple(NoduleRef(nodule, tuple(bbox), masks.get(nodule))
                         for nodule, bbox in group.select("nodule_id", "bbox").iter_rows())
            yield ImageTask(image, images.get(image), refs)


def absolute(frame: pl.DataFrame, column: str, folder: Path, alias: str) -> pl.DataFrame:
    """Return `frame` with `column`'s paths, relative to `folder`, made absolute in `alias`."""
    return frame.with_columns(
        pl.when(pl.col(column).is_not_null()).then(pl.lit(f"{folder.resolve()}/") + pl.col(column))
        .otherwise(None).alias(alias))


def write_montage(examples: dict[str, list[tuple[np.ndarray, np.ndarray]]], path: str | os.PathLike) -> None:
    """Plot a row of example (patch, mask) pairs per class into a PNG, each mask as an outline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from thyrokit.atomic import atomic_path

    classes = sorted(examples) or ["(none)"]
    columns = max([len(patches) for patches in examples.values()] + [1])
    figure, axes = plt.subplots(len(classes), columns, figsize=(1.2 * columns + 1, 1.3 * len(classes)),
                                squeeze=False)
    for row, name in enumerate(classes):
        for column, ax in enumerate(axes[row]):
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_frame_on(False)
            if column < len(examples.get(name, [])):
                patch, mask = examples[name][column]
                ax.imshow(patch, cmap="gray", vmin=0)
                ax.contour(mask, levels=[127], colors="yellow", linewidths=0.6)
        axes[row][0].set_ylabel(name, rotation=0, ha="right", va="center")
    figure.suptitle("ROI patches per pathology")
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    plt.close(figure)


def read_nodules(path: Path) -> pl.DataFrame:
    """Read a nodules table with each mask's absolute shard path in ``mask_shard``."""
    return absolute(read_table(path, NODULES), "mask_path", path.parent, "mask_shard")


def build_roi(images_path: str | os.PathLike, nodules_path: str | os.PathLike, out_dir: str | os.PathLike,
              spec: RoiSpec, pseudo_path: str | os.PathLike | None = None, workers: int | None = None,
              montage_per_class: int = 8) -> RoiReport:
    """Write ``patches.parquet``, patch and mask shards and ``montage.png`` into `out_dir`.

    A missing `pseudo_path` file means no pseudolabels yet.
    """
    images_path, out_dir = Path(images_path), Path(out_dir)
    images = absolute(read_table(images_path, IMAGES), "path", images_path.parent, "image_shard")
    human = read_nodules(Path(nodules_path))
    pseudo = human.clear()
    if pseudo_path is not None and Path(pseudo_path).is_file():
        pseudo = read_nodules(Path(pseudo_path))
    selected, counts = select_nodules(images, human, pseudo)
    report = RoiReport()
    for nodule in selected.filter(pl.col("mask_shard").is_null()).get_column("nodule_id").to_list():
        report.problems.append(f"nodule {nodule}: nodule has no mask")
    reasons = Counter({"nodule has no mask": len(report.problems)} if report.problems else {})
    selected = selected.filter(pl.col("mask_shard").is_not_null()).sort("image_shard", "image_id", "nodule_id")

    pixels_dir = out_dir / PIXELS_FOLDER
    pixels_dir.mkdir(parents=True, exist_ok=True)
    for stale in [*pixels_dir.glob(f"{PATCH_PREFIX}-*.parquet"), *pixels_dir.glob(f"{MASK_PREFIX}-*.parquet")]:
        stale.unlink()
    rows, examples = [], {}
    results = (patch for patches in map_batches(partial(cut_image_patches, spec), image_tasks(selected),
                                                workers=workers, desc="cut patches",
                                                total=selected.get_column("image_id").n_unique())
               for patch in patches)
    with ShardWriter(pixels_dir, PATCH_PREFIX) as patch_writer, ShardWriter(pixels_dir, MASK_PREFIX) as mask_writer:
        for nodule, patch in zip(selected.iter_rows(named=True), results, strict=True):
            if patch.png is None:
                report.problems.append(f"nodule {patch.nodule_id}: {patch.reason}")
                reasons[patch.reason] += 1
                continue
            spacing = nodule["spacing_mm"]
            rows.append({
                **{name: nodule[name] for name in ("nodule_id", "image_id", "patient_id", "site", "split",
                                                   "pathology", "tirads", "label_source")},
                "window": list(patch.window), "scale": patch.scale, "size": spec.size,
                "spacing_mm": [value / patch.scale for value in spacing] if spacing is not None else None,
                "path": f"{PIXELS_FOLDER}/{patch_writer.add(patch.nodule_id, patch.png)}",
                "mask_path": f"{PIXELS_FOLDER}/{mask_writer.add(patch.nodule_id, patch.mask_png)}",
            })
            shown = examples.setdefault(nodule["pathology"], [])
            if len(shown) < montage_per_class:
                shown.append((decode_png(patch.png), decode_png(patch.mask_png)))
    patches = write_table(pl.DataFrame(rows, schema=dict(PATCHES.schema)),
                          out_dir / "patches.parquet", PATCHES)
    write_montage(examples, out_dir / "montage.png")
    report.counts = counts | {
        "patches": patches.height,
        "skipped": len(report.problems),
        "skipped_by_reason": dict(sorted(reasons.items())),
        "patches_by_split": dict(sorted(Counter(patches.get_column("split").to_list()).items())),
        "patches_by_label_source": dict(sorted(Counter(patches.get_column("label_source").to_list()).items())),
    }
    return report
