"""Thyroid nodules: TI-RADS features drawn by pathology, their shape, and their echoes.

A nodule lives in one lobe. Its shape is an ellipse whose radius is modulated by a
few harmonics (smooth, lobulated or irregular margins); its inner structure (cystic
spaces, echogenic foci) is stored in the nodule's own normalised coordinates, so the
same nodule looks the same in every image of the patient, up to small jitter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from thyrokit.annotate.tirads import tirads_level, tirads_points

MALIGNANT_FRACTION = 0.2

# Echo level of the solid part by echogenicity, in dB relative to thyroid parenchyma.
# Very hypoechoic is darker than the strap muscles (-15 dB in anatomy.py), as ACR defines it.
ECHO_DB = {"hyperechoic": 5.0, "isoechoic": -2.0, "hypoechoic": -10.0, "very_hypoechoic": -21.0,
           "anechoic": -45.0}
CYST_DB = -45.0

# Feature choices and their probabilities, per pathology. Malignant nodules are mostly
# solid, hypoechoic, taller-than-wide with irregular margins and punctate foci.
FEATURE_ODDS = {
    "benign": {
        "composition": {"solid": 0.35, "mixed": 0.30, "spongiform": 0.15, "cystic": 0.20},
        "echogenicity": {"isoechoic": 0.50, "hyperechoic": 0.25, "hypoechoic": 0.22, "very_hypoechoic": 0.03},
        "shape": {"wider_than_tall": 0.95, "taller_than_wide": 0.05},
        "margin": {"smooth": 0.65, "ill_defined": 0.25, "lobulated": 0.08, "irregular": 0.02},
        "foci": {"none": 0.70, "comet_tail": 0.12, "macrocalcifications": 0.10, "peripheral": 0.05,
                 "punctate": 0.03},
    },
    "malignant": {
        "composition": {"solid": 0.90, "mixed": 0.10},
        "echogenicity": {"hypoechoic": 0.55, "very_hypoechoic": 0.25, "isoechoic": 0.17, "hyperechoic": 0.03},
        "shape": {"wider_than_tall": 0.55, "taller_than_wide": 0.45},
        "margin": {"irregular": 0.35, "lobulated": 0.25, "smooth": 0.20, "ill_defined": 0.12,
                   "extrathyroidal_extension": 0.08},
        "foci": {"punctate": 0.50, "none": 0.30, "macrocalcifications": 0.12, "peripheral": 0.08},
    },
}


@dataclass(frozen=True)
class Features:
    """A nodule's ACR TI-RADS features."""

    composition: str
    echogenicity: str
    shape: str
    margin: str
    foci: tuple[str, ...]    # chart order; ("none",) when there are none

    @property
    def points(self) -> int:
        """ACR TI-RADS points of these features."""
        return tirads_points(self.composition, self.echogenicity, self.shape, self.margin, self.foci)

    @property
    def level(self) -> str:
        """ACR TI-RADS level, TR1..TR5."""
        return tirads_level(self.points)


@dataclass(frozen=True)
class Nodule:
    """One nodule of a patient: what it is, where it sits, and what it looks like inside."""

    pathology: str
    features: Features
    side: str                              # "right" or "left" lobe
    position: tuple[float, float, float]   # (across, down, along) from the lobe centre, in mm
    size_mm: tuple[float, float, float]    # full (transverse, anteroposterior, craniocaudal) diameters
    angle: float                           # in-plane tilt, radians
    harmonics: tuple[tuple[int, float, float], ...]   # (order, amplitude, phase) of the margin
    cysts: tuple[tuple[float, float, float], ...]     # (u, v, radius), normalised
    foci_at: tuple[tuple[str, float, float, float], ...]  # (kind, u, v, radius in mm)
    halo: bool
    texture_offset: tuple[float, float]

    @property
    def diameter_mm(self) -> float:
        """Longest diameter."""
        return max(self.size_mm)


def _choose(rng: np.random.Generator, odds: dict[str, float]) -> str:
    names = list(odds)
    weights = np.array([odds[name] for name in names])
    return names[int(rng.choice(len(names), p=weights / weights.sum()))]


def sample_features(rng: np.random.Generator, pathology: str) -> Features:
    """Draw TI-RADS features that follow the pathology."""
    odds = FEATURE_ODDS[pathology]
    composition = _choose(rng, odds["composition"])
    echogenicity = "anechoic" if composition == "cystic" else _choose(rng, odds["echogenicity"])
    if composition == "spongiform":
        echogenicity = "isoechoic"
    foci = {_choose(rng, odds["foci"])}
    if pathology == "malignant" and "punctate" in foci and rng.random() < 0.25:
        foci.add("macrocalcifications")
    if "comet_tail" in foci and composition == "solid":
        foci = {"none"}  # colloid comet tails sit in cystic spaces
    order = ("none", "comet_tail", "macrocalcifications", "peripheral", "punctate")
    return Features(composition, echogenicity, _choose(rng, odds["shape"]), _choose(rng, odds["margin"]),
                    tuple(name for name in order if name in foci))


