"""Labels needed to reach a target Dice: annotating in uncertainty order vs random order.

An annotator is simulated by the synthetic set's ground truth: each round trains the
pre-label model from scratch on the images labelled so far, scores held-out Dice,
and "labels" the next batch, either the pool images the model is least sure of
(thyrokit's annotation order: each patient's most uncertain image before any
patient's second) or a random batch. Images vary in contrast, so some are
clear and some ambiguous, as in real ultrasound.

    python benchmarks/active_learning.py --target 0.8 --out data/plots/active_learning.png

With ``--images`` and ``--labels`` (the split stage's images.parquet and the labels
stage's folder) it runs on real data instead, e.g. the demo phantom: the pool is the
human-labelled train images, whose labels the simulated annotator reveals, and the
model is the pre-label stage's (the ``prelabel`` section of ``--params``; ``--steps``
sets its training length). It is scored on the human-labelled validation images, or
on several held-out splits pooled (``--held-out validation --held-out test --held-out
external``), whose noise is smaller; the stages never score on test or external.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click
import numpy as np
import torch

from thyrokit.annotate.model.commands import model_config
from thyrokit.annotate.model.config import ModelConfig
from thyrokit.annotate.model.dataset import Examples
from thyrokit.annotate.model.inputs import read_inputs
from thyrokit.annotate.model.evaluate import evaluate
from thyrokit.annotate.model.predict import Prediction, predict, rank_by_uncertainty
from thyrokit.annotate.model.stages import read_examples
from thyrokit.annotate.model.synthetic import blob_image
from thyrokit.annotate.model.train import train_supervised
from thyrokit.device import pick_device


def varied_blobs(count: int, size: int, seed: int) -> Examples:
    """Blob images whose contrast ranges from barely visible to clear, with ground truth."""
    rng = np.random.default_rng(seed)
    images, masks, malignant = [], [], []
    for _ in range(count):
        image, mask, is_malignant = blob_image(size, rng, contrast=rng.uniform(0.1, 0.5))
        images.append(image)
        masks.append(mask > 0)
        malignant.append(float(is_malignant))
    return Examples([f"img{i:04d}" for i in range(count)], torch.from_numpy(np.stack(images))[:, None],
                    torch.from_numpy(np.stack(masks).astype(np.uint8))[:, None],
                    torch.tensor(malignant, dtype=torch.float32))


def labelled_sets(images_table: Path, labels_dir: Path, config: ModelConfig,
                  held_out: tuple[str, ...] = ("validation",)) -> tuple[Examples, Examples]:
    """The human-labelled train images (the pool) and held-out images of a pipeline run."""
    inputs = read_inputs(images_table, labels_dir)
    pool, validation = (read_examples(inputs, inputs.labelled_in(*splits), config)[0]
                        for splits in (("train",), held_out))
    return pool, validation


def learning_curve(strategy: str, pool: Examples, validation: Examples, config: ModelConfig,
                   start: int, batch: int, rounds: int, device: torch.device) -> list[tuple[int, float]]:
    """Validation Dice after each round of labelling `batch` more images in `strategy` order."""
    rng = np.random.default_rng(config.seed)
    labelled = [int(i) for i in rng.choice(len(pool), start, replace=False)]
    curve = []
    for _ in range(rounds + 1):
        model = train_supervised(config, pool.subset(sorted(labelled)), device)
        curve.append((len(labelled), nodule_dice(predict(model, validation, device, mc_samples=1), validation,
                                                 config.threshold)))
        rest = [i for i in range(len(pool)) if i not in set(labelled)]
        if strategy == "uncertainty":
            candidates = pool.subset(rest)
            unsure = predict(model, candidates.unlabelled(), device, config.mc_samples).uncertainty
            ranks = rank_by_uncertainty(candidates.image_ids, unsure, candidates.groups)
            chosen = [rest[i] for i in np.argsort(ranks)[:batch]]
        else:
            chosen = [int(i) for i in rng.choice(rest, batch, replace=False)]
        labelled += chosen
    return curve


def nodule_dice(prediction: Prediction, truth: Examples, threshold: float) -> float:
    """Mean Dice over the validation images that hold a nodule (an empty image predicted empty scores 1 in "dice")."""
    return evaluate(prediction, truth, threshold)["nodule_dice"]


def labels_to_reach(curve: list[tuple[int, float]], target: float) -> int | None:
    """The fewest labels at which the curve reaches `target` Dice, or None."""
    return next((labels for labels, score in curve if score >= target), None)


def plot(curves: dict[str, list[tuple[int, float]]], target: float, path: Path) -> None:
    """Save the learning curves of each strategy as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    for name, curve in curves.items():
        axes.plot(*zip(*curve), marker="o", label=name)
    axes.axhline(target, color="grey", linestyle="--", label=f"target Dice {target}")
    axes.set(xlabel="labelled images", ylabel="held-out Dice (images with a nodule)",
             title="Active learning: labels vs Dice")
    axes.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120, bbox_inches="tight")


