"""The leakage audit: evidence that no patient, study or image reaches two splits.

Four kinds of leak are looked for, each returned as a table of the offending rows:
one patient in two splits, one study in two splits, near-duplicate images in two
splits (perceptual hashes within a Hamming distance: frames of one cine clip or an
image re-exported under another id), and synthetic or pseudo-labelled data outside
train. Images without a split are reported too, since every other check skips them.

Near-duplicates are found without comparing all pairs, by multi-index hashing: the
64-bit hash is cut into `m` blocks; two hashes at most `d` bits apart differ in at
most `d` blocks, so they agree exactly on at least ``m - d`` of them (pigeonhole).
For every choice of ``m - d`` blocks, hashes that agree there are candidates, and
only candidates get their real distance computed. `m` is chosen to minimise the
expected number of table rows plus candidate pairs for the table's size.
"""

from __future__ import annotations

from itertools import combinations
from math import comb

import numpy as np
import polars as pl

from thyrokit.contract import SPLITS

HASH_BITS = 64
MACHINE_LABELS = ("pseudo", "synthetic")
ASSIGNMENT_FILE = "the split assignment (data/splits/assignment.parquet)"
HOW_TO_RESOLVE = {
    "patient_in_two_splits": f"re-run the split stage; if it persists, delete the patient's row from {ASSIGNMENT_FILE}",
    "study_in_two_splits": f"delete the rows of all but one of the study's patients from {ASSIGNMENT_FILE} "
                           "and re-run split: they then join that patient's split",
    "near_duplicate_across_splits": f"delete one of the two patients' rows from {ASSIGNMENT_FILE} and re-run "
                                    "split: it then joins the other's split (if look-alike links hit "
                                    "split.max_group_patients, lower split.phash_max_distance instead)",
    "machine_made_outside_train": "keep synthetic and pseudo-labelled data in train only",
    "image_without_split": "run the split stage over these images",
}


def patients_in_two_splits(images: pl.DataFrame) -> pl.DataFrame:
    """Return patient_id, splits and n_images of every patient whose images sit in 2+ splits."""
    return _keys_in_two_splits(images, "patient_id")


def studies_in_two_splits(images: pl.DataFrame) -> pl.DataFrame:
    """Return study_id, splits, patient_ids and n_images of every study in 2+ splits."""
    return _keys_in_two_splits(images, "study_id", pl.col("patient_id").unique().sort().alias("patient_ids"))


def _keys_in_two_splits(images: pl.DataFrame, key: str, *extra: pl.Expr) -> pl.DataFrame:
    return (
        images.filter(pl.col("split").is_not_null())
        .group_by(key)
        .agg(pl.col("split").unique().sort().alias("splits"), *extra, pl.len().alias("n_images"))
        .filter(pl.col("splits").list.len() > 1)
        .sort(key)
    )


def images_without_split(images: pl.DataFrame) -> pl.DataFrame:
    """Return image_id and patient_id of images that have no split."""
    return images.filter(pl.col("split").is_null()).select("image_id", "patient_id").sort("image_id")


def machine_made_outside_train(images: pl.DataFrame, nodules: pl.DataFrame | None = None,
                               patches: pl.DataFrame | None = None) -> pl.DataFrame:
    """Return synthetic images, and pseudo/synthetic nodules and patches, that are not in train.

    A nodule takes its image's split (one whose image is missing counts as outside
    train); a patch carries its own split.
    """
    outside = pl.col("split").ne_missing("train")
    machine_made = pl.col("label_source").is_in(MACHINE_LABELS)
    found = [
        images.filter((pl.col("source_format") == "synthetic") & outside)
        .select("image_id", pl.lit(None, pl.String()).alias("nodule_id"),
                pl.lit("synthetic image").alias("source"), "split")
    ]
    if nodules is not None:
        found.append(
            nodules.filter(machine_made)
            .join(images.select("image_id", "split"), on="image_id", how="left")
            .filter(outside)
            .select("image_id", "nodule_id", (pl.col("label_source") + " nodule").alias("source"), "split")
        )
    if patches is not None:
        found.append(
            patches.filter(machine_made & outside)
            .select("image_id", "nodule_id", (pl.col("label_source") + " patch").alias("source"), "split")
        )
    columns = {"image_id": pl.String(), "nodule_id": pl.String(), "source": pl.String(), "split": pl.String()}
    return pl.concat([frame.cast(columns) for frame in found]).sort("image_id", "nodule_id", nulls_last=True)


