"""Make the phantom: one patient at a time (a pure, seeded worker), then the dump's tables.

Each patient draws everything from ``numpy.random.default_rng([seed, index])``, so
patients are independent of each other and of how many workers ran them, and the
same seed gives byte-identical files.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from pydicom.uid import generate_uid

from thyrokit.atomic import write_bytes
from thyrokit.parallel import map_batches
from thyrokit.pipelines.phantom import chrome, doppler
from thyrokit.pipelines.phantom.anatomy import Neck, View, make_textures, sample_neck
from thyrokit.pipelines.phantom.dicom_files import Header, build_dataset, encode_dicom, identifying_values
from thyrokit.pipelines.phantom.exports import encode_export, export_name
from thyrokit.pipelines.phantom.frames import Frame, render_frame
from thyrokit.pipelines.phantom.identities import Person, Visit, make_person, make_visits
from thyrokit.pipelines.phantom.labels import (
    LABEL_COLUMNS, MANIFEST_COLUMNS, TEXT_BOX_COLUMNS, TRUTH_COLUMNS, write_csv, write_phi,
)
from thyrokit.pipelines.phantom.montage import write_montage
from thyrokit.pipelines.phantom.nodules import MALIGNANT_FRACTION, Nodule, jitter, sample_nodule
from thyrokit.pipelines.phantom.scanner import SCANNERS, Scanner, geometry_of
from thyrokit.pipelines.phantom.speckle import moved_scatterers, scatterers
from thyrokit.pixels import encode_png

LABELLED_FRACTION = 0.3
# The first file of patient i is stored with SHOWCASE[i % 4], so any 4 consecutive patients use every encoding.
SHOWCASE = ("rle", "jpeg2000", "jpeg", "palette")
FRAME_RATE = 30


@dataclass
class PatientResult:
    """What one patient contributes to the dump's tables (files are already written)."""

    manifest: list[dict] = field(default_factory=list)
    truth: list[dict] = field(default_factory=list)
    text_boxes: list[dict] = field(default_factory=list)
    phi: dict[str, dict] = field(default_factory=dict)
    masks: dict[tuple[str, int, int], bytes] = field(default_factory=dict)  # (file, frame, nodule) -> PNG


def sample_nodules(rng: np.random.Generator) -> list[Nodule]:
    """Draw a patient's 0-3 nodules, about one in five malignant."""
    count = int(rng.choice(4, p=[0.25, 0.40, 0.25, 0.10]))
    nodules = []
    for _ in range(count):
        pathology = "malignant" if rng.random() < MALIGNANT_FRACTION else "benign"
        nodules.append(sample_nodule(rng, pathology, str(rng.choice(["right", "left"]))))
    return nodules


@dataclass(frozen=True)
class PatientTask:
    """Which patient to make, with which seed, into which dump."""

    index: int
    seed: int
    out_dir: str


@dataclass(frozen=True)
class Planned:
    """One image of a study as planned before rendering."""

    kind: str            # "bmode", "doppler" or "cine"
    view: View
    frames: int
    calipers: bool


def plan_study(rng: np.random.Generator, force_cine: bool, force_doppler: bool) -> list[Planned]:
    """Draw a study's images: 2-3 B-mode views, maybe a cine clip and colour Doppler frames."""
    sides = ["right", "left"]
    plans = []
    for number in range(int(rng.integers(2, 4))):
        side = sides[number % 2] if number < 2 else str(rng.choice(sides))
        plane = "longitudinal" if number >= 2 and rng.random() < 0.4 else "transverse"
        plans.append(Planned("bmode", _view(rng, side, plane), 1, bool(rng.random() < 0.4)))
    if force_cine or rng.random() < 0.15:
        plans.append(Planned("cine", _view(rng, str(rng.choice(sides)), "transverse"), int(rng.integers(8, 17)), False))
    if force_doppler or rng.random() < 0.3:
        for _ in range(int(rng.integers(1, 3))):
            plans.append(Planned("doppler", _view(rng, str(rng.choice(sides)), "transverse"), 1, False))
    return plans


def _view(rng: np.random.Generator, side: str, plane: str) -> View:
    return View(side, plane, (float(rng.uniform(-2.5, 2.5)), float(rng.uniform(-1.0, 1.0))))


def _uid(*parts: object) -> str:
    return generate_uid(entropy_srcs=["thyrokit-phantom", *map(str, parts)])


