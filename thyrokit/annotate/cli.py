"""``thyrokit annotate``: labels shipped with raw data, pre-labels and Label Studio."""

from __future__ import annotations

import click


@click.group()
def annotate() -> None:
    """Merge labels; pre-label; round-trip with Label Studio."""