def phash_to_int(hashes: pl.Series) -> np.ndarray:
    """Return 64-bit perceptual hashes given as 16 hex digits (thyrokit.curate.phash.phash) as uint64."""
    bad = hashes.filter(~hashes.str.contains(r"^[0-9a-fA-F]{16}$"))
    if bad.len():
        raise ValueError(f"phash must be 16 hex digits (a 64-bit perceptual hash), got e.g. {bad[0]!r}")
    return np.frombuffer(bytes.fromhex("".join(hashes.to_list())), dtype=">u8").astype(np.uint64)


def block_masks(max_distance: int, n: int) -> list[int]:
    """Return the bit masks to match exactly: any two hashes within `max_distance` agree on one."""
    if not 0 <= max_distance < HASH_BITS:
        raise ValueError(f"max_distance must be between 0 and {HASH_BITS - 1}, got {max_distance}")

    def cost(blocks: int) -> float:
        key_bits = (HASH_BITS // blocks) * (blocks - max_distance)
        return comb(blocks, max_distance) * (n + n * n / 2 / 2.0**key_bits)

    blocks = min(range(max_distance + 1, HASH_BITS + 1), key=cost)
    edges = np.linspace(0, HASH_BITS, blocks + 1).round().astype(int)
    block = [sum(1 << bit for bit in range(start, end)) for start, end in zip(edges[:-1], edges[1:])]
    return [sum(chosen) for chosen in combinations(block, blocks - max_distance)]


def near_duplicates(images: pl.DataFrame, max_distance: int) -> pl.DataFrame:
    """Return pairs of images in different splits whose phash is within `max_distance` bits.

    Images with the same hash in the same split count once (the smallest image_id
    names them, ``n_images`` / ``other_n_images`` say how many there are).
    """
    rows = images.filter(pl.col("phash").is_not_null() & pl.col("split").is_not_null())
    if rows.get_column("split").n_unique() < 2:
        return _empty_pairs()
    split_code = {name: index for index, name in enumerate(SPLITS)}
    hashed = (
        rows.with_columns(pl.Series("hash", phash_to_int(rows.get_column("phash")), dtype=pl.UInt64()))
        .sort("image_id")
        .group_by("hash", "split", maintain_order=True)
        .agg(pl.col("image_id").first(), pl.col("patient_id").first(), pl.len().alias("n_images"))
        .with_columns(pl.col("split").replace_strict(split_code, return_dtype=pl.Int8()).alias("code"))
        .with_row_index("row")
    )
    compact = hashed.select("row", "hash", "code")
    codes = sorted(compact.get_column("code").unique().to_list())
    pairs = []
    for mask in block_masks(max_distance, hashed.height):
        keyed = compact.with_columns((pl.col("hash") & pl.lit(mask, dtype=pl.UInt64())).alias("key"))
        # Joining each split with the later ones only never pairs a hash with itself or its own split.
        for code in codes[:-1]:
            pairs.append(
                keyed.filter(pl.col("code") == code)
                .join(keyed.filter(pl.col("code") > code), on="key", suffix="_other")
                .with_columns((pl.col("hash") ^ pl.col("hash_other")).bitwise_count_ones().alias("distance"))
                .filter(pl.col("distance") <= max_distance)
                .select("row", "row_other", pl.col("distance").cast(pl.Int8()))
            )
    named = hashed.select("row", "image_id", "split", "patient_id", "n_images")
    return (
        pl.concat(pairs).unique()
        .join(named, on="row")
        .join(named.rename(lambda name: f"{name}_other"), on="row_other")
        .select("image_id", "split", "patient_id", "n_images",
                pl.col("image_id_other").alias("other_image_id"),
                pl.col("split_other").alias("other_split"),
                pl.col("patient_id_other").alias("other_patient_id"),
                pl.col("n_images_other").alias("other_n_images"),
                "distance")
        .sort("image_id", "other_image_id")
    )


def look_alike_patients(images: pl.DataFrame, max_distance: int) -> pl.DataFrame:
    """Return the closest image pair of every two patients whose phash are within `max_distance` bits.

    Splits play no part: this finds whom to keep together before splitting. One row
    per patient pair (patient_id < other_patient_id), its closest images named.
    """
    rows = images.filter(pl.col("phash").is_not_null())
    hashed = (
        rows.with_columns(pl.Series("hash", phash_to_int(rows.get_column("phash")), dtype=pl.UInt64()))
        .sort("image_id")
        .group_by("hash", "patient_id", maintain_order=True)
        .agg(pl.col("image_id").first())
        .with_row_index("row")
    )
    compact = hashed.select("row", "hash", "patient_id")
    pairs = []
    for mask in block_masks(max_distance, hashed.height):
        keyed = compact.with_columns((pl.col("hash") & pl.lit(mask, dtype=pl.UInt64())).alias("key"))
        # Only buckets holding two patients can link anyone; a clip's own frames fill most buckets.
        bucket = pl.col("patient_id")
        shared = keyed.filter(bucket.min().over("key") != bucket.max().over("key"))
        pairs.append(
            shared.join(shared, on="key", suffix="_other")
            .filter(pl.col("patient_id") < pl.col("patient_id_other"))
            .with_columns((pl.col("hash") ^ pl.col("hash_other")).bitwise_count_ones().alias("distance"))
            .filter(pl.col("distance") <= max_distance)
            .select("row", "row_other", pl.col("distance").cast(pl.Int8()))
        )
    named = hashed.select("row", "image_id", "patient_id")
    return (
        pl.concat(pairs).unique()
        .join(named, on="row")
        .join(named.rename(lambda name: f"{name}_other"), on="row_other")
        .sort("distance", "image_id", "image_id_other")
        .group_by("patient_id", "patient_id_other", maintain_order=True)
        .first()
        .select("patient_id", pl.col("patient_id_other").alias("other_patient_id"), "image_id",
                pl.col("image_id_other").alias("other_image_id"), "distance")
        .sort("patient_id", "other_patient_id")
    )


def _empty_pairs() -> pl.DataFrame:
    return pl.DataFrame(schema={
        "image_id": pl.String(), "split": pl.String(), "patient_id": pl.String(), "n_images": pl.UInt32(),
        "other_image_id": pl.String(), "other_split": pl.String(), "other_patient_id": pl.String(),
        "other_n_images": pl.UInt32(), "distance": pl.Int8(),
    })


def audit_leakage(images: pl.DataFrame, nodules: pl.DataFrame | None = None,
                  patches: pl.DataFrame | None = None, *, max_distance: int, max_listed: int = 50) -> dict:
    """Run every check; return a JSON-ready report with counts and the first offending rows."""
    near = near_duplicates(images, max_distance)
    # Look-alikes across the external boundary are reported, not failed: external is
    # decided by site, and two hospitals' scans of different patients can hash alike.
    crosses_external = (pl.col("split") == "external") != (pl.col("other_split") == "external")
    found = {
        "patient_in_two_splits": patients_in_two_splits(images),
        "study_in_two_splits": studies_in_two_splits(images),
        "near_duplicate_across_splits": near.filter(~crosses_external),
        "machine_made_outside_train": machine_made_outside_train(images, nodules, patches),
        "image_without_split": images_without_split(images),
    }
    checks = {
        name: {"count": frame.height, "rows": frame.head(max_listed).to_dicts(),
               "truncated": frame.height > max_listed,
               **({"how_to_resolve": HOW_TO_RESOLVE[name]} if frame.height else {})}
        for name, frame in found.items()
    }
    across_external = near.filter(crosses_external)
    return {
        "ok": not any(frame.height for frame in found.values()),
        "images": images.height,
        "hashed_images": images.get_column("phash").drop_nulls().len(),
        "phash_max_distance": max_distance,
        "checks": checks,
        "warnings": {
            "look_alike_across_external_boundary": {
                "count": across_external.height, "rows": across_external.head(max_listed).to_dicts(),
                "truncated": across_external.height > max_listed,
            },
        },
    }


def summarise(report: dict, examples: int = 3) -> str:
    """Return one line naming each kind of leak found and its first rows."""
    parts = []
    for name, check in report["checks"].items():
        if check["count"]:
            named = "; ".join(_name_row(row) for row in check["rows"][:examples])
            parts.append(f"{check['count']} {name.replace('_', ' ')}: {named} -> {HOW_TO_RESOLVE[name]}")
    return "leakage: " + " | ".join(parts) if parts else "leakage: none"


def _name_row(row: dict) -> str:
    ids = [str(row[key]) for key in ("study_id", "patient_id", "image_id", "nodule_id",
                                      "other_image_id", "other_patient_id") if row.get(key) is not None]
    ids += row.get("patient_ids") or []
    where = row.get("splits") or [split for split in (row.get("split"), row.get("other_split")) if split]
    return f"{' '.join(ids)} ({', '.join(where) or 'no split'})"
