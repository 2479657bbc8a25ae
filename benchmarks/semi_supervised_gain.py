"""Supervised-only vs semi-supervised training over several seeds: is the gain bigger than the noise?

The pseudolabel stage compares the two once, with the seed of params.yaml. On a
validation split of a few dozen patients one run can swing by 0.2 Dice from one seed
to the next, so this script repeats the stage's own comparison
(``compare_label_fractions``) with other seeds and prints each metric's mean and
spread, and how often semi-supervised training won.

Both of the stage's models are one supervised model fine-tuned ``pseudolabel.steps``
more steps, the semi-supervised one with the unlabelled images and the "supervised" one
without them. The "supervised from scratch" column trains a new supervised model for the
same total steps on the same labels, the plain way a modeller would spend them.

    python benchmarks/semi_supervised_gain.py data/interim/split/images.parquet data/interim/labels --seeds 3

``--held-out validation --held-out test --held-out external`` scores on all three labelled
held-out splits together, whose noise is smaller; the stages never score on test or external.

Runs use the stages' torch threads (``prelabel.threads``), so seed 0 on the validation
split repeats the stage's own report. Compare runs made with the same number of threads:
the order of float sums changes with it, and a few dozen labels amplify that to a few
hundredths of Dice in a single run (one demo run moved 0.07 from 2 threads to 1).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click
import numpy as np
import polars as pl

from thyrokit.annotate.model.commands import model_config
from thyrokit.annotate.model.inputs import read_inputs
from thyrokit.annotate.model.semi_supervised import SemiConfig
from thyrokit.annotate.model.stages import (COMPARED, compare_label_fractions, fraction_key,
                                            label_fraction_subsets, read_examples, validation_scores)
from thyrokit.annotate.model.train import train_supervised
from thyrokit.device import pick_device
from thyrokit.params import load_params


@click.command()
@click.argument("images_table", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("labels_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--params", "params_path", default="params.yaml", show_default=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--seeds", default=3, show_default=True, help="how many training seeds")
@click.option("--first-seed", default=0, show_default=True, help="seeds run first-seed .. first-seed + seeds - 1")
@click.option("--held-out", "held_out", multiple=True, default=("validation",), show_default=True,
              type=click.Choice(["validation", "test", "external"]),
              help="labelled splits pooled to score the models (repeat it); the stage scores validation alone, "
                   "the three together hold about four times as many patients")
def main(images_table: Path, labels_dir: Path, params_path: Path, seeds: int, first_seed: int,
         held_out: tuple[str, ...]) -> None:
    """Print mean and spread of held-out Dice and AUC, supervised vs semi-supervised, per label fraction."""
    config = model_config(params_path)
    params = dict(load_params("pseudolabel", params_path))
    fractions = [float(value) for value in params.pop("label_fractions")]
    params.pop("min_confidence", None)
    semi = SemiConfig.from_dict(params)
    inputs = read_inputs(images_table, labels_dir)
    train, _ = read_examples(inputs, inputs.images.filter(pl.col("split") == "train"), config)
    labelled = [i for i, image_id in enumerate(train.image_ids) if image_id in inputs.labelled]
    held, _ = read_examples(inputs, inputs.labelled_in(*held_out), config)
    device = pick_device()
    runs = []
    for seed in range(first_seed, first_seed + seeds):
        seeded = dataclasses.replace(config, seed=seed)
        run = compare_label_fractions(seeded, semi, train, labelled, held, fractions, device)
        longer = dataclasses.replace(seeded, steps=config.steps + semi.steps)
        for fraction, keep in label_fraction_subsets(train, labelled, fractions, seed).items():
            scores = validation_scores(train_supervised(longer, train.subset(keep), device), held, longer,
                                       device)
            run[fraction_key(fraction)].update({f"{metric}_same_steps": scores[metric] for metric in COMPARED})
        runs.append(run)
        click.echo(f"seed {seed}: {run}")
    click.echo(f"\n{len(labelled)} labelled train images, {len(held)} held-out images ({', '.join(held_out)}), "
               f"{seeds} seeds, device {device}")
    click.echo("| labels | metric | supervised | supervised from scratch, same steps | semi-supervised "
               "| semi wins (over each) |")
    click.echo("|---|---|---|---|---|---|")
    for key in runs[0]:
        for metric in COMPARED:
            columns = [np.array([run[key][f"{metric}_{name}"] for run in runs], float)
                       for name in ("supervised", "same_steps", "semi_supervised")]
            wins = [int(won(metric, columns[2], baseline).sum()) for baseline in columns[:2]]
            click.echo(f"| {key} ({runs[0][key]['n_labelled']}) | {metric} | "
                       f"{' | '.join(spread(column) for column in columns)} | "
                       f"{wins[0]}/{seeds}, {wins[1]}/{seeds} |")


def won(metric: str, semi_supervised: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """Per seed, whether semi-supervised training scored better than `baseline` (lower is better for false nodules)."""
    return semi_supervised < baseline if metric == "false_nodule_rate" else semi_supervised > baseline


def spread(values: np.ndarray) -> str:
    """Mean ± standard deviation, to three places."""
    return f"{np.nanmean(values):.3f} ± {np.nanstd(values):.3f}"


if __name__ == "__main__":
    main()
