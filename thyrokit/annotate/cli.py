"""``thyrokit annotate``: labels shipped with raw data, pre-labels and Label Studio."""

from __future__ import annotations

import json
from pathlib import Path

import click

from thyrokit.atomic import write_text
from thyrokit.contract import ContractError
from thyrokit.params import load_params
from thyrokit.secret import SecretError, load_secret


@click.group()
def annotate() -> None:
    """Merge labels; pre-label; round-trip with Label Studio."""


@annotate.command("labels")
@click.argument("labels_dir", type=click.Path(file_okay=False, path_type=Path))
@click.argument("ingest_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--label-studio", "studio_export", type=click.Path(dir_okay=False, path_type=Path),
              help="Label Studio export (a nodules table from `annotate pull`); skipped if absent.")
@click.option("--metrics", "metrics_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write counts of kept and skipped labels here as JSON.")
@click.option("--params", "params_path", default="params.yaml", show_default=True,
              type=click.Path(dir_okay=False, path_type=Path))
def labels_command(labels_dir: Path, ingest_dir: Path, out_dir: Path, studio_export: Path | None,
                   metrics_path: Path | None, params_path: Path) -> None:
    """Merge labels.csv and masks from LABELS_DIR with Label Studio's into OUT_DIR.

    Writes OUT_DIR/nodules.parquet, OUT_DIR/masks/ shards and OUT_DIR/labelled_images.parquet.
    Label Studio's human labels replace the sidecar's, image by image.
    """
    from thyrokit.annotate.labels import build_labels

    params = load_params("labels", params_path)
    try:
        report = build_labels(labels_dir, ingest_dir, out_dir, load_secret(), studio_export,
                              workers=params.get("workers") or None)
    except (SecretError, ContractError, ValueError) as error:
        raise click.ClickException(str(error)) from None
    for line in report.problems + report.warnings:
        click.echo(str(line), err=True)
    if metrics_path is not None:
        write_text(metrics_path, json.dumps(report.counts, indent=2, sort_keys=True) + "\n")
    click.echo(f"{report.counts['nodules']} nodules on {report.counts['labelled_images']} labelled "
               f"images; {report.counts['skipped']} skipped")


from thyrokit.annotate.model.commands import prelabel_command, pseudolabel_command  # noqa: E402

annotate.add_command(prelabel_command)
annotate.add_command(pseudolabel_command)

from thyrokit.annotate.studio.commands import pull_command, push_command, server_command  # noqa: E402

for command in (server_command, push_command, pull_command):
    annotate.add_command(command)
