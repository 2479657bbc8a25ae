"""How many synthetic patches each class needs so the train split is balanced."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np


def class_deficits(counts: Mapping[str, int], classes: Sequence[str], target_ratio: float) -> dict[str, int]:
    """Return, per class, how many samples bring it to `target_ratio` x the largest class.

    A class already at or over its target needs 0. A class with no real samples
    cannot be generated from (the generator has never seen it), so it is an error.
    """
    if not 0 < target_ratio <= 1:
        raise ValueError(f"target_ratio must be in (0, 1], got {target_ratio}")
    empty = [name for name in classes if counts.get(name, 0) <= 0]
    if empty:
        raise ValueError(f"class(es) {empty} have no real train samples; a generator cannot balance them")
    target = math.ceil(target_ratio * max(counts[name] for name in classes))
    return {name: max(0, target - counts[name]) for name in classes}


def split_among(total: int, names: Sequence[str]) -> dict[str, int]:
    """Split `total` as evenly as possible among `names`, the first ones taking the remainder."""
    if not names:
        raise ValueError("no generators to split the samples among")
    share, extra = divmod(total, len(names))
    return {name: share + (1 if index < extra else 0) for index, name in enumerate(names)}


def draw_levels(levels: Sequence[str | None], count: int, rng: np.random.Generator) -> list[str | None]:
    """Draw `count` TI-RADS levels (None = unknown) from a class's observed levels."""
    if count == 0:
        return []
    ordered = sorted(levels, key=lambda level: (level is None, level or ""))
    picks = rng.integers(0, len(ordered), size=count)
    return [ordered[index] for index in picks]
