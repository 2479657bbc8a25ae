"""Shared test set-up: tests import their helper modules from this folder."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from studio_server import studio_server  # noqa: E402,F401  (a real Label Studio, started once per session)
