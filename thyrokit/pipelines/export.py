"""The export stage: the release modellers pull, in the formats their trainers read.

It writes the native release first (manifest, labels, patches and pixel shards, see
:mod:`thyrokit.pipelines.formats.manifest`), renders every format named in
``export.formats`` from it, then the summary metrics and the dataset card. Re-running
on the same inputs and params gives byte-identical files.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import polars as pl

from thyrokit.annotate.labels import read_labelled_images
from thyrokit.contract import (IMAGES, NODULES, PATCHES, PATHOLOGIES, SPLITS, ContractError, TableSpec,
                               read_table)
from thyrokit.params import DEFAULT_PARAMS, load_params
from thyrokit.pipelines.card import write_card
from thyrokit.pipelines.formats.cine import write_cine
from thyrokit.pipelines.formats.coco import write_coco
from thyrokit.pipelines.formats.imagefolder import write_imagefolder
from thyrokit.pipelines.formats.jsonfile import write_json
from thyrokit.pipelines.formats.manifest import (NO_FINDING, Release, release_labels, release_patches,
                                                 resolve_paths, write_release)
from thyrokit.pipelines.formats.monai import write_monai
from thyrokit.pipelines.formats.nnunet import write_nnunet
from thyrokit.pipelines.formats.segmentation import write_segmentation
from thyrokit.pipelines.formats.yolo import write_yolo

log = logging.getLogger(__name__)

SUMMARY = "summary.json"
MB = 1024 * 1024
# In the order they are written: the MONAI datalist indexes the segmentation pairs.
FORMATS = ("imagefolder", "segmentation", "monai", "coco", "yolo", "nnunet", "cine")
EXISTING_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@dataclass(frozen=True)
class ExportParams:
    """The ``export`` section of params.yaml."""

    formats: tuple[str, ...] = FORMATS
    classes: tuple[str, ...] = ("benign", "malignant")
    nnunet_dataset_id: int = 501
    shard_mb: int = 256
    montage_per_class: int = 16

    def __post_init__(self) -> None:
        bad = sorted(set(self.formats) - set(FORMATS))
        if bad:
            raise ValueError(f"export.formats: unknown format(s) {bad}; known are {sorted(FORMATS)}")
        bad = sorted(set(self.classes) - set(PATHOLOGIES))
        if bad:
            raise ValueError(f"export.classes: {bad} are not pathologies {list(PATHOLOGIES)}")

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> "ExportParams":
        """Read the section, naming any unknown key."""
        unknown = sorted(set(params) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"export params: unknown key(s) {unknown}")
        return cls(**{key: tuple(value) if isinstance(value, list) else value for key, value in params.items()})


@dataclass(frozen=True)
class ExportInputs:
    """Where the stage reads from; the optional ones may be absent."""

    images: Path
    nodules: Path
    patches: Path
    synthetic: Path | None = None
    pseudo: Path | None = None
    splits_final: Path | None = None
    leakage: Path | None = None
    metrics_dir: Path | None = None
    params_file: Path | None = None
    # Where to write the summary again for `dvc metrics` (outside the release: DVC forbids a
    # metrics file inside a tracked output folder); never read back into the card.
    metrics_out: Path | None = None
    # The labels stage's labelled_images.parquet: images a human labelled, with or without
    # a finding; those without one ship as negatives (pathology "none", all-zero mask).
    labelled_images: Path | None = None


def _format_writers(params: ExportParams, splits_final: list | None) -> dict[str, Callable[[Release], int]]:
    return {
        "imagefolder": lambda release: write_imagefolder(release, params.classes),
        "segmentation": write_segmentation,
        "monai": write_monai,
        "coco": write_coco,
        "yolo": write_yolo,
        "nnunet": lambda release: write_nnunet(release, params.nnunet_dataset_id, splits_final),
        "cine": write_cine,
    }


def prepare_out_dir(out_dir: Path) -> None:
    """Empty `out_dir` if it holds an earlier release; refuse if it holds anything else."""
    if not out_dir.exists() or not any(out_dir.iterdir()):
        return
    if not (out_dir / "manifest.parquet").is_file():
        raise ValueError(f"{out_dir} is not empty and holds no earlier release; not overwriting it")
    shutil.rmtree(out_dir)


def read_input(path: Path | None, spec: TableSpec, required: bool = True) -> pl.DataFrame | None:
    """Read a contract table with its shard paths made absolute, or None if optional and absent."""
    if not required and (path is None or not path.is_file()):
        return None
    frame = read_table(path, spec)
    for column in ("path", "mask_path"):
        if column in frame.columns:
            frame = resolve_paths(frame, column, path.parent)
    return frame


def read_json(path: Path | None) -> Any:
    """Return the JSON at `path`, or None if there is none."""
    if path is None or not path.is_file():
        return None
    return json.loads(path.read_text())


def read_no_finding(path: Path | None) -> list[str]:
    """Return the image ids a human labelled, from a labelled-images table (none if absent).

    Whether an image holds a finding is for the nodules table to say; this list only
    tells a labelled image with none from one nobody looked at.
    """
    if path is None:
        return []
    labelled = read_labelled_images(path).filter(pl.col("label_source") == "human")
    return sorted(labelled.get_column("image_id").unique().to_list())


def stage_metrics(inputs: ExportInputs) -> tuple[Path, ...]:
    """Return the other stages' metrics JSONs in the metrics folder (not this stage's own)."""
    folder = inputs.metrics_dir
    if folder is None or not folder.is_dir():
        return ()
    own = inputs.metrics_out.resolve() if inputs.metrics_out else None
    return tuple(path for path in sorted(folder.glob("*.json")) if path.resolve() != own)


def count_by(frame: pl.DataFrame, column: str, keys: tuple[str, ...]) -> dict[str, int]:
    """Return how many rows hold each of `keys` in `column` (0 for those absent)."""
    found = dict(frame.group_by(column).len().iter_rows())
    return {key: int(found.get(key, 0)) for key in keys}


def per_split(frame: pl.DataFrame, column: str, keys: tuple[str, ...]) -> dict[str, dict[str, int]]:
    """Return count_by for each split."""
    return {split: count_by(frame.filter(pl.col("split") == split), column, keys) for split in SPLITS}


def summarise(release: Release) -> dict[str, Any]:
    """Return the release's counts per split, site, device and class (what ``dvc metrics show`` reads)."""
    manifest = release.manifest.with_columns(pl.col("pathology").fill_null("unlabelled"))
    classes = (*PATHOLOGIES, NO_FINDING, "unlabelled")
    real = release.patches.filter(pl.col("label_source") != "synthetic")
    synthetic = release.patches.filter(pl.col("label_source") == "synthetic")
    sites = tuple(sorted(manifest.get_column("site").unique()))
    devices = tuple(sorted(manifest.get_column("device").drop_nulls().unique()))
    return {
        "images": {"total": manifest.height, **count_by(manifest, "split", SPLITS)},
        "patients": {"total": manifest.get_column("patient_id").n_unique(),
                     **{split: manifest.filter(pl.col("split") == split).get_column("patient_id").n_unique()
                        for split in SPLITS}},
        "labelled_images": count_by(manifest.filter(pl.col("label_source").is_not_null()), "split", SPLITS),
        "images_with_mask": count_by(manifest.filter(pl.col("mask_path").is_not_null()), "split", SPLITS),
        "nodules": count_by(release.nodules.join(manifest.select("image_id", "split"), on="image_id"),
                            "split", SPLITS),
        "images_by_site": {site: count_by(manifest.filter(pl.col("site") == site), "split", SPLITS)
                           for site in sites},
        "images_by_device": count_by(manifest, "device", devices),
        "images_by_class": per_split(manifest, "pathology", classes),
        "patches_by_class": per_split(real, "pathology", PATHOLOGIES),
        "synthetic_patches_by_class": count_by(synthetic, "pathology", PATHOLOGIES),
    }


