"""Ingest throughput: files/s and frames/s on generated ultrasound DICOMs and on pydicom's test files.

    python benchmarks/ingest_throughput.py [--files 200] [--frames 8] [--workers 0]

Generates, in a temporary folder, `--files` DICOM files in the raw layout (a third
single-frame uncompressed 480x640, a third single-frame RLE, a third `--frames`-frame
RLE cine), ingests them with the params file's ingest section, then does the same
over every DICOM file pydicom ships. Prints one line per run and the main process's
peak memory. Needs THYROKIT_SECRET only if it is set to something you want; a fixed
benchmark secret is used otherwise.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
from pydicom.data import get_testdata_files

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
import dicom_factory as factory  # noqa: E402  (the tests' DICOM generator)

from thyrokit.curate.ingest import IngestConfig, run_ingest  # noqa: E402
from thyrokit.params import load_params  # noqa: E402

SECRET = b"benchmark-secret-not-for-real-data"


def generate(folder: Path, files: int, frames: int) -> None:
    """Write `files` ultrasound DICOMs of three kinds under `folder` in the raw layout."""
    for index in range(files):
        image = factory.fan_image(480, 640, seed=index)
        kind = index % 3
        if kind == 2:
            ds = factory.rle(factory.us_dataset(np.stack([np.roll(image, shift, axis=1) for shift in range(frames)]),
                                                patient_id=f"P{index:05d}"))
        else:
            ds = factory.us_dataset(image, patient_id=f"P{index:05d}")
            ds = factory.rle(ds) if kind == 1 else ds
        path = folder / "st_olaf_general" / f"P{index:05d}_x" / "study" / f"{index:05d}.dcm"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(factory.to_bytes(ds))


def measure(name: str, raw: Path, work: Path, params: dict, workers: int | None) -> None:
    """Ingest `raw` and print its throughput."""
    config = IngestConfig.from_params(params, raw, SECRET)
    summary = run_ingest(raw, work / f"out-{name}", work / f"keys-{name}.parquet", config, workers=workers,
                         batch_size=int(params.get("batch_size", 8)))
    m = summary.metrics()
    print(f"{name}: {m['files']} files, {m['frames']} frames, {m['quarantined']} quarantined in {m['seconds']} s"
          f" -> {m['files_per_s']} files/s, {m['frames_per_s']} frames/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--workers", type=int, default=0, help="0 = every core")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    params = load_params("ingest", args.params)
    workers = args.workers or None
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        generate(work / "generated", args.files, args.frames)
        measure("generated", work / "generated", work, params, workers)
        pydicom_raw = work / "pydicom"
        for index, source in enumerate(Path(name) for name in get_testdata_files()):
            if source.is_file():
                (pydicom_raw / f"{index:03d}").mkdir(parents=True)
                shutil.copyfile(source, pydicom_raw / f"{index:03d}" / source.name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            measure("pydicom", pydicom_raw, work, params, workers)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"main process peak RSS: {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
