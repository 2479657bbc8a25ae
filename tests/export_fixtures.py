"""Inputs of the export stage, built the way the upstream stages write them (tables + PNG shards).

Six patients, two single-frame images each, one per split pattern below, plus a
three-frame cine series; human labels on most images, two images a human labelled as
holding no nodule (NO_FINDING: train and external), a pseudolabel on an unlabelled
train image and one on a test image (which must not ship), a pre-label prediction,
roi patches of every finding and synthetic train patches.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import polars as pl

from thyrokit.annotate.labels import LABELLED_IMAGES_SCHEMA
from thyrokit.contract import IMAGES, NODULES, PATCHES, write_table
from thyrokit.pixels import encode_png, write_shards

WIDTH, HEIGHT, PATCH = 48, 40, 16
SPLIT_OF = {"p0": "train", "p1": "train", "p2": "train", "p3": "validation", "p4": "test", "p5": "external"}
FOLD_OF = {"p0": 0, "p1": 1, "p2": 0, "p3": 1}


def disc(centre: tuple[int, int], radius: int) -> np.ndarray:
    """Return a 0/255 mask of a filled circle in a HEIGHT x WIDTH image."""
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    cv2.circle(mask, centre, radius, 255, -1)
    return mask


def box(mask: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def image_rows() -> list[dict]:
    rows = []
    for patient, split in SPLIT_OF.items():
        for index in range(2):
            rows.append({"image_id": f"img-{patient}{index}", "patient_id": f"pat-{patient}",
                         "series_id": f"ser-{patient}{index}", "frame": 0, "n_frames": 1,
                         "split": split, "fold": FOLD_OF.get(patient)})
    for frame in range(3):  # a cine clip of patient p0, stored out of frame order
        rows.append({"image_id": f"img-cine{2 - frame}", "patient_id": "pat-p0", "series_id": "ser-cine",
                     "frame": 2 - frame, "n_frames": 3, "split": "train", "fold": 0})
    site = {"p0": "site-A", "p1": "site-B", "p2": "site-A", "p3": "site-B", "p4": "site-A", "p5": "site-D"}
    for row in rows:
        patient = row["patient_id"][4:]
        row |= {"study_id": f"stu-{patient}", "site": site[patient], "device": "dev-1" if patient < "p3" else "dev-2",
                "modality": "US", "width": WIDTH, "height": HEIGHT, "channels": 1, "crop": [0, 0, WIDTH, HEIGHT],
                "source_format": "dicom", "source_hmac": "h" + row["image_id"], "tool_version": "0.1.0"}
    return rows


# (nodule_id, image_id, centre, radius, pathology, label_source)
FINDINGS = [
    ("nod-a", "img-p00", (12, 12), 5, "benign", "human"),
    ("nod-b", "img-p00", (34, 26), 6, "malignant", "human"),
    ("nod-c", "img-p10", (20, 20), 7, "benign", "human"),
    ("nod-d", "img-p20", (24, 18), 6, "unknown", "human"),
    ("nod-e", "img-p30", (22, 20), 6, "malignant", "human"),
    ("nod-f", "img-p40", (26, 16), 5, "benign", "human"),
    ("nod-g", "img-p50", (20, 22), 6, "malignant", "human"),
    ("nod-h", "img-cine1", (24, 20), 6, "benign", "human"),
    ("nod-i", "img-p31", (16, 16), 4, "benign", "prediction"),
]
# Images a human labelled and found no nodule in (labelled_images.parquet lists them with
# every image holding a human finding).
NO_FINDING = ["img-p01", "img-p51"]
PSEUDO = [
    ("nod-p1", "img-p11", (25, 20), 6, "benign", "pseudo"),
    ("nod-p2", "img-p41", (25, 20), 6, "malignant", "pseudo"),  # on test: never released
]


def scan(image_id: str, findings: list[tuple]) -> np.ndarray:
    """Return a noisy grey scan with a dark disc per finding."""
    rng = np.random.default_rng(sum(image_id.encode()))
    image = rng.integers(80, 200, (HEIGHT, WIDTH), dtype=np.uint8)
    for _, on, centre, radius, *_ in findings:
        if on == image_id:
            image[disc(centre, radius) > 0] = 40
    return image


def nodule_table(findings: list[tuple], mask_shard: str) -> pl.DataFrame:
    return pl.DataFrame([
        {"image_id": image_id, "nodule_id": nodule_id, "bbox": box(disc(centre, radius)),
         "mask_path": mask_shard, "pathology": pathology, "label_source": source}
        for nodule_id, image_id, centre, radius, pathology, source in findings
    ])


def write_nodules(folder: Path, findings: list[tuple]) -> Path:
    where = write_shards(((nodule_id, encode_png(disc(centre, radius)))
                          for nodule_id, _, centre, radius, *_ in findings), folder / "masks", "masks")
    table = nodule_table(findings, "masks/" + next(iter(where.values())))
    write_table(table, folder / "nodules.parquet", NODULES)
    return folder / "nodules.parquet"


def patch_rows(findings: list[tuple], images: dict[str, dict], shards: tuple[str, str]) -> list[dict]:
    return [{"nodule_id": nodule_id, "image_id": image_id, "patient_id": images[image_id]["patient_id"],
             "site": images[image_id]["site"], "split": images[image_id]["split"], "pathology": pathology,
             "label_source": source, "window": [0, 0, PATCH, PATCH], "scale": 1.0, "size": PATCH,
             "path": shards[0], "mask_path": shards[1]}
            for nodule_id, image_id, _, _, pathology, source in findings]


def make_inputs(root: Path) -> dict[str, Path]:
    """Write every input of the export stage under `root`; return their paths by CLI option name."""
    images = image_rows()
    everything = FINDINGS + PSEUDO
    where = write_shards(((row["image_id"], encode_png(scan(row["image_id"], everything))) for row in images),
                         root / "ingest" / "pixels", "images")
    images_table = pl.DataFrame(images).with_columns(
        path=pl.lit("../ingest/pixels/" + next(iter(where.values()))))
    write_table(images_table, root / "split" / "images.parquet", IMAGES)
    by_id = {row["image_id"]: row for row in images}

    patch_findings = [finding for finding in everything if finding[5] in ("human", "pseudo")]
    rng = np.random.default_rng(0)
    patches = write_shards(((f[0], encode_png(rng.integers(0, 255, (PATCH, PATCH), dtype=np.uint8)))
                            for f in patch_findings), root / "roi" / "pixels", "patches")
    masks = write_shards(((f[0], encode_png(np.full((PATCH, PATCH), 255, np.uint8))) for f in patch_findings),
                         root / "roi" / "pixels", "masks")
    shards = ("pixels/" + next(iter(patches.values())), "pixels/" + next(iter(masks.values())))
    write_table(pl.DataFrame(patch_rows(patch_findings, by_id, shards)), root / "roi" / "patches.parquet", PATCHES)

    synthetic = [(f"syn-{pathology}{index}", "img-synthetic", None, None, pathology, "synthetic")
                 for pathology in ("benign", "malignant") for index in range(2)]
    syn_pixels = write_shards(((f[0], encode_png(np.full((PATCH, PATCH), 100 + index, np.uint8)))
                               for index, f in enumerate(synthetic)), root / "synth" / "pixels", "patches")
    syn_shard = "pixels/" + next(iter(syn_pixels.values()))
    syn_images = {"img-synthetic": {"patient_id": "synthetic", "site": None, "split": "train"}}
    write_table(pl.DataFrame(patch_rows(synthetic, syn_images, (syn_shard, syn_shard))),
                root / "synth" / "patches.parquet", PATCHES)

    development = sorted(row["image_id"] for row in images if row["split"] in ("train", "validation"))
    folds = {row["image_id"]: row["fold"] for row in images}
    splits_final = [{"train": [i for i in development if folds[i] != fold],
                     "val": [i for i in development if folds[i] == fold]} for fold in (0, 1)]
    nodules = write_nodules(root / "labels", FINDINGS)
    (root / "split" / "splits_final.json").write_text(json.dumps(splits_final))
    (root / "split" / "leakage.json").write_text(json.dumps(
        {"ok": True, "images": len(images), "checks": {"patient_in_two_splits": {"count": 0, "rows": []}}}))
    human = sorted({f[1] for f in FINDINGS if f[5] == "human"} | set(NO_FINDING))
    pl.DataFrame({"image_id": human, "label_source": ["human"] * len(human),
                  "annotator": ["sidecar"] * len(human)}, schema=LABELLED_IMAGES_SCHEMA) \
        .write_parquet(root / "labels" / "labelled_images.parquet")
    (root / "metrics").mkdir()
    (root / "metrics" / "ingest.json").write_text(json.dumps({"files": 15, "quarantined": 1, "text_boxes_redacted": 7}))
    (root / "metrics" / "prelabel.json").write_text(json.dumps({"dice": 0.71, "auc": 0.8}))
    return {
        "images": root / "split" / "images.parquet",
        "nodules": nodules,
        "pseudo": write_nodules(root / "pseudolabel", PSEUDO),
        "patches": root / "roi" / "patches.parquet",
        "synthetic": root / "synth" / "patches.parquet",
        "splits-final": root / "split" / "splits_final.json",
        "leakage": root / "split" / "leakage.json",
        "metrics-dir": root / "metrics",
        "labelled-images": root / "labels" / "labelled_images.parquet",
    }
