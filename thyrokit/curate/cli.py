"""``thyrokit curate``: ingest and de-identify raw scans, cut nodule patches."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click

from thyrokit.atomic import write_text
from thyrokit.params import DEFAULT_PARAMS, load_params
from thyrokit.secret import SecretError, load_secret


@click.group()
def curate() -> None:
    """Ingest and de-identify raw scans; cut nodule patches."""


@curate.command()
@click.argument("raw_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--keys", "keys_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Key table raw path <-> source_hmac; keep it in the raw zone (data/private/).")
@click.option("--metrics", "metrics_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the run's metrics JSON (files, frames, quarantined, seconds).")
@click.option("--params", "params_path", default=DEFAULT_PARAMS, show_default=True,
              type=click.Path(exists=True, dir_okay=False), help="The params file with an 'ingest' section.")
def ingest(raw_dir: Path, out_dir: Path, keys_path: Path, metrics_path: Path | None, params_path: str) -> None:
    """De-identify raw scans in RAW_DIR into images, pixel shards and quarantine in OUT_DIR."""
    from thyrokit.curate.ingest import IngestConfig, run_ingest

    try:
        secret = load_secret()  # before anything is written: no secret, no output
    except SecretError as error:
        raise click.ClickException(str(error)) from None
    params = load_params("ingest", params_path)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    summary = run_ingest(
        raw_dir, out_dir, keys_path, IngestConfig.from_params(params, raw_dir, secret, load_params("deid", params_path)),
        workers=int(params.get("workers", 0)) or None, batch_size=int(params.get("batch_size", 8)),
        shard_bytes=int(params.get("shard_mb", 256)) * 1024 * 1024,
    )
    metrics = summary.metrics()
    if metrics_path:
        write_text(metrics_path, json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    click.echo(f"ingested {summary.ingested} of {summary.files} files ({summary.frames} frames) "
               f"in {metrics['seconds']} s; {metrics['quarantined']} quarantined, {summary.duplicates} duplicates")
    if metrics["quarantined"]:
        click.echo(f"quarantined files are named by source_hmac; find their raw paths in the key table:\n"
                   f"  python -c \"import polars as pl; print(pl.read_parquet('{keys_path}')"
                   f".filter(pl.col('outcome') == 'quarantined'))\"", err=True)


@curate.command("roi")
@click.argument("images_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("nodules_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--pseudo", "pseudo_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Pseudolabel nodules table; used for train images only; skipped if absent.")
@click.option("--metrics", "metrics_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write counts of patches per split and label source here as JSON.")
@click.option("--params", "params_path", default="params.yaml", show_default=True,
              type=click.Path(exists=True, dir_okay=False), help="The params file with a 'roi' section.")
def roi_command(images_path: Path, nodules_path: Path, out_dir: Path, pseudo_path: Path | None,
                metrics_path: Path | None, params_path: str) -> None:
    """Cut one square patch and mask per nodule into OUT_DIR, with a montage per class.

    IMAGES_PATH needs `split` filled; NODULES_PATH holds the human labels.
    """
    from thyrokit.curate.roi import RoiSpec, build_roi

    params = load_params("roi", params_path)
    spec = RoiSpec(size=int(params["size"]), context=float(params["context"]),
                   min_side=int(params.get("min_side", 8)))
    report = build_roi(images_path, nodules_path, out_dir, spec, pseudo_path,
                       workers=int(params.get("workers", 0)) or None,
                       montage_per_class=int(params.get("montage_per_class", 8)))
    for line in report.problems:
        click.echo(line, err=True)
    if metrics_path is not None:
        write_text(metrics_path, json.dumps(report.counts, indent=2, sort_keys=True) + "\n")
    click.echo(f"{report.counts['patches']} patches; {report.counts['skipped']} skipped, "
               f"{report.counts['pseudo_outside_train']} pseudolabels outside train left out")


@curate.command("phi-values")
@click.argument("raw_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("phi_file", type=click.Path(dir_okay=False, path_type=Path))
def phi_values_command(raw_dir: Path, phi_file: Path) -> None:
    """Collect the identifying values under RAW_DIR into PHI_FILE (keep it in data/private/)."""
    from thyrokit.curate.deid.phi_values import collect_phi_values, write_phi_values

    values = collect_phi_values(raw_dir)
    write_phi_values(values, phi_file)
    click.echo(f"{len(values)} identifying values collected into {phi_file}")


@curate.command("audit")
@click.argument("out_dirs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--phi", "phi_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The PHI value set written by `thyrokit curate phi-values`.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write counts of files and findings (no values) here as JSON.")
@click.option("--ocr-fraction", "fraction", default=1.0, show_default=True, type=click.FloatRange(0.0, 1.0),
              help="Share of the distinct PNG images OCR reads (chosen by content hash); text is always searched.")
def audit_command(out_dirs: tuple[Path, ...], phi_file: Path, report_path: Path | None, fraction: float) -> None:
    """Search every file under OUT_DIRS for raw identifying values; exit 1 naming file and field."""
    from thyrokit.curate.deid.audit import audit_outputs, ocr_available
    from thyrokit.curate.deid.phi_values import read_phi_values

    audit = audit_outputs(list(out_dirs), read_phi_values(phi_file), ocr_fraction=fraction)
    if report_path:
        report = {"files": audit.files, "findings": len(audit.findings), "ocr": ocr_available(),
                  "png_images": audit.images, "distinct_png_images": audit.distinct_images,
                  "distinct_png_images_read": audit.images_read, "ocr_fraction": fraction,
                  "places": sorted({f"{finding.path}: {finding.field}" for finding in audit.findings})}
        write_text(report_path, json.dumps(report, indent=2, sort_keys=True) + "\n")
    for finding in audit.findings:
        click.echo(f"PHI found: {finding}", err=True)
    ocr = (f"; OCR read {audit.images_read} of {audit.distinct_images} distinct PNG images "
           f"({audit.images} in all; --ocr-fraction {fraction:g})" if ocr_available()
           else " (PNG pixels not read: tesseract is not installed)")
    if audit.findings:
        raise click.ClickException(f"{len(audit.findings)} place(s) hold identifying values "
                                   f"in {audit.files} files{ocr}")
    click.echo(f"no identifying values found in {audit.files} files{ocr}")
