"""Pipeline-level commands that sit directly under ``thyrokit``."""

from __future__ import annotations

import click

from thyrokit.pipelines.export import export_command
from thyrokit.pipelines.phantom.cli import demo_data
from thyrokit.pipelines.split_cli import audit_leakage_command, split

PIPELINE_COMMANDS: list[click.Command] = []
PIPELINE_COMMANDS += [split, audit_leakage_command]
PIPELINE_COMMANDS += [export_command]
PIPELINE_COMMANDS += [demo_data]
