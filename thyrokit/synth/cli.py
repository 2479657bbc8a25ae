"""``thyrokit synth``: train the generators, balance the train split, evaluate the generators.

Thin stage commands: they read ``params.yaml`` (section ``synth``), call the library
and write outputs; dvc.yaml lists their deps, params and outs.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch

from thyrokit.atomic import write_text
from thyrokit.contract import ContractError
from thyrokit.device import pick_device
from thyrokit.params import load_params
from thyrokit.synth.config import (DataConfig, DiffusionConfig, EncoderConfig, EvalConfig, GanConfig, SampleConfig,
                                   from_params, read_config, write_config)
from thyrokit.synth.data import labels_of, load_held_out, load_training_patches
from thyrokit.synth.diffusion_training import train_diffusion
from thyrokit.synth.encoder import encode, load_encoder, save_encoder, train_classifier
from thyrokit.synth.evaluate import evaluate_generator
from thyrokit.synth.gan_training import train_gan
from thyrokit.synth.plots import plot_utility
from thyrokit.synth.sample import GENERATORS, balance_train_split, load_generator, write_class_grids, write_synthetic
from thyrokit.synth.utility import train_and_score, with_pooled

ENCODER_FOLDER = "synth_encoder"
PARAMS = click.option("--params", "params_path", default="params.yaml", show_default=True,
                      type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Parameters file.")


def read_section(params_path: Path, key: str, cls: type) -> Any:
    """Return config `cls` built from ``synth.<key>`` of the params file."""
    return from_params(cls, load_params("synth", params_path).get(key), f"synth.{key}")


def one_line_errors(command: Callable) -> Callable:
    """Report bad input (a contract or config problem) as one line, not a traceback."""
    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (ContractError, ValueError, KeyError, FileNotFoundError) as error:
            raise click.ClickException(str(error)) from None
    return wrapper


def use_threads(params_path: Path) -> None:
    """Set torch's CPU threads from ``synth.threads`` (0 keeps torch's default, one per core)."""
    threads = int(load_params("synth", params_path).get("threads", 0))
    if threads:
        torch.set_num_threads(threads)


def write_metrics(path: Path, metrics: dict) -> None:
    """Write metrics as sorted JSON, with NaN written as null."""
    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: clean(item) for key, item in value.items()}
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return value

    write_text(path, json.dumps(clean(metrics), indent=2, sort_keys=True) + "\n")


def diffusion_knobs(params_path: Path) -> dict[str, Any]:
    """Return the sampling knobs of the diffusion model from params (they do not need retraining)."""
    config = read_section(params_path, "diffusion", DiffusionConfig)
    return {"inference_steps": config.inference_steps, "guidance_scale": config.guidance_scale}


def load_generators(names: tuple[str, ...], models: Path, device: torch.device, params_path: Path,
                    data_config: DataConfig) -> dict:
    """Load the named generators from ``<models>/<name>``; each must be trained on `data_config`'s data."""
    generators = {}
    for name in names:
        knobs = diffusion_knobs(params_path) if name == "diffusion" else {}
        generators[name] = load_generator(name, models / name, device, **knobs)
        if generators[name].data != data_config:
            raise ValueError(f"{models / name}: trained with {generators[name].data}, but params say "
                             f"{data_config}; re-run `thyrokit synth train {name}`")
    return generators


@click.group()
def synth() -> None:
    """Conditional generators that balance the train split, and their quality checks."""


