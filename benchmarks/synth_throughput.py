"""Synthetic-nodule generators: training steps/s and sampling images/s, on CPU and on CUDA when present.

Runs the real training functions (`train_gan`, `train_diffusion`, with DVCLive logging)
and the real samplers on random patches, at the demo's 32 px and at 64 px.

    python benchmarks/synth_throughput.py --steps 40 --images 64
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import click
import numpy as np
import polars as pl
import torch

from thyrokit.synth.config import DataConfig, DiffusionConfig, GanConfig
from thyrokit.synth.data import PatchSet, labels_of, num_labels
from thyrokit.synth.diffusion import make_unet
from thyrokit.synth.diffusion_training import train_diffusion
from thyrokit.synth.gan import Discriminator, Generator
from thyrokit.synth.gan_training import train_gan
from thyrokit.synth.sample import draw_pairs, load_generator

# (size, GAN width, UNet block widths): the demo's settings and a 64 px one.
SETTINGS = ((32, 64, (32, 64, 64)), (64, 64, (32, 64, 64, 64)))


def random_patches(size: int, count: int = 256, seed: int = 0) -> PatchSet:
    """Return random uint8 patches with blob masks and alternating benign/malignant rows."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((count, size, size), np.uint8)
    masks[:, size // 4:3 * size // 4, size // 4:3 * size // 4] = 255
    rows = pl.DataFrame({"pathology": ["benign", "malignant"] * (count // 2), "tirads": ["TR3", "TR5"] * (count // 2)})
    return PatchSet(rng.integers(0, 256, (count, size, size), dtype=np.uint8), masks, rows)


def timed(function, *args, device: torch.device, **kwargs) -> float:
    """Return the seconds `function` takes, waiting for the GPU to finish."""
    start = time.perf_counter()
    function(*args, **kwargs)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def measure(kind: str, size: int, width: int, blocks: tuple[int, ...], steps: int, images: int,
            device: torch.device, folder: Path) -> tuple[float, float, int]:
    """Return (training steps/s, sampling images/s, parameter count) of one generator setting."""
    patches, data = random_patches(size), DataConfig(size=size)
    out = folder / f"{kind}-{size}-{device.type}"
    if kind == "gan":
        config, trainer = GanConfig(steps=steps, batch_size=32, channels=width, log_every=10), train_gan
    else:
        config, trainer = DiffusionConfig(steps=steps, batch_size=16, block_out_channels=blocks,
                                          log_every=10, inference_steps=25), train_diffusion
    seconds = timed(trainer, patches, data, config, out, out / "live", device, device=device)
    generator = load_generator(kind, out, device)
    labels = np.resize(labels_of(patches.rows, data.classes), images)
    draw_pairs(generator, labels[:4], list(range(4)), 64)  # warm-up
    sample_seconds = timed(draw_pairs, generator, labels, list(range(images)), 64, device=device)
    return steps / seconds, images / sample_seconds, parameter_count(kind, size, width, blocks, data)


def parameter_count(kind: str, size: int, width: int, blocks: tuple[int, ...], data: DataConfig) -> int:
    """Return the trainable parameters of a setting (generator + discriminator for the GAN)."""
    labels = num_labels(data.classes)
    if kind == "gan":
        models = [Generator(size, labels, channels=width), Discriminator(size, labels, channels=width)]
    else:
        models = [make_unet(size, labels, DiffusionConfig(block_out_channels=blocks))]
    return sum(p.numel() for model in models for p in model.parameters())


@click.command()
@click.option("--steps", default=40, show_default=True, help="training steps per measurement")
@click.option("--images", default=64, show_default=True, help="images sampled per measurement")
@click.option("--threads", default=0, show_default=True, help="torch CPU threads; 0 = default")
def main(steps: int, images: int, threads: int) -> None:
    """Print training steps/s and sampling images/s per device, generator and size."""
    if threads:
        torch.set_num_threads(threads)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    click.echo(f"{'device':<6} {'model':<10} {'size':>4} {'params':>9} {'train steps/s':>14} {'sample img/s':>13}")
    with tempfile.TemporaryDirectory() as tmp:
        for device in devices:
            for size, width, blocks in SETTINGS:
                for kind in ("gan", "diffusion"):
                    rate, sampled, params = measure(kind, size, width, blocks, steps, images, device, Path(tmp))
                    click.echo(f"{device.type:<6} {kind:<10} {size:>4} {params:>9,} {rate:>14.2f} {sampled:>13.1f}")


if __name__ == "__main__":
    main()
