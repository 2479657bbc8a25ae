"""Where torch work runs: the GPU when one is present, else the CPU."""

from __future__ import annotations

import torch


def pick_device(preferred: str | None = None) -> torch.device:
    """Return `preferred` if given, else ``cuda`` when available, else ``cpu``."""
    if preferred:
        return torch.device(preferred)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