@synth.command()
@click.argument("kind", type=click.Choice(["encoder", *GENERATORS]))
@click.argument("patches", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--metrics", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="JSON file for the final training figures.")
@click.option("--live", "live_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="DVCLive folder for the loss curves (gan, diffusion).")
@click.option("--plots", "plots_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for a sample grid per class (gan, diffusion).")
@click.option("--checkpoint", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Checkpoint file to resume from and save to (kept between runs).")
@PARAMS
@one_line_errors
def train(kind: str, patches: Path, out_dir: Path, metrics: Path, live_dir: Path | None, plots_dir: Path | None,
          checkpoint: Path | None, params_path: Path) -> None:
    """Train KIND (encoder, gan or diffusion) on the train-split patches of PATCHES into OUT_DIR.

    The encoder is the pathology classifier whose features synth sample and synth eval use.
    """
    if kind != "encoder" and (live_dir is None or plots_dir is None):
        raise click.UsageError(f"training {kind} needs --live and --plots")
    use_threads(params_path)
    data_config = read_section(params_path, "data", DataConfig)
    device = pick_device()
    train_set = load_training_patches(patches, data_config)
    click.echo(f"synth train {kind}: {train_set.rows.height} train patches, device {device}")
    if kind == "encoder":
        config = read_section(params_path, "encoder", EncoderConfig)
        classes = np.asarray([data_config.classes.index(p) for p in train_set.rows["pathology"]])
        model = train_classifier(train_set.images, classes, config, data_config.seed, device, "encoder")
        save_encoder(out_dir, model)
        write_config(out_dir / "config.json", data=data_config, encoder=config)
        write_metrics(metrics, {"steps": config.steps, "patches": train_set.rows.height})
        return
    trainer, config = ((train_gan, read_section(params_path, "gan", GanConfig)) if kind == "gan"
                       else (train_diffusion, read_section(params_path, "diffusion", DiffusionConfig)))
    figures = trainer(train_set, data_config, config, out_dir, live_dir, device, checkpoint)
    knobs = diffusion_knobs(params_path) if kind == "diffusion" else {}
    generator = load_generator(kind, out_dir, device, **knobs)
    write_class_grids(generator, plots_dir, labels_of(train_set.rows, data_config.classes), data_config.seed)
    write_metrics(metrics, {"patches": train_set.rows.height, **figures})


@synth.command()
@click.argument("patches", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("models", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--metrics", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="JSON file for per-class counts and memorisation-gate figures.")
@PARAMS
@one_line_errors
def sample(patches: Path, models: Path, out_dir: Path, metrics: Path, params_path: Path) -> None:
    """Generate each class's deficit so the train split of PATCHES is balanced; write OUT_DIR.

    MODELS holds the trained generators (gan/, diffusion/) and the encoder (synth_encoder/).
    """
    use_threads(params_path)
    config = read_section(params_path, "sample", SampleConfig)
    data_config = read_section(params_path, "data", DataConfig)
    device = pick_device()
    generators = load_generators(config.generators, models, device, params_path, data_config)
    encoder = load_encoder(models / ENCODER_FOLDER, read_config(models / ENCODER_FOLDER / "config.json",
                                                                "encoder", EncoderConfig), device)
    train_set = load_training_patches(patches, data_config)
    drawn, report = balance_train_split(train_set, generators, encoder, config, data_config.seed)
    write_synthetic(out_dir, drawn, {name: g.version for name, g in generators.items()}, data_config.classes)
    write_metrics(metrics, report)
    for name, figures in sorted(report["generators"].items()):
        click.echo(f"synth sample {name}: {figures['accepted']} accepted, "
                   f"{figures['memorised_rejected']} rejected as memorised, {figures['shortfall']} short")


@synth.command(name="eval")
@click.argument("patches", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("models", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--metrics", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="JSON file with every figure, per generator.")
@click.option("--plots", "plots_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the utility plot.")
@PARAMS
@one_line_errors
def evaluate(patches: Path, models: Path, metrics: Path, plots_dir: Path, params_path: Path) -> None:
    """Measure fidelity, memorisation and utility of each generator in MODELS against PATCHES."""
    use_threads(params_path)
    config = read_section(params_path, "eval", EvalConfig)
    sample_config = read_section(params_path, "sample", SampleConfig)
    data_config = read_section(params_path, "data", DataConfig)
    encoder_config = read_config(models / ENCODER_FOLDER / "config.json", "encoder", EncoderConfig)
    classifier_config = dataclasses.replace(encoder_config, steps=config.classifier_steps)
    device = pick_device()
    encoder = load_encoder(models / ENCODER_FOLDER, encoder_config, device)
    train_set = load_training_patches(patches, data_config)
    train_features = encode(encoder, train_set.images)
    held_out = with_pooled({
        split: (patch_set.images,
                np.asarray([data_config.classes.index(p) for p in patch_set.rows["pathology"]], np.int64))
        for split, patch_set in load_held_out(patches, data_config).items()})
    real_classes = np.asarray([data_config.classes.index(p) for p in train_set.rows["pathology"]], np.int64)
    real_scores = train_and_score(train_set.images, real_classes, held_out, classifier_config, data_config.seed,
                                  device, "real only")
    results = {}
    for name, generator in load_generators(config.generators, models, device, params_path, data_config).items():
        results[name] = evaluate_generator(generator, encoder, train_set, train_features, held_out, real_scores,
                                           config, sample_config, classifier_config, data_config.seed, device)
        click.echo(f"synth eval {name}: KID {results[name]['kid']}, precision {results[name]['precision']}, "
                   f"recall {results[name]['recall']}, {results[name]['memorised_rejected']} memorised")
    write_metrics(metrics, results)
    plot_utility(results, plots_dir / "utility.png")
