"""Read a section of ``params.yaml``, the one place where pipeline parameters live."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

DEFAULT_PARAMS = "params.yaml"


def load_params(section: str, path: str | os.PathLike = DEFAULT_PARAMS) -> dict[str, Any]:
    """Return the mapping under `section` of the params file at `path`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no params file at {path}")
    params = yaml.safe_load(path.read_text()) or {}
    if section not in params:
        raise KeyError(f"{path} has no '{section}' section (it has {sorted(params)})")
    return params[section] or {}
