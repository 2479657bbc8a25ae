"""``annotate pull``: Label Studio's annotations back into a nodules table, pixel-exact.

An annotation becomes human-labelled nodules: each brush region is a nodule (its box is
the mask's), a rectangle overlapping a brush region (box IoU >= 0.5) is that nodule's
box, any other rectangle is a nodule with a box only. Pathology and TI-RADS choices
come from the region they are attached to; the TI-RADS level is computed from them.
"Labelled, no finding" is kept too: an image whose annotation has no region is listed
in ``labelled_images.parquet`` with no nodule.

Where several annotations cover one image, the latest wins (:mod:`.agreement`) and
the overlap of each other one with it is reported. Bad items are reported and
skipped, the rest merged: an annotation with a tag, label or choice the config does
not know, or a mask of the wrong size, is skipped whole; an empty region alone; a task
for an image that is no longer in the images table, whole.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from thyrokit.annotate.labels import LABELLED_IMAGES, labelled_images, write_labelled_images
from thyrokit.annotate.studio import config
from thyrokit.annotate.studio.agreement import box_iou, dice, iou, winner
from thyrokit.annotate.studio.rle import RleError, decode_mask
from thyrokit.annotate.studio.tasks import FOCI
from thyrokit.annotate.tirads import FEATURES, tirads_level, tirads_points
from thyrokit.atomic import write_text
from thyrokit.contract import NODULES, write_table
from thyrokit.pixels import ShardWriter, encode_png

MASKS_FOLDER = "masks"
PAIR_MIN_IOU = 0.5
REGION_TYPES = ("brushlabels", "rectanglelabels")
PER_REGION = (config.PATHOLOGY, *FEATURES, FOCI)


class AnnotationError(ValueError):
    """An annotation cannot be read as a whole; it is skipped."""


@dataclass(frozen=True)
class HumanNodule:
    """One nodule an annotator drew: its mask (None for a box only), box and per-region choices."""

    bbox: tuple[int, int, int, int]
    mask: np.ndarray | None
    choices: dict[str, tuple[str, ...]]


@dataclass(frozen=True)
class HumanLabel:
    """One annotation of one image, read and checked."""

    image_id: str
    annotation_id: int
    annotator: str
    updated_at: datetime
    nodules: tuple[HumanNodule, ...]
    quality: str | None


@dataclass
class PullReport:
    """What a pull kept and skipped, and how far annotators of the same image agreed."""

    problems: list[str] = field(default_factory=list)
    agreement: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)


def annotator_name(completed_by: Any) -> str:
    """Return a pseudonymous annotator name from Label Studio's user id (never the e-mail)."""
    user = completed_by.get("id") if isinstance(completed_by, dict) else completed_by
    return f"ls-user-{user}"


