"""De-identification throughput: thyrokit header and full de-id beside dicognito and the I/O floor.

Every tool runs on the same files in one process, one core, each file read from bytes
in memory and written to bytes in memory:

- floor: pydicom reads the file and writes it back unchanged;
- dicognito: dicognito's Anonymizer (header only) on the read dataset, then written;
- thyrokit header: ``deidentify_dataset`` then written;
- thyrokit full: header, pixel decode, one scan area per file (as ingest finds it),
  burned-in text redaction of every frame, PNG encode of every frame.

Files: pydicom's bundled test files that thyrokit de-identifies (the ones it
quarantines are left out for every tool), plus the DICOM files under ``--phantom``.

    python benchmarks/deid_throughput.py [--phantom /tmp/ph/scans] [--repeat 3]
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_files

from thyrokit.curate.deid import DeidOptions, QuarantineError, deidentify_dataset, redact_burned_in_text, redact_frames
from thyrokit.curate.deid.synthetic import redaction_scores, synthetic_frame
from thyrokit.curate.scan_area import scan_area
from thyrokit.pixels import encode_png

SECRET = b"benchmark-secret-0123456789abcdef"
OPTIONS = DeidOptions()


def read(data: bytes) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(data))


def write(ds: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds)
    return buffer.getvalue()


def floor(data: bytes) -> None:
    write(read(data))


def dicognito(data: bytes) -> None:
    from dicognito.anonymizer import Anonymizer

    ds = read(data)
    Anonymizer(seed="benchmark").anonymize(ds)
    write(ds)


def header(data: bytes) -> None:
    out, _ = deidentify_dataset(read(data), SECRET, OPTIONS)
    write(out)


def full(data: bytes) -> None:
    ds = read(data)
    out, _ = deidentify_dataset(ds, SECRET, OPTIONS)
    frames = ds.pixel_array
    if int(ds.get("NumberOfFrames", 1) or 1) == 1:
        frames = frames[None]
    if frames.ndim == 4 and frames.shape[-1] != 3:
        frames = frames[..., 0]
    if frames.dtype not in (np.uint8, np.uint16):
        frames = frames.astype(np.uint16)
    keep, _ = scan_area(frames)  # one scan area per file, as ingest finds it
    redacted, _ = redact_frames(frames, keep)
    for frame in redacted:
        encode_png(np.ascontiguousarray(frame))
    write(out)


def usable_files(paths: list[Path]) -> list[bytes]:
    """Return the bytes of files every tool can run on: de-identifiable, pixels decodable."""
    kept = []
    for path in paths:
        data = path.read_bytes()
        try:
            full(data)
            dicognito(data)
        except QuarantineError:
            continue
        except Exception:  # unreadable or undecodable pixels: not a fair comparison file
            continue
        kept.append(data)
    return kept


def timed(tools: dict[str, Callable[[bytes], None]], files: list[bytes], repeat: int) -> dict[str, tuple[float, float]]:
    """Return {tool: (files per second, median ms per file)}, tools interleaved file by file.

    Interleaving keeps the comparison fair on a shared machine whose load drifts.
    """
    seconds: dict[str, list[float]] = {name: [] for name in tools}
    for _ in range(repeat):
        for data in files:
            for name, fn in tools.items():
                t0 = time.perf_counter()
                fn(data)
                seconds[name].append(time.perf_counter() - t0)
    return {name: (len(values) / sum(values), 1000 * statistics.median(values))
            for name, values in seconds.items()}


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
    parser.add_argument("--text-frames", type=int, default=80, help="synthetic frames for the redaction scores")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    sets = {"pydicom test files": [Path(p) for p in get_testdata_files() if Path(p).is_file()]}
    if args.phantom:
        sets["phantom"] = sorted(args.phantom.rglob("*.dcm"))
    tools = {"pydicom read+write (floor)": floor, "dicognito 0.19 header": dicognito,
             "thyrokit header": header, "thyrokit full (header+redact+PNG)": full}
    print(f"| file set | files | {' | '.join(tools)} |")
    print(f"|---|---|{'---|' * len(tools)}")
    for name, paths in sets.items():
        files = usable_files(paths)
        results = timed(tools, files, args.repeat)
        cells = [f"{rate:.0f} files/s ({median:.2f} ms median)" for rate, median in results.values()]
        print(f"| {name} | {len(files)} | {' | '.join(cells)} |")
    removed, least, mean = text_redaction_scores(args.text_frames)
    print(f"\nburned-in text on {args.text_frames} synthetic frames (half colour): "
          f"{100 * removed:.1f}% of text boxes fully removed (target 100%); other scan-area pixels "
          f"untouched {100 * mean:.2f}% on average, {100 * least:.2f}% at worst (target >= 99%)")


if __name__ == "__main__":
    main()
