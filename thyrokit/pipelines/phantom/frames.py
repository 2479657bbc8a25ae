"""One frame as a scanner shows it: B-mode in the scan area, optional colour flow, text, calipers."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from thyrokit.pipelines.phantom import chrome, doppler
from thyrokit.pipelines.phantom.anatomy import Neck, View, flow_map, nodule_masks, tissue_maps
from thyrokit.pipelines.phantom.nodules import Nodule
from thyrokit.pipelines.phantom.scanner import (
    Scanner, beam_coordinates, geometry_of, pixel_coordinates, scan_convert, scan_mask,
)
from thyrokit.pipelines.phantom.speckle import Settings, form_bmode

MIN_MASK_PX = 30           # a nodule smaller than this in a frame is not listed for it


@dataclass
class Frame:
    """One rendered frame: pixels, each visible nodule's mask, and the burned-in boxes."""

    image: np.ndarray                    # (H, W) grey, or (H, W) palette indices when colour
    colour: bool
    masks: dict[int, np.ndarray]         # patient nodule index -> (H, W) bool
    boxes: list[chrome.TextBox]
    colour_box: tuple[int, int, int, int] | None = None

    def pixels(self) -> np.ndarray:
        """Grey (H, W) or RGB (H, W, 3) pixels."""
        return doppler.palette()[self.image] if self.colour else self.image


def settings_of(scanner: Scanner, neck: Neck) -> Settings:
    """Return the B-mode settings of a scanner, focused on the thyroid."""
    wavelength = 12.0 / scanner.frequency_mhz
    focus = neck.lobe("right").centre[1]
    return Settings((0.10 * wavelength, 0.25 * wavelength), focus, scanner.gain_db,
                    scanner.dynamic_range_db, 0.004 * scanner.frequency_mhz)


def render_frame(scanner: Scanner, neck: Neck, view: View, nodules: list[Nodule], textures: np.ndarray,
                 speckle: np.ndarray, fields: dict[str, str], *, colour: bool = False, phase: float = 0.0,
                 calipers: bool = False) -> Frame:
    """Render one frame: B-mode in the scan area, optional colour flow, text and calipers."""
    geometry = geometry_of(scanner)
    settings = settings_of(scanner, neck)
    x, y, depth = beam_coordinates(geometry)
    maps = tissue_maps(neck, view, nodules, textures, x, y, depth, geometry.mm_per_px)
    beam = form_bmode(maps, speckle, depth, geometry.mm_per_px, geometry.line_mm, settings)
    visible = scan_mask(geometry)
    x0, y0, x1, y1 = scanner.region
    width, height = scanner.frame_size
    image = np.zeros((height, width), np.uint8)
    image[y0:y1, x0:x1] = np.where(visible, scan_convert(beam, geometry), 0)

    px, py, _ = pixel_coordinates(geometry)
    masks = {}
    for index, mask in enumerate(nodule_masks(neck, view, nodules, px, py, visible)):
        if mask.sum() >= MIN_MASK_PX:
            full = np.zeros((height, width), bool)
            full[y0:y1, x0:x1] = mask
            masks[index] = full

    boxes = chrome.draw_layout(image, scanner.layout, fields, scanner.region)
    boxes += chrome.draw_depth_scale(image, scanner.region, geometry.depth_mm, settings.focus_mm)
    if calipers and not colour:
        number = 1
        marker = "x" if scanner.layout == "philips" else "+"
        for mask in masks.values():
            pairs = chrome.caliper_ends(mask)
            boxes += chrome.draw_calipers(image, pairs, geometry.mm_per_px, scanner.region, number, marker)
            number += len(pairs)
    if not colour:
        return Frame(image, False, masks, boxes)

    index_image = doppler.grey_to_index(image)
    box = (x0 + geometry.width // 6, y0 + geometry.height // 10,
           x1 - geometry.width // 6, y0 + geometry.height * 7 // 10)
    velocity = np.zeros((height, width), np.float32)
    velocity[y0:y1, x0:x1] = flow_map(neck, view, nodules, textures, px, py, phase)
    text = np.zeros((height, width), bool)
    for b in boxes:
        text[b.y0:b.y1, b.x0:b.x1] = True
    shown = np.zeros((height, width), bool)
    shown[y0:y1, x0:x1] = visible
    index_image = doppler.overlay_flow(index_image, velocity, box, shown & ~text)
    cv2.rectangle(index_image, (box[0], box[1]), (box[2] - 1, box[3] - 1), int(doppler.GREY_LEVELS * 0.7), 1)
    doppler.draw_colour_bar(index_image, (x0 - 22, y0 + 40, x0 - 14, y0 + 140))
    return Frame(index_image, True, masks, boxes, box)
