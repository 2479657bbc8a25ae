"""Burned-in text on the demo phantom: how much of it ingest removed, how much tissue it left alone.

Run after ``thyrokit demo-data RAW`` and ``thyrokit curate ingest RAW/scans OUT --keys KEYS``::

    python benchmarks/redaction_phantom.py RAW OUT KEYS [--misses 10]

Each box of ``RAW/truth/text_boxes.csv`` is mapped into its stored image (raw path ->
``source_hmac`` through the key table, then the image of that file and frame in
``OUT/images.parquet``, shifted by its ``crop``). A box that falls outside the crop was
removed by the crop. Otherwise:

- a text line (kind phi or settings, and a caliper's length read-out) is removed when
  none of its ink survives: no pixel its strokes cover at least half (the phantom
  records where and how large it drew each line, so the ink is drawn again on a blank
  frame) keeps its raw value (column "ink removed"). Column "box zeroed" is stricter:
  every pixel of the box, less a one-pixel margin, is zero; the phantom's boxes include
  the descender space under the baseline and two rows above the letters, which hold
  tissue when no letter descends;
- a caliper mark (its box spans the measured line, end crosses included) is removed when
  the squares around its two end crosses are zero and no dot of the line between them
  is left at full brightness.

Untouched share: of the scan-area pixels outside every truth box (stored crop, raw pixel
non-zero, two pixels of margin around boxes), the share whose stored value equals the raw
one. Printed per kind and overall; misses are named by source_hmac and frame, never by
the text itself (it is patient data).
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from thyrokit.curate.readers import read_scan
from thyrokit.pipelines.phantom.chrome import text_ink
from thyrokit.pixels import read_image

Box = tuple[int, int, int, int]
CROSS = 4   # half size of a caliper end cross, pixels
MARGIN = 2  # pixels around a truth box that anti-aliasing may still touch


@dataclass(frozen=True)
class BoxResult:
    """One truth box's fate in its stored image."""

    source_hmac: str
    frame: int
    kind: str
    removed: bool
    zeroed: bool


def shift(box: Box, crop: Box) -> Box | None:
    """Return `box` in the coordinates of the stored `crop`, clipped; None if it lies outside."""
    x0, y0, x1, y1 = box
    cx0, cy0, cx1, cy1 = crop
    moved = (max(x0, cx0) - cx0, max(y0, cy0) - cy0, min(x1, cx1) - cx0, min(y1, cy1) - cy0)
    return moved if moved[2] > moved[0] and moved[3] > moved[1] else None


def grey(image: np.ndarray) -> np.ndarray:
    """Return the per-pixel maximum over channels (an RGB pixel is zero only if every channel is)."""
    return image.max(axis=2) if image.ndim == 3 else image


def is_caliper_mark(kind: str, text: str) -> bool:
    """Tell a caliper mark (a "+1" or "x2" line with end crosses) from a text line."""
    return kind == "caliper" and " " not in text


def ink_removed(stored: np.ndarray, raw: np.ndarray, ink: np.ndarray) -> bool:
    """Return whether no pixel of the bool `ink` mask keeps its raw value in `stored` (all in crop coordinates)."""
    return not (ink & (stored == raw)).any()


def text_removed(stored: np.ndarray, box: Box) -> bool:
    """Return whether every pixel of `box` inside its one-pixel margin is zero."""
    x0, y0, x1, y1 = box
    inner = stored[y0 + 1:max(y1 - 1, y0 + 2), x0 + 1:max(x1 - 1, x0 + 2)]
    return not inner.any()


def caliper_removed(stored: np.ndarray, raw: np.ndarray, box: Box) -> bool:
    """Return whether both end crosses of a caliper mark are zero and no full-bright dot is left."""
    x0, y0, x1, y1 = box
    ends = ((x0 + CROSS, y0 + CROSS), (x1 - 1 - CROSS, y1 - 1 - CROSS))
    for x, y in ends:
        square = stored[max(y - CROSS, 0):y + CROSS + 1, max(x - CROSS, 0):x + CROSS + 1]
        if square.size and square.any():
            return False
    window = (slice(y0, y1), slice(x0, x1))
    dots = raw[window] >= 250
    return not (dots & (stored[window] == raw[window])).any()