def generate_patient(task: PatientTask) -> PatientResult:
    """Render and write one patient's studies; return its rows of the dump's tables."""
    rng = np.random.default_rng([task.seed, task.index])
    scanner = SCANNERS[task.index % len(SCANNERS)]
    person = make_person(rng, task.index, task.seed)
    nodules = sample_nodules(rng)
    neck = sample_neck(rng, nodules)
    textures = make_textures(rng)
    visits = make_visits(rng, 2 if rng.random() < 0.15 else 1)
    showcase: str | None = SHOWCASE[task.index % len(SHOWCASE)]
    result = PatientResult()
    written: list[tuple[str, list[Frame], dict]] = []
    for study, visit in enumerate(visits):
        folder = f"{scanner.site}/{person.patient_id}_{person.family}/{visit.date:%Y%m%d}_{visit.accession}"
        # Any 4 consecutive patients use every encoding; patient 1 always has a cine clip.
        plans = plan_study(rng, force_cine=(study == 0 and task.index == 1),
                           force_doppler=(study == 0 and showcase == "palette"))
        for number, plan in enumerate(plans, start=1):
            encoding = _encoding(rng, scanner, plan, showcase)
            if encoding == showcase:
                showcase = None
            frames = _render_plan(rng, scanner, neck, nodules, textures, plan, person, visit)
            header = _header(task, scanner, person, visit, study, number, plan, frames)
            name = scanner.file_name.format(n=number, uid=header.sop_uid)
            path = f"{folder}/{name}"
            _write_dicom(Path(task.out_dir) / "scans" / path, header, frames, encoding)
            info = {"format": "dicom", "encoding": encoding, "header": identifying_values(header),
                    "folder": folder, "name": name, "cine": plan.kind == "cine", "source_file": ""}
            written.append((path, frames, info))
        written += _exports(rng, task, person, visit, folder, written)
    labelled = _choose_labelled(rng, len(written))
    for number, (path, frames, info) in enumerate(written):
        _record(result, path, frames, info, number in labelled, scanner, person, visit_of(info, visits), nodules)
    return result


def visit_of(info: dict, visits: list[Visit]) -> Visit:
    """Return the visit whose study folder holds a file."""
    for visit in visits:
        if info["folder"].endswith(f"{visit.date:%Y%m%d}_{visit.accession}"):
            return visit
    raise ValueError("file outside the patient's studies")


def _encoding(rng: np.random.Generator, scanner: Scanner, plan: Planned, showcase: str | None) -> str:
    """Return the showcase encoding if it suits the image (palette needs colour), else a site's usual one."""
    if showcase is not None and (showcase != "palette" or plan.kind == "doppler"):
        return showcase
    names = [name for name, _ in scanner.encodings]
    weights = np.array([weight for _, weight in scanner.encodings])
    return names[int(rng.choice(len(names), p=weights / weights.sum()))]


def _render_plan(rng: np.random.Generator, scanner: Scanner, neck: Neck, nodules: list[Nodule],
                 textures: np.ndarray, plan: Planned, person: Person, visit: Visit) -> list[Frame]:
    geometry = geometry_of(scanner)
    fields = chrome.text_fields(person, visit, scanner, plan.view.plane, plan.view.side, FRAME_RATE)
    seen = [jitter(nodule, rng) for nodule in nodules]
    if plan.kind != "cine":
        speckle = scatterers(rng, (geometry.height, geometry.lines))
        return [render_frame(scanner, neck, plan.view, seen, textures, speckle, fields,
                             colour=plan.kind == "doppler", phase=float(rng.uniform()), calipers=plan.calipers)]
    # Cine: the probe sways across the neck; the anatomy and its speckle move with it.
    margin = geometry.lines // 4
    base = scatterers(rng, (geometry.height, geometry.lines + 2 * margin))
    amplitude, drift = rng.uniform(1.0, 3.0), rng.uniform(-0.15, 0.15)
    frames = []
    for t in range(plan.frames):
        shift = amplitude * math.sin(2 * math.pi * t / plan.frames) + drift * t
        sway = (plan.view.shift[0] + shift, plan.view.shift[1] + 0.3 * math.sin(math.pi * t / plan.frames))
        view = replace(plan.view, shift=sway)
        mirror = 1 if plan.view.side == "right" else -1
        lines = int(round(-mirror * shift / geometry.line_mm))
        speckle = moved_scatterers(base, rng, lines, geometry.lines, 0.15)
        frames.append(render_frame(scanner, neck, view, seen, textures, speckle, fields))
    return frames


