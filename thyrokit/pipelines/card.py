"""The dataset card: ``card.md`` and a self-contained ``card.html`` describing a release.

Counts per split, site, device and class; class balance before and after synthesis;
montages of real and synthetic patches; the de-identification, labelling and
generator metrics of the stages (``data/metrics/*.json``); the leakage audit; the params and
the git and DVC revisions it was built from. Pictures are PNGs beside the card
(``card/*.png``) and embedded in the HTML, so both read offline. Revisions are the
only thing that changes between two builds of the same data, and they live here only.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import subprocess
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from thyrokit import __version__
from thyrokit.atomic import write_bytes, write_text
from thyrokit.contract import PATHOLOGIES, SPLITS
from thyrokit.pipelines import plots
from thyrokit.pipelines.formats.manifest import NO_FINDING, Release
from thyrokit.pixels import decode_png

PICTURES = "card"
STAGE = "export"  # this stage's name in dvc.yaml
# Params sections never shown: ingest's map names the raw site folders (often institutions).
HIDDEN_PARAMS = ("ingest",)
# Metrics of stages that run after export (they read the release): shown, they would make
# the card depend on whether an earlier run left them behind.
DOWNSTREAM_METRICS = ("phi_audit",)
COUNT_ROWS = {
    "images": "images",
    "patients": "patients",
    "labelled_images": "labelled images (human or pseudo, with or without a finding)",
    "images_with_mask": "images with a mask (segmentation cases, negatives included)",
    "nodules": "nodules (findings)",
}


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Code:
    text: str


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]


@dataclass(frozen=True)
class Picture:
    title: str
    file: str  # relative to the card
    png: bytes


Block = Heading | Text | Code | Table | Picture


def render_markdown(blocks: list[Block]) -> str:
    """Return the card as Markdown, pictures linked beside it."""
    lines: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            lines += ["#" * block.level + " " + block.text, ""]
        elif isinstance(block, Text):
            lines += [block.text, ""]
        elif isinstance(block, Code):
            lines += ["```", block.text.rstrip("\n"), "```", ""]
        elif isinstance(block, Table):
            lines += ["| " + " | ".join(block.header) + " |", "|" + "---|" * len(block.header)]
            lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in block.rows]
            lines.append("")
        elif isinstance(block, Picture):
            lines += [f"![{block.title}]({block.file})", ""]
    return "\n".join(lines)


def render_html(blocks: list[Block]) -> str:
    """Return the card as one self-contained HTML page, pictures embedded."""
    body: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            body.append(f"<h{block.level}>{html.escape(block.text)}</h{block.level}>")
        elif isinstance(block, Text):
            body.append(f"<p>{html.escape(block.text)}</p>")
        elif isinstance(block, Code):
            body.append(f"<pre>{html.escape(block.text)}</pre>")
        elif isinstance(block, Table):
            head = "".join(f"<th>{html.escape(name)}</th>" for name in block.header)
            rows = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(value))}</td>" for value in row) + "</tr>"
                           for row in block.rows)
            body.append(f"<table><tr>{head}</tr>{rows}</table>")
        elif isinstance(block, Picture):
            data = base64.b64encode(block.png).decode("ascii")
            body.append(f'<figure><img alt="{html.escape(block.title)}" src="data:image/png;base64,{data}">'
                        f"<figcaption>{html.escape(block.title)}</figcaption></figure>")
    style = ("body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #999;padding:.2em .6em}"
             "td{text-align:right}img{image-rendering:pixelated;max-width:100%}")
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Dataset card</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Return the scalar leaves of nested JSON as (dotted key, value); a list shows its length."""
    if isinstance(value, dict):
        return [pair for key in sorted(value) for pair in flatten(value[key], f"{prefix}{key}.")]
    if isinstance(value, list):
        return [(prefix.rstrip("."), f"{len(value)} item(s)")]
    return [(prefix.rstrip("."), value)]


def revisions(cwd: Path = Path(".")) -> dict[str, str]:
    """Return the git commit (and whether tracked files differ from it), the upstream dvc.lock digest and versions.

    Neither may depend on this stage's own outputs, or every re-run would change the
    card: the digest leaves out the export stage's dvc.lock entry, and DVC's own
    bookkeeping (dvc.lock, .gitignore files) does not count as a change.
    """
    commit = _git(["rev-parse", "HEAD"], cwd) or "unknown (not a git checkout)"
    changes = _git(["status", "--porcelain", "--untracked-files=no", "--", ".",
                    ":(exclude)dvc.lock", ":(exclude,glob)**/.gitignore"], cwd)
    try:
        dvc = version("dvc")
    except PackageNotFoundError:
        dvc = "not installed"
    return {
        "git commit": commit + (" (with uncommitted changes)" if changes else ""),
        "dvc.lock of the upstream stages, sha256": upstream_lock_digest(cwd / "dvc.lock"),
        "thyrokit": __version__,
        "dvc": dvc,
    }


