"""Label Studio's brush RLE: masks in and out, checked against their image's size.

Label Studio stores a brush mask as run-length-encoded RGBA bytes (the mask is the
alpha channel), with no width or height of its own: a wrong-sized RLE is accepted by
the server and only looks wrong in the browser, so both directions check the size here.

Encoding uses the SDK's encoder. Decoding is this module's own reading of the same
format (thi-ng rle-pack: a 32-bit count, a 5-bit word size, four 4-bit run-length
widths, then runs), because the SDK's decoder spells out every bit as a Python
string character and takes most of a pull's time.
"""

from __future__ import annotations

import numpy as np
from label_studio_sdk.converter.brush import mask2rle

RGBA = 4


class RleError(ValueError):
    """An RLE does not hold a mask of the expected size."""


def encode_mask(mask: np.ndarray) -> list[int]:
    """Encode a (H, W) mask (bool, or uint8 0/255) as Label Studio brush RLE."""
    if mask.ndim != 2:
        raise RleError(f"a mask is a (H, W) array, got shape {mask.shape}")
    # Label Studio draws the alpha value as is: a 0/1 mask would be invisible.
    return mask2rle(np.where(mask > 0, 255, 0).astype(np.uint8))


def decode_rle(rle: list[int] | bytes, expected: int) -> np.ndarray:
    """Decode brush RLE to its flat uint8 RGBA values; raise RleError unless it holds `expected` values."""
    bits = (np.unpackbits(np.frombuffer(bytes(rle), np.uint8)) + ord("0")).tobytes().decode("ascii")
    position = 0

    def read(width: int) -> int:
        nonlocal position
        if position + width > len(bits):
            raise ValueError("RLE ends early")
        position += width
        return int(bits[position - width:position], 2)

    count, word = read(32), read(5) + 1
    if count != expected:  # checked before allocating: the count is whatever the sender wrote
        raise RleError(f"RLE holds {count // RGBA} pixels")
    if word > 8:
        raise ValueError(f"{word}-bit values in a brush mask")
    run_widths = [read(4) + 1 for _ in range(4)]
    out = np.zeros(count, np.uint8)
    index = 0
    while index < count:
        repeated = read(1)
        end = index + 1 + read(run_widths[read(2)])
        if end > count:
            raise ValueError("a run goes past the end")
        if repeated:
            out[index:end] = read(word)
        else:
            out[index:end] = [read(word) for _ in range(end - index)]
        index = end
    return out


def decode_mask(rle: list[int], height: int, width: int) -> np.ndarray:
    """Decode brush RLE to a uint8 0/255 (H, W) mask; raise RleError if it is not that size."""
    try:
        values = decode_rle(rle, height * width * RGBA)
    except RleError as error:
        raise RleError(f"{error}, the image has {height}x{width}") from None
    except (ValueError, TypeError) as error:
        raise RleError(f"not a brush RLE ({error})") from None
    alpha = values.reshape(height, width, RGBA)[:, :, RGBA - 1]
    return np.where(alpha > 0, 255, 0).astype(np.uint8)
