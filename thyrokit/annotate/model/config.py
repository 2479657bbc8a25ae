"""The pre-label model's settings, read from params.yaml and saved beside its weights."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thyrokit.atomic import write_text


@dataclass(frozen=True)
class ModelConfig:
    """Network shape, training schedule and inference settings of the pre-label model."""

    size: int = 64                  # images are resized to size x size for the network
    channels: int = 8               # feature maps of the first level; doubled per level
    depth: int = 3                  # down-sampling levels
    dropout: float = 0.2            # also drives MC-dropout at inference
    steps: int = 300                # optimiser steps of supervised training
    batch_size: int = 16
    lr: float = 3e-3
    ema_decay: float = 0.99         # the model kept is this moving average of the trained weights
    seed: int = 0
    threads: int = 0                # torch CPU threads; 0 = torch's default
    mc_samples: int = 8             # stochastic forward passes for the uncertainty score
    threshold: float = 0.5          # foreground probability that makes a mask pixel
    min_area: int = 8               # smallest component, in image pixels, kept as a nodule
    detail_size: int = 256          # side of the finer copy of each image the pathology head crops; 0 = none
    roi_size: int = 32              # side of the pathology head's crop around the nodule

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ModelConfig":
        """Build a config from a mapping, naming any key it does not know."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown model setting(s) {unknown}; known: {sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as a plain mapping."""
        return dataclasses.asdict(self)


def write_config(config: ModelConfig, path: str | os.PathLike, **extra: Any) -> None:
    """Write `config` (and `extra` facts such as the model version) as sorted JSON."""
    write_text(path, json.dumps({"config": config.to_dict(), **extra}, indent=2, sort_keys=True) + "\n")


def read_config(path: str | os.PathLike) -> tuple[ModelConfig, dict[str, Any]]:
    """Read a config written by :func:`write_config`; return it and the extra facts."""
    document = json.loads(Path(path).read_text())
    config = ModelConfig.from_dict(document.pop("config"))
    return config, document