def upstream_lock_digest(lock: Path) -> str:
    """Return a digest of the dvc.lock entries of every stage but export (the data versions it read)."""
    if not lock.is_file():
        return "none"
    stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
    upstream = {name: entry for name, entry in stages.items() if name != STAGE}
    return hashlib.sha256(yaml.safe_dump(upstream, sort_keys=True).encode()).hexdigest()[:16]


def _git(arguments: list[str], cwd: Path) -> str:
    try:
        result = subprocess.run(["git", *arguments], cwd=cwd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return ""
    return result.stdout.strip() if result.returncode == 0 else ""


def _split_table(summary: dict, section: str, keys: tuple[str, ...]) -> Table:
    rows = tuple((key, *(summary[section][split][key] for split in SPLITS)) for key in keys)
    return Table(("", *SPLITS), rows)


def _montage(release: Release, patches: pl.DataFrame, count: int) -> list[Picture]:
    pictures = []
    kind = "synthetic" if patches.get_column("label_source").eq("synthetic").all() else "real"
    for name in PATHOLOGIES:
        chosen = patches.filter(pl.col("pathology") == name).sort("nodule_id").head(count)
        if chosen.is_empty():
            continue
        images = dict(release.pngs(chosen, "nodule_id", "path"))
        grid = [decode_png(images[key]) for key in chosen.get_column("nodule_id") if key in images]
        pictures.append(Picture(f"{kind} {name} patches", f"{PICTURES}/montage_{kind}_{name}.png",
                                plots.montage_png(grid)))
    return pictures


def _metrics_blocks(files: list[Path]) -> list[Block]:
    files = [path for path in files if path.stem not in DOWNSTREAM_METRICS]
    blocks: list[Block] = [
        Heading("De-identification"),
        Text("Headers and burned-in text are de-identified at ingest; files that could not be "
             "made safe are quarantined, never released. Counts from the ingest stage:"),
    ]
    ingest = [path for path in files if path.stem == "ingest"]
    blocks.append(_json_table(ingest[0]) if ingest else Text("No ingest metrics were found."))
    blocks.append(Heading("Labelling, pre-label, pseudolabel and generator metrics"))
    blocks.append(Text("One table per stage, from its metrics JSON (validation figures of the demo "
                       "models are on a few dozen images: read them as smoke tests, not benchmarks)."))
    others = [path for path in files if path.stem != "ingest"]
    for path in others:
        blocks += [Heading(path.stem, 3), _json_table(path)]
    if not others:
        blocks.append(Text("No other metrics were found."))
    return blocks


def _json_table(path: Path) -> Block:
    try:
        return Table(("metric", "value"), tuple(flatten(json.loads(path.read_text()))))
    except (OSError, ValueError) as error:
        return Text(f"{path.name} could not be read: {type(error).__name__}")


def _counts_table(summary: dict) -> Table:
    rows = []
    for section, title in COUNT_ROWS.items():
        per_split = [summary[section][split] for split in SPLITS]
        rows.append((title, summary[section].get("total", sum(per_split)), *per_split))
    return Table(("", "total", *SPLITS), tuple(rows))


def _label_sources_table(release: Release) -> Table:
    """Return images per split by where their label came from (a negative is human, pathology none)."""
    kind = (pl.when(pl.col("pathology") == NO_FINDING).then(pl.lit("human, no finding"))
            .otherwise(pl.col("label_source").fill_null("unlabelled")))
    counts = release.manifest.with_columns(kind=kind).group_by("kind", "split").len()
    found = {(row["kind"], row["split"]): row["len"] for row in counts.iter_rows(named=True)}
    kinds = ("human", "human, no finding", "pseudo", "unlabelled")
    return Table(("label", *SPLITS), tuple((name, *(found.get((name, split), 0) for split in SPLITS))
                                          for name in kinds))


def _leakage_blocks(leakage: Any) -> list[Block]:
    if leakage is None:
        return [Text("No leakage audit was given.")]
    checks = leakage.get("checks", {})
    verdict = "passed" if leakage.get("ok") else "FAILED"
    blocks: list[Block] = [
        Text(f"The split stage's audit {verdict} over {leakage.get('images', '?')} images "
             f"(near duplicates: perceptual-hash distance <= {leakage.get('phash_max_distance', '?')}). "
             "Rows found are listed in the split stage's leakage.json."),
        Table(("check", "rows found"), tuple((name.replace("_", " "), check.get("count", ""))
                                             for name, check in sorted(checks.items()))),
    ]
    extra = {key: value for key, value in leakage.items() if key in ("suspected_duplicates", "warnings")}
    if extra:
        blocks += [Text("Not leaks, for information: look-alike images kept within one split (suspected "
                        "duplicates) and warnings."),
                   Table(("what", "count"), tuple((key, value) for key, value in flatten(extra)
                                                  if key.endswith(".count")))]
    return blocks


def card_blocks(release: Release, summary: dict, *, leakage: Any = None, metrics_files: tuple[Path, ...] = (),
                params_file: Path | None = None, montage_per_class: int = 16) -> list[Block]:
    """Return the card's content."""
    classes = (*PATHOLOGIES, NO_FINDING, "unlabelled")
    before = summary["patches_by_class"]["train"]
    after = {name: before[name] + summary["synthetic_patches_by_class"][name] for name in PATHOLOGIES}
    synthetic = release.patches.filter(pl.col("label_source") == "synthetic")
    real = release.patches.filter(pl.col("label_source") != "synthetic")
    blocks: list[Block] = [
        Heading("Dataset card", 1),
        Text("A de-identified thyroid imaging release, with patient-grouped splits. "
             "Built from the revisions below."),
        Table(("what", "revision"), tuple(revisions().items())),
        Heading("Counts"),
        _counts_table(summary),
        Heading("Images per label source", 3),
        Text("Pseudolabels (from the semi-supervised model) are on train only; a human "
             "\"no finding\" is a negative, shipped with an all-zero mask."),
        _label_sources_table(release),
        Heading("Images per site", 3),
        Table(("site", *SPLITS), tuple((site, *counts.values())
                                       for site, counts in summary["images_by_site"].items())),
        Heading("Images per device", 3),
        Table(("device", "images"), tuple(summary["images_by_device"].items())),
        Heading("Images per class (the worst finding of the image)", 3),
        Text("\"unknown\": a finding without a pathology (e.g. a pseudolabel the model was unsure of); "
             "\"none\": labelled, no finding; \"unlabelled\": nobody labelled it."),
        _split_table(summary, "images_by_class", classes),
        Heading("Real nodule patches per class", 3),
        _split_table(summary, "patches_by_class", PATHOLOGIES),
        Heading("Class balance"),
        Text("Train nodule patches before and after synthetic patches were added (other splits "
             "hold real patches only). The generators balance the classes of synth.data.classes; "
             "\"unknown\" patches are not a training class."),
        Table(("class", "train real", "train real + synthetic"),
              tuple((name, before[name], after[name]) for name in PATHOLOGIES)),
        Picture("class balance", f"{PICTURES}/class_balance.png",
                plots.class_balance(before, after if not synthetic.is_empty() else None)),
        Heading("Split composition"),
        Picture("split composition", f"{PICTURES}/split_composition.png",
                plots.split_composition(summary["images_by_site"])),
        Heading("Patches"),
        Text(f"Up to {montage_per_class} nodule patches per class (first by nodule id), real ones of "
             "every split, then the synthetic train patches: what the ImageFolder classifiers see."),
        *_montage(release, real, montage_per_class),
        *_montage(release, synthetic, montage_per_class),
        *_metrics_blocks(sorted(metrics_files)),
        Heading("Leakage audit"),
        *_leakage_blocks(leakage),
        Heading("Params"),
        Text(f"Sections of params.yaml, except {', '.join(HIDDEN_PARAMS)} (it names raw folders)."),
        Code(_shown_params(params_file)),
    ]
    return blocks


def _shown_params(params_file: Path | None) -> str:
    if params_file is None or not params_file.is_file():
        return "(no params file given)"
    params = yaml.safe_load(params_file.read_text()) or {}
    return yaml.safe_dump({key: value for key, value in params.items() if key not in HIDDEN_PARAMS},
                          sort_keys=True)


def write_card(release: Release, summary: dict, *, leakage: Any = None, metrics_files: tuple[Path, ...] = (),
               params_file: Path | None = None, montage_per_class: int = 16) -> None:
    """Write card.md, card.html and the card's pictures into the release folder."""
    blocks = card_blocks(release, summary, leakage=leakage, metrics_files=metrics_files,
                         params_file=params_file, montage_per_class=montage_per_class)
    for block in blocks:
        if isinstance(block, Picture):
            write_bytes(release.folder / block.file, block.png)
    write_text(release.folder / "card.md", render_markdown(blocks))
    write_text(release.folder / "card.html", render_html(blocks))
