"""Dataclass configs of the synth stages, read from params.yaml and saved beside each model.

Each config is built from its ``params.yaml`` mapping with :func:`from_params`, which
names any unknown key (a typo never silently falls back to a default), and saved as
``config.json`` beside the trained model so sampling rebuilds exactly what was trained.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from thyrokit.atomic import write_text

C = TypeVar("C")


@dataclass(frozen=True)
class DataConfig:
    """Which patches the generators learn from, and at what size."""

    size: int = 32
    classes: tuple[str, ...] = ("benign", "malignant")
    label_sources: tuple[str, ...] = ("human",)
    seed: int = 0


@dataclass(frozen=True)
class PrivacyConfig:
    """DP-SGD (Opacus) on the model that sees real data; off by default."""

    enabled: bool = False
    noise_multiplier: float = 1.0
    max_grad_norm: float = 1.0
    delta: float = 1e-5


@dataclass(frozen=True)
class EncoderConfig:
    """The small pathology classifier whose features measure fidelity and memorisation."""

    steps: int = 300
    batch_size: int = 32
    lr: float = 2e-3
    width: int = 16


@dataclass(frozen=True)
class GanConfig:
    """Conditional GAN: model sizes and training schedule."""

    steps: int = 2000
    batch_size: int = 32
    lr_generator: float = 2e-4
    lr_discriminator: float = 2e-4
    z_dim: int = 64
    channels: int = 64
    ema_decay: float = 0.999
    diffaugment: tuple[str, ...] = ("translation", "cutout", "brightness", "contrast")
    checkpoint_every: int = 500
    log_every: int = 10
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)


@dataclass(frozen=True)
class DiffusionConfig:
    """Conditional diffusion: UNet2DModel sizes, DDPM training and DDIM sampling."""

    steps: int = 2000
    batch_size: int = 16
    lr: float = 1e-3
    block_out_channels: tuple[int, ...] = (32, 64, 64)
    layers_per_block: int = 1
    # Self-attention only at feature maps this small or smaller: at 16x16 it costs ~80% of a step.
    attention_max_resolution: int = 8
    train_timesteps: int = 1000
    inference_steps: int = 50
    guidance_scale: float = 2.0
    label_dropout: float = 0.1
    checkpoint_every: int = 500
    log_every: int = 10
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)


@dataclass(frozen=True)
class SampleConfig:
    """How synth_sample balances the train split and gates memorised samples."""

    generators: tuple[str, ...] = ("diffusion",)
    target_ratio: float = 1.0
    batch_size: int = 64
    max_attempts: int = 4
    ssim_threshold: float = 0.9
    # None: feature cosine is reported but does not reject (see params.yaml for why).
    cosine_threshold: float | None = None
    candidates: int = 16


@dataclass(frozen=True)
class EvalConfig:
    """How synth_eval measures fidelity, diversity and utility."""

    generators: tuple[str, ...] = ("gan", "diffusion")
    samples_per_class: int = 200
    classifier_steps: int = 300
    k: int = 3
    kid_subset_size: int = 100
    kid_subsets: int = 50


def from_params(cls: type[C], params: dict[str, Any] | None, where: str) -> C:
    """Build dataclass `cls` from a params mapping; `where` names it in errors."""
    params = dict(params or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(params) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; known: {sorted(fields)}")
    values = {}
    for name, value in params.items():
        default = getattr(cls(), name)
        if dataclasses.is_dataclass(default):
            value = from_params(type(default), value, f"{where}.{name}")
        elif isinstance(default, tuple):
            value = tuple(value)
        values[name] = value
    return cls(**values)


def to_dict(config: Any) -> dict[str, Any]:
    """Return a config as plain JSON-ready values."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def write_config(path: str | os.PathLike, **configs: Any) -> None:
    """Write named configs as one sorted JSON file."""
    text = json.dumps({name: to_dict(config) for name, config in configs.items()}, indent=2, sort_keys=True)
    write_text(path, text + "\n")


def read_config(path: str | os.PathLike, name: str, cls: type[C]) -> C:
    """Read the config called `name` from a JSON file written by :func:`write_config`."""
    stored = json.loads(Path(path).read_text())
    if name not in stored:
        raise ValueError(f"{path}: no '{name}' config (it has {sorted(stored)})")
    return from_params(cls, stored[name], f"{path}:{name}")