def _header(task: PatientTask, scanner: Scanner, person: Person, visit: Visit, study: int, number: int,
            plan: Planned, frames: list[Frame]) -> Header:
    series = {"bmode": 1, "cine": 2, "doppler": 3}[plan.kind]
    when = dt.datetime.combine(visit.date, visit.time) + dt.timedelta(seconds=40 * number)
    return Header(
        patient_name=person.dicom_name, patient_id=person.patient_id,
        birth_date=f"{person.birth_date:%Y%m%d}", sex=person.sex, institution=scanner.institution,
        referrer=visit.referrer, accession=visit.accession, date=f"{visit.date:%Y%m%d}",
        study_time=f"{visit.time:%H%M%S}", content_time=f"{when:%H%M%S}",
        study_uid=_uid(task.seed, task.index, study),
        series_uid=_uid(task.seed, task.index, study, "series", series),
        sop_uid=_uid(task.seed, task.index, study, "image", number),
        series_number=series, instance_number=number, manufacturer=scanner.manufacturer,
        model=scanner.model, station=scanner.station, private_creator=scanner.private_creator,
        series_description={"bmode": "THYROID", "cine": "THYROID CINE", "doppler": "THYROID CF"}[plan.kind],
        region=scanner.region, mm_per_px=geometry_of(scanner).mm_per_px,
        frame_time_ms=1000 / FRAME_RATE, colour_box=frames[0].colour_box,
    )


def _write_dicom(path: Path, header: Header, frames: list[Frame], encoding: str) -> None:
    if encoding == "palette":
        stack, lut = np.stack([frame.image for frame in frames]), doppler.palette()
    else:
        stack, lut = np.stack([frame.pixels() for frame in frames]), None
    write_bytes(path, encode_dicom(build_dataset(header, stack, encoding, lut)))


def _exports(rng: np.random.Generator, task: PatientTask, person: Person, visit: Visit, folder: str,
             written: list[tuple[str, list[Frame], dict]]) -> list[tuple[str, list[Frame], dict]]:
    """Export 0-2 single frames of this study as PNG/JPEG files named with the patient's name."""
    singles = [item for item in written if item[2]["folder"] == folder and not item[2]["cine"]]
    if not singles or rng.random() < 0.5:
        return []
    exports = []
    for number in range(1, int(rng.integers(1, 3)) + 1):
        path, frames, info = singles[int(rng.integers(len(singles)))]
        extension = "png" if rng.random() < 0.7 else "jpg"
        name = export_name(person, visit, number, extension)
        write_bytes(Path(task.out_dir) / "scans" / folder / name, encode_export(frames[0].pixels(), extension))
        exports.append((f"{folder}/{name}", frames, {
            "format": "png" if extension == "png" else "jpeg", "encoding": extension, "header": {},
            "folder": folder, "name": name, "cine": False, "source_file": path}))
    return exports


def _choose_labelled(rng: np.random.Generator, count: int) -> set[int]:
    """Pick about LABELLED_FRACTION of a patient's files (stochastic rounding keeps the mean exact)."""
    wanted = int(math.floor(LABELLED_FRACTION * count + rng.uniform()))
    return set(int(i) for i in rng.choice(count, size=min(wanted, count), replace=False))


def _record(result: PatientResult, path: str, frames: list[Frame], info: dict, labelled: bool,
            scanner: Scanner, person: Person, visit: Visit, nodules: list[Nodule]) -> None:
    """Add one written file's manifest, truth, text-box, PHI and mask rows to `result`."""
    x0, y0, x1, y1 = scanner.region
    first = frames[0]
    result.manifest.append({
        "file": path, "format": info["format"], "frames": len(frames), "width": first.image.shape[1],
        "height": first.image.shape[0], "channels": 3 if first.colour else 1, "site": scanner.site,
        "device": f"{scanner.manufacturer} {scanner.model}", "patient_id": person.patient_id,
        "modality": "US", "colour": first.colour, "cine": info["cine"], "encoding": info["encoding"],
        "region_x0": x0, "region_y0": y0, "region_x1": x1, "region_y1": y1,
        "mm_per_px": geometry_of(scanner).mm_per_px, "source_file": info["source_file"], "labelled": labelled,
    })
    burned = set()
    for index, frame in enumerate(frames):
        for box in frame.boxes:
            result.text_boxes.append({"file": path, "frame": index, "x0": box.x0, "y0": box.y0, "x1": box.x1,
                                      "y1": box.y1, "kind": box.kind, "text": box.text,
                                      "x": box.x, "y": box.y, "scale": box.scale})
            if box.kind == "phi":
                burned.add(box.text)
        _truth_rows(result, path, index, frame, labelled, nodules)
    path_parts = [info["folder"].split("/")[1], info["folder"].split("/")[2]]
    if info["format"] != "dicom" or "{uid}" in scanner.file_name:
        path_parts.append(info["name"])
    result.phi[path] = {
        "header": info["header"],
        "burned_in": sorted(burned),
        "path": path_parts,
        "values": sorted(_identifying_strings(person, visit, scanner)),
    }


