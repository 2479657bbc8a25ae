"""``thyrokit curate``: ingest and de-identify raw scans, cut nodule patches."""

from __future__ import annotations

import click


@click.group()
def curate() -> None:
    """Ingest and de-identify raw scans; cut nodule patches."""
