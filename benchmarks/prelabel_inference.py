"""Pre-label model inference speed: images/s on CPU, and on CUDA when present.

Measures the network as the prelabel stage runs it (batches of 32, a plain pass and
MC-dropout passes, the pathology head cropping the detail image), on random images, for
the params' model size and a larger one.

    python benchmarks/prelabel_inference.py --images 256
"""

from __future__ import annotations

import time

import click
import torch

from thyrokit.annotate.model.config import ModelConfig
from thyrokit.annotate.model.dataset import Examples
from thyrokit.annotate.model.predict import predict
from thyrokit.annotate.model.train import build_model


def images_per_second(config: ModelConfig, count: int, device: torch.device, mc_samples: int) -> float:
    """Images/s of :func:`predict` for `count` random images of the config's sizes (network and detail)."""
    examples = Examples([f"i{i}" for i in range(count)],
                        torch.randint(0, 256, (count, 1, config.size, config.size), dtype=torch.uint8),
                        detail=torch.randint(0, 256, (count, 1, config.detail_size, config.detail_size),
                                             dtype=torch.uint8))
    model = build_model(config).to(device)
    predict(model, examples.subset(list(range(min(count, 32)))), device, mc_samples)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    predict(model, examples, device, mc_samples)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return count / (time.perf_counter() - start)


@click.command()
@click.option("--images", "count", default=256, show_default=True)
@click.option("--threads", default=0, show_default=True, help="torch CPU threads; 0 = default")
def main(count: int, threads: int) -> None:
    """Print images/s per device, model size and number of MC-dropout passes."""
    if threads:
        torch.set_num_threads(threads)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    click.echo(f"{'device':<6} {'size':>5} {'mc':>3} {'images/s':>10}")
    for device in devices:
        for size, channels, depth in ((64, 8, 3), (128, 16, 4)):
            config = ModelConfig(size=size, channels=channels, depth=depth)
            for mc_samples in (1, config.mc_samples):
                rate = images_per_second(config, count, device, mc_samples)
                click.echo(f"{device.type:<6} {size:>5} {mc_samples:>3} {rate:>10.1f}")


if __name__ == "__main__":
    main()
