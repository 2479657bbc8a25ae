"""What the splits hold: patients and images per split, label and site, as numbers and a plot."""

from __future__ import annotations

import io
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import polars as pl  # noqa: E402

from thyrokit.atomic import write_bytes  # noqa: E402
from thyrokit.contract import SPLITS  # noqa: E402
from thyrokit.pipelines.split import DEVELOPMENT_SPLITS, LABELS  # noqa: E402

LABEL_COLOURS = {"malignant": "#c0392b", "benign": "#2e86c1", "unlabelled": "#aab7b8"}


def composition(images: pl.DataFrame, patients: pl.DataFrame) -> pl.DataFrame:
    """Return split, label, site and their patient and image counts (images carry split)."""
    return (
        images.join(patients.select("patient_id", "label"), on="patient_id", how="left")
        .group_by("split", "label", "site")
        .agg(pl.col("patient_id").n_unique().alias("patients"), pl.len().alias("images"))
        .sort("split", "label", "site")
    )


def split_metrics(images: pl.DataFrame, patients: pl.DataFrame, assignment: pl.DataFrame,
                  status: pl.DataFrame) -> dict:
    """Return the split stage's metrics: counts per split and label, achieved ratios, stability."""
    present = assignment.join(patients.select("patient_id", "label", "external"), on="patient_id")
    development = present.filter(pl.col("split") != "external")

    def patients_in(name: str, label: str | None = None) -> int:
        chosen = present.filter(pl.col("split") == name)
        return chosen.height if label is None else chosen.filter(pl.col("label") == label).height

    return {
        "images": {name: images.filter(pl.col("split") == name).height for name in SPLITS},
        "patients": {name: patients_in(name) for name in SPLITS},
        "patients_by_label": {name: {label: patients_in(name, label) for label in LABELS} for name in SPLITS},
        "development_fractions": {
            name: round(patients_in(name) / max(development.height, 1), 4) for name in DEVELOPMENT_SPLITS
        },
        "fold_patients": {
            str(fold): count
            for fold, count in present.filter(pl.col("fold").is_not_null()).group_by("fold").len()
            .sort("fold").iter_rows()
        },
        "patients_kept": int(status.get_column("kept").sum()),
        "patients_new": int((~status.get_column("kept")).sum()),
        # Stored splits that today's external rule would not give (params or data changed since).
        "patients_kept_against_external_rule":
            present.filter(pl.col("external") != (pl.col("split") == "external")).height,
        "patients_in_assignment": assignment.height,
    }


def suspected_duplicates(look_alikes: pl.DataFrame, patients: pl.DataFrame,
                         assignment: pl.DataFrame) -> pl.DataFrame:
    """Return the look-alike patient pairs with their splits and what the split did with them.

    ``status`` is ``linked`` (one group, one split), ``apart: stored assignment`` (one
    group, but stored splits from an earlier run differ), ``apart: external site`` (one
    is held out by site or device, the other not: never linked) or ``not linked: group
    cap`` (linking them would have made a group above split.max_group_patients).
    """
    group_of = patients.select("patient_id", "group", "external")
    split_of = assignment.select("patient_id", "split")
    other = {"patient_id": "other_patient_id"}
    together = pl.col("group") == pl.col("other_group")
    return (
        look_alikes.join(group_of, on="patient_id")
        .join(group_of.rename(other | {"group": "other_group", "external": "other_external"}),
              on="other_patient_id")
        .join(split_of, on="patient_id", how="left")
        .join(split_of.rename(other | {"split": "other_split"}), on="other_patient_id", how="left")
        .with_columns(
            pl.when(together & (pl.col("split") == pl.col("other_split"))).then(pl.lit("linked"))
            .when(together).then(pl.lit("apart: stored assignment"))
            .when(pl.col("external") != pl.col("other_external")).then(pl.lit("apart: external site"))
            .otherwise(pl.lit("not linked: group cap")).alias("status")
        )
        .select("patient_id", "other_patient_id", "image_id", "other_image_id", "distance",
                "split", "other_split", "status")
        .sort("patient_id", "other_patient_id")
    )


def grouping_metrics(duplicates: pl.DataFrame, patients: pl.DataFrame) -> dict:
    """Return counts of suspected duplicate pairs by status and the largest patient group."""
    names = {"linked": "suspected_duplicates_linked",
             "apart: stored assignment": "suspected_duplicates_apart_by_stored_assignment",
             "apart: external site": "suspected_duplicates_apart_by_external_site",
             "not linked: group cap": "suspected_duplicates_not_linked_group_cap"}
    return {
        "suspected_duplicate_pairs": duplicates.height,
        **{name: duplicates.filter(pl.col("status") == status).height for status, name in names.items()},
        "largest_patient_group": int(patients.group_by("group").len().get_column("len").max() or 0),
    }


def plot_composition(counts: pl.DataFrame, path: str | os.PathLike) -> None:
    """Plot patients and images per split by label, and patients per split by site, to a PNG."""
    splits = [name for name in SPLITS if name in counts.get_column("split").to_list()]
    sites = counts.get_column("site").unique().sort().to_list()
    figure, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for axis, measure in zip(axes[:2], ("patients", "images")):
        bottom = [0] * len(splits)
        for label in LABELS:
            values = [
                counts.filter((pl.col("split") == name) & (pl.col("label") == label)).get_column(measure).sum()
                for name in splits
            ]
            axis.bar(splits, values, bottom=bottom, label=label, color=LABEL_COLOURS[label])
            bottom = [low + value for low, value in zip(bottom, values)]
        axis.set_title(f"{measure} per split and patient label")
        axis.set_ylabel(measure)
        axis.legend()
    width = 0.8 / max(len(sites), 1)
    for index, site in enumerate(sites):
        values = [
            counts.filter((pl.col("split") == name) & (pl.col("site") == site)).get_column("patients").sum()
            for name in splits
        ]
        axes[2].bar([position + index * width for position in range(len(splits))], values, width, label=site)
    axes[2].set_xticks([position + 0.4 - width / 2 for position in range(len(splits))], splits)
    axes[2].set_title("patients per split and site")
    if sites:
        axes[2].legend(fontsize="small")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    plt.close(figure)
    write_bytes(path, buffer.getvalue())
