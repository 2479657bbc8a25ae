"""Drawing from a trained generator, gating out memorised samples, and writing synthetic rows.

Every synthetic sample has its own seed, so the ``generator`` column of its nodule row
(``<name>:<weights digest>[+ddim<steps>+cfg<scale>]:seed=<seed>``) names exactly how to
reproduce it. Samples
that sit too close to a training patch, or whose mask is empty, are rejected here,
before they reach the dataset; the rejected labels are drawn again with fresh seeds.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import polars as pl
import torch
from scipy.ndimage import binary_fill_holes

from thyrokit.contract import NODULES, PATCHES, write_table
from thyrokit.pixels import encode_png, write_shards
from thyrokit.synth.balance import class_deficits, draw_levels, split_among
from thyrokit.synth.checkpoint import file_digest
from thyrokit.synth.config import DataConfig, DiffusionConfig, GanConfig, SampleConfig, read_config
from thyrokit.synth.data import LEVELS, PatchSet, decode_label, encode_label, from_tensor
from thyrokit.synth.diffusion import UNET_FOLDER, load_diffusion, sample
from thyrokit.synth.encoder import PatchClassifier, encode
from thyrokit.synth.gan import generate
from thyrokit.synth.gan_training import WEIGHTS as GAN_WEIGHTS
from thyrokit.synth.gan_training import load_gan
from thyrokit.synth.grid import write_grid
from thyrokit.synth.memorisation import memorised, nearest_training
from thyrokit.synth.privacy import read_privacy

GENERATORS = ("gan", "diffusion")
SYNTHETIC_PATIENT = "synthetic"


@dataclass(frozen=True)
class TrainedGenerator:
    """A loaded generator: its name, weights digest, data config, a (labels, seeds) -> pairs function,
    and its privacy report (:func:`thyrokit.synth.privacy.privacy_report`; None where unknown)."""

    name: str
    version: str
    data: DataConfig
    draw: Callable[[torch.Tensor, list[int]], torch.Tensor]
    privacy: dict | None = field(default=None)


def load_generator(name: str, folder: str | os.PathLike, device: torch.device,
                   inference_steps: int | None = None, guidance_scale: float | None = None) -> TrainedGenerator:
    """Load a trained GAN or diffusion model; diffusion sampling knobs default to the trained config's."""
    folder = Path(folder)
    if name == "gan":
        model, data = load_gan(folder, device)
        privacy = read_privacy(folder, read_config(folder / "config.json", "gan", GanConfig).privacy)
        return TrainedGenerator(name, file_digest(folder / GAN_WEIGHTS), data,
                                lambda labels, seeds: generate(model, labels, seeds), privacy)
    if name == "diffusion":
        data = read_config(folder / "config.json", "data", DataConfig)
        config = read_config(folder / "config.json", "diffusion", DiffusionConfig)
        unet, scheduler = load_diffusion(folder, device)
        steps = inference_steps or config.inference_steps
        scale = config.guidance_scale if guidance_scale is None else guidance_scale
        # The sampler's knobs change the samples as much as the weights do, so they are part of the version.
        version = f"{file_digest(folder / UNET_FOLDER / 'diffusion_pytorch_model.safetensors')}+ddim{steps}+cfg{scale:g}"
        return TrainedGenerator(name, version, data,
                                lambda labels, seeds: sample(unet, scheduler, labels, seeds, steps, scale),
                                read_privacy(folder, config.privacy))
    raise ValueError(f"unknown generator '{name}'; known: {list(GENERATORS)}")


def clean_mask(mask: np.ndarray) -> np.ndarray:
    """Return a 0/255 mask reduced to its largest connected region, holes filled (one nodule per patch)."""
    count, regions, stats, _ = cv2.connectedComponentsWithStats((mask > 0).astype(np.uint8), connectivity=8)
    if count <= 1:
        return np.zeros_like(mask)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return np.where(binary_fill_holes(regions == largest), 255, 0).astype(np.uint8)


