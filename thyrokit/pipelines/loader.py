"""The modeller's loader: one split of a release as a torch Dataset of (image, mask, label).

It reads the release's manifest (or patches table) and pixel shards, from a local
release folder, or from a git+DVC repository at a revision through
``dvc.api.DVCFileSystem`` (which fetches from the DVC remote what is not cached)::

    train = load_release("data/release", "train")
    test = load_release("https://git.example.org/thyroid-data.git", "test", rev="v1.2")
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import torch
from torch.utils.data import Dataset

from thyrokit.contract import PATCHES, PATHOLOGIES, SPLITS, conform
from thyrokit.pipelines.formats.manifest import MANIFEST
from thyrokit.pixels import decode_png

TASKS = ("segmentation", "classification")
# Where the export stage writes the release inside the repository (dvc.yaml's out).
DEFAULT_RELEASE_DIR = "data/release"

Item = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def open_release(path_or_repo: str | os.PathLike, rev: str | None = None,
                 release_dir: str = DEFAULT_RELEASE_DIR) -> tuple[Any, str]:
    """Return an fsspec filesystem and the release folder on it.

    A local folder holding ``manifest.parquet`` is read directly when no `rev` is
    given; anything else is a git+DVC repository (path or URL) read at `rev`.
    """
    local = Path(path_or_repo)
    if rev is None and (local / "manifest.parquet").is_file():
        from fsspec.implementations.local import LocalFileSystem

        return LocalFileSystem(), local.resolve().as_posix()
    from dvc.api import DVCFileSystem

    return DVCFileSystem(os.fspath(path_or_repo), rev=rev), release_dir


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """Return a (C, H, W) float32 tensor in [0, 1] of a grey or RGB uint8/uint16 image."""
    scale = float(np.iinfo(image.dtype).max)
    array = image[None] if image.ndim == 2 else image.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32) / scale)


class ShardIndex:
    """Random access by key to PNGs in Parquet shards on any fsspec filesystem."""

    def __init__(self, fs: Any, shards: list[str]):
        self.fs = fs
        self.where: dict[str, tuple[str, int, int]] = {}
        for shard in sorted(set(shards)):
            with fs.open(shard, "rb") as handle:
                reader = pq.ParquetFile(handle)
                for group in range(reader.num_row_groups):
                    keys = reader.read_row_group(group, columns=["key"]).column("key").to_pylist()
                    self.where.update((key, (shard, group, row)) for row, key in enumerate(keys))
        self._cached: tuple[str, int, list[bytes]] | None = None

    def png(self, key: str) -> bytes:
        """Return the PNG bytes of `key`; the last row group read is kept, for sequential reads."""
        shard, group, row = self.where[key]
        if self._cached is None or self._cached[:2] != (shard, group):
            with self.fs.open(shard, "rb") as handle:
                pngs = pq.ParquetFile(handle).read_row_group(group, columns=["png"]).column("png").to_pylist()
            self._cached = (shard, group, pngs)
        return self._cached[2][row]


class ReleaseDataset(Dataset):
    """Items (image, mask, label) of a release's table rows: tensors (C, H, W), (1, H, W) in {0, 1}, ()."""

    def __init__(self, fs: Any, root: str, rows: pl.DataFrame, key: str,
                 transform: Callable[[Item], Item] | None = None):
        self.rows = rows
        self.keys = rows.get_column(key).to_list()
        # -1: no class (an image labelled with no finding, whose mask is all zero).
        self.labels = [PATHOLOGIES.index(name) if name in PATHOLOGIES else -1
                       for name in rows.get_column("pathology")]
        self.transform = transform
        self.images = ShardIndex(fs, [posixpath.join(root, path) for path in rows.get_column("path")])
        self.masks = ShardIndex(fs, [posixpath.join(root, path) for path in rows.get_column("mask_path")])

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, index: int) -> Item:
        key = self.keys[index]
        image = to_tensor(decode_png(self.images.png(key)))
        mask = torch.from_numpy((decode_png(self.masks.png(key)) > 0).astype(np.float32))[None]
        item = (image, mask, torch.tensor(self.labels[index], dtype=torch.int64))
        return self.transform(item) if self.transform else item


def read_release_table(fs: Any, root: str, name: str) -> pl.DataFrame:
    """Return the release's manifest or patches table, validated."""
    spec = {"manifest": MANIFEST, "patches": PATCHES}[name]
    with fs.open(posixpath.join(root, f"{name}.parquet"), "rb") as handle:
        return conform(pl.read_parquet(handle), spec)


def load_release(path_or_repo: str | os.PathLike, split: str, rev: str | None = None,
                 task: str = "segmentation", *, classes: tuple[str, ...] = ("benign", "malignant"),
                 release_dir: str = DEFAULT_RELEASE_DIR,
                 transform: Callable[[Item], Item] | None = None) -> ReleaseDataset:
    """Return one split of a release as a torch Dataset of (image, mask, label).

    ``segmentation``: every image of the split with a mask (the union of its nodules;
    all zero, label -1, for an image labelled with no finding);
    ``classification``: every nodule patch of the split whose pathology is in `classes`
    (train includes synthetic patches), with its mask. Labels index
    ``thyrokit.contract.PATHOLOGIES`` (benign 0, malignant 1, unknown 2). Images
    differ in size across a split, so batch them through `transform` or batch size 1.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, not {split!r}")
    if task not in TASKS:
        raise ValueError(f"task must be one of {list(TASKS)}, not {task!r}")
    fs, root = open_release(path_or_repo, rev, release_dir)
    if task == "segmentation":
        rows = read_release_table(fs, root, "manifest").filter(
            (pl.col("split") == split) & pl.col("mask_path").is_not_null())
        return ReleaseDataset(fs, root, rows, "image_id", transform)
    rows = read_release_table(fs, root, "patches").filter(
        (pl.col("split") == split) & pl.col("pathology").is_in(classes))
    return ReleaseDataset(fs, root, rows, "nodule_id", transform)
