"""ACR TI-RADS (2017): the feature points table and the level they add up to.

Five ultrasound features score a thyroid nodule; their points add up to a level
TR1..TR5 (see TIRADS.md). The tables below are the one place in thyrokit that
names the features and their choices: the labels stage, the Label Studio config and
the phantom's nodule generator all read them from here.

Choice names are the short snake_case words used in ``labels.csv`` and in the
``nodules`` table. Where the chart groups two findings under one score ("hyperechoic
or isoechoic", "lobulated or irregular"), each has its own name with the same points.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

COMPOSITION: Mapping[str, int] = {
    "cystic": 0,              # cystic or almost completely cystic
    "spongiform": 0,
    "mixed": 1,               # mixed cystic and solid
    "solid": 2,               # solid or almost completely solid
}
ECHOGENICITY: Mapping[str, int] = {
    "anechoic": 0,
    "hyperechoic": 1,
    "isoechoic": 1,
    "hypoechoic": 2,
    "very_hypoechoic": 3,
}
SHAPE: Mapping[str, int] = {
    "wider_than_tall": 0,
    "taller_than_wide": 3,    # anteroposterior diameter greater than transverse
}
MARGIN: Mapping[str, int] = {
    "smooth": 0,
    "ill_defined": 0,
    "lobulated": 2,
    "irregular": 2,
    "extrathyroidal_extension": 3,
}
ECHOGENIC_FOCI: Mapping[str, int] = {
    "none": 0,
    "comet_tail": 0,          # large comet-tail artifacts
    "macrocalcifications": 1,
    "peripheral": 2,          # peripheral (rim) calcifications
    "punctate": 3,            # punctate echogenic foci
}

# The single-choice features, in the order of the ACR chart.
FEATURES: Mapping[str, Mapping[str, int]] = {
    "composition": COMPOSITION,
    "echogenicity": ECHOGENICITY,
    "shape": SHAPE,
    "margin": MARGIN,
}

# Lowest points of each level, highest level first (0 and 1 points are both TR1).
LEVEL_FLOORS: tuple[tuple[int, str], ...] = (
    (7, "TR5"), (4, "TR4"), (3, "TR3"), (2, "TR2"), (0, "TR1"),
)

# Separator of several echogenic foci in one labels.csv cell.
FOCI_SEPARATOR = "+"


def parse_foci(text: str) -> tuple[str, ...]:
    """Return the echogenic foci named in a '+'-joined cell, in chart order, without repeats."""
    names = {name.strip() for name in text.split(FOCI_SEPARATOR) if name.strip()}
    check_foci(names)
    return tuple(name for name in ECHOGENIC_FOCI if name in names)


def check_foci(foci: Iterable[str]) -> None:
    """Raise ValueError if `foci` holds an unknown name, or 'none' beside a finding."""
    names = set(foci)
    unknown = sorted(names - set(ECHOGENIC_FOCI))
    if unknown:
        raise ValueError(f"unknown echogenic_foci {unknown}; expected some of {list(ECHOGENIC_FOCI)}")
    if "none" in names and len(names) > 1:
        raise ValueError("echogenic_foci 'none' cannot be combined with other foci")


def feature_points(feature: str, choice: str) -> int:
    """Return the points of one single-choice feature, e.g. ('shape', 'taller_than_wide') -> 3."""
    if feature not in FEATURES:
        raise ValueError(f"unknown TI-RADS feature '{feature}'; expected one of {list(FEATURES)}")
    choices = FEATURES[feature]
    if choice not in choices:
        raise ValueError(f"unknown {feature} '{choice}'; expected one of {list(choices)}")
    return choices[choice]


def tirads_points(composition: str, echogenicity: str, shape: str, margin: str,
                  echogenic_foci: Iterable[str]) -> int:
    """Return the ACR TI-RADS points of a nodule; every focus that applies adds its points.

    A spongiform nodule scores 0 whatever its other features: the ACR chart says not
    to add them.
    """
    foci = set(echogenic_foci)
    check_foci(foci)
    choices = {"composition": composition, "echogenicity": echogenicity, "shape": shape,
               "margin": margin}
    points = {feature: feature_points(feature, choice) for feature, choice in choices.items()}
    if composition == "spongiform":
        return 0
    return sum(points.values()) + sum(ECHOGENIC_FOCI[name] for name in foci)


def tirads_level(points: int) -> str:
    """Return the TI-RADS level (TR1..TR5) of a points total."""
    if points < 0:
        raise ValueError(f"TI-RADS points cannot be negative, got {points}")
    return next(level for floor, level in LEVEL_FLOORS if points >= floor)
