"""ImageFolder classification folders: ``imagefolder/<split>/<class>/<nodule_id>.png``.

The folders hold nodule patches, not whole images: a thyroid nodule classifier
looks at one nodule at a time (an image can hold a benign and a malignant nodule),
and the patches are what the roi stage cut and the generators balanced. Train
holds the synthetic patches too. Every split gets a folder for every class, even
an empty one, so a class has the same index in every split.
"""

from __future__ import annotations

import polars as pl

from thyrokit.pipelines.formats.manifest import Release, write_pngs

FOLDER = "imagefolder"


def write_imagefolder(release: Release, classes: tuple[str, ...]) -> int:
    """Write the patches whose pathology is one of `classes`; return how many were written."""
    root = release.folder / FOLDER
    rows = release.patches.filter(pl.col("pathology").is_in(classes))
    for split in release.patches.get_column("split").unique().to_list():
        for name in classes:
            (root / split / name).mkdir(parents=True, exist_ok=True)
    destination = {
        nodule_id: root / split / pathology / f"{nodule_id}.png"
        for nodule_id, split, pathology in rows.select("nodule_id", "split", "pathology").iter_rows()
    }
    return write_pngs(release.pngs(rows, "nodule_id", "path"), destination)
