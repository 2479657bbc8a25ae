"""The neck as the probe sees it: skin, fat, muscles, thyroid lobe, trachea, vessels, nodules.

Structures are described in anatomical millimetres of one view: ``across`` grows
toward the midline (the trachea), ``down`` grows away from the probe. A transverse
view of the right lobe shows the trachea on the image's right, the left lobe mirrors
it; a longitudinal view shows the lobe's long axis and no trachea or carotid.
Every map is a function of coordinates, so the same anatomy renders on a beam grid,
on a pixel grid (masks), and moved by the probe from one cine frame to the next.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from thyrokit.pipelines.phantom.nodules import Nodule, outline, paint_nodule

# Echo levels in dB relative to thyroid parenchyma.
SKIN_DB, FAT_DB, MUSCLE_DB, DEEP_DB = 4.0, -17.0, -15.0, -12.0
FLUID_DB, CARTILAGE_DB = -45.0, -14.0
TEXTURE_MM = 0.25           # sample spacing of the texture bank
TEXTURE_EXTENT = (120, 80)  # mm covered by the bank (across, down)


@dataclass(frozen=True)
class Lobe:
    """One thyroid lobe: centre (across, down) and semi-axes (transverse, AP, craniocaudal), mm."""

    centre: tuple[float, float]
    semi_axes: tuple[float, float, float]


@dataclass(frozen=True)
class Neck:
    """A patient's neck anatomy."""

    skin_mm: float
    fat_mm: float
    strap_mm: float
    lobes: tuple[tuple[str, Lobe], ...]    # (side, lobe)
    trachea_radius: float
    carotid_radius: float
    jugular_semi_axes: tuple[float, float]
    parenchyma_db: float                    # whole-gland brightness (thyroiditis is darker)

    def lobe(self, side: str) -> Lobe:
        """Return the lobe on `side`."""
        return dict(self.lobes)[side]


@dataclass(frozen=True)
class View:
    """Where the probe is: which lobe, which plane, and how it is shifted (mm)."""

    side: str
    plane: str              # "transverse" or "longitudinal"
    shift: tuple[float, float]


def sample_neck(rng: np.random.Generator, nodules: list[Nodule]) -> Neck:
    """Draw a neck whose lobes are large enough to hold the patient's nodules."""
    skin, fat, strap = rng.uniform(1.2, 2.0), rng.uniform(2.0, 5.0), rng.uniform(3.0, 5.0)
    lobes = []
    for side in ("right", "left"):
        semi = [rng.uniform(8.0, 11.0), rng.uniform(6.5, 9.0), rng.uniform(18.0, 24.0)]
        for nodule in nodules:
            if nodule.side != side or nodule.features.margin == "extrathyroidal_extension":
                continue
            for axis in range(3):
                semi[axis] = max(semi[axis], abs(nodule.position[axis]) + nodule.size_mm[axis] / 2 + 1.5)
        top = skin + fat + strap + 0.8
        lobes.append((side, Lobe((0.0, top + semi[1]), tuple(float(s) for s in semi))))
    return Neck(float(skin), float(fat), float(strap), tuple(lobes), float(rng.uniform(8.0, 10.0)),
                float(rng.uniform(2.8, 3.6)), (float(rng.uniform(3.5, 6.0)), float(rng.uniform(1.8, 3.5))),
                float(rng.normal(0, 1.5)))


def nodule_centre(neck: Neck, nodule: Nodule, plane: str) -> tuple[tuple[float, float], tuple[float, float]]:
    """Return a nodule's centre (across, down) and semi-axes in a view plane, in mm."""
    lobe = neck.lobe(nodule.side)
    across = nodule.position[0] if plane == "transverse" else nodule.position[2]
    width = nodule.size_mm[0] if plane == "transverse" else nodule.size_mm[2]
    down = lobe.centre[1] + nodule.position[1]
    if nodule.features.margin == "extrathyroidal_extension":
        down = lobe.centre[1] - lobe.semi_axes[1] + 0.3 * nodule.size_mm[1]  # bulges through the capsule
    return (lobe.centre[0] + across, down), (width / 2, nodule.size_mm[1] / 2)