def export_release(inputs: ExportInputs, out_dir: str | os.PathLike, params: ExportParams) -> dict[str, Any]:
    """Write the whole release into `out_dir` and return its summary."""
    out_dir = Path(out_dir)
    prepare_out_dir(out_dir)
    images = read_input(inputs.images, IMAGES)
    nodules = read_input(inputs.nodules, NODULES)
    pseudo = read_input(inputs.pseudo, NODULES, required=False)
    if pseudo is not None:
        nodules = pl.concat([nodules, pseudo.filter(~pl.col("nodule_id").is_in(nodules["nodule_id"].implode()))])
    no_finding = read_no_finding(inputs.labelled_images)
    labels = release_labels(images, nodules, no_finding)
    patches = release_patches(read_input(inputs.patches, PATCHES), labels,
                              read_input(inputs.synthetic, PATCHES, required=False))
    release = write_release(images, labels, patches, out_dir, params.shard_mb * MB, no_finding)
    writers = _format_writers(params, read_json(inputs.splits_final))
    chosen = set(params.formats) | ({"segmentation"} if "monai" in params.formats else set())
    for name in FORMATS:
        if name in chosen:
            written = writers[name](release)
            log.info("export: %s: %d item(s)", name, written)
    summary = summarise(release)
    write_json(out_dir / SUMMARY, summary)
    if inputs.metrics_out is not None:
        write_json(inputs.metrics_out, summary)
    write_card(release, summary, leakage=read_json(inputs.leakage), metrics_files=stage_metrics(inputs),
               params_file=inputs.params_file, montage_per_class=params.montage_per_class)
    return summary