def parse_time(text: str) -> datetime:
    """Parse Label Studio's ISO 8601 timestamps (UTC, 'Z' suffix)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def box_to_pixels(value: dict[str, Any], height: int, width: int) -> tuple[int, int, int, int]:
    """Return a percent rectangle as a pixel box (x0, y0, x1, y1), end exclusive, inside the image."""
    x0 = min(max(round(value["x"] * width / 100), 0), width - 1)
    y0 = min(max(round(value["y"] * height / 100), 0), height - 1)
    x1 = min(max(round((value["x"] + value["width"]) * width / 100), x0 + 1), width)
    y1 = min(max(round((value["y"] + value["height"]) * height / 100), y0 + 1), height)
    return x0, y0, x1, y1


def mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Return the end-exclusive box of a non-empty mask."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def read_regions(result: list[dict[str, Any]], height: int, width: int,
                 problems: list[str], where: str) -> tuple[dict[str, HumanNodule], dict[str, HumanNodule], str | None]:
    """Return an annotation's brush nodules and box nodules by region id, and its image quality.

    Raises AnnotationError for anything the config does not know or a mask of the wrong size.
    """
    brushes, boxes, choices, quality = {}, {}, {}, None
    for item in result:
        errors = config.region_errors(item)
        if errors:
            raise AnnotationError(errors[0])
        kind, value, region = item.get("type"), item.get("value", {}), item.get("id")
        if (item.get("original_height"), item.get("original_width")) not in ((None, None), (height, width)):
            raise AnnotationError(f"region {region} was drawn on a {item['original_height']}x"
                                  f"{item['original_width']} image, the image is {height}x{width}")
        if kind == "brushlabels":
            try:
                mask = decode_mask(value["rle"], height, width)
            except RleError as error:
                raise AnnotationError(f"region {region}: {error}") from None
            if not mask.any():
                problems.append(f"{where}: region {region} has an empty mask; skipped")
                continue
            brushes[region] = HumanNodule(mask_bbox(mask), mask, {})
        elif kind == "rectanglelabels":
            boxes[region] = HumanNodule(box_to_pixels(value, height, width), None, {})
        elif kind == "choices" and item.get("from_name") == config.QUALITY:
            quality = value["choices"][0] if value.get("choices") else None
        elif kind == "choices":
            choices.setdefault(region, {})[item["from_name"]] = tuple(value.get("choices", ()))
    return _with_choices(brushes, choices), _with_choices(boxes, choices), quality


def _with_choices(nodules: dict[str, HumanNodule], choices: dict[str, dict]) -> dict[str, HumanNodule]:
    return {key: HumanNodule(nodule.bbox, nodule.mask, choices.get(key, {})) for key, nodule in nodules.items()}


def pair_nodules(brushes: dict[str, HumanNodule], boxes: dict[str, HumanNodule]) -> list[HumanNodule]:
    """Merge each box into the brush region it overlaps best (IoU >= 0.5); the rest stand alone."""
    merged = dict(brushes)
    alone = []
    for box in boxes.values():
        scored = [(box_iou(box.bbox, brush.bbox), key) for key, brush in merged.items()]
        best = max(scored, default=(0.0, None))
        if best[0] >= PAIR_MIN_IOU:
            brush = merged[best[1]]
            merged[best[1]] = HumanNodule(brush.bbox, brush.mask, box.choices | brush.choices)
        else:
            alone.append(box)
    nodules = list(merged.values()) + alone
    return sorted(nodules, key=lambda nodule: (nodule.bbox, nodule.mask is None))


def read_annotation(image_id: str, annotation: dict[str, Any], height: int, width: int,
                    problems: list[str], where: str) -> HumanLabel:
    """Return one annotation as a HumanLabel; raise AnnotationError if it cannot be used."""
    brushes, boxes, quality = read_regions(annotation.get("result") or [], height, width, problems, where)
    return HumanLabel(image_id, int(annotation["id"]), annotator_name(annotation.get("completed_by")),
                      parse_time(annotation.get("updated_at") or annotation["created_at"]),
                      tuple(pair_nodules(brushes, boxes)), quality)


def read_export(tasks: list[dict[str, Any]], sizes: dict[str, tuple[int, int]],
                report: PullReport) -> dict[str, list[HumanLabel]]:
    """Return the usable annotations of an export by image_id; report what is skipped and why."""
    labels: dict[str, list[HumanLabel]] = {}
    for task in sorted(tasks, key=lambda task: task["id"]):
        image_id = (task.get("data") or {}).get("image_id")
        if image_id not in sizes:
            reason = "has no image_id" if image_id is None else f"is for image {image_id}, not in the images table"
            report.problems.append(f"task {task['id']} {reason}; skipped")
            continue
        for annotation in task.get("annotations") or []:
            if annotation.get("was_cancelled"):
                continue
            where = f"task {task['id']} annotation {annotation['id']}"
            try:
                label = read_annotation(image_id, annotation, *sizes[image_id], report.problems, where)
            except AnnotationError as error:
                report.problems.append(f"{where}: {error}; skipped")
                continue
            labels.setdefault(image_id, []).append(label)
    return labels


def label_mask(label: HumanLabel, height: int, width: int) -> np.ndarray:
    """Return the union of an annotation's nodules (masks, or filled boxes) as one mask."""
    union = np.zeros((height, width), bool)
    for nodule in label.nodules:
        if nodule.mask is not None:
            union |= nodule.mask > 0
        else:
            x0, y0, x1, y1 = nodule.bbox
            union[y0:y1, x0:x1] = True
    return union