def sample_nodule(rng: np.random.Generator, pathology: str, side: str) -> Nodule:
    """Draw one nodule of the given pathology in the given lobe."""
    features = sample_features(rng, pathology)
    diameter = float(np.clip(rng.lognormal(math.log(10.0), 0.5), 3.0, 30.0))
    if features.shape == "taller_than_wide":
        ap = min(diameter, 22.0)
        size = (ap * rng.uniform(0.6, 0.85), ap, diameter * rng.uniform(0.8, 1.1))
    else:
        size = (diameter, min(diameter * rng.uniform(0.55, 0.9), 22.0), diameter * rng.uniform(0.8, 1.2))
    return Nodule(
        pathology=pathology,
        features=features,
        side=side,
        position=(float(rng.uniform(-3, 3)), float(rng.uniform(-2, 2)), float(rng.uniform(-10, 10))),
        size_mm=tuple(float(s) for s in size),
        angle=float(rng.normal(0, 0.12)),
        harmonics=_margin_harmonics(rng, features.margin),
        cysts=_cysts(rng, features.composition),
        foci_at=_foci(rng, features.foci),
        halo=features.echogenicity in ("isoechoic", "hyperechoic") and rng.random() < 0.5,
        texture_offset=(float(rng.uniform(0, 40)), float(rng.uniform(0, 30))),
    )


def _margin_harmonics(rng: np.random.Generator, margin: str) -> tuple[tuple[int, float, float], ...]:
    if margin in ("smooth", "ill_defined"):
        orders, amplitude = [2], (0.0, 0.04)
    elif margin == "lobulated":
        orders, amplitude = list(rng.choice([3, 4, 5], size=2, replace=False)), (0.07, 0.14)
    else:  # irregular, extrathyroidal extension
        orders, amplitude = list(rng.choice(np.arange(5, 14), size=4, replace=False)), (0.04, 0.09)
    return tuple((int(k), float(rng.uniform(*amplitude)), float(rng.uniform(0, 2 * math.pi))) for k in orders)


def _cysts(rng: np.random.Generator, composition: str) -> tuple[tuple[float, float, float], ...]:
    if composition == "mixed":
        count, radius = int(rng.integers(1, 4)), (0.25, 0.45)
    elif composition == "cystic":
        return ((float(rng.uniform(-0.1, 0.1)), float(rng.uniform(-0.1, 0.1)), 0.85),)
    elif composition == "spongiform":
        count, radius = int(rng.integers(18, 30)), (0.08, 0.15)
    else:
        return ()
    cysts = []
    for _ in range(count):
        r = rng.uniform(*radius)
        reach = max(0.0, 0.85 - r)
        angle, dist = rng.uniform(0, 2 * math.pi), reach * math.sqrt(rng.uniform())
        cysts.append((float(dist * math.cos(angle)), float(dist * math.sin(angle)), float(r)))
    return tuple(cysts)


def _foci(rng: np.random.Generator, foci: tuple[str, ...]) -> tuple[tuple[str, float, float, float], ...]:
    spots = []
    for kind in foci:
        if kind == "punctate":
            for _ in range(int(rng.integers(3, 10))):
                angle, dist = rng.uniform(0, 2 * math.pi), 0.75 * math.sqrt(rng.uniform())
                spots.append((kind, dist * math.cos(angle), dist * math.sin(angle), rng.uniform(0.15, 0.3)))
        elif kind == "macrocalcifications":
            for _ in range(int(rng.integers(1, 3))):
                spots.append((kind, rng.uniform(-0.4, 0.4), rng.uniform(-0.4, 0.1), rng.uniform(0.7, 1.4)))
        elif kind == "peripheral":
            spots.append((kind, rng.uniform(0, 2 * math.pi), rng.uniform(1.6, 3.6), 0.35))  # (start, span)
        elif kind == "comet_tail":
            for _ in range(int(rng.integers(1, 4))):
                spots.append((kind, rng.uniform(-0.4, 0.4), rng.uniform(-0.4, 0.3), 0.25))
    return tuple((str(k), float(u), float(v), float(r)) for k, u, v, r in spots)