@click.command("export")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--images", "images_path", required=True, type=EXISTING_FILE,
              help="Images table with split and fold filled (the split stage's images.parquet).")
@click.option("--nodules", "nodules_path", required=True, type=EXISTING_FILE,
              help="Human labels (the labels stage's nodules.parquet).")
@click.option("--patches", "patches_path", required=True, type=EXISTING_FILE,
              help="Nodule patches (the roi stage's patches.parquet).")
@click.option("--labelled-images", "labelled_images_path", type=EXISTING_FILE,
              help="Images a human labelled, with or without a finding (the labels stage's "
                   "labelled_images.parquet); those without one ship as negatives.")
@click.option("--synthetic", "synthetic_path", type=EXISTING_FILE,
              help="Synthetic train patches (the synth_sample stage's patches.parquet).")
@click.option("--pseudo", "pseudo_path", type=EXISTING_FILE,
              help="Pseudolabels (the pseudolabel stage's nodules.parquet); released on train only.")
@click.option("--splits-final", "splits_final_path", type=EXISTING_FILE,
              help="nnU-Net folds from the split stage (splits_final.json).")
@click.option("--leakage", "leakage_path", type=EXISTING_FILE, help="The split stage's leakage.json.")
@click.option("--metrics-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder of stage metrics JSONs to show in the dataset card (data/metrics).")
@click.option("--metrics", "metrics_out", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the release's counts here, for `dvc metrics` (data/metrics/export.json).")
@click.option("--params", "params_path", default=DEFAULT_PARAMS, show_default=True, type=EXISTING_FILE)
def export_command(out_dir: Path, images_path: Path, nodules_path: Path, patches_path: Path,
                   labelled_images_path: Path | None, synthetic_path: Path | None, pseudo_path: Path | None, splits_final_path: Path | None,
                   leakage_path: Path | None, metrics_dir: Path | None, metrics_out: Path | None,
                   params_path: Path) -> None:
    """Write the release into OUT_DIR: manifest and shards, the formats in export.formats,
    summary.json and the dataset card (card.md, card.html)."""
    try:
        params = ExportParams.from_dict(load_params("export", params_path))
    except (KeyError, TypeError, ValueError) as error:
        raise click.ClickException(str(error)) from None
    inputs = ExportInputs(images_path, nodules_path, patches_path, synthetic_path, pseudo_path,
                          splits_final_path, leakage_path, metrics_dir, params_path, metrics_out,
                          labelled_images_path)
    try:
        summary = export_release(inputs, out_dir, params)
    except (ContractError, ValueError) as error:
        raise click.ClickException(str(error)) from None
    images = summary["images"]
    click.echo(f"export: {images['total']} images ("
               + ", ".join(f"{split} {images[split]}" for split in SPLITS)
               + f"), formats {', '.join(name for name in FORMATS if name in params.formats)} -> {out_dir}")
