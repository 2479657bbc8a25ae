"""``annotate push``: de-identified images with their pre-labels into a Label Studio project.

Push converges the project on the tables rather than replaying steps, so it is safe to
run again at any time, also after a push cut off half-way: it lists the tasks the
project already has (by ``image_id``), imports only the missing ones (in batches, each
one request the server commits whole, never retried blindly), replaces predictions
that differ from the tables' and refreshes task data whose uncertainty changed.
Annotations are never touched. Tasks are imported most informative first.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from tqdm.auto import tqdm

from thyrokit.annotate.studio import config
from thyrokit.annotate.studio.client import (NO_RETRY, Studio, ensure_local_storage, find_or_create_project,
                                             list_tasks, set_project, studio_call)
from thyrokit.annotate.studio.tasks import prediction, prediction_result, task_data
from thyrokit.atomic import write_bytes
from thyrokit.contract import IMAGES, NODULES, UNCERTAINTY, read_table
from thyrokit.pixels import decode_png, read_pngs

# Images are served from this folder under Label Studio's document root, as <image_id>.png.
SERVE_FOLDER = "thyrokit"
DEFAULT_BATCH_SIZE = 250


@dataclass
class PushReport:
    """What a push did, and the images it skipped (one line each)."""

    project_id: int = 0
    tasks_created: int = 0
    predictions_replaced: int = 0
    data_updated: int = 0
    unchanged: int = 0
    problems: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Return the counts, for a metrics file or a log line."""
        return {"project_id": self.project_id, "tasks_created": self.tasks_created,
                "predictions_replaced": self.predictions_replaced, "data_updated": self.data_updated,
                "unchanged": self.unchanged, "skipped": len(self.problems)}


@dataclass(frozen=True)
class PushInputs:
    """The tables a push reads, and the folders their shard paths are relative to."""

    images: pl.DataFrame
    images_dir: Path
    predictions: pl.DataFrame
    predictions_dir: Path
    uncertainty: pl.DataFrame


def read_push_inputs(images_path: str | os.PathLike, predictions_path: str | os.PathLike,
                     uncertainty_path: str | os.PathLike) -> PushInputs:
    """Read the images, predicted nodules and uncertainty tables (validated)."""
    predictions = read_table(predictions_path, NODULES).filter(pl.col("label_source") == "prediction")
    return PushInputs(read_table(images_path, IMAGES), Path(images_path).parent, predictions,
                      Path(predictions_path).parent, read_table(uncertainty_path, UNCERTAINTY))


def push_queue(inputs: PushInputs, report: PushReport) -> list[dict[str, Any]]:
    """Return the images to push, most informative first; report uncertainty rows with no image."""
    queue = inputs.uncertainty.sort("rank", "image_id").join(
        inputs.images.select("image_id", "width", "height", "path"), on="image_id", how="left",
        maintain_order="left")
    for image_id in queue.filter(pl.col("path").is_null()).get_column("image_id").to_list():
        report.problems.append(f"image {image_id}: in the uncertainty table but not in the images table")
    return queue.filter(pl.col("path").is_not_null()).to_dicts()


# Label Studio serves the lowest prediction score first under uncertainty sampling.
PROJECT_SETTINGS = {"sampling": "Uncertainty sampling", "show_collab_predictions": True}


def pushed_model_version(uncertainty: pl.DataFrame) -> str | None:
    """Return the model version of the pushed predictions (the most informative image's, if several)."""
    return uncertainty.sort("rank", "image_id").item(0, "model_version") if uncertainty.height else None


def batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """Yield consecutive slices of `items` of at most `size`."""
    for start in range(0, len(items), size):
        yield items[start:start + size]


def serve_images(rows: Sequence[dict[str, Any]], images_dir: Path, serve_dir: Path) -> None:
    """Write each image's PNG (from its shard, bytes unchanged) to `serve_dir`/<image_id>.png."""
    by_shard: dict[str, list[str]] = {}
    for row in rows:
        by_shard.setdefault(row["path"], []).append(row["image_id"])
    for shard, keys in by_shard.items():
        for image_id, png in read_pngs(images_dir / shard, keys).items():
            target = serve_dir / f"{image_id}.png"
            if not (target.is_file() and target.read_bytes() == png):
                write_bytes(target, png)


def read_masks(nodules: pl.DataFrame, folder: Path) -> dict[str, np.ndarray]:
    """Return the decoded mask of every nodule that has one (shards relative to `folder`)."""
    masks: dict[str, np.ndarray] = {}
    with_masks = nodules.filter(pl.col("mask_path").is_not_null())
    for (shard,), group in with_masks.group_by("mask_path", maintain_order=True):
        pngs = read_pngs(folder / shard, group.get_column("nodule_id").to_list())
        masks |= {key: decode_png(png) for key, png in pngs.items()}
    return masks


def index_tasks(tasks: list[dict[str, Any]], report: PushReport) -> dict[str, dict[str, Any]]:
    """Return the project's tasks by image_id (the oldest where an image has several)."""
    index: dict[str, dict[str, Any]] = {}
    counts: dict[str, int] = {}
    for task in sorted(tasks, key=lambda task: task["id"]):
        image_id = (task.get("data") or {}).get("image_id")
        if image_id is None:
            continue
        counts[image_id] = counts.get(image_id, 0) + 1
        index.setdefault(image_id, task)
    for image_id, count in sorted(counts.items()):
        if count > 1:
            report.problems.append(f"image {image_id}: {count} tasks in the project; only the oldest is updated")
    return index


