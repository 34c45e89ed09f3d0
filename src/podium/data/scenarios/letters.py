"""`letters` (S0): which of the 26 letters a-z appear in a 256x256 image, 10-15 distinct letters per image.

Each letter sits in its own cell of a 4x4 grid (so none hides another), at a random offset, size (28-56 px),
rotation (+-35 degrees), colour and DejaVu font (the TTFs matplotlib ships), over a background of smooth colour
blotches plus speckle noise. Labels: 26 one-hot columns a..z; 5,000 train and 1,000 test images by default
(--n N: N train, N/5 test).
"""

from __future__ import annotations

import string
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from podium.data.scenarios import (
    draw_all,
    fresh_folder,
    image_rng,
    listing,
    positive_count,
    write_config,
)
from podium.io import atomic_write_csv

LETTERS = list(string.ascii_lowercase)
SIZE = 256  # px, square, as in S0
GRID = 4  # cells per side: 16 cells of 64 px hold up to 16 letters
N_LETTERS = (10, 15)  # distinct letters per image, inclusive
FONT_PX = (28, 56)  # glyph height range (px)
ROTATION = 35.0  # degrees, either way
N_TRAIN = 5000  # train images by default (--n)
TEST_SHARE = 5  # one test image per this many train images: 1,000 by default
TRAIN, TEST = 0, 1  # the 'kind' in each image's seed


@lru_cache(maxsize=1)
def font_files() -> tuple[str, ...]:
    """matplotlib's DejaVu TTFs with the full Latin alphabet (the Display cuts hold only a few glyphs)."""
    import matplotlib

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    return tuple(str(p) for p in sorted(folder.glob("DejaVu*.ttf")) if "Display" not in p.name)


@lru_cache(maxsize=512)
def _font(path: str, px: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, px)


def _background(rng: np.random.Generator, size: int) -> tuple[np.ndarray, float]:
    """Smooth colour blotches (4x4 noise upsampled) plus speckles; returns (HxWx3 float, mean luminance)."""
    base = rng.uniform(0, 255, 3)
    blotch = Image.fromarray(
        rng.uniform(-40, 40, (4, 4, 3)).astype(np.float32).mean(2)).resize((size, size), Image.BICUBIC)
    speckle = rng.normal(0, 40, (size, size, 1)) * (rng.random((size, size, 1)) < 0.05)  # 5% of pixels: PNGs stay small
    img = base[None, None, :] + np.asarray(blotch)[:, :, None] + speckle
    return img, float(img.mean())


def _glyph_colour(rng: np.random.Generator, bg_lum: float) -> tuple[int, int, int]:
    """A random colour at least ~90 grey levels from the background's brightness, so every letter can be read."""
    target = rng.uniform(0, max(0.0, bg_lum - 90)) if bg_lum > 127 else rng.uniform(min(255.0, bg_lum + 90), 255)
    c = rng.uniform(0, 255, 3)
    c = np.clip(c + (target - c.mean()), 0, 255)
    return tuple(int(v) for v in c)


def draw_letters(seed: int, kind: int, index: int, path: str, size: int = SIZE) -> list[int]:
    """Draw one image to `path`; returns its 26 one-hot labels."""
    rng = image_rng(seed, kind, index)
    bg, lum = _background(rng, size)
    canvas = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8))
    k = int(rng.integers(N_LETTERS[0], N_LETTERS[1] + 1))
    chosen = rng.choice(len(LETTERS), k, replace=False)
    cells = rng.choice(GRID * GRID, k, replace=False)
    cell = size / GRID
    fonts = font_files()
    scale = size / SIZE
    for letter, c in zip(chosen, cells):
        px = max(6, int(rng.integers(FONT_PX[0], FONT_PX[1] + 1) * scale))
        font = _font(fonts[int(rng.integers(len(fonts)))], px)
        glyph = Image.new("L", (2 * px, 2 * px), 0)
        ImageDraw.Draw(glyph).text((px, px), LETTERS[letter], font=font, fill=255, anchor="mm")
        glyph = glyph.rotate(float(rng.uniform(-ROTATION, ROTATION)), resample=Image.BILINEAR)
        glyph = glyph.crop(glyph.getbbox() or (0, 0, 1, 1))
        # anywhere in the cell that keeps the glyph inside it (centred when the glyph is wider than the cell)
        row, col = divmod(int(c), GRID)
        x0 = col * cell + rng.uniform(0, max(0.0, cell - glyph.width))
        y0 = row * cell + rng.uniform(0, max(0.0, cell - glyph.height))
        ink = Image.new("RGB", glyph.size, _glyph_colour(rng, lum))
        canvas.paste(ink, (int(x0), int(y0)), glyph)
    canvas.save(path, compress_level=3)  # level 3: smaller and faster than 1 on these
    onehot = np.zeros(len(LETTERS), dtype=int)
    onehot[chosen] = 1
    return onehot.tolist()


def make_letters(out: Path, n: int | None = None, seed: int = 0, n_test: int | None = None, size: int = SIZE,
                 workers: int | None = None) -> list[Path]:
    """The S0 stand-in: --n train images (default 5,000) and n_test test images (default n / 5), labels a..z."""
    n = positive_count(n, N_TRAIN, "train images")
    n_test = max(1, n // TEST_SHARE) if n_test is None else n_test
    out = fresh_folder(out)
    ids = {TRAIN: [f"let_tr{i:05d}" for i in range(n)], TEST: [f"let_te{i:05d}" for i in range(n_test)]}
    jobs = [(seed, kind, i, str(out / "images" / f"{ident}.png"), size) for kind in (TRAIN, TEST)
            for i, ident in enumerate(ids[kind])]
    labels = draw_all(draw_letters, jobs, workers)
    frame = pd.DataFrame(labels, columns=LETTERS).assign(id=ids[TRAIN] + ids[TEST])[["id", *LETTERS]]
    train, test = frame.iloc[:n], frame.iloc[n:]
    atomic_write_csv(out / "train.csv", train)
    atomic_write_csv(out / "test.csv", test[["id"]])
    atomic_write_csv(out / "sample_submission.csv", test[["id"]].assign(**{c: 0 for c in LETTERS}))
    atomic_write_csv(out / "test_labels.csv", test)
    # keys of the multi-label pipeline (data.task, list label_col, cv.strategy multilabel): valid once it lands
    write_config(out, {
        "name": "letters-effnet-lite0-128",
        "data": {"task": "multilabel", "label_col": LETTERS, "image_size": 128},
        "cv": {"strategy": "multilabel", "n_folds": 5, "metric": "per_label_accuracy"},
        "model": {"name": "efficientnet_lite0", "pretrained": True},
        "augment": {"hflip": False},  # mirrored letters are not letters
    })
    return listing(out, ["train.csv", "test.csv", "sample_submission.csv", "test_labels.csv", "config.yaml"])
