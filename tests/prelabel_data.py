"""A tiny on-disk dataset in the contract's form, for the pre-label tests: blobs on speckle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from thyrokit.annotate.model.predict import components
from thyrokit.annotate.model.synthetic import blob_set
from thyrokit.contract import IMAGES, NODULES, write_table
from thyrokit.pixels import encode_png, write_shards


def write_blob_dataset(root: Path, splits: dict[str, int], labelled_share: dict[str, float],
                       size: int = 32, seed: int = 0) -> tuple[Path, Path]:
    """Write images (with splits), human nodules, masks and labelled_images under `root`.

    Returns the images table path and the labels folder.
    """
    image_rows, nodule_rows, labelled_rows, pngs, mask_pngs = [], [], [], [], []
    for offset, (split, count) in enumerate(splits.items()):
        images, masks, malignant = blob_set(count, size, seed + offset)
        n_labelled = round(labelled_share.get(split, 0.0) * count)
        for index in range(count):
            image_id = f"{split[:3]}{index:03d}"
            pngs.append((image_id, encode_png(images[index])))
            image_rows.append({"image_id": image_id, "patient_id": f"p-{image_id}", "study_id": "s",
                               "series_id": "r", "site": "site-A", "device": "d", "modality": "US",
                               "frame": 0, "n_frames": 1, "width": size, "height": size, "channels": 1,
                               "crop": [0, 0, size, size], "path": "pixels/images-00000.parquet",
                               "split": split, "source_format": "synthetic", "source_hmac": image_id,
                               "tool_version": "test"})
            if index >= n_labelled:
                continue
            labelled_rows.append({"image_id": image_id, "label_source": "human", "annotator": "test"})
            for number, (part, bbox) in enumerate(components(masks[index] > 0)):
                nodule_id = f"{image_id}-n{number}"
                mask_pngs.append((nodule_id, encode_png(part.astype(np.uint8) * 255)))
                nodule_rows.append({"image_id": image_id, "nodule_id": nodule_id, "bbox": list(bbox),
                                    "mask_path": "masks/masks-00000.parquet", "label_source": "human",
                                    "pathology": "malignant" if malignant[index] == 1 else "benign"})
    images_dir, labels_dir = root / "split", root / "labels"
    write_shards(pngs, images_dir / "pixels", "images")
    write_shards(mask_pngs, labels_dir / "masks", "masks")
    write_table(pl.DataFrame(image_rows), images_dir / "images.parquet", IMAGES)
    write_table(pl.DataFrame(nodule_rows), labels_dir / "nodules.parquet", NODULES)
    pl.DataFrame(labelled_rows).write_parquet(labels_dir / "labelled_images.parquet")
    return images_dir / "images.parquet", labels_dir