def has_prediction(task: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Return whether the task holds exactly the wanted prediction and no other."""
    held = task.get("predictions") or []
    return len(held) == 1 and all(held[0].get(key) == wanted[key] for key in ("model_version", "result")) \
        and abs((held[0].get("score") or 0.0) - wanted["score"]) < 1e-9


def push(studio: Studio, inputs: PushInputs, files_dir: str | os.PathLike, project_title: str,
         batch_size: int = DEFAULT_BATCH_SIZE) -> PushReport:
    """Make the project hold one task, with the current prediction, per image of the uncertainty table."""
    report = PushReport()
    queue = push_queue(inputs, report)
    serve_dir = Path(files_dir).resolve() / SERVE_FOLDER
    serve_dir.mkdir(parents=True, exist_ok=True)
    report.project_id = find_or_create_project(studio, project_title, config.labelling_config(), PROJECT_SETTINGS)
    ensure_local_storage(studio, report.project_id, serve_dir)
    existing = index_tasks(list_tasks(studio, report.project_id), report)

    with tqdm(total=len(queue), desc="push", unit="task") as progress:
        for batch in batches(queue, batch_size):
            serve_images(batch, inputs.images_dir, serve_dir)
            new, stale_predictions, stale_data = plan_batch(batch, inputs, existing, report)
            import_tasks(studio, report.project_id, new)
            replace_predictions(studio, report.project_id, stale_predictions)
            update_data(studio, stale_data)
            report.tasks_created += len(new)
            report.predictions_replaced += len(stale_predictions)
            report.data_updated += len(stale_data)
            progress.update(len(batch))
    # Label Studio pre-fills the editor only with predictions of the project's model version,
    # and accepts a version only once predictions of it exist.
    version = pushed_model_version(inputs.uncertainty)
    if version is not None:
        set_project(studio, report.project_id, model_version=version)
    return report


def plan_batch(batch: Sequence[dict[str, Any]], inputs: PushInputs, existing: dict[str, dict[str, Any]],
               report: PushReport) -> tuple[list[dict], list[tuple[int, dict]], list[tuple[int, dict]]]:
    """Return the batch's new tasks, (task id, prediction) to replace and (task id, data) to update."""
    ids = [row["image_id"] for row in batch]
    nodules = inputs.predictions.filter(pl.col("image_id").is_in(ids))
    masks = read_masks(nodules, inputs.predictions_dir)
    by_image = {image_id: rows for (image_id,), rows in nodules.group_by("image_id")}
    new, stale_predictions, stale_data = [], [], []
    for row in batch:
        image_id = row["image_id"]
        rows = by_image[image_id].to_dicts() if image_id in by_image else []
        try:
            result = prediction_result(rows, masks, row["height"], row["width"])
            wanted = prediction(result, row["uncertainty"], row["model_version"])
        except ValueError as error:
            report.problems.append(f"image {image_id}: {error}")
            continue
        data = task_data(image_id, f"{SERVE_FOLDER}/{image_id}.png", row["uncertainty"])
        task = existing.get(image_id)
        if task is None:
            new.append({"data": data, "predictions": [wanted]})
            continue
        changed = False
        if not has_prediction(task, wanted):
            stale_predictions.append((task["id"], wanted))
            changed = True
        if task.get("data") != data:
            stale_data.append((task["id"], data))
            changed = True
        report.unchanged += not changed
    return new, stale_predictions, stale_data


def import_tasks(studio: Studio, project_id: int, tasks: list[dict[str, Any]]) -> None:
    """Import tasks with their predictions in one request (committed whole or not at all)."""
    if tasks:
        with studio_call(studio, f"import {len(tasks)} tasks"):
            studio.client.projects.import_tasks(project_id, request=tasks, request_options=NO_RETRY)


def replace_predictions(studio: Studio, project_id: int, stale: list[tuple[int, dict[str, Any]]]) -> None:
    """Delete the predictions of the given tasks, then import their new ones, each in one request."""
    if not stale:
        return
    ids = [task_id for task_id, _ in stale]
    with studio_call(studio, f"delete the old predictions of {len(ids)} tasks"):
        studio.client.actions.create(id="delete_tasks_predictions", project=project_id,
                                     selected_items={"all": False, "included": ids}, request_options=NO_RETRY)
    with studio_call(studio, f"import {len(ids)} predictions"):
        studio.client.projects.import_predictions(
            project_id, request=[wanted | {"task": task_id} for task_id, wanted in stale],
            request_options=NO_RETRY)


def update_data(studio: Studio, stale: list[tuple[int, dict[str, Any]]]) -> None:
    """Replace the data of the given tasks (a PATCH per task; idempotent, so retries are fine)."""
    for task_id, data in stale:
        with studio_call(studio, f"update the data of task {task_id}"):
            studio.client.tasks.update(str(task_id), data=data)