def draw_pairs(generator: TrainedGenerator, labels: np.ndarray, seeds: list[int],
               batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Return uint8 patches and cleaned 0/255 masks for `labels`, in batches."""
    size = generator.data.size
    images, masks = [np.zeros((0, size, size), np.uint8)], [np.zeros((0, size, size), np.uint8)]
    for start in range(0, len(labels), batch_size):
        pairs = generator.draw(torch.from_numpy(labels[start:start + batch_size]), seeds[start:start + batch_size])
        image, mask = from_tensor(pairs)
        images.append(image)
        masks.append(np.stack([clean_mask(m) for m in mask]))
    return np.concatenate(images), np.concatenate(masks)


@dataclass(frozen=True)
class Drawn:
    """Accepted samples with their labels and seeds, and what the gate did."""

    images: np.ndarray
    masks: np.ndarray
    labels: np.ndarray
    seeds: np.ndarray
    nn_ssim: np.ndarray  # nearest-training SSIM of every sample drawn, accepted or not
    nn_cosine: np.ndarray
    memorised_rejected: int
    empty_mask_rejected: int
    shortfall: int


def draw_gated(generator: TrainedGenerator, labels: np.ndarray, first_seed: int, encoder: PatchClassifier,
               train_images: np.ndarray, train_features: np.ndarray, config: SampleConfig) -> Drawn:
    """Draw one sample per label, redrawing rejected ones up to `max_attempts` times in all."""
    size = generator.data.size
    kept_images, kept_masks, kept_labels, kept_seeds = [], [], [], []
    all_ssim, all_cosine = [], []
    memorised_count = empty_count = 0
    pending, next_seed = np.asarray(labels, dtype=np.int64), first_seed
    for _ in range(config.max_attempts):
        if len(pending) == 0:
            break
        seeds = list(range(next_seed, next_seed + len(pending)))
        next_seed += len(pending)
        images, masks = draw_pairs(generator, pending, seeds, config.batch_size)
        nearest = nearest_training(images, encode(encoder, images), train_images, train_features, config.candidates)
        too_close = memorised(nearest, config.ssim_threshold, config.cosine_threshold)
        empty = ~masks.reshape(len(masks), -1).any(axis=1)
        keep = ~too_close & ~empty
        memorised_count += int(too_close.sum())
        empty_count += int((empty & ~too_close).sum())
        all_ssim.append(nearest.ssim)
        all_cosine.append(nearest.cosine)
        kept_images.append(images[keep])
        kept_masks.append(masks[keep])
        kept_labels.append(pending[keep])
        kept_seeds.append(np.asarray(seeds)[keep])
        pending = pending[~keep]
    empty_array = np.zeros((0, size, size), np.uint8)
    return Drawn(
        images=np.concatenate([empty_array, *kept_images]),
        masks=np.concatenate([empty_array, *kept_masks]),
        labels=np.concatenate([np.zeros(0, np.int64), *kept_labels]),
        seeds=np.concatenate([np.zeros(0, np.int64), *kept_seeds]),
        nn_ssim=np.concatenate([np.zeros(0), *all_ssim]),
        nn_cosine=np.concatenate([np.zeros(0), *all_cosine]),
        memorised_rejected=memorised_count,
        empty_mask_rejected=empty_count,
        shortfall=len(pending),
    )


def mask_bbox(mask: np.ndarray) -> list[int]:
    """Return the (x0, y0, x1, y1) box of a non-empty mask, end exclusive."""
    rows, cols = np.nonzero(mask)
    return [int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1]


def write_synthetic(out_dir: str | os.PathLike, drawn: dict[str, Drawn], versions: dict[str, str],
                    classes: tuple[str, ...]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Write synthetic patches (PATCHES) and nodules (NODULES) tables and their shards; return both."""
    out_dir = Path(out_dir)
    patch_rows, nodule_rows, image_pngs, mask_pngs = [], [], [], []
    for name in sorted(drawn):
        batch = drawn[name]
        for index in range(len(batch.labels)):
            key = f"synthetic-{name}-{index:06d}"
            pathology, tirads = decode_label(int(batch.labels[index]), classes)
            size = batch.images.shape[1]
            image_pngs.append((key, encode_png(batch.images[index])))
            mask_pngs.append((key, encode_png(batch.masks[index])))
            patch_rows.append({
                "nodule_id": key, "image_id": key, "patient_id": SYNTHETIC_PATIENT, "split": "train",
                "pathology": pathology, "tirads": tirads, "label_source": "synthetic",
                "window": [0, 0, size, size], "scale": 1.0, "size": size,
            })
            nodule_rows.append({
                "image_id": key, "nodule_id": key, "bbox": mask_bbox(batch.masks[index]),
                "pathology": pathology, "tirads": tirads, "label_source": "synthetic",
                "generator": f"{name}:{versions[name]}:seed={int(batch.seeds[index])}",
            })
    image_shards = write_shards(image_pngs, out_dir / "pixels", "patches")
    mask_shards = write_shards(mask_pngs, out_dir / "pixels", "masks")
    patches = pl.DataFrame(patch_rows, schema_overrides={"tirads": pl.String()}) if patch_rows else PATCHES.empty()
    nodules = pl.DataFrame(nodule_rows, schema_overrides={"tirads": pl.String()}) if nodule_rows else NODULES.empty()
    if patch_rows:
        patches = patches.with_columns(
            pl.col("nodule_id").replace_strict({k: f"pixels/{v}" for k, v in image_shards.items()}).alias("path"),
            pl.col("nodule_id").replace_strict({k: f"pixels/{v}" for k, v in mask_shards.items()}).alias("mask_path"),
        )
        nodules = nodules.with_columns(
            pl.col("nodule_id").replace_strict({k: f"pixels/{v}" for k, v in mask_shards.items()}).alias("mask_path"),
        )
    return (write_table(patches, out_dir / "patches.parquet", PATCHES),
            write_table(nodules, out_dir / "nodules.parquet", NODULES))


def typical_labels(labels: np.ndarray, classes: tuple[str, ...]) -> dict[str, int]:
    """Return each class's most frequent conditioning label among `labels`."""
    typical = {}
    for class_index, name in enumerate(classes):
        own = labels[(labels // LEVELS) == class_index]
        values, counts = np.unique(own, return_counts=True)
        typical[name] = int(values[np.argmax(counts)]) if len(own) else encode_label(class_index, None)
    return typical


def write_class_grids(generator: TrainedGenerator, folder: str | os.PathLike, labels: np.ndarray, seed: int,
                      per_class: int = 8) -> None:
    """Write ``samples_<class>.png`` per class: `per_class` patches above their masks."""
    for name, label in typical_labels(labels, generator.data.classes).items():
        images, masks = draw_pairs(generator, np.full(per_class, label, dtype=np.int64),
                                   list(range(seed, seed + per_class)), per_class)
        write_grid(Path(folder) / f"samples_{name}.png", images, masks)


def deficit_labels(rows: pl.DataFrame, classes: tuple[str, ...], deficits: dict[str, int],
                   rng: np.random.Generator) -> np.ndarray:
    """Return conditioning labels for each class's deficit, TI-RADS levels drawn as observed in `rows`."""
    labels = []
    for class_index, name in enumerate(classes):
        levels = rows.filter(pl.col("pathology") == name).get_column("tirads").to_list()
        labels += [encode_label(class_index, level) for level in draw_levels(levels, deficits[name], rng)]
    return np.asarray(labels, dtype=np.int64)


def balance_train_split(train: PatchSet, generators: dict[str, TrainedGenerator], encoder: PatchClassifier,
                        config: SampleConfig, seed: int) -> tuple[dict[str, Drawn], dict]:
    """Draw each class's deficit, shared among `generators`, through the memorisation gate; return samples and metrics."""
    classes = next(iter(generators.values())).data.classes
    counts = {name: train.rows.filter(pl.col("pathology") == name).height for name in classes}
    deficits = class_deficits(counts, classes, config.target_ratio)
    shares = {name: split_among(deficits[name], list(generators)) for name in classes}
    train_features = encode(encoder, train.images)
    drawn, report = {}, {"classes": {}, "generators": {}}
    for index, (name, generator) in enumerate(sorted(generators.items())):
        wanted = {label: shares[label][name] for label in classes}
        labels = deficit_labels(train.rows, classes, wanted, np.random.default_rng([seed, index]))
        # Disjoint seed ranges per generator, so every synthetic sample's seed is unique.
        drawn[name] = draw_gated(generator, labels, seed * 1_000_000 + index * 100_000, encoder,
                                 train.images, train_features, config)
        report["generators"][name] = {
            "version": generator.version, "requested": int(len(labels)), "accepted": int(len(drawn[name].labels)),
            "memorised_rejected": drawn[name].memorised_rejected,
            "empty_mask_rejected": drawn[name].empty_mask_rejected, "shortfall": drawn[name].shortfall,
            "nn_ssim_max": float(drawn[name].nn_ssim.max()) if len(drawn[name].nn_ssim) else None,
        }
    for class_index, label in enumerate(classes):
        synthetic = sum(int((d.labels // LEVELS == class_index).sum()) for d in drawn.values())
        report["classes"][label] = {"real": counts[label], "deficit": deficits[label], "synthetic": synthetic}
    return drawn, report
