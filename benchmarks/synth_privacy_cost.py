"""What DP-SGD costs in fidelity: KID, FID, precision and recall of a generator (the GAN,
DP on its discriminator, or the diffusion UNet) trained without DP and with DP at several
noise multipliers, with the epsilon spent at the params' delta.

Trains on the train split of a PATCHES table with the params' ``synth.data`` and
``synth.<generator>`` settings (steps overridable), and measures on features of an
encoder trained on the same patches.

    python benchmarks/synth_privacy_cost.py data/interim/roi/patches.parquet --generator gan --steps 1000 --noise 0.5 --noise 1.0
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import click
import numpy as np
import torch

from thyrokit.device import pick_device
from thyrokit.params import load_params
from thyrokit.synth.config import DataConfig, DiffusionConfig, EncoderConfig, GanConfig, PrivacyConfig, from_params
from thyrokit.synth.diffusion_training import train_diffusion
from thyrokit.synth.data import labels_of, load_training_patches
from thyrokit.synth.encoder import encode, train_classifier
from thyrokit.synth.fidelity import fid, kid, precision_recall
from thyrokit.synth.gan_training import train_gan
from thyrokit.synth.sample import draw_pairs, load_generator


@click.command()
@click.argument("patches", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--generator", "kind", type=click.Choice(["gan", "diffusion"]), default="gan", show_default=True)
@click.option("--steps", default=1000, show_default=True, help="GAN training steps per run")
@click.option("--noise", "noises", multiple=True, type=float, default=(0.5, 1.0), show_default=True,
              help="DP-SGD noise multipliers to compare with the non-private run")
@click.option("--params", "params_path", default="params.yaml", show_default=True)
@click.option("--threads", default=0, show_default=True, help="torch CPU threads; 0 = default")
def main(patches: Path, kind: str, steps: int, noises: tuple[float, ...], params_path: str, threads: int) -> None:
    """Print fidelity figures and epsilon for a generator without DP and with each noise multiplier."""
    if threads:
        torch.set_num_threads(threads)
    section = load_params("synth", params_path)
    data = from_params(DataConfig, section.get("data"), "synth.data")
    config_class, trainer = (GanConfig, train_gan) if kind == "gan" else (DiffusionConfig, train_diffusion)
    base = dataclasses.replace(from_params(config_class, section.get(kind), f"synth.{kind}"), steps=steps)
    device = pick_device()
    train = load_training_patches(patches, data)
    classes = np.asarray([data.classes.index(p) for p in train.rows["pathology"]])
    encoder = train_classifier(train.images, classes, from_params(EncoderConfig, section.get("encoder"), "synth.encoder"),
                               data.seed, device, "encoder")
    real = encode(encoder, train.images)
    labels = labels_of(train.rows, data.classes)
    click.echo(f"{kind}, {steps} steps, {len(labels)} train patches, delta={base.privacy.delta:g}")
    click.echo(f"{'run':<12} {'epsilon':>8} {'KID':>8} {'FID':>8} {'precision':>9} {'recall':>7}")
    private = dataclasses.replace(base.privacy, enabled=True)
    runs = [("no DP", PrivacyConfig())] + [(f"DP sigma={n}", dataclasses.replace(private, noise_multiplier=n))
                                          for n in noises]
    with tempfile.TemporaryDirectory() as tmp:
        for name, privacy in runs:
            out = Path(tmp) / name.replace(" ", "_")
            figures = trainer(train, data, dataclasses.replace(base, privacy=privacy), out, out / "live", device)
            generator = load_generator(kind, out, device)
            images, _ = draw_pairs(generator, labels, list(range(len(labels))), 64)
            fake = encode(encoder, images)
            precision, recall = precision_recall(real, fake)
            eps = figures.get("epsilon", float("inf"))
            click.echo(f"{name:<12} {eps:>8.2f} {kid(real, fake):>8.4f} {fid(real, fake):>8.3f} "
                       f"{precision:>9.2f} {recall:>7.2f}")


if __name__ == "__main__":
    main()
