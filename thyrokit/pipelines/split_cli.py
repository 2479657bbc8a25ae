"""``thyrokit split`` and ``thyrokit audit-leakage``: the split stage and its leakage audit."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import click
import polars as pl

from thyrokit.atomic import write_text
from thyrokit.contract import IMAGES, NODULES, PATCHES, ContractError, read_table, write_table
from thyrokit.params import DEFAULT_PARAMS, load_params
from thyrokit.pipelines.leakage import audit_leakage, look_alike_patients, summarise
from thyrokit.pipelines.split import (
    ASSIGNMENT, SplitError, SplitParams, apply_assignment, assign_splits, nnunet_folds, patient_table,
)
from thyrokit.pipelines.split_report import (
    composition, grouping_metrics, plot_composition, split_metrics, suspected_duplicates,
)
from thyrokit.pixels import rebase_paths


def write_json(path: str | Path, content: object) -> None:
    """Write `content` as sorted, indented JSON, atomically."""
    write_text(path, json.dumps(content, indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
    """Turn a bad table, bad params or a malformed hash into one line and a non-zero exit."""
    try:
        yield
    except (ContractError, SplitError, KeyError, ValueError) as error:
        raise click.ClickException(str(error).strip("'\"")) from None


def audit_params(section: dict) -> dict:
    """Return the audit's keyword arguments from the ``split`` params section."""
    return {"max_distance": int(section.get("phash_max_distance", 4)),
            "max_listed": int(section.get("leakage_max_listed", 50))}


@click.command("split")
@click.argument("images_parquet", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("nodules_parquet", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--assignment", "assignment_path", required=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="Stored patient -> split, fold table; read back so patients never move.")
@click.option("--params", "params_path", default=DEFAULT_PARAMS, show_default=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--metrics", "metrics_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write split counts and achieved ratios (JSON).")
def split(images_parquet: Path, nodules_parquet: Path, out_dir: Path, assignment_path: Path,
          params_path: Path, metrics_path: Path | None) -> None:
    """Assign patients to train/validation/test/external and folds; audit for leakage.

    Writes OUT_DIR/images.parquet (split and fold filled), splits_final.json (nnU-Net
    folds), leakage.json and split_composition.png, and updates the assignment. Exits
    non-zero, naming the rows, if the audit finds a leak; the assignment is then left as
    it was, so the next run (which reads it back) does not keep the leak.
    """
    with one_line_errors():
        section = load_params("split", params_path)
        params = SplitParams.from_params(section)
        images = read_table(images_parquet, IMAGES)
        nodules = read_table(nodules_parquet, NODULES)
        previous = read_table(assignment_path, ASSIGNMENT) if assignment_path.exists() else None
        look_alikes = look_alike_patients(images, params.phash_max_distance)
        patients = patient_table(images, nodules, params, look_alikes)
        assignment, status = assign_splits(patients, params, previous)
        placed = apply_assignment(images, assignment)
        report = audit_leakage(placed, nodules, **audit_params(section))
        duplicates = suspected_duplicates(look_alikes, patients, assignment)
        report["suspected_duplicates"] = listed(duplicates, audit_params(section)["max_listed"])

    placed = rebase_paths(placed, "path", images_parquet.parent, out_dir)
    if report["ok"]:
        write_table(assignment, assignment_path, ASSIGNMENT)
    written = write_table(placed, out_dir / "images.parquet", IMAGES)
    write_json(out_dir / "splits_final.json", nnunet_folds(written, params.folds))
    plot_composition(composition(written, patients), out_dir / "split_composition.png")
    write_json(out_dir / "leakage.json", report)
    if metrics_path is not None:
        metrics = split_metrics(written, patients, assignment, status)
        metrics["leakage_violations"] = sum(check["count"] for check in report["checks"].values())
        metrics.update(grouping_metrics(duplicates, patients))
        write_json(metrics_path, metrics)
    click.echo(f"split: {len(patients)} patients ({metrics_line(status)}), {written.height} images -> {out_dir}")
    if duplicates.height:
        click.echo(f"split: {duplicates_line(duplicates, params.max_group_patients)}; "
                   f"see suspected_duplicates in {out_dir / 'leakage.json'}")
    if not report["ok"]:
        raise click.ClickException(f"{summarise(report)}; {assignment_path} not updated")


def listed(frame: pl.DataFrame, max_listed: int) -> dict:
    """Return a table as count, its first rows and whether the rows are cut short."""
    return {"count": frame.height, "rows": frame.head(max_listed).to_dicts(), "truncated": frame.height > max_listed}


def duplicates_line(duplicates: pl.DataFrame, max_group_patients: int) -> str:
    """Return how many look-alike patient pairs were kept together, and a warning for the group cap."""
    counts = dict(duplicates.group_by("status").len().iter_rows())
    line = f"{duplicates.height} patient pair(s) share a near-duplicate image, {counts.get('linked', 0)} kept together"
    if counts.get("not linked: group cap"):
        line += (f"; {counts['not linked: group cap']} not linked as the group would exceed "
                 f"split.max_group_patients={max_group_patients} (phash_max_distance too loose for this data?)")
    return line


def metrics_line(status: pl.DataFrame) -> str:
    """Return 'N kept, M new' for the patients of this run."""
    kept = int(status.get_column("kept").sum())
    return f"{kept} kept, {status.height - kept} new"


@click.command("audit-leakage")
@click.argument("images_parquet", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("nodules_parquet", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out_json", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--patches", "patches_parquet", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A patches table too: its pseudo/synthetic patches must be in train.")
@click.option("--params", "params_path", default=DEFAULT_PARAMS, show_default=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path))
def audit_leakage_command(images_parquet: Path, nodules_parquet: Path, out_json: Path,
                          patches_parquet: Path | None, params_path: Path) -> None:
    """Check split images (and nodules) for leaks between splits; write OUT_JSON.

    Exits non-zero, naming the rows, if a patient or study sits in two splits, near-
    duplicate images sit in two splits, or synthetic / pseudo-labelled data is outside train.
    """
    with one_line_errors():
        images = read_table(images_parquet, IMAGES)
        nodules = read_table(nodules_parquet, NODULES)
        patches = read_table(patches_parquet, PATCHES) if patches_parquet is not None else None
        report = audit_leakage(images, nodules, patches, **audit_params(load_params("split", params_path)))
    write_json(out_json, report)
    if not report["ok"]:
        raise click.ClickException(summarise(report))
    click.echo(f"leakage: none in {images.height} images")
