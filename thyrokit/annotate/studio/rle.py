"""Label Studio's brush RLE: masks in and out, checked against their image's size.

Label Studio stores a brush mask as run-length-encoded RGBA bytes (the mask is the
alpha channel), with no width or height of its own: a wrong-sized RLE is accepted by
the server and only looks wrong in the browser, so both directions check the size here.
"""

from __future__ import annotations

import numpy as np
from label_studio_sdk.converter.brush import decode_rle, mask2rle

RGBA = 4


class RleError(ValueError):
    """An RLE does not hold a mask of the expected size."""


def encode_mask(mask: np.ndarray) -> list[int]:
    """Encode a (H, W) mask (bool, or uint8 0/255) as Label Studio brush RLE."""
    if mask.ndim != 2:
        raise RleError(f"a mask is a (H, W) array, got shape {mask.shape}")
    # Label Studio draws the alpha value as is: a 0/1 mask would be invisible.
    return mask2rle(np.where(mask > 0, 255, 0).astype(np.uint8))


def decode_mask(rle: list[int], height: int, width: int) -> np.ndarray:
    """Decode brush RLE to a uint8 0/255 (H, W) mask; raise RleError if it is not that size."""
    try:
        values = decode_rle(bytes(rle))
    except (ValueError, TypeError, IndexError) as error:
        raise RleError(f"not a brush RLE ({error})") from None
    if values.size != height * width * RGBA:
        raise RleError(f"RLE holds {values.size // RGBA} pixels, the image has {height}x{width}")
    alpha = values.reshape(height, width, RGBA)[:, :, RGBA - 1]
    return np.where(alpha > 0, 255, 0).astype(np.uint8)