def resolve_conflicts(labels: dict[str, list[HumanLabel]], sizes: dict[str, tuple[int, int]],
                      report: PullReport) -> list[HumanLabel]:
    """Return the winning annotation per image; record the others' agreement with it."""
    winners = []
    for image_id in sorted(labels):
        chosen = winner(labels[image_id])
        winners.append(chosen)
        chosen_mask = label_mask(chosen, *sizes[image_id])
        for other in sorted(labels[image_id], key=lambda label: label.annotation_id):
            if other is chosen:
                continue
            other_mask = label_mask(other, *sizes[image_id])
            report.agreement.append({
                "image_id": image_id, "kept": chosen.annotation_id, "kept_annotator": chosen.annotator,
                "other": other.annotation_id, "other_annotator": other.annotator,
                "dice": round(dice(chosen_mask, other_mask), 4), "iou": round(iou(chosen_mask, other_mask), 4),
            })
    return winners


def nodule_row(label: HumanLabel, index: int, nodule: HumanNodule, mask_path: str | None) -> dict[str, Any]:
    """Return a nodules-contract row for one human nodule."""
    first = {name: values[0] for name, values in nodule.choices.items() if values and name != FOCI}
    foci = list(nodule.choices.get(FOCI, ()))
    row = {
        "image_id": label.image_id, "nodule_id": f"{label.image_id}-ls{index:02d}", "bbox": list(nodule.bbox),
        "mask_path": mask_path,
        "pathology": config.PATHOLOGY_TO_CONTRACT.get(first.get(config.PATHOLOGY, ""), "unknown"),
        **{feature: first.get(feature) for feature in FEATURES}, "echogenic_foci": foci or None,
        "label_source": "human", "annotator": label.annotator, "updated_at": label.updated_at,
    }
    if all(row[feature] for feature in FEATURES):
        points = tirads_points(*(row[feature] for feature in FEATURES), foci)
        row |= {"tirads_points": points, "tirads": tirads_level(points)}
    return row


def pull_tables(tasks: list[dict[str, Any]], sizes: dict[str, tuple[int, int]], out_table: str | os.PathLike,
                report: PullReport) -> pl.DataFrame:
    """Convert an export and write the nodules table, its mask shards and labelled_images beside it."""
    labels = read_export(tasks, sizes, report)
    winners = resolve_conflicts(labels, sizes, report)
    out_dir = Path(out_table).parent
    masks_dir = out_dir / MASKS_FOLDER
    masks_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    with ShardWriter(masks_dir, MASKS_FOLDER) as writer:
        for label in winners:
            for index, nodule in enumerate(label.nodules):
                row = nodule_row(label, index, nodule, None)
                if nodule.mask is not None:
                    row["mask_path"] = f"{MASKS_FOLDER}/{writer.add(row['nodule_id'], encode_png(nodule.mask))}"
                rows.append(row)
    kept = {path.name for path in writer.written}
    for stale in masks_dir.glob(f"{MASKS_FOLDER}-*.parquet"):
        if stale.name not in kept:
            stale.unlink()
    nodules = write_table(pl.DataFrame(rows, schema=NODULES.schema) if rows else NODULES.empty(),
                          out_table, NODULES)
    listing = pl.concat([labelled_images([label.image_id], "human", label.annotator) for label in winners]) \
        if winners else labelled_images([], "human", "")
    write_labelled_images(listing, out_dir / LABELLED_IMAGES)
    report.counts = {
        "tasks": len(tasks), "annotated_images": len(winners), "nodules": nodules.height,
        "images_no_finding": sum(1 for label in winners if not label.nodules),
        "images_with_several_annotations": len({row["image_id"] for row in report.agreement}),
        "skipped": len(report.problems),
        "mean_dice": _mean(row["dice"] for row in report.agreement),
        "mean_iou": _mean(row["iou"] for row in report.agreement),
        "quality": _tally(label.quality for label in winners),
    }
    return nodules


def _mean(values) -> float | None:
    values = list(values)
    return round(sum(values) / len(values), 4) if values else None


def _tally(values) -> dict[str, int]:
    tally: dict[str, int] = {}
    for value in values:
        tally[value or "not_given"] = tally.get(value or "not_given", 0) + 1
    return dict(sorted(tally.items()))


def write_report(report: PullReport, path: str | os.PathLike) -> None:
    """Write the pull's counts, agreement and problems as JSON."""
    body = {"counts": report.counts, "agreement": report.agreement, "problems": report.problems}
    write_text(path, json.dumps(body, indent=2, sort_keys=True) + "\n")
