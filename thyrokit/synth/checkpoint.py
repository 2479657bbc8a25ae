"""Training checkpoints: model, optimiser and random-generator states, so a run resumes exactly.

A checkpoint records a fingerprint of the config and data it was trained with; a
checkpoint from another config or other data is never resumed, it is started over.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from thyrokit.atomic import write_bytes


# Settings that may change between a run and its resumption: more steps extend a run.
SCHEDULE_KEYS = ("steps", "checkpoint_every", "log_every")


def fingerprint(config: dict[str, Any], *arrays: np.ndarray) -> str:
    """Return a hex digest of a JSON-ready config (less its schedule keys) and the training arrays."""
    config = {name: {k: v for k, v in part.items() if k not in SCHEDULE_KEYS} if isinstance(part, dict) else part
              for name, part in config.items()}
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write a checkpoint atomically."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | os.PathLike | None, expected: str) -> dict[str, Any] | None:
    """Return the checkpoint at `path` if it exists and matches fingerprint `expected`, else None."""
    if path is None or not Path(path).is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("fingerprint") != expected:
        print(f"{path}: checkpoint is from another config or data; training from scratch")
        return None
    return state


def snapshot(key: str, step: int, parts: Mapping[str, Any], rngs: Sequence[torch.Generator],
             **extra: Any) -> dict[str, Any]:
    """Return a checkpoint of `parts` (modules, optimisers: anything with ``state_dict``) and `rngs`."""
    return {"fingerprint": key, "step": step, "parts": {name: part.state_dict() for name, part in parts.items()},
            "rngs": [rng.get_state() for rng in rngs], **extra}


def restore(state: dict[str, Any], parts: Mapping[str, Any], rngs: Sequence[torch.Generator]) -> int:
    """Load a :func:`snapshot` back into `parts` and `rngs`; return the step it was taken at."""
    for name, part in parts.items():
        part.load_state_dict(state["parts"][name])
    for rng, saved in zip(rngs, state["rngs"]):
        rng.set_state(saved)
    return state["step"]


def is_due(done: int, every: int, last: int) -> bool:
    """Return whether step `done` (1-based) is a multiple of `every` or the last of `last` steps."""
    return done % every == 0 or done == last


def file_digest(path: str | os.PathLike, length: int = 12) -> str:
    """Return the first `length` hex digits of a file's SHA-256 (a model's version)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:length]
