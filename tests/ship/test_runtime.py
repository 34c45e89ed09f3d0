"""The package's predict.py (podium.ship.runtime) reads and resizes images as podium does, without podium or OpenCV."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from podium.data.images import fit_image, read_image
from podium.ship import runtime


@pytest.mark.parametrize("src,dst", [((16, 16), (12, 12)), ((100, 80), (32, 32)), ((64, 64), (32, 32)),
                                     ((50, 70), (29, 33)), ((333, 251), (224, 224))])
def test_shrinking_is_bit_exact_with_opencv(src, dst):
    rng = np.random.default_rng(0)
    for channels in (1, 3):
        img = rng.integers(0, 256, (*src, channels), dtype=np.uint8)
        ref = cv2.resize(img, dst[::-1], interpolation=cv2.INTER_AREA).reshape(*dst, channels)
        assert np.array_equal(runtime.resize(img, dst[1], dst[0]), ref)


@pytest.mark.parametrize("src,dst", [((20, 20), (37, 37)), ((15, 9), (32, 32)), ((7, 13), (64, 40))])
def test_enlarging_is_within_one_grey_level_of_opencv(src, dst):
    img = np.random.default_rng(1).integers(0, 256, (*src, 3), dtype=np.uint8)
    ref = cv2.resize(img, dst[::-1], interpolation=cv2.INTER_LINEAR)
    diff = np.abs(runtime.resize(img, dst[1], dst[0]).astype(int) - ref)
    assert diff.max() <= 1 and (diff > 0).mean() < 0.03


def _modes(tmp_path):
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    alpha = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    images = {
        "rgb.jpg": Image.fromarray(rgb),
        "rgba.png": Image.fromarray(np.dstack([rgb, alpha]), "RGBA"),
        "la.png": Image.fromarray(np.dstack([rgb[..., 0], alpha]), "LA"),
        "p.png": Image.fromarray(rgb).convert("P"),
        "i16.png": Image.fromarray(rgb[..., 0].astype(np.uint16) * 257),
        "cmyk.jpg": Image.fromarray(rgb).convert("CMYK"),
        "bits.png": Image.fromarray(rgb[..., 0] > 128),
    }
    for name, img in images.items():
        img.save(tmp_path / name)
    return [tmp_path / name for name in images]


def test_every_mode_reads_as_podium_reads_it(tmp_path):
    for path in _modes(tmp_path):
        for channels in (1, 3):
            ours = runtime.read_image(path, channels)
            assert np.array_equal(ours, read_image(path, channels)), path.name
            for policy in ("resize", "pad"):
                assert np.array_equal(runtime.fit_image(ours, 16, policy), fit_image(ours, 16, policy)), path.name


def test_it_never_imports_podium():
    source = open(runtime.__file__).read()
    assert "import podium" not in source and "from podium" not in source
