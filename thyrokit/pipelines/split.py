"""Patient-grouped, stratified splits and cross-validation folds that stay put across versions.

The unit of assignment is a *group* of patients: one patient, or several whose images
share a study (a study can only belong to one split, so its patients travel together)
or share a near-duplicate image (perceptual hashes within ``phash_max_distance`` bits:
one clip or re-export filed twice, or two look-alike scans from one device; either
way keeping them together costs nothing and prevents a leak). Look-alike links stop
at ``max_group_patients`` patients per group, so a threshold too loose for the data
cannot chain the whole dataset into one group.
A group is ``external`` when any of its images comes from a held-out site or device
(external wins for the whole group: a patient seen at an external site never trains a
model, not even on images from another site). The other groups are shared between
train, validation and test by their ratios, stratified by the patient label
(malignant if any nodule is malignant, benign if any is benign, else unlabelled),
and, inside a label, spread evenly over TI-RADS levels and sites.

The assignment (patient -> split, fold) is a tracked file that is read back on the
next run: a patient once assigned never moves, even if params or the data change
(delete the file to re-split on purpose). New groups fill the splits where the running
proportion of their label falls furthest short of the ratio, so the proportions
approach the ratios as the dataset grows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from thyrokit.contract import SPLITS, TableSpec

DEVELOPMENT_SPLITS = ("train", "validation", "test")
FOLD_SPLITS = ("train", "validation")
LABELS = ("malignant", "benign", "unlabelled")

ASSIGNMENT = TableSpec(
    name="assignment",
    schema={
        "patient_id": pl.String(),
        "split": pl.String(),
        # Cross-validation fold of a train/validation patient, null for test and external.
        "fold": pl.Int8(),
        # The number of folds `fold` was drawn from, so a change of split.folds is caught.
        "folds": pl.Int8(),
    },
    required=("patient_id", "split", "folds"),
    key=("patient_id",),
    allowed={"split": SPLITS},
    sort_by=("patient_id",),
)


class SplitError(ValueError):
    """Split params or a stored assignment cannot be used."""


@dataclass(frozen=True)
class SplitParams:
    """The ``split`` section of params.yaml, checked."""

    seed: int
    ratios: dict[str, float]
    folds: int
    external_sites: tuple[str, ...] = ()
    external_devices: tuple[str, ...] = ()
    phash_max_distance: int = 4
    max_group_patients: int = 50

    @classmethod
    def from_params(cls, section: Mapping[str, Any]) -> "SplitParams":
        """Build from the ``split`` section of params.yaml, raising SplitError on bad values."""
        ratios = {str(name): float(value) for name, value in (section.get("ratios") or {}).items()}
        unknown = sorted(set(ratios) - set(DEVELOPMENT_SPLITS))
        if unknown:
            raise SplitError(f"split.ratios: unknown split(s) {unknown}; use {list(DEVELOPMENT_SPLITS)}")
        if any(value < 0 for value in ratios.values()) or abs(sum(ratios.values()) - 1) > 1e-6:
            raise SplitError(f"split.ratios must be non-negative and sum to 1, got {ratios}")
        if ratios.get("train", 0) <= 0:
            raise SplitError("split.ratios.train must be above 0")
        folds = int(section.get("folds", 5))
        if not 2 <= folds <= 100:
            raise SplitError(f"split.folds must be between 2 and 100, got {folds}")
        distance = int(section.get("phash_max_distance", 4))
        if not 0 <= distance < 64:
            raise SplitError(f"split.phash_max_distance must be between 0 and 63 bits, got {distance}")
        max_group = int(section.get("max_group_patients", 50))
        if max_group < 1:
            raise SplitError(f"split.max_group_patients must be at least 1, got {max_group}")
        return cls(
            seed=int(section.get("seed", 0)),
            ratios={name: ratios.get(name, 0.0) for name in DEVELOPMENT_SPLITS},
            folds=folds,
            external_sites=tuple(section.get("external_sites") or ()),
            external_devices=tuple(section.get("external_devices") or ()),
            phash_max_distance=distance,
            max_group_patients=max_group,
        )


def patient_labels(images: pl.DataFrame, nodules: pl.DataFrame) -> pl.DataFrame:
    """Return patient_id, label and highest TI-RADS level of every patient, from human labels."""
    findings = (
        nodules.filter(pl.col("label_source") == "human")
        .select("image_id", "pathology", "tirads")
        .join(images.select("image_id", "patient_id"), on="image_id", how="inner")
        .group_by("patient_id")
        .agg(
            (pl.col("pathology") == "malignant").any().alias("malignant"),
            (pl.col("pathology") == "benign").any().alias("benign"),
            pl.col("tirads").max().alias("tirads"),  # "TR1" < ... < "TR5" as strings
        )
    )
    label = (
        pl.when(pl.col("malignant")).then(pl.lit("malignant"))
        .when(pl.col("benign")).then(pl.lit("benign"))
        .otherwise(pl.lit("unlabelled"))
    )
    return (
        images.select("patient_id").unique()
        .join(findings, on="patient_id", how="left")
        .select("patient_id", label.alias("label"), "tirads")
        .sort("patient_id")
    )


class PatientGroups:
    """Union-find over patients; a group is named by its smallest patient id."""

    def __init__(self, patients: Sequence[str]) -> None:
        self.parent = {patient: patient for patient in patients}
        self.size = dict.fromkeys(patients, 1)

    def root(self, patient: str) -> str:
        """Return the name of `patient`'s group."""
        while self.parent[patient] != patient:
            self.parent[patient] = self.parent[self.parent[patient]]
            patient = self.parent[patient]
        return patient

    def join(self, first: str, other: str, limit: int | None = None) -> bool:
        """Merge the groups of two patients unless the result would exceed `limit`; say if they are together."""
        first, other = self.root(first), self.root(other)
        if first == other:
            return True
        if limit is not None and self.size[first] + self.size[other] > limit:
            return False
        low, high = min(first, other), max(first, other)
        self.parent[high] = low
        self.size[low] += self.size.pop(high)
        return True


