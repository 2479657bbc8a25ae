"""PNG encoding and the Parquet pixel shards: exact pixels back, the same bytes every time."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from thyrokit.curate.deid.synthetic import synthetic_frame
from thyrokit.pixels import decode_png, encode_png, iter_shard, read_image, write_shards


def images() -> dict[str, np.ndarray]:
    """Grey, colour, 16-bit and mask images as the pipeline stores them."""
    rng = np.random.default_rng(0)
    grey = synthetic_frame(1).image
    mask = np.zeros((120, 160), dtype=np.uint8)
    cv2.ellipse(mask, (80, 60), (40, 25), 0, 0, 360, 255, -1)
    return {
        "grey": grey,
        "colour": synthetic_frame(2, colour=True).image,
        "ct": rng.integers(0, 4096, size=(64, 48), dtype=np.uint16),
        "full range": rng.integers(0, 65536, size=(7, 5), dtype=np.uint16),
        "mask": mask,
    }


@pytest.mark.parametrize("name", list(images()))
def test_png_gives_back_the_exact_pixels_and_the_same_bytes_twice(name):
    image = images()[name]
    png = encode_png(image)
    back = decode_png(png)
    assert back.dtype == image.dtype and back.shape == image.shape
    assert np.array_equal(back, image)
    assert encode_png(image.copy()) == png  # deterministic: DVC's cache and the manifests rely on it


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.float32), np.zeros((4, 4, 4), np.uint8), np.zeros(4, np.uint8)])
def test_what_png_cannot_hold_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="PNG holds|expected a"):
        encode_png(bad)


def test_shards_roll_over_and_give_every_image_back(tmp_path):
    stored = images()
    rows = [(name, encode_png(image)) for name, image in stored.items()]
    where = write_shards(rows, tmp_path, "images", max_bytes=50_000)
    assert len(set(where.values())) > 1  # the grey and colour frames alone pass 50 kB
    for name, image in stored.items():
        assert np.array_equal(read_image(tmp_path / where[name], name), image)
    keys = [key for shard in sorted(set(where.values())) for key, _ in iter_shard(tmp_path / shard)]
    assert sorted(keys) == sorted(stored)