def make_textures(rng: np.random.Generator) -> np.ndarray:
    """Return a bank of 3 smooth noise fields (parenchyma, muscle fibres, fat lobules)."""
    width, height = (int(extent / TEXTURE_MM) for extent in TEXTURE_EXTENT)
    fields = []
    for sigma_mm in ((0.6, 0.6), (4.0, 0.3), (2.5, 1.2)):  # (across, down) correlation lengths
        noise = rng.standard_normal((height, width), dtype=np.float32)
        noise = cv2.GaussianBlur(noise, (0, 0), sigmaX=sigma_mm[0] / TEXTURE_MM, sigmaY=sigma_mm[1] / TEXTURE_MM)
        fields.append(noise / max(float(noise.std()), 1e-6))
    return np.stack(fields)


def sample_texture(textures: np.ndarray, index: int, across: np.ndarray, down: np.ndarray) -> np.ndarray:
    """Return texture field `index` at anatomical points (mm), wrapping around the bank."""
    map_x = ((across + TEXTURE_EXTENT[0] / 2) / TEXTURE_MM).astype(np.float32)
    map_y = (down / TEXTURE_MM).astype(np.float32)
    return cv2.remap(textures[index], map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)


def view_coordinates(view: View, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return anatomical (across, down) mm of image points (x, y) mm in this view."""
    mirror = 1.0 if view.side == "right" else -1.0
    return mirror * x + view.shift[0], y + view.shift[1]


@dataclass
class TissueMaps:
    """What the beam meets at each sample: echo level, bright reflectors, attenuation, artefacts."""

    echo_db: np.ndarray       # dB relative to thyroid
    bright: np.ndarray        # extra echo amplitude of specular reflectors and calcifications
    attenuation: np.ndarray   # extra two-way attenuation per mm (negative: through-transmission)
    reverb: np.ndarray        # artefact amplitude added after attenuation (reverberation)


def _ellipse(across, down, centre, semi) -> np.ndarray:
    return ((across - centre[0]) / semi[0]) ** 2 + ((down - centre[1]) / semi[1]) ** 2


def tissue_maps(neck: Neck, view: View, nodules: list[Nodule], textures: np.ndarray,
                x: np.ndarray, y: np.ndarray, depth: np.ndarray, sample_mm: float) -> TissueMaps:
    """Return the tissue maps of a view at image points (x, y) mm with skin depth `depth`."""
    across, down = view_coordinates(view, x, y)
    skin_depth = depth + view.shift[1]
    shape = across.shape
    fat_end = neck.skin_mm + neck.fat_mm
    strap_end = fat_end + neck.strap_mm
    parenchyma, fibres, lobules = (sample_texture(textures, i, across, down) for i in range(3))

    db = np.full(shape, DEEP_DB, np.float32) + 2.0 * lobules
    bright = np.zeros(shape, np.float32)
    attenuation = np.zeros(shape, np.float32)
    reverb = np.zeros(shape, np.float32)

    db = np.where(skin_depth < strap_end, MUSCLE_DB + 3.5 * fibres, db)
    db = np.where(skin_depth < fat_end, FAT_DB + 5.0 * np.maximum(lobules, -0.5), db)
    db = np.where(skin_depth < neck.skin_mm, SKIN_DB, db)
    # Fascia between the layers: thin, slightly wavy bright lines.
    wave = 0.4 * np.sin(across / 7.0 + neck.fat_mm) + 0.25 * lobules
    bright += 0.9 * (np.abs(skin_depth - fat_end + wave) < 0.2) + 0.6 * (np.abs(skin_depth - strap_end - wave) < 0.2)

    lobe = neck.lobe(view.side)
    if view.plane == "transverse":
        lobe_semi = lobe.semi_axes[:2]
        scm_centre = (lobe.centre[0] - lobe_semi[0] - 3.0, fat_end + 4.5)
        db = np.where(_ellipse(across, down, scm_centre, (12.0, 4.0)) < 1, MUSCLE_DB + 3.5 * fibres, db)
    else:
        lobe_semi = (lobe.semi_axes[2], lobe.semi_axes[1])
    # The lobe is an ellipse made irregular by two low harmonics (the gland moulds to its neighbours).
    angle = np.arctan2(down - lobe.centre[1], across - lobe.centre[0])
    gland = _ellipse(across, down, lobe.centre, lobe_semi) / (
        1 + 0.10 * np.cos(2 * angle + neck.fat_mm) + 0.07 * np.cos(3 * angle + neck.skin_mm * 3)) ** 2
    deep_muscle = (lobe.centre[0] + 4.0, lobe.centre[1] + lobe_semi[1] + 4.0)
    db = np.where(_ellipse(across, down, deep_muscle, (9.0, 3.0)) < 1, MUSCLE_DB + 3.0 * fibres, db)
    bone_top = lobe.centre[1] + lobe_semi[1] + 8.5
    bone = (np.abs(down - bone_top - 0.04 * (across - deep_muscle[0]) ** 2) < 0.5) & (across > lobe.centre[0] - 6)
    bright += 4.0 * bone
    attenuation += 3.0 * bone

    gland_db = neck.parenchyma_db + 1.3 * parenchyma
    db = np.where(gland < 1, gland_db, db)
    if view.plane == "transverse":
        db, bright, attenuation, reverb = _neck_structures(neck, lobe, across, down, db, bright, attenuation,
                                                           reverb, gland_db, sample_mm)
    bright += 0.5 * (np.abs(np.sqrt(gland) - 1) < 0.02)   # capsule

    for nodule in nodules:
        if nodule.side != view.side:
            continue
        centre, semi = nodule_centre(neck, nodule, view.plane)
        window = _window(across, down, centre, max(semi) * 1.6 + 1.0)
        if window is None:
            continue
        nod = outline(nodule, centre, semi, across[window], down[window])
        tex = sample_texture(textures, 0, nod.u * 4 + nodule.texture_offset[0], nod.v * 4 + nodule.texture_offset[1])
        n_db, n_bright, n_att, n_rev = paint_nodule(nodule, nod, semi, db[window], tex, sample_mm)
        db[window], bright[window] = n_db, bright[window] + n_bright
        attenuation[window] += n_att
        reverb[window] += n_rev
    return TissueMaps(db, bright, attenuation, reverb)


def _neck_structures(neck, lobe, across, down, db, bright, attenuation, reverb, gland_db, sample_mm):
    """Isthmus, trachea (air ring, reverberation, shadow), carotid and jugular of a transverse view."""
    semi = lobe.semi_axes
    trachea = (lobe.centre[0] + semi[0] + neck.trachea_radius - 3.0, lobe.centre[1] + 3.0)
    tr_top = trachea[1] - neck.trachea_radius
    isthmus = (across > lobe.centre[0]) & (down > tr_top - 4.5) & (down < tr_top - 1.0)
    db = np.where(isthmus, gland_db, db)
    radius = np.hypot(across - trachea[0], down - trachea[1])
    anterior = down < trachea[1] + 0.3 * neck.trachea_radius
    ring = (radius > neck.trachea_radius - 2.0) & (radius < neck.trachea_radius) & anterior
    db = np.where(ring, CARTILAGE_DB, db)
    inner = neck.trachea_radius - 2.0
    arc = np.abs(across - trachea[0]) < 0.8 * inner
    wall = np.abs(radius - inner) < 0.3
    bright += 6.0 * (wall & arc & (down < trachea[1]))
    column = (np.abs(across - trachea[0]) < inner) & (down > trachea[1])
    air = (radius < inner) | column
    attenuation += 6.0 * air
    # Reverberation: copies of the air wall at multiples of its depth, fading.
    wall_depth = trachea[1] - np.sqrt(np.maximum(inner ** 2 - (across - trachea[0]) ** 2, 0))
    for k in (1, 2):
        reverb += arc * (1.2 * 0.5 ** k) * (np.abs(down - wall_depth - k * 0.5 * (tr_top + 2.0)) < 0.3)

    carotid = carotid_centre(neck, lobe)
    c_radius = np.hypot(across - carotid[0], down - carotid[1])
    db = np.where(c_radius < neck.carotid_radius + 0.6, FLUID_DB, db)
    bright += 1.2 * (np.abs(c_radius - neck.carotid_radius - 0.5) < 0.2)
    attenuation -= 0.08 * (c_radius < neck.carotid_radius)

    jugular = (carotid[0] - neck.carotid_radius - neck.jugular_semi_axes[0] + 0.5, carotid[1] - 2.0)
    jug = _ellipse(across, down, jugular, neck.jugular_semi_axes) < 1
    db = np.where(jug, FLUID_DB, db)
    attenuation -= 0.06 * jug
    return db, bright, attenuation, reverb


def carotid_centre(neck: Neck, lobe: Lobe) -> tuple[float, float]:
    """Centre of the common carotid artery, posterolateral to the lobe (mm)."""
    return (lobe.centre[0] - lobe.semi_axes[0] * 0.9 - neck.carotid_radius * 0.8,
            lobe.centre[1] + lobe.semi_axes[1] * 0.4)


def _window(across: np.ndarray, down: np.ndarray, centre, reach: float) -> tuple[slice, slice] | None:
    """Return the rectangle of grid indices whose points lie within `reach` mm of `centre`."""
    near = (np.abs(across - centre[0]) < reach) & (np.abs(down - centre[1]) < reach)
    rows, cols = np.nonzero(near.any(axis=1))[0], np.nonzero(near.any(axis=0))[0]
    if rows.size == 0 or cols.size == 0:
        return None
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def nodule_masks(neck: Neck, view: View, nodules: list[Nodule], x: np.ndarray, y: np.ndarray,
                 visible: np.ndarray) -> list[np.ndarray]:
    """Return each nodule's bool mask at image points (x, y) mm, limited to `visible` pixels."""
    across, down = view_coordinates(view, x, y)
    masks = []
    for nodule in nodules:
        if nodule.side != view.side:
            masks.append(np.zeros(x.shape, bool))
            continue
        centre, semi = nodule_centre(neck, nodule, view.plane)
        masks.append(outline(nodule, centre, semi, across, down).inside & visible)
    return masks


def flow_map(neck: Neck, view: View, nodules: list[Nodule], textures: np.ndarray,
             x: np.ndarray, y: np.ndarray, phase: float) -> np.ndarray:
    """Return signed flow velocity (-1..1) at image points: carotid toward, jugular away, nodule vessels."""
    across, down = view_coordinates(view, x, y)
    flow = np.zeros(x.shape, np.float32)
    lobe = neck.lobe(view.side)
    systole = 0.55 + 0.45 * max(0.0, math.sin(2 * math.pi * phase)) ** 2
    if view.plane == "transverse":
        semi = lobe.semi_axes
        carotid = carotid_centre(neck, lobe)
        c_radius = np.hypot(across - carotid[0], down - carotid[1]) / neck.carotid_radius
        flow = np.where(c_radius < 1, 0.85 * systole * (1 - c_radius ** 2), flow)  # laminar profile
        jugular = (carotid[0] - neck.carotid_radius - neck.jugular_semi_axes[0] + 0.5, carotid[1] - 2.0)
        flow = np.where(_ellipse(across, down, jugular, neck.jugular_semi_axes) < 1, -0.35, flow)
    vessels = sample_texture(textures, 1, across * 3, down * 3)
    for nodule in nodules:
        if nodule.side != view.side:
            continue
        centre, semi = nodule_centre(neck, nodule, view.plane)
        nod = outline(nodule, centre, semi, across, down)
        # Benign nodules are fed from the rim, malignant ones through chaotic inner vessels.
        zone = (np.abs(nod.rho - 1.0) < 0.12) if nodule.pathology == "benign" else (nod.rho < 0.85)
        vessel = zone & (np.abs(vessels) > 1.1)
        flow = np.where(vessel, np.clip(0.5 * vessels, -1, 1), flow)
    return flow