def patient_groups(images: pl.DataFrame, look_alikes: pl.DataFrame | None = None,
                   max_group_patients: int | None = None) -> pl.DataFrame:
    """Return patient_id and group: patients sharing a study, or a look-alike image, form one group.

    Study links always hold. Look-alike pairs (from
    :func:`thyrokit.pipelines.leakage.look_alike_patients`) are linked closest first, and
    a link that would make a group of more than `max_group_patients` is left out.
    """
    patients = images.get_column("patient_id").unique().sort().to_list()
    groups = PatientGroups(patients)
    shared = (
        images.group_by("study_id").agg(pl.col("patient_id").unique().sort())
        .filter(pl.col("patient_id").list.len() > 1)
        .get_column("patient_id").to_list()
    )
    for members in shared:
        for member in members[1:]:
            groups.join(members[0], member)
    if look_alikes is not None:
        ordered = look_alikes.sort("distance", "patient_id", "other_patient_id")
        for first, other in ordered.select("patient_id", "other_patient_id").iter_rows():
            groups.join(first, other, max_group_patients)
    return pl.DataFrame(
        {"patient_id": patients, "group": [groups.root(patient) for patient in patients]},
        schema={"patient_id": pl.String(), "group": pl.String()},
    )


def patient_table(images: pl.DataFrame, nodules: pl.DataFrame, params: SplitParams,
                  look_alikes: pl.DataFrame | None = None) -> pl.DataFrame:
    """Return one row per patient: group, label, tirads, site and whether it is external."""
    held_out = pl.col("site").is_in(list(params.external_sites)) | pl.col("device").is_in(
        list(params.external_devices)
    )
    places = images.group_by("patient_id").agg(
        pl.col("site").min().alias("site"), held_out.any().alias("external")
    )
    if look_alikes is not None:
        look_alikes = same_side_of_external(look_alikes, places)
    return (
        patient_groups(images, look_alikes, params.max_group_patients)
        .join(patient_labels(images, nodules), on="patient_id")
        .join(places, on="patient_id")
        .sort("patient_id")
    )