def _truth_rows(result: PatientResult, path: str, index: int, frame: Frame, labelled: bool,
                nodules: list[Nodule]) -> None:
    if not frame.masks:
        empty = dict.fromkeys(("mask", "pathology", "composition", "echogenicity", "shape", "margin",
                               "echogenic_foci", "tirads_points", "tirads", "patient_nodule", "x0", "y0", "x1", "y1"))
        result.truth.append({"file": path, "frame": index, "nodule": -1, **empty, "area_px": 0, "labelled": labelled})
        return
    for order, (patient_nodule, mask) in enumerate(sorted(frame.masks.items())):
        nodule = nodules[patient_nodule]
        ys, xs = np.nonzero(mask)
        features = nodule.features
        result.truth.append({
            "file": path, "frame": index, "nodule": order, "mask": None, "pathology": nodule.pathology,
            "composition": features.composition, "echogenicity": features.echogenicity,
            "shape": features.shape, "margin": features.margin, "echogenic_foci": "+".join(features.foci),
            "tirads_points": features.points, "tirads": features.level, "patient_nodule": patient_nodule,
            "x0": int(xs.min()), "y0": int(ys.min()), "x1": int(xs.max()) + 1, "y1": int(ys.max()) + 1,
            "area_px": int(mask.sum()), "labelled": labelled,
        })
        if labelled:
            result.masks[(path, index, order)] = encode_png(mask.astype(np.uint8) * 255)


def _identifying_strings(person: Person, visit: Visit, scanner: Scanner) -> set[str]:
    """Every identifying value of a file, in the forms it is written in."""
    dates = {person.birth_date, visit.date}
    forms = {f"{d:%Y%m%d}" for d in dates} | {d.isoformat() for d in dates} | \
        {f"{d:%m/%d/%Y}" for d in dates} | {f"{d:%d.%m.%Y}" for d in dates}
    return forms | {person.family, person.given, person.patient_id, visit.accession, scanner.institution,
                    visit.referrer, scanner.station}


@dataclass(frozen=True)
class Summary:
    """What a phantom run made."""

    patients: int
    files: int
    frames: int
    labelled_files: int
    nodule_rows: int


def generate_phantom(out_dir: str | Path, patients: int, seed: int, workers: int | None = None) -> Summary:
    """Write a phantom raw dump of `patients` patients under `out_dir`; the same seed gives the same bytes."""
    if patients < 1:
        raise ValueError(f"--patients must be at least 1, got {patients}")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        # Never mix with real scans or with an older phantom (dvc repro empties the folder first).
        raise FileExistsError(f"{out} is not empty; the phantom writes only into a new or empty folder")
    tasks = [PatientTask(index, seed, str(out)) for index in range(patients)]
    manifest, truth, text_boxes, phi, masks = [], [], [], {}, {}
    for result in map_batches(generate_patient, tasks, workers=workers, batch_size=2, desc="phantom patients"):
        manifest += result.manifest
        truth += result.truth
        text_boxes += result.text_boxes
        phi.update(result.phi)
        masks.update(result.masks)
    mask_names = {key: f"masks/{number:06d}.png" for number, key in enumerate(sorted(masks))}
    for key, name in mask_names.items():
        write_bytes(out / "labels" / name, masks[key])
    for row in truth:
        row["mask"] = mask_names.get((row["file"], row["frame"], row["nodule"]))
    labelled_files = {row["file"] for row in manifest if row["labelled"]}
    label_rows = [{name: row[name] for name in LABEL_COLUMNS} for row in truth if row["file"] in labelled_files]
    order = ["file", "frame", "nodule"]
    write_csv(label_rows, LABEL_COLUMNS, out / "labels" / "labels.csv", order)
    write_csv(truth, TRUTH_COLUMNS, out / "truth" / "nodules.csv", order)
    write_csv(text_boxes, TEXT_BOX_COLUMNS, out / "truth" / "text_boxes.csv", ["file", "frame", "y0", "x0", "kind"])
    frame = write_csv(manifest, MANIFEST_COLUMNS, out / "truth" / "manifest.csv", ["file"])
    write_phi(phi, out / "truth" / "phi.json")
    write_montage(out, frame.filter(frame["format"] == "dicom").get_column("file").to_list())
    return Summary(patients, len(manifest), int(frame.get_column("frames").sum()), len(labelled_files), len(truth))
