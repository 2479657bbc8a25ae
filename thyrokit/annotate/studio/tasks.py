"""Label Studio task and prediction JSON built from thyrokit's tables (pure functions).

One task per de-identified image. Its data carries the served image URL, the
``image_id`` and the model's ``uncertainty`` (annotators can sort by it in the Data
Manager). Its one prediction holds, per predicted nodule, one region with the
per-region pathology and TI-RADS choices attached: a brush mask (region ``n<k>``), or,
for a nodule with no mask, its box (region ``n<k>-box``) in percent of the image size,
Label Studio's unit. A mask's box is not sent as well: an annotator who corrects the
mask would have to correct a second region, and a forgotten one becomes a false nodule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from thyrokit.annotate.studio import config
from thyrokit.annotate.studio.rle import encode_mask
from thyrokit.annotate.tirads import FEATURES

SERVE_PREFIX = "/data/local-files/?d="
BOX_SUFFIX = "-box"
FOCI = "echogenic_foci"

Box = tuple[int, int, int, int]


def image_url(relative_path: str) -> str:
    """Return the URL Label Studio serves a file under its document root from."""
    return f"{SERVE_PREFIX}{relative_path}"


def prediction_score(uncertainty: float) -> float:
    """Return a prediction score in (0, 1] that falls as uncertainty rises.

    Label Studio's uncertainty sampling serves the lowest score first, so the most
    uncertain image comes first; 1 / (1 + u) keeps that order for any u >= 0.
    """
    return 1.0 / (1.0 + max(float(uncertainty), 0.0))


def task_data(image_id: str, relative_path: str, uncertainty: float) -> dict[str, Any]:
    """Return a task's data: served image, image id and uncertainty."""
    return {config.IMAGE: image_url(relative_path), "image_id": image_id,
            "uncertainty": round(float(uncertainty), 6)}


def box_value(bbox: Box, height: int, width: int) -> dict[str, float]:
    """Return a pixel box (x0, y0, x1, y1) as Label Studio's percent x, y, width, height."""
    x0, y0, x1, y1 = bbox
    return {"x": 100.0 * x0 / width, "y": 100.0 * y0 / height,
            "width": 100.0 * (x1 - x0) / width, "height": 100.0 * (y1 - y0) / height, "rotation": 0}


def brush_result(region_id: str, mask: np.ndarray) -> dict[str, Any]:
    """Return a brush region holding `mask`."""
    height, width = mask.shape
    return {"id": region_id, "type": "brushlabels", "from_name": config.MASK, "to_name": config.IMAGE,
            "original_width": width, "original_height": height, "image_rotation": 0,
            "value": {"format": "rle", "rle": encode_mask(mask), "brushlabels": [config.NODULE_LABEL]}}


def box_result(region_id: str, bbox: Box, height: int, width: int) -> dict[str, Any]:
    """Return a rectangle region for a pixel box."""
    return {"id": region_id, "type": "rectanglelabels", "from_name": config.BOX, "to_name": config.IMAGE,
            "original_width": width, "original_height": height, "image_rotation": 0,
            "value": box_value(bbox, height, width) | {"rectanglelabels": [config.NODULE_LABEL]}}


def choice_result(region_id: str, name: str, choices: Sequence[str]) -> dict[str, Any]:
    """Return a per-region choice attached to region `region_id`."""
    return {"id": region_id, "type": "choices", "from_name": name, "to_name": config.IMAGE,
            "value": {"choices": list(choices)}}


def nodule_choices(region_id: str, nodule: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Return the pathology and TI-RADS choices a nodules row knows, attached to `region_id`."""
    results = []
    pathology = config.PATHOLOGY_FROM_CONTRACT.get(nodule.get("pathology") or "")
    if pathology:
        results.append(choice_result(region_id, config.PATHOLOGY, [pathology]))
    for feature in FEATURES:
        if nodule.get(feature):
            results.append(choice_result(region_id, feature, [nodule[feature]]))
    if nodule.get(FOCI):
        results.append(choice_result(region_id, FOCI, list(nodule[FOCI])))
    return results


def prediction_result(nodules: Sequence[Mapping[str, Any]], masks: Mapping[str, np.ndarray],
                      height: int, width: int) -> list[dict[str, Any]]:
    """Return the result list of one image's prediction; `masks` maps nodule_id to its mask.

    Raises ValueError naming the nodule if a mask is not the image's size.
    """
    results = []
    for index, nodule in enumerate(sorted(nodules, key=lambda row: row["nodule_id"])):
        region = f"n{index}"
        mask = masks.get(nodule["nodule_id"])
        if mask is not None:
            if mask.shape != (height, width):
                raise ValueError(f"nodule {nodule['nodule_id']}: mask is {mask.shape[0]}x{mask.shape[1]}, "
                                 f"image is {height}x{width}")
            results.append(brush_result(region, mask))
        else:
            region += BOX_SUFFIX
            results.append(box_result(region, tuple(nodule["bbox"]), height, width))
        results.extend(nodule_choices(region, nodule))
    return results


def prediction(result: list[dict[str, Any]], uncertainty: float, model_version: str) -> dict[str, Any]:
    """Return a prediction (result, score, model version), checked against the labelling config.

    Label Studio accepts unknown tags and choices without a word, so they are caught here.
    """
    errors = [error for item in result for error in config.region_errors(item)]
    if errors:
        raise ValueError(f"prediction breaks the labelling config: {errors[0]}")
    return {"model_version": model_version, "score": prediction_score(uncertainty), "result": result}
