"""Pipeline-level commands that sit directly under ``thyrokit``."""

from __future__ import annotations

import click

PIPELINE_COMMANDS: list[click.Command] = []
