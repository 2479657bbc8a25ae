"""The `thyrokit annotate prelabel` and `pseudolabel` commands: paths and params in, stage out."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from thyrokit.params import load_params

if TYPE_CHECKING:  # torch loads only when a command runs, not for `thyrokit --help`
    from thyrokit.annotate.model.config import ModelConfig
    from thyrokit.annotate.model.stages import StageResult
    from thyrokit.annotate.model.train import StepLog

LOG_EVERY = 10  # steps averaged into one point of the loss curve


@contextmanager
def loss_curve(plots_dir: Path) -> Iterator["StepLog"]:
    """Yield a step logger that writes averaged losses to `plots_dir` with DVCLive."""
    from dvclive import Live

    window: dict[str, list[float]] = {}
    with Live(dir=str(plots_dir), save_dvc_exp=False, dvcyaml=False) as live:
        def log(step: int, losses: dict[str, float]) -> None:
            for name, value in losses.items():
                window.setdefault(name, []).append(value)
            if (step + 1) % LOG_EVERY == 0:
                for name, values in window.items():
                    live.log_metric(f"train/{name}", round(sum(values) / len(values), 5))
                live.next_step()
                window.clear()

        yield log


def model_config(params_path: Path) -> "ModelConfig":
    """Read the model settings from the `prelabel` section of the params file."""
    from thyrokit.annotate.model.config import ModelConfig

    return ModelConfig.from_dict(load_params("prelabel", params_path))


def report(result: "StageResult", metrics_path: Path, plots_dir: Path) -> None:
    """Write a stage's metrics and PR curve, and echo its skipped items."""
    from thyrokit.annotate.model.outputs import write_json

    for line in result.problems:
        click.echo(f"skipped {line}", err=True)
    write_json(result.metrics, metrics_path)
    if result.pr_curve:
        write_json(result.pr_curve, plots_dir / "pr_curve.json")


common = [
    click.argument("images_table", type=click.Path(exists=True, dir_okay=False, path_type=Path)),
    click.argument("labels_dir", type=click.Path(exists=True, file_okay=False, path_type=Path)),
    click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path)),
    click.option("--params", "params_path", default="params.yaml", show_default=True,
                 type=click.Path(exists=True, dir_okay=False, path_type=Path)),
    click.option("--device", default=None, help="torch device; default cuda when present, else cpu"),
]


def with_common(function):
    """Add the arguments and options both commands share."""
    for decorator in reversed(common):
        function = decorator(function)
    return function


@click.command("prelabel")
@with_common
@click.option("--model-dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("data/models/prelabel"), show_default=True)
@click.option("--metrics", "metrics_path", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("data/metrics/prelabel.json"), show_default=True)
@click.option("--plots", "plots_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("data/plots/prelabel"), show_default=True)
def prelabel_command(images_table: Path, labels_dir: Path, out_dir: Path, params_path: Path,
                     device: str | None, model_dir: Path, metrics_path: Path, plots_dir: Path) -> None:
    """Train the pre-label model on human-labelled train images; predict the rest into OUT_DIR.

    IMAGES_TABLE is the split stage's images.parquet, LABELS_DIR the labels stage's
    folder. Writes OUT_DIR/nodules.parquet (label_source=prediction), OUT_DIR/masks/
    and OUT_DIR/uncertainty.parquet (annotation order, most uncertain first).
    """
    from thyrokit.annotate.model.inputs import read_inputs
    from thyrokit.annotate.model.stages import run_prelabel
    from thyrokit.device import pick_device

    inputs = read_inputs(images_table, labels_dir)
    with loss_curve(plots_dir) as log:
        result = run_prelabel(inputs, model_config(params_path), pick_device(device), model_dir, out_dir, log)
    report(result, metrics_path, plots_dir)
    scores = result.metrics["validation"]
    click.echo(f"{result.metrics['n_predicted_images']} images pre-labelled by {result.metrics['model_version']}; "
               f"validation Dice {scores.get('dice')}, AUC {scores.get('auc')}")


@click.command("pseudolabel")
@with_common
@click.option("--model-dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("data/models/pseudolabel"), show_default=True)
@click.option("--metrics", "metrics_path", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("data/metrics/pseudolabel.json"), show_default=True)
@click.option("--plots", "plots_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("data/plots/pseudolabel"), show_default=True)
@click.option("--start-model", "start_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=Path("data/models/prelabel"), show_default=True,
              help="the prelabel stage's model, which self-training fine-tunes")
def pseudolabel_command(images_table: Path, labels_dir: Path, out_dir: Path, params_path: Path,
                        device: str | None, model_dir: Path, metrics_path: Path, plots_dir: Path,
                        start_dir: Path) -> None:
    """Fine-tune the pre-label model on train images; write confident pseudolabels of unlabelled ones to OUT_DIR.

    Also measures supervised-only vs semi-supervised training on the validation split
    at each label fraction of params (metrics keys labels_<N>pct).
    """
    from thyrokit.annotate.model.inputs import read_inputs
    from thyrokit.annotate.model.outputs import load_model
    from thyrokit.annotate.model.semi_supervised import SemiConfig
    from thyrokit.annotate.model.stages import run_pseudolabel
    from thyrokit.device import pick_device

    params = dict(load_params("pseudolabel", params_path))
    fractions = [float(value) for value in params.pop("label_fractions", [0.1, 0.3])]
    min_confidence = float(params.pop("min_confidence", 0.8))
    config = model_config(params_path)
    chosen = pick_device(device)
    start, start_config, start_version = load_model(start_dir, chosen)
    trained_with = start_config.to_dict()
    differing = sorted(key for key, value in config.to_dict().items() if trained_with.get(key) != value)
    if differing:
        raise click.UsageError(f"{start_dir} was trained with other prelabel settings ({', '.join(differing)}) "
                               f"than {params_path}; run the prelabel stage with these params first")
    inputs = read_inputs(images_table, labels_dir)
    with loss_curve(plots_dir) as log:
        result = run_pseudolabel(inputs, config, SemiConfig.from_dict(params), start, fractions,
                                 min_confidence, chosen, model_dir, out_dir, log, start_version)
    report(result, metrics_path, plots_dir)
    click.echo(f"{result.metrics['n_pseudo_nodules']} pseudolabelled nodules on "
               f"{result.metrics['n_pseudo_images']} unlabelled train images")
