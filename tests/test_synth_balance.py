"""Deficit arithmetic of synth_sample: how many synthetic patches each class gets."""

import numpy as np
import pytest

from thyrokit.synth.balance import class_deficits, draw_levels, split_among

CLASSES = ("benign", "malignant")


def test_minority_class_is_topped_up_to_the_majority():
    assert class_deficits({"benign": 90, "malignant": 30}, CLASSES, 1.0) == {"benign": 0, "malignant": 60}


def test_partial_target_ratio_rounds_up():
    # 0.5 x 91 = 45.5 -> a target of 46, so the minority gets 16, not 15.
    assert class_deficits({"benign": 91, "malignant": 30}, CLASSES, 0.5) == {"benign": 0, "malignant": 16}


def test_class_already_over_target_gets_nothing():
    assert class_deficits({"benign": 100, "malignant": 80}, CLASSES, 0.5) == {"benign": 0, "malignant": 0}


def test_balanced_classes_get_nothing():
    assert class_deficits({"benign": 5, "malignant": 5}, CLASSES, 1.0) == {"benign": 0, "malignant": 0}


def test_class_without_real_samples_is_a_clear_error():
    with pytest.raises(ValueError, match=r"\['malignant'\] have no real train samples"):
        class_deficits({"benign": 10}, CLASSES, 1.0)


@pytest.mark.parametrize("ratio", [0.0, 1.5, -1.0])
def test_target_ratio_outside_unit_interval_is_rejected(ratio):
    with pytest.raises(ValueError, match="target_ratio"):
        class_deficits({"benign": 10, "malignant": 5}, CLASSES, ratio)


def test_deficit_is_split_among_generators_exactly():
    assert split_among(7, ["diffusion", "gan"]) == {"diffusion": 4, "gan": 3}
    assert sum(split_among(0, ["gan"]).values()) == 0


def test_drawn_levels_follow_the_observed_ones_and_are_seeded():
    levels = ["TR4", "TR5", "TR5", None]
    first = draw_levels(levels, 200, np.random.default_rng(3))
    assert set(first) <= set(levels)
    assert first == draw_levels(list(reversed(levels)), 200, np.random.default_rng(3))
    assert 0.35 < first.count("TR5") / 200 < 0.65
