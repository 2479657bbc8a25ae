"""De-identification throughput: thyrokit header and full de-id beside dicognito and the I/O floor.

Every tool runs on the same files in one process, one core, each file's bytes held in
memory and the DICOM it writes written to bytes in memory:

- floor: pydicom reads the file and writes it back unchanged;
- dicognito: dicognito's Anonymizer (header only) on the read dataset, then written;
- thyrokit header: ``deidentify_dataset`` under the params' ``deid`` options, then written;
- thyrokit full: ingest's own per-file function, :func:`thyrokit.curate.ingest.ingest_file`,
  with the ``ingest`` and ``deid`` params: the file read (from the page cache), its keyed
  content hash, header de-identification, pixel decode, scan area, crop, burned-in text
  redaction, PNG encode and perceptual hash of every frame, ids and audit record. It
  writes no DICOM unless ``ingest.write_dicom`` is on, as ingest does.

Files: pydicom's bundled test files that ingest accepts (the ones it quarantines are left
out for every tool), plus the DICOM files under ``--phantom``.

Per-file figures are for one core. Ingest itself maps ``ingest_file`` over a process pool
of every core; for the phantom set that pool's figure is printed too, on its own line and
labelled as such: it is not a one-core figure. A second phantom table splits full ingest's
median time into its steps (parse, decode, header, scan area, crop and text, PNG, phash),
which shows how much of it any one part could win back.

    python benchmarks/deid_throughput.py [--phantom /tmp/ph/scans] [--repeat 3] [--params params.yaml]
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_files

from thyrokit.curate.deid import QuarantineError, deidentify_dataset, redact_burned_in_text
from thyrokit.curate.deid.synthetic import redaction_scores, synthetic_frame
from thyrokit.curate.ingest import IngestConfig, crop_and_redact, deidentify_header, ingest_file, keep_mask
from thyrokit.curate.phash import phash
from thyrokit.curate.readers import SUPPORTED_SOP_CLASSES, RawScan, decode_frames, dicom_facts, parse_dicom
from thyrokit.curate.scan_area import bounding_box
from thyrokit.parallel import default_workers, map_batches
from thyrokit.pixels import encode_png
from thyrokit.params import load_params

SECRET = b"benchmark-secret-0123456789abcdef"


@dataclass(frozen=True)
class Item:
    """One benchmark file: its bytes, and where ingest finds it."""

    data: bytes
    relative_path: str
    config: IngestConfig


def read(data: bytes) -> pydicom.Dataset:
    """Return the dataset pydicom reads from `data`."""
    return pydicom.dcmread(io.BytesIO(data))


def write(ds: pydicom.Dataset) -> bytes:
    """Return the bytes pydicom writes for `ds`."""
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds)
    return buffer.getvalue()


def floor(item: Item) -> None:
    """Read and write back unchanged."""
    write(read(item.data))


def dicognito(item: Item) -> None:
    """Anonymise the header with dicognito, then write."""
    from dicognito.anonymizer import Anonymizer

    ds = read(item.data)
    Anonymizer(seed="benchmark").anonymize(ds)
    write(ds)


def header(item: Item) -> None:
    """De-identify the header with thyrokit, then write."""
    out, _ = deidentify_dataset(read(item.data), SECRET, item.config.deid)
    write(out)


def full(item: Item) -> None:
    """Run ingest's per-file function on the file; raise if ingest quarantines it."""
    result = ingest_file(item.relative_path, item.config)
    if result.reason:
        raise QuarantineError(result.reason)


def ingest_config(raw_dir: Path, params_path: Path) -> IngestConfig:
    """Return the ingest config of the params file for files under `raw_dir`."""
    return IngestConfig.from_params(load_params("ingest", params_path), raw_dir, SECRET,
                                    load_params("deid", params_path))


def usable_items(paths: list[Path], raw_dir: Path, config: IngestConfig) -> list[Item]:
    """Return the files every tool can run on: ingested, not quarantined, and readable by dicognito."""
    kept = []
    for path in paths:
        item = Item(path.read_bytes(), path.relative_to(raw_dir).as_posix(), config)
        try:
            full(item)
            header(item)
            dicognito(item)
        except Exception:  # quarantined, unreadable or undecodable: not a fair comparison file
            continue
        kept.append(item)
    return kept


def timed(tools: dict[str, Callable[[Item], None]], items: list[Item], repeat: int) -> dict[str, list[float]]:
    """Return {tool: seconds per file run}, tools interleaved file by file.

    Interleaving keeps the comparison fair on a shared machine whose load drifts.
    """
    seconds: dict[str, list[float]] = {name: [] for name in tools}
    for _ in range(repeat):
        for item in items:
            for name, fn in tools.items():
                t0 = time.perf_counter()
                fn(item)
                seconds[name].append(time.perf_counter() - t0)
    return seconds


def pool_seconds(items: list[Item], repeat: int, workers: int) -> tuple[float, float, int]:
    """Return (wall seconds with worker start-up, steady-state seconds, files timed in the steady state).

    The files go through :func:`map_batches` exactly as ``run_ingest`` sends them
    (``ingest_file``, batches of 8, every core); the steady state runs from the first
    batch's results to the last.
    """
    config = items[0].config
    paths = [item.relative_path for item in items] * repeat
    batch = 8
    started = time.perf_counter()
    first = None
    for index, _ in enumerate(map_batches(partial(ingest_file, config=config), paths, workers=workers,
                                          batch_size=batch, desc="")):
        if index == batch - 1:
            first = time.perf_counter()
    ended = time.perf_counter()
    return ended - started, ended - (first or started), len(paths) - batch


