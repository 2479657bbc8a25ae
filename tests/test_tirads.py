"""ACR TI-RADS points and levels as the chart gives them."""

import pytest

from thyrokit.annotate.tirads import parse_foci, tirads_level, tirads_points


@pytest.mark.parametrize(
    ("features", "points"),
    [
        (("cystic", "anechoic", "wider_than_tall", "smooth", ()), 0),
        (("mixed", "isoechoic", "wider_than_tall", "ill_defined", ("comet_tail",)), 2),
        (("solid", "hypoechoic", "wider_than_tall", "smooth", ("none",)), 4),
        (("solid", "very_hypoechoic", "taller_than_wide", "extrathyroidal_extension", ()), 11),
        (("solid", "hyperechoic", "wider_than_tall", "lobulated", ("peripheral",)), 7),
    ],
)
def test_points_add_up_the_chart(features, points):
    assert tirads_points(*features) == points


def test_every_focus_that_applies_adds_its_points():
    one = tirads_points("solid", "hypoechoic", "wider_than_tall", "smooth", ("punctate",))
    two = tirads_points("solid", "hypoechoic", "wider_than_tall", "smooth", ("punctate", "macrocalcifications"))
    assert (one, two) == (7, 8)


def test_spongiform_scores_zero_whatever_else():
    points = tirads_points("spongiform", "very_hypoechoic", "taller_than_wide", "irregular", ("punctate",))
    assert points == 0
    assert tirads_level(points) == "TR1"


@pytest.mark.parametrize(
    ("points", "level"),
    [(0, "TR1"), (1, "TR1"), (2, "TR2"), (3, "TR3"), (4, "TR4"), (6, "TR4"), (7, "TR5"), (14, "TR5")],
)
def test_levels_follow_the_point_ranges(points, level):
    assert tirads_level(points) == level


def test_foci_cell_is_parsed_in_chart_order_without_repeats():
    assert parse_foci("punctate+macrocalcifications+punctate") == ("macrocalcifications", "punctate")
    assert parse_foci("none") == ("none",)


@pytest.mark.parametrize("cell", ["punctate+sparkles", "none+punctate"])
def test_bad_foci_are_refused_with_the_reason(cell):
    with pytest.raises(ValueError, match="echogenic_foci"):
        parse_foci(cell)


def test_unknown_choice_is_refused_naming_the_feature():
    with pytest.raises(ValueError, match="margin 'jagged'"):
        tirads_points("solid", "hypoechoic", "wider_than_tall", "jagged", ())
