"""Cine clips as ordered frame sequences: ``cine/<split>/<clip_id>/<frame:04d>.png`` and ``cine/clips.json``.

A clip is the frames of one multi-frame series (clip_id = series_id), numbered in
frame order, for video models (CNN+LSTM, 3D CNN). ``clips.json`` lists each clip's
frame files (relative to ``cine/``), image_ids and per-frame pathology (null where
a frame is unlabelled) with the clip's pathology: malignant if any frame is, and so on.
"""

from __future__ import annotations

import polars as pl

from thyrokit.pipelines.formats.jsonfile import write_json
from thyrokit.pipelines.formats.manifest import Release, write_pngs

FOLDER = "cine"


def clip_frames(manifest: pl.DataFrame) -> pl.DataFrame:
    """Return the frames of multi-frame series with their clip_id, index in the clip and file."""
    return (
        manifest.filter(pl.col("n_frames") > 1)
        .sort("series_id", "frame", "image_id")
        .with_columns(clip_id=pl.col("series_id"),
                      index=pl.int_range(pl.len()).over("series_id"))
        .with_columns(file=pl.format("{}/{}/{}.png", "split", "clip_id",
                                     pl.col("index").cast(pl.String).str.zfill(4)))
    )


def clip_pathology(pathologies: list[str | None]) -> str | None:
    """Return malignant if any frame is, else benign if any is, else unknown if any is labelled."""
    for name in ("malignant", "benign", "unknown"):
        if name in pathologies:
            return name
    return None


def clips_index(frames: pl.DataFrame) -> list[dict]:
    """Return one clips.json entry per clip, sorted by clip_id."""
    clips = []
    for (clip_id,), group in sorted(frames.group_by("clip_id"), key=lambda item: item[0]):
        group = group.sort("index")
        first = group.row(0, named=True)
        clips.append({
            "clip_id": clip_id, "split": first["split"], "patient_id": first["patient_id"],
            "site": first["site"], "device": first["device"], "n_frames": group.height,
            "frames": group.get_column("file").to_list(),
            "image_ids": group.get_column("image_id").to_list(),
            "frame_pathology": group.get_column("pathology").to_list(),
            "pathology": clip_pathology(group.get_column("pathology").to_list()),
        })
    return clips


def write_cine(release: Release) -> int:
    """Write every clip's frames and clips.json; return how many clips."""
    root = release.folder / FOLDER
    frames = clip_frames(release.manifest)
    destination = {image_id: root / file for image_id, file in frames.select("image_id", "file").iter_rows()}
    write_pngs(release.pngs(frames, "image_id", "path"), destination)
    clips = clips_index(frames)
    write_json(root / "clips.json", {"clips": clips})
    return len(clips)