def same_side_of_external(look_alikes: pl.DataFrame, places: pl.DataFrame) -> pl.DataFrame:
    """Keep the look-alike pairs whose two patients are both external or both not.

    External is decided by site and device alone: a look-alike at another hospital
    never pulls a development patient into the external set (nor the reverse).
    """
    external = places.select("patient_id", "external")
    other = external.rename({"patient_id": "other_patient_id", "external": "other_external"})
    return (
        look_alikes.join(external, on="patient_id").join(other, on="other_patient_id")
        .filter(pl.col("external") == pl.col("other_external"))
        .drop("external", "other_external")
    )


def group_table(patients: pl.DataFrame, seed: int) -> pl.DataFrame:
    """Return one row per group with its size, strongest label, top TI-RADS, site and order key."""
    rank = {label: index for index, label in enumerate(LABELS)}
    groups = (
        patients.with_columns(pl.col("label").replace_strict(rank, return_dtype=pl.Int8()).alias("rank"))
        .group_by("group")
        .agg(
            pl.len().alias("size"),
            pl.col("rank").min().alias("rank"),
            pl.col("tirads").max(),
            pl.col("site").min(),
            pl.col("external").any(),
        )
        .with_columns(pl.col("rank").replace_strict(dict(enumerate(LABELS)), return_dtype=pl.String()).alias("label"))
        .drop("rank")
    )
    keys = [order_key(seed, group) for group in groups.get_column("group").to_list()]
    return groups.with_columns(pl.Series("order", keys, dtype=pl.String())).sort("group")


def order_key(seed: int, name: str) -> str:
    """Return a seeded pseudo-random sort key of `name`, the same on every machine and version."""
    return hashlib.blake2b(f"{seed}\x00{name}".encode(), digest_size=8).hexdigest()


def allocate(sizes: Sequence[int], strata: Sequence[str], ratios: Sequence[float],
             counts: Mapping[str, Sequence[int]] | None = None) -> list[int]:
    """Return a bin index per item: where its stratum and the whole fall furthest below their ratios.

    Items are taken in order; each goes to the bin whose running count, in its own
    stratum plus over all strata, is furthest below the ratio (ties to the earlier bin).
    Within a stratum every running count stays near its share, and small strata fill
    the bins that the others left short instead of all starting in the first one.
    `counts` holds what each stratum already has in each bin.
    """
    held = {stratum: list(values) for stratum, values in (counts or {}).items()}
    overall = [sum(values[index] for values in held.values()) for index in range(len(ratios))]
    bins = range(len(ratios))
    chosen = []
    for size, stratum in zip(sizes, strata):
        mine = held.setdefault(stratum, [0] * len(ratios))
        mine_total, overall_total = sum(mine) + size, sum(overall) + size
        score = [ratios[index] * (mine_total + overall_total) - mine[index] - overall[index] for index in bins]
        best = max(bins, key=lambda index: (score[index], -index))
        mine[best] += size
        overall[best] += size
        chosen.append(best)
    return chosen


