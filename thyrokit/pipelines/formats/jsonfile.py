"""JSON files every format writes the same way, so re-exports are byte-identical."""

from __future__ import annotations

import json
import os
from typing import Any

from thyrokit.atomic import write_text


def dump_json(value: Any) -> str:
    """Return `value` as JSON text with sorted keys, two-space indents and a final newline."""
    return json.dumps(value, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def write_json(path: str | os.PathLike, value: Any) -> None:
    """Write `value` to `path` as deterministic JSON, atomically."""
    write_text(path, dump_json(value))