def stage_seconds(item: Item) -> dict[str, float]:
    """Return the seconds of each step of ingest's work on one DICOM file, run one after another.

    The steps are the ones :func:`ingest_file` chains (without its bookkeeping), so the
    table shows which part of a file's time a faster redaction could win back at all.
    """
    seconds: dict[str, float] = {}

    def step(name: str, fn: Callable[[], object]) -> object:
        t0 = time.perf_counter()
        value = fn()
        seconds[name] = time.perf_counter() - t0
        return value

    ds = step("parse", lambda: parse_dicom(item.data))
    frames, rescale = step("decode", lambda: decode_frames(ds))
    facts = step("facts", lambda: dicom_facts(ds, rescale, SUPPORTED_SOP_CLASSES[str(ds.SOPClassUID)]))
    scan = RawScan(frames=frames, facts=facts, dataset=ds)
    step("header", lambda: deidentify_header(scan, item.config))
    mask, _ = step("scan area", lambda: keep_mask(scan, item.config))
    box = bounding_box(mask)
    redacted, _ = step("crop + text", lambda: crop_and_redact(scan, mask, box, item.config))
    step("png", lambda: [encode_png(np.ascontiguousarray(frame)) for frame in redacted])
    step("phash", lambda: [phash(frame) for frame in redacted])
    return seconds


def print_stage_table(items: list[Item], dicognito_ms: float) -> None:
    """Print the median milliseconds of each ingest step over `items`, beside dicognito's whole run."""
    runs = [stage_seconds(item) for item in items]
    medians = {name: 1000 * statistics.median(run[name] for run in runs) for name in runs[0]}
    print(f"\nwhere thyrokit full's time goes on the phantom (median ms per file, one core; "
          f"dicognito's whole header run: {dicognito_ms:.2f} ms):\n")
    print(f"| {' | '.join(medians)} | decode + png alone |")
    print(f"|{'---|' * (len(medians) + 1)}")
    print(f"| {' | '.join(f'{value:.2f}' for value in medians.values())} | "
          f"{medians['decode'] + medians['png']:.2f} |")


def text_redaction_scores(frames: int) -> tuple[float, float, float]:
    """Return (share of text boxes removed, least and mean share of other scan pixels untouched)."""
    removed, untouched = [], []
    for seed in range(frames):
        frame = synthetic_frame(seed, colour=bool(seed % 2))
        redacted, _ = redact_burned_in_text(frame.image, frame.keep_mask)
        share_removed, share_untouched = redaction_scores(frame, redacted)
        removed.append(share_removed)
        untouched.append(share_untouched)
    return float(np.mean(removed)), float(np.min(untouched)), float(np.mean(untouched))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--phantom", type=Path, help="folder of phantom scans (thyrokit demo-data DIR/scans)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="params with ingest and deid")
    parser.add_argument("--text-frames", type=int, default=80, help="synthetic frames for the redaction scores")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    test_dir = Path(get_testdata_files()[0]).parent
    sets = {"pydicom test files": (test_dir, [Path(p) for p in get_testdata_files() if Path(p).is_file()])}
    if args.phantom:
        phantom_files = sorted(args.phantom.rglob("*.dcm"))
        if not phantom_files:
            parser.error(f"--phantom {args.phantom}: no .dcm files under it (give thyrokit demo-data DIR/scans)")
        sets["phantom"] = (args.phantom, phantom_files)
    tools = {"pydicom read+write (floor)": floor, "dicognito 0.19 header": dicognito,
             "thyrokit header": header, "thyrokit full (ingest_file)": full}
    print("One process, one core, median ms per file (files/s from the total in brackets):\n")
    print(f"| file set | files | {' | '.join(tools)} | header / floor | full / dicognito |")
    print(f"|---|---|{'---|' * len(tools)}---|---|")
    phantom_items: list[Item] = []
    phantom_dicognito_ms = 0.0
    for name, (raw_dir, paths) in sets.items():
        items = usable_items(paths, raw_dir, ingest_config(raw_dir, args.params))
        if name == "phantom":
            phantom_items = items
        seconds = timed(tools, items, args.repeat)
        medians = {tool: 1000 * statistics.median(values) for tool, values in seconds.items()}
        cells = [f"{medians[tool]:.2f} ms ({len(values) / sum(values):.0f}/s)" for tool, values in seconds.items()]
        ratios = (medians["thyrokit header"] / medians["pydicom read+write (floor)"],
                  medians["thyrokit full (ingest_file)"] / medians["dicognito 0.19 header"])
        print(f"| {name} | {len(items)} | {' | '.join(cells)} | {ratios[0]:.2f}x | {ratios[1]:.2f}x |")
        if name == "phantom":
            phantom_dicognito_ms = medians["dicognito 0.19 header"]
    print("\ntargets: header / floor <= 2x; full / dicognito <= 1x (both one core)")
    if phantom_items:
        print_stage_table(phantom_items, phantom_dicognito_ms)
        workers = default_workers()
        wall, steady, files = pool_seconds(phantom_items, args.repeat, workers)
        total = len(phantom_items) * args.repeat
        print(f"\nNOT one core: thyrokit full through ingest's process pool ({workers} workers = every core), "
              f"phantom x{args.repeat} = {total} files: {1000 * steady / files:.2f} ms wall-clock per file in the "
              f"steady state ({files / steady:.0f} files/s); {1000 * wall / total:.2f} ms per file with worker start-up")
    removed, least, mean = text_redaction_scores(args.text_frames)
    print(f"\nburned-in text on {args.text_frames} synthetic frames (half colour): "
          f"{100 * removed:.1f}% of text boxes fully removed (target 100%); other scan-area pixels "
          f"untouched {100 * mean:.2f}% on average, {100 * least:.2f}% at worst (target >= 99%)")


if __name__ == "__main__":
    main()
