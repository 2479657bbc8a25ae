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
        raw_dir, out_dir, keys_path, IngestConfig.from_params(params, raw_dir, secret),
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

