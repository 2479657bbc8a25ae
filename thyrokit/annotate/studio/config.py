"""The labelling config: the XML shipped in this package and the names it defines."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

from label_studio_sdk.label_interface import LabelInterface

IMAGE = "image"                 # the Image tag, fed by task data "image"
MASK = "mask"                   # BrushLabels: a nodule's segmentation
BOX = "box"                     # RectangleLabels: a nodule's box
NODULE_LABEL = "nodule"
PATHOLOGY = "pathology"
QUALITY = "quality"             # image-level choice
# Label Studio's pathology names -> the nodules contract's.
PATHOLOGY_TO_CONTRACT = {"benign": "benign", "malignant": "malignant", "indeterminate": "unknown"}
PATHOLOGY_FROM_CONTRACT = {value: key for key, value in PATHOLOGY_TO_CONTRACT.items()}


@lru_cache(maxsize=1)
def labelling_config() -> str:
    """Return the labelling config XML (stripped, as Label Studio stores it, so it compares equal)."""
    return resources.files(__package__).joinpath("labelling_config.xml").read_text(encoding="utf-8").strip()


@lru_cache(maxsize=1)
def label_interface() -> LabelInterface:
    """Return the SDK's parsed view of the labelling config (it checks tags, labels and choices)."""
    return LabelInterface(labelling_config())


def choice_values(name: str) -> tuple[str, ...]:
    """Return the choice values of the Choices tag `name`, in config order."""
    return tuple(label_interface().get_control(name).labels)


def region_errors(result: dict) -> list[str]:
    """Return why one prediction or annotation result breaks the config (unknown tag, label or choice)."""
    errors = label_interface().validate_region(result, return_errors=True)
    # The SDK quotes the whole value (a brush RLE can be thousands of numbers): keep the reason only.
    return [error.split(". Got:")[0].split(": ", 1)[-1] for error in errors]
