"""The pre-label stages' inputs: split images, human labels, and which images carry them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from thyrokit.contract import IMAGES, NODULES, read_table

LABELLED_IMAGES = "labelled_images.parquet"


@dataclass(frozen=True)
class StageInputs:
    """The images table (with splits), the human nodules, and the ids of human-labelled images."""

    images: pl.DataFrame
    images_dir: Path
    nodules: pl.DataFrame
    labels_dir: Path
    labelled: frozenset[str]

    def labelled_in(self, *splits: str) -> pl.DataFrame:
        """Images of the `splits` that carry human labels (with or without a nodule)."""
        return self.images.filter(pl.col("split").is_in(list(splits)) & pl.col("image_id").is_in(list(self.labelled)))

    def unlabelled(self, split: str | None = None) -> pl.DataFrame:
        """Images without human labels, of one split or (None) of all."""
        frame = self.images.filter(~pl.col("image_id").is_in(list(self.labelled)))
        return frame if split is None else frame.filter(pl.col("split") == split)


def read_inputs(images_path: str | os.PathLike, labels_dir: str | os.PathLike) -> StageInputs:
    """Read the split images table and the labels stage's output folder."""
    images = read_table(images_path, IMAGES)
    if images.get_column("split").null_count():
        raise ValueError(f"{images_path}: {images.get_column('split').null_count()} image(s) have no split; "
                         "run the split stage first")
    labels_dir = Path(labels_dir)
    nodules = read_table(labels_dir / "nodules.parquet", NODULES).filter(pl.col("label_source") == "human")
    listed = labels_dir / LABELLED_IMAGES
    if listed.is_file():
        labelled = pl.read_parquet(listed).filter(pl.col("label_source") == "human").get_column("image_id")
    else:  # without the list, only images with a human nodule count as labelled
        labelled = nodules.get_column("image_id")
    known = set(images.get_column("image_id").to_list())
    return StageInputs(images=images, images_dir=Path(images_path).parent, nodules=nodules,
                       labels_dir=labels_dir, labelled=frozenset(set(labelled.to_list()) & known))