@click.command()
@click.option("--pool", "pool_size", default=160, show_default=True, help="unlabelled pool images")
@click.option("--validation", "validation_size", default=48, show_default=True)
@click.option("--start", default=4, show_default=True, help="labels before the first round")
@click.option("--batch", default=4, show_default=True, help="labels added per round")
@click.option("--rounds", default=6, show_default=True)
@click.option("--target", default=0.7, show_default=True, help="held-out nodule Dice to reach")
@click.option("--steps", default=200, show_default=True, help="training steps per round")
@click.option("--params", "params_path", default="params.yaml", show_default=True,
              type=click.Path(dir_okay=False, path_type=Path), help="prelabel model settings, for --images")
@click.option("--held-out", "held_out", multiple=True, default=("validation",), show_default=True,
              type=click.Choice(["validation", "test", "external"]),
              help="labelled splits pooled to score the rounds, for --images (repeat it)")
@click.option("--repeats", default=2, show_default=True, help="seeds averaged")
@click.option("--first-seed", default=0, show_default=True, help="seeds run first-seed .. first-seed + repeats - 1")
@click.option("--images", "images_table", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="split images.parquet of a pipeline run (default: synthetic blobs)")
@click.option("--labels", "labels_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="labels stage folder of that run")
@click.option("--size", default=None, type=int, help="model input side; default 32 synthetic, prelabel.size real")
@click.option("--out", default="benchmarks/out/active_learning.png", show_default=True,
              type=click.Path(dir_okay=False, path_type=Path))
def main(pool_size: int, validation_size: int, start: int, batch: int, rounds: int, target: float,
         steps: int, repeats: int, first_seed: int, params_path: Path, held_out: tuple[str, ...],
         images_table: Path | None, labels_dir: Path | None, size: int | None, out: Path) -> None:
    """Print labels-to-target for uncertainty vs random order and save the curves."""
    if (images_table is None) != (labels_dir is None):
        raise click.UsageError("--images and --labels go together")
    torch.set_num_threads(1)
    device = pick_device()
    if images_table:
        stage = model_config(params_path)
        base = dataclasses.replace(stage, steps=steps, size=size or stage.size)
        real = labelled_sets(images_table, labels_dir, base, held_out)
        click.echo(f"pool {len(real[0])} labelled train images, {len(real[1])} held-out images "
                   f"({', '.join(held_out)})")
    else:
        size = size or 32
        base = ModelConfig(size=size, channels=8, depth=2 if size < 64 else 3, steps=steps, batch_size=8,
                           mc_samples=4)
        real = None
    curves: dict[str, list[list[tuple[int, float]]]] = {"uncertainty": [], "random": []}
    for seed in range(first_seed, first_seed + repeats):
        config = dataclasses.replace(base, seed=seed)
        pool, validation = real or (varied_blobs(pool_size, size, 100 + seed),
                                    varied_blobs(validation_size, size, 900 + seed))
        for strategy in curves:
            curves[strategy].append(learning_curve(strategy, pool, validation, config, start, batch, rounds, device))
    mean = {name: [(runs[0][i][0], float(np.mean([run[i][1] for run in runs]))) for i in range(rounds + 1)]
            for name, runs in curves.items()}
    click.echo(f"device {device}; mean held-out nodule Dice over {repeats} seed(s)")
    click.echo("labels  " + "  ".join(f"{name:>11}" for name in mean))
    for i in range(rounds + 1):
        click.echo(f"{mean['random'][i][0]:>6}  " + "  ".join(f"{mean[name][i][1]:>11.3f}" for name in mean))
    for name, curve in mean.items():
        needed = labels_to_reach(curve, target)
        click.echo(f"labels to reach Dice {target} in {name} order: {needed if needed else 'not reached'}")
    plot(mean, target, out)
    click.echo(f"curves: {out}")


if __name__ == "__main__":
    main()
