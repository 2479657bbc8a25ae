"""``thyrokit demo-data``: write the demo phantom's raw dump."""

from __future__ import annotations

import click

from thyrokit.pipelines.phantom.generate import generate_phantom


@click.command("demo-data")
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--patients", type=click.IntRange(min=1), default=200, show_default=True,
              help="How many made-up patients (4 sites in turn).")
@click.option("--seed", type=int, default=7, show_default=True,
              help="The same seed writes byte-identical files.")
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True,
              help="Processes; 0 = every core.")
def demo_data(out_dir: str, patients: int, seed: int, workers: int) -> None:
    """Write a synthetic raw dump of thyroid ultrasound to OUT_DIR.

    \b
    OUT_DIR/scans/<site>/<PatientID>_<name>/<study>/   DICOM files and PNG/JPEG exports
    OUT_DIR/labels/labels.csv, labels/masks/*.png      labels for about 30% of the files
    OUT_DIR/truth/                                     every nodule, PHI, text box, a manifest, montage.png
    """
    try:
        summary = generate_phantom(out_dir, patients, seed, workers=workers or None)
    except FileExistsError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"demo-data: {summary.patients} patients, {summary.files} files, {summary.frames} frames, "
               f"{summary.labelled_files} labelled files -> {out_dir}")