def jitter(nodule: Nodule, rng: np.random.Generator) -> Nodule:
    """Return the nodule as another image sees it: a little moved, resized and turned."""
    scale = rng.uniform(0.95, 1.05)
    return replace(
        nodule,
        position=tuple(p + float(rng.normal(0, 0.5)) for p in nodule.position),
        size_mm=tuple(s * float(scale) for s in nodule.size_mm),
        angle=nodule.angle + float(rng.normal(0, 0.06)),
    )


@dataclass(frozen=True)
class Outline:
    """A nodule's normalised coordinates around its centre, as seen in one image plane."""

    u: np.ndarray      # across the nodule, 1 = its semi-axis
    v: np.ndarray      # down the nodule
    rho: np.ndarray    # radial distance in units of the (harmonic) margin: < 1 is inside

    @property
    def inside(self) -> np.ndarray:
        """Bool mask of the nodule."""
        return self.rho <= 1.0


def outline(nodule: Nodule, centre: tuple[float, float], semi_axes: tuple[float, float],
            x: np.ndarray, y: np.ndarray) -> Outline:
    """Return the normalised coordinates of points (x, y) mm around a nodule centred at `centre`."""
    dx, dy = x - centre[0], y - centre[1]
    cos, sin = math.cos(nodule.angle), math.sin(nodule.angle)
    u = (cos * dx + sin * dy) / semi_axes[0]
    v = (-sin * dx + cos * dy) / semi_axes[1]
    radius = np.hypot(u, v)
    theta = np.arctan2(v, u)
    margin = np.ones_like(radius)
    for order, amplitude, phase in nodule.harmonics:
        margin += amplitude * np.cos(order * theta + phase)
    return Outline(u.astype(np.float32), v.astype(np.float32), (radius / margin).astype(np.float32))


def solid_db(nodule: Nodule) -> float:
    """Echo level of the nodule's solid part, dB relative to thyroid."""
    return ECHO_DB[nodule.features.echogenicity if nodule.features.composition != "cystic" else "isoechoic"]


def paint_nodule(nodule: Nodule, shape: Outline, semi_axes: tuple[float, float], base_db: np.ndarray,
                 texture: np.ndarray, sample_mm: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return (echo dB, bright amplitude, attenuation per mm, reverberation) of a nodule over `base_db`.

    `texture` is smooth zero-mean noise at the same points (heterogeneity of the solid part).
    """
    features = nodule.features
    malignant_texture = 3.5 if nodule.pathology == "malignant" else 1.5
    db = solid_db(nodule) + malignant_texture * texture
    if nodule.halo:
        db = np.where(shape.rho > 0.9, -16.0, db)
    attenuation = np.zeros_like(base_db)
    for cu, cv, radius in nodule.cysts:
        wobble = 1 + 0.12 * np.cos(3 * np.arctan2(shape.v - cv, shape.u - cu) + 7 * cu)
        cyst = np.hypot(shape.u - cu, shape.v - cv) < radius * wobble
        db = np.where(cyst, CYST_DB, db)
        attenuation = np.where(cyst, -0.06, attenuation)
    soft = 0.22 if features.margin == "ill_defined" else 0.04
    weight = np.clip((1.0 - shape.rho) / soft + 0.5, 0.0, 1.0)
    echo_db = weight * db + (1 - weight) * base_db
    attenuation = attenuation * (weight > 0.5)
    bright = np.zeros_like(base_db)
    reverb = np.zeros_like(base_db)
    mean_axis = (semi_axes[0] + semi_axes[1]) / 2
    for kind, a, b, radius in nodule.foci_at:
        if kind == "peripheral":
            theta = np.arctan2(shape.v, shape.u)
            along = np.mod(theta - a, 2 * math.pi) < b
            rim = along & (np.abs(shape.rho - 0.93) < radius / mean_axis)
            bright += 5.0 * rim
            attenuation += 1.2 * rim
            continue
        dist_mm = np.hypot((shape.u - a) * semi_axes[0], (shape.v - b) * semi_axes[1])
        spot = np.exp(-0.5 * (dist_mm / radius) ** 2).astype(np.float32)
        bright += (6.0 if kind == "punctate" else 4.0) * spot
        if kind == "macrocalcifications":
            attenuation += 2.5 * (dist_mm < radius)
        if kind == "comet_tail":
            below = (shape.v - b) * semi_axes[1]
            tail = (np.abs((shape.u - a) * semi_axes[0]) < radius * 1.5) & (below > 0) & (below < 2.0)
            reverb += 2.5 * tail * np.exp(-below / 0.8) * (0.6 + 0.4 * np.cos(below * 2 * math.pi / (4 * sample_mm)))
    return tuple(a.astype(np.float32) for a in (echo_db, bright, attenuation, reverb))
