"""The ``thyrokit`` command line: one group per package, plus the pipeline-level commands.

Each subpackage owns its commands in its own ``cli.py``; this module only assembles them.
"""

from __future__ import annotations

import click

from thyrokit import __version__
from thyrokit.annotate.cli import annotate
from thyrokit.curate.cli import curate
from thyrokit.pipelines.cli import PIPELINE_COMMANDS
from thyrokit.synth.cli import synth


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="thyrokit")
def main() -> None:
    """Turn raw thyroid scans into versioned, de-identified, labelled datasets.

    \b
    The usual order (what `dvc repro` runs for you):
      thyrokit demo-data    make a synthetic raw dump to try things on
      thyrokit curate ...   ingest and de-identify raw scans, cut nodule patches
      thyrokit annotate ... labels, pre-labels and the Label Studio round trip
      thyrokit split        patient-grouped train/validation/test/external splits
      thyrokit export       the release that modellers pull by version

    Every command that reads raw data needs the de-identification secret in
    THYROKIT_SECRET or a key file named by THYROKIT_SECRET_FILE.
    """


main.add_command(curate)
main.add_command(annotate)
main.add_command(synth)
for command in PIPELINE_COMMANDS:
    main.add_command(command)