def score_image(stored: np.ndarray, raw: np.ndarray, crop: Box, boxes: list[dict]
                ) -> tuple[list[tuple[str, bool, bool]], int, int]:
    """Return (kind, removed, zeroed) per truth row in `boxes`, and the (untouched, total) scan pixels outside them."""
    cx0, cy0, cx1, cy1 = crop
    raw_crop = grey(raw[cy0:cy1, cx0:cx1])
    stored = grey(stored)
    outside = raw_crop > 0
    results = []
    for row in boxes:
        box, kind, text = tuple(int(row[k]) for k in ("x0", "y0", "x1", "y1")), row["kind"], row["text"] or ""
        moved = shift(box, crop)
        if moved is None:
            results.append((kind, True, True))
            continue
        if is_caliper_mark(kind, text):
            # The crosses sit at the unclipped box's corners: score in the crop's frame, unclipped.
            unclipped = (box[0] - cx0, box[1] - cy0, box[2] - cx0, box[3] - cy0)
            removed = caliper_removed(stored, raw_crop, unclipped)
            results.append((kind, removed, removed))
        else:
            ink = text_ink(text, int(row["x"]), int(row["y"]), float(row["scale"]), raw.shape[:2])[cy0:cy1, cx0:cx1]
            results.append((kind, ink_removed(stored, raw_crop, ink), text_removed(stored, moved)))
        x0, y0, x1, y1 = moved
        outside[max(y0 - MARGIN, 0):y1 + MARGIN, max(x0 - MARGIN, 0):x1 + MARGIN] = False
    untouched = int((stored[outside] == raw_crop[outside]).sum())
    return results, untouched, int(outside.sum())


def measure(raw_dir: Path, out_dir: Path, keys_path: Path) -> tuple[list[BoxResult], list[float]]:
    """Return every truth box's result and each stored image's untouched share."""
    truth = pl.read_csv(raw_dir / "truth" / "text_boxes.csv", infer_schema=False)
    keys = pl.read_parquet(keys_path).select("path", "source_hmac")
    images = pl.read_parquet(out_dir / "images.parquet").select("image_id", "source_hmac", "frame", "crop", "path")
    results: list[BoxResult] = []
    untouched_shares: list[float] = []
    for (path,), rows in truth.group_by("file", maintain_order=True):
        source = keys.filter(pl.col("path") == path).get_column("source_hmac")
        if source.is_empty():
            raise SystemExit(f"a truth file is missing from the key table ({len(results)} boxes scored so far)")
        stored_rows = images.filter(pl.col("source_hmac") == source[0])
        if stored_rows.is_empty():
            results += [BoxResult(source[0], int(r["frame"]), r["kind"], True, True) for r in rows.iter_rows(named=True)]
            continue  # quarantined: nothing of it was stored
        frames = read_scan((raw_dir / "scans" / path).read_bytes()).frames
        by_frame: dict[int, list[dict]] = defaultdict(list)
        for r in rows.iter_rows(named=True):
            by_frame[int(r["frame"])].append(r)
        for frame, boxes in sorted(by_frame.items()):
            row = stored_rows.filter(pl.col("frame") == frame).row(0, named=True)
            stored = read_image(out_dir / row["path"], row["image_id"])
            scored, untouched, total = score_image(stored, frames[frame], tuple(row["crop"]), boxes)
            results += [BoxResult(source[0], frame, *box) for box in scored]
            if total:
                untouched_shares.append(untouched / total)
    return results, untouched_shares


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("raw_dir", type=Path, help="the demo-data folder (scans/, truth/)")
    parser.add_argument("out_dir", type=Path, help="the ingest output folder (images.parquet, pixels/)")
    parser.add_argument("keys", type=Path, help="the ingest key table (raw path -> source_hmac)")
    parser.add_argument("--misses", type=int, default=10, help="how many missed boxes to name")
    args = parser.parse_args()
    results, untouched = measure(args.raw_dir, args.out_dir, args.keys)
    print("| kind | boxes | ink removed | box zeroed |")
    print("|---|---|---|---|")
    for kind in sorted({r.kind for r in results}) + ["all"]:
        chosen = [r for r in results if kind in ("all", r.kind)]
        removed = sum(r.removed for r in chosen) / len(chosen)
        zeroed = sum(r.zeroed for r in chosen) / len(chosen)
        print(f"| {kind} | {len(chosen)} | {100 * removed:.2f}% | {100 * zeroed:.2f}% |")
    print(f"\nscan-area pixels outside text left untouched: {100 * np.mean(untouched):.3f}% mean, "
          f"{100 * np.min(untouched):.3f}% worst image, {100 * np.mean(np.array(untouched) >= 0.99):.1f}% "
          f"of {len(untouched)} images >= 99%")
    for miss in [r for r in results if not r.removed][:args.misses]:
        print(f"missed: {miss.kind} box in {miss.source_hmac} frame {miss.frame}")


if __name__ == "__main__":
    main()
