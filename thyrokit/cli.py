"""The ``thyrokit`` command line: one group per package, plus the pipeline-level commands.

Each subpackage owns its commands in its own module; this one only names them. A
command's module is imported when that command runs, so a stage that needs no torch
(ingest, split, export) starts in a second instead of loading every model library.
"""

from __future__ import annotations

import importlib

import click

from thyrokit import __version__

# name -> (module:attribute, one-line help shown by `thyrokit --help`)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo-data": ("thyrokit.pipelines.phantom.cli:demo_data",
                  "Write a synthetic raw hospital dump (the demo phantom)."),
    "curate": ("thyrokit.curate.cli:curate",
               "Ingest and de-identify raw scans; cut nodule patches; audit for PHI."),
    "annotate": ("thyrokit.annotate.cli:annotate",
                 "Merge labels; pre-label; pseudolabel; round-trip with Label Studio."),
    "split": ("thyrokit.pipelines.split_cli:split",
              "Patient-grouped, stratified, version-stable splits and folds."),
    "audit-leakage": ("thyrokit.pipelines.split_cli:audit_leakage_command",
                      "Check a split for patients, studies or near-duplicates in two splits."),
    "synth": ("thyrokit.synth.cli:synth",
              "Train generators, balance the train split with synthetic nodules, evaluate."),
    "export": ("thyrokit.pipelines.export:export_command",
               "Write the release: manifest, shards, trainer formats, dataset card."),
}


class LazyGroup(click.Group):
    """A click group that imports a command's module only when the command is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module_name, _, attribute = COMMANDS[name][0].partition(":")
        return getattr(importlib.import_module(module_name), attribute)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, summary) for name, (_, summary) in COMMANDS.items()])


@click.group(cls=LazyGroup,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="thyrokit")
def main() -> None:
    """Turn raw thyroid scans into versioned, de-identified, labelled datasets.

    \b
    The usual order (what `dvc repro` runs for you):
      thyrokit demo-data    make a synthetic raw dump to try things on
      thyrokit curate ...   ingest and de-identify raw scans, cut nodule patches
      thyrokit annotate ... labels, pre-labels, pseudolabels, Label Studio
      thyrokit split        patient-grouped train/validation/test/external splits
      thyrokit synth ...    synthetic nodules that balance the train split
      thyrokit export       the release that modellers pull by version

    Every command that reads raw data needs the de-identification secret in
    THYROKIT_SECRET or a key file named by THYROKIT_SECRET_FILE.
    """
