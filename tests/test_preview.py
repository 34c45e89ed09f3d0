"""`podium augment preview`: a PNG grid of the expected size, written once unless --overwrite."""

from __future__ import annotations

import subprocess

import numpy as np
from PIL import Image

from podium.commands.preview import grid_size, make_grid
from tests.conftest import podium_cmd


def test_grid_places_every_image_enlarged():
    images = np.stack([np.full((8, 8, 1), 10 * (i + 1), np.uint8) for i in range(5)])
    grid = make_grid(images)
    assert grid.shape[1::-1] == grid_size(5, 8) == (3 * 8 * 12 + 4 * 2, 2 * 8 * 12 + 3 * 2)  # 3 x 2 cells, 12x
    assert grid[2, 2, 0] == 10 and grid[2 + 96 + 2 + 5, 2 + 96 + 2 + 5, 0] == 50 and grid[-3, -3, 0] == 128


def test_preview_writes_the_grid_and_keeps_an_existing_file(tiny_competition, tmp_path):
    out = tmp_path / "grid.png"
    args = ["augment", "preview", str(tiny_competition), "augment.preset=documents", "--n", "6", "--out", str(out)]
    done = subprocess.run(podium_cmd(*args), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    with Image.open(out) as picture:
        assert picture.size == grid_size(6, 16) and picture.mode == "L"  # the tiny competition: 16 px, grayscale
    before = out.read_bytes()
    again = subprocess.run(podium_cmd(*args, "--seed", "1"), capture_output=True, text=True)
    assert again.returncode == 2 and "--overwrite" in again.stderr and out.read_bytes() == before
    assert subprocess.run(podium_cmd(*args, "--seed", "1", "--overwrite"), capture_output=True).returncode == 0
    assert out.read_bytes() != before  # another seed: other images, other augmentation


def test_list_augment_shows_every_preset():
    out = subprocess.run(podium_cmd("list", "augment"), capture_output=True, text=True)
    assert out.returncode == 0 and all(name in out.stdout for name in ("none", "light", "medium", "heavy", "documents"))
