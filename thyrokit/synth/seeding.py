"""Per-sample seeded noise: a generated sample is reproduced from its seed alone, whatever batch it was in."""

from __future__ import annotations

import torch


def seeded_normal(seeds: list[int], shape: tuple[int, ...]) -> torch.Tensor:
    """Return one standard-normal tensor of `shape` per seed, drawn on CPU so every device agrees."""
    return torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(seed)) for seed in seeds])