def assign_splits(patients: pl.DataFrame, params: SplitParams,
                  previous: pl.DataFrame | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Return (assignment of every patient, old and new; per-patient status of this run).

    `patients` comes from :func:`patient_table`, `previous` is the stored assignment
    (or None). Stored rows are kept as they are, including patients no longer present.
    The status frame has patient_id and ``kept`` (was already assigned).
    """
    previous = ASSIGNMENT.empty() if previous is None else previous
    check_previous(previous, params)
    kept = patients.join(previous.drop("folds"), on="patient_id", how="left")
    # A group with an assigned member sends its new members to that member's split and fold.
    group_home = (
        kept.filter(pl.col("split").is_not_null())
        .sort("patient_id")
        .group_by("group", maintain_order=True)
        .agg(pl.col("split").first().alias("home_split"), pl.col("fold").first().alias("home_fold"))
    )
    joined = kept.join(group_home, on="group", how="left")
    followers = joined.filter(pl.col("split").is_null() & pl.col("home_split").is_not_null()).select(
        "patient_id", pl.col("home_split").alias("split"), pl.col("home_fold").alias("fold")
    )
    fresh_groups = group_table(joined.filter(pl.col("home_split").is_null()), params.seed)
    placed = place_groups(fresh_groups, kept.filter(pl.col("split").is_not_null()), params)
    fresh = joined.filter(pl.col("home_split").is_null()).select("patient_id", "group").join(
        placed, on="group"
    ).drop("group")
    assignment = pl.concat(
        [previous.drop("folds"), followers, fresh], how="vertical_relaxed"
    ).with_columns(pl.lit(params.folds, dtype=pl.Int8()).alias("folds"))
    status = patients.select(
        "patient_id", pl.col("patient_id").is_in(previous.get_column("patient_id").implode()).alias("kept")
    )
    return assignment.select(list(ASSIGNMENT.schema)).sort("patient_id"), status


def check_previous(previous: pl.DataFrame, params: SplitParams) -> None:
    """Raise SplitError if a stored assignment was drawn with another number of folds."""
    drawn = previous.get_column("folds").unique().to_list()
    if drawn and drawn != [params.folds]:
        raise SplitError(
            f"the stored assignment has {drawn} folds but split.folds is {params.folds}; "
            "keep split.folds, or delete the assignment to re-split (patients will move)"
        )
    in_folds = previous.filter(pl.col("split").is_in(FOLD_SPLITS))
    if in_folds.filter(pl.col("fold").is_null() | (pl.col("fold") >= params.folds)).height:
        raise SplitError("the stored assignment has train/validation patients without a valid fold")


def place_groups(groups: pl.DataFrame, assigned: pl.DataFrame, params: SplitParams) -> pl.DataFrame:
    """Return group, split and fold for new groups, given the patients already assigned."""
    external = groups.filter(pl.col("external")).select(
        "group", pl.lit("external").alias("split"), pl.lit(None, pl.Int8()).alias("fold")
    )
    # Label, then TI-RADS, then site, then a seeded shuffle: consecutive groups of a label
    # go to different splits, so each split gets its share of every level and site too.
    rank = {label: index for index, label in enumerate(LABELS)}
    inside = groups.filter(~pl.col("external")).sort(
        [pl.col("label").replace_strict(rank, return_dtype=pl.Int8()), "tirads", "site", "order"], nulls_last=True
    )
    splits = allocate(inside.get_column("size").to_list(), inside.get_column("label").to_list(),
                      [params.ratios[name] for name in DEVELOPMENT_SPLITS],
                      held_per_label(assigned, "split", DEVELOPMENT_SPLITS))
    inside = inside.with_columns(
        pl.Series("split", [DEVELOPMENT_SPLITS[index] for index in splits], dtype=pl.String())
    )
    in_folds = inside.filter(pl.col("split").is_in(FOLD_SPLITS))
    folds = allocate(in_folds.get_column("size").to_list(), in_folds.get_column("label").to_list(),
                     [1.0 / params.folds] * params.folds,
                     held_per_label(assigned, "fold", tuple(range(params.folds))))
    in_folds = in_folds.with_columns(pl.Series("fold", folds, dtype=pl.Int8()))
    return pl.concat([
        external,
        inside.join(in_folds.select("group", "fold"), on="group", how="left").select("group", "split", "fold"),
    ]).sort("group")


def held_per_label(assigned: pl.DataFrame, column: str, values: Sequence) -> dict[str, list[int]]:
    """Return, per label, how many assigned patients have each of `values` in `column`."""
    counts = assigned.group_by("label", column).len()
    return {
        label: [counts.filter((pl.col("label") == label) & (pl.col(column) == value)).get_column("len").sum()
                for value in values]
        for label in LABELS
    }


def apply_assignment(images: pl.DataFrame, assignment: pl.DataFrame) -> pl.DataFrame:
    """Return `images` with split and fold filled from the assignment of their patient."""
    return images.drop("split", "fold").join(
        assignment.select("patient_id", "split", "fold"), on="patient_id", how="left"
    ).select(images.columns)


def nnunet_folds(images: pl.DataFrame, folds: int) -> list[dict[str, list[str]]]:
    """Return nnU-Net's splits_final.json content: per fold, train and val image ids."""
    development = images.filter(pl.col("split").is_in(FOLD_SPLITS)).select("image_id", "fold").sort("image_id")
    return [
        {
            "train": development.filter(pl.col("fold") != fold).get_column("image_id").to_list(),
            "val": development.filter(pl.col("fold") == fold).get_column("image_id").to_list(),
        }
        for fold in range(folds)
    ]
