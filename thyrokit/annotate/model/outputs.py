"""What the pre-label stages write: model weights, predicted nodules with masks, rankings, metrics."""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from safetensors.torch import load_file, save_file

from thyrokit.annotate.model.config import ModelConfig, read_config, write_config
from thyrokit.annotate.model.dataset import resize_back
from thyrokit.annotate.model.predict import Prediction, components, rank_by_uncertainty
from thyrokit.annotate.model.train import build_model
from thyrokit.annotate.model.unet import UNet
from thyrokit.atomic import atomic_path, write_text
from thyrokit.contract import NODULES, UNCERTAINTY, write_table
from thyrokit.pixels import ShardWriter, encode_png

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
NODULE_COLUMNS = ("image_id", "nodule_id", "bbox", "mask_path", "pathology", "label_source",
                  "confidence", "annotator")


def save_model(model: UNet, config: ModelConfig, folder: str | os.PathLike, name: str, **facts: Any) -> str:
    """Write weights and config (with `facts` about its training) into `folder`; return the model version.

    The version is `name` and a digest of the weights.
    """
    folder = Path(folder)
    state = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    with atomic_path(folder / WEIGHTS) as tmp:
        save_file(state, str(tmp))
    digest = hashlib.sha256((folder / WEIGHTS).read_bytes()).hexdigest()[:12]
    version = f"{name}-{digest}"
    write_config(config, folder / CONFIG, version=version, **facts)
    return version


def load_model(folder: str | os.PathLike, device: torch.device) -> tuple[UNet, ModelConfig, str]:
    """Read a model written by :func:`save_model`; return it in eval mode, its config and version."""
    folder = Path(folder)
    config, facts = read_config(folder / CONFIG)
    model = build_model(config)
    model.load_state_dict(load_file(str(folder / WEIGHTS)))
    return model.to(device).eval(), config, facts["version"]


def pathology_of(malignant: float, certainty: float) -> str:
    """Name the pathology when the probability is at least `certainty` sure, else 'unknown'."""
    if malignant >= certainty:
        return "malignant"
    if malignant <= 1 - certainty:
        return "benign"
    return "unknown"


def write_nodules(predictions: Iterable[Prediction], images: pl.DataFrame, out_dir: str | os.PathLike, *,
                  label_source: str, annotator: str, threshold: float, min_area: int,
                  min_confidence: float = 0.0, pathology_certainty: float = 0.5) -> pl.DataFrame:
    """Write each predicted mask's components as nodules (masks 0/255 at image size) under `out_dir`.

    `predictions` may be a stream of chunks, so that memory stays flat however many
    images there are.

    A nodule's confidence is the mean foreground probability inside it; components
    below `min_confidence` are dropped. Returns the nodules table written.
    """
    out_dir = Path(out_dir)
    sizes = {row[0]: (row[1], row[2]) for row in images.select("image_id", "height", "width").iter_rows()}
    rows: list[dict[str, Any]] = []
    (out_dir / "masks").mkdir(parents=True, exist_ok=True)  # present even when nothing is found
    for stale in (out_dir / "masks").glob("masks-*.parquet"):
        stale.unlink()
    with ShardWriter(out_dir / "masks", "masks") as shards:
        for prediction, index in _each_image(predictions):
            image_id = prediction.image_ids[index]
            height, width = sizes[image_id]
            probability = resize_back(prediction.probability[index], height, width)
            pathology = pathology_of(float(prediction.malignant[index]), pathology_certainty)
            parts = components(probability >= threshold, min_area)
            for number, (part, bbox) in enumerate(parts):
                confidence = round(float(probability[part].mean()), 4)
                if confidence < min_confidence:
                    continue
                nodule_id = f"{image_id}-{label_source}-{number:02d}"
                shard = shards.add(nodule_id, encode_png(part.astype(np.uint8) * 255))
                rows.append({"image_id": image_id, "nodule_id": nodule_id, "bbox": list(bbox),
                             "mask_path": f"masks/{shard}", "pathology": pathology,
                             "label_source": label_source, "confidence": confidence,
                             "annotator": annotator})
    frame = pl.DataFrame(rows, schema={name: NODULES.schema[name] for name in NODULE_COLUMNS})
    return write_table(frame, out_dir / "nodules.parquet", NODULES)


def _each_image(predictions: Iterable[Prediction]) -> Iterator[tuple[Prediction, int]]:
    for prediction in predictions:
        for index in range(len(prediction.image_ids)):
            yield prediction, index


def write_uncertainty(image_ids: list[str], uncertainty: np.ndarray, version: str,
                      path: str | os.PathLike, groups: list[str] | None = None) -> pl.DataFrame:
    """Write every predicted image's uncertainty and annotation rank (see rank_by_uncertainty)."""
    frame = pl.DataFrame({
        "image_id": image_ids,
        "uncertainty": [round(float(value), 6) for value in uncertainty],
        "rank": rank_by_uncertainty(image_ids, np.asarray(uncertainty), groups),
        "model_version": [version] * len(image_ids),
    }, schema=UNCERTAINTY.schema)
    return write_table(frame, path, UNCERTAINTY)


def write_json(document: Any, path: str | os.PathLike) -> None:
    """Write metrics or plot data as sorted JSON, with NaN written as null."""
    write_text(path, json.dumps(_no_nan(document), indent=2, sort_keys=True) + "\n")


def _no_nan(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _no_nan(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_no_nan(item) for item in value]
    return value
