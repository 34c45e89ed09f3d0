"""`podium augment preview`: a PNG grid of augmented training images, so users see what the model sees.

The images go through the same two stages as in training (podium.augment): the per-image albumentations stage,
then the batch stage (flips, rot90, shift) on the normalised tensor, which is mapped back to pixels for display
(so the fill of a shift shows as the colour the model gets, the mean). The edge channel (augment.edges) is not
drawn: the grid shows the image channels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from podium.augment import ItemPipeline, resolve, to_float, train_transform
from podium.config import Config
from podium.errors import PodiumError
from podium.io import atomic_path
from podium.run.guard import data_paths
from podium.run.outputs import check_out

PAD = 2  # pixels between cells (and around the grid)
MIN_CELL = 96  # smaller images are enlarged by a whole factor (nearest neighbour) to at least this side (px)


def augmented_samples(cfg: Config, n: int, seed: int) -> np.ndarray:
    """n training images drawn at random (seed), decoded as the cache decodes them and augmented as in training:
    n x H x W x C uint8."""
    from podium.data.cache import resolve_channels
    from podium.data.images import ImageReadError, crop_center, fit_image, read_image
    from podium.data.sources import load_train
    from podium.engine.build import normalisation

    if n < 1:
        raise PodiumError(f"--n must be at least 1 (got {n}).")
    frame, _ = load_train(cfg)
    channels = resolve_channels(list(frame["path"]), cfg.data.channels)
    rows = np.random.default_rng(seed).choice(len(frame), size=min(n, len(frame)), replace=False)
    images = []
    for path in frame["path"].to_numpy()[rows]:
        try:
            arr = crop_center(read_image(path, channels), cfg.data.center_crop)
            images.append(fit_image(arr, cfg.data.image_size, cfg.data.resize))
        except (ImageReadError, ValueError) as exc:
            raise PodiumError(f"Cannot read '{path}' ({exc}). Run `podium data check CONFIG` to list every "
                              "unreadable image.") from None
    x = np.stack(images)
    x = ItemPipeline(resolve(cfg.augment), channels, edges=False)(x, seed)
    plain = cfg.model_copy(update={"augment": cfg.augment.model_copy(update={"edges": False})})
    mean, std = (torch.tensor(s) for s in normalisation(plain, channels, x))
    torch.manual_seed(seed)
    t = train_transform(cfg.augment)(to_float(torch.from_numpy(x).permute(0, 3, 1, 2), mean, std))
    pixels = (t * std.view(1, -1, 1, 1) + mean.view(1, -1, 1, 1)) * 255.0
    return pixels.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def grid_layout(n: int, side: int) -> tuple[int, int, int]:
    """(columns, rows, scale) of the grid for n images of side x side pixels."""
    cols = math.ceil(math.sqrt(n))
    return cols, math.ceil(n / cols), max(1, math.ceil(MIN_CELL / side))


def grid_size(n: int, side: int) -> tuple[int, int]:
    """(width, height) in pixels of the grid of n images of side x side pixels."""
    cols, rows, scale = grid_layout(n, side)
    return cols * side * scale + (cols + 1) * PAD, rows * side * scale + (rows + 1) * PAD


def make_grid(images: np.ndarray) -> np.ndarray:
    """n x H x W x C uint8 (square images) -> one H' x W' x C uint8 grid on a mid-gray background."""
    n, side, _, c = images.shape
    cols, rows, scale = grid_layout(n, side)
    width, height = grid_size(n, side)
    canvas = np.full((height, width, c), 128, np.uint8)
    cell = side * scale
    for i, image in enumerate(images):
        r, k = divmod(i, cols)
        top, left = PAD + r * (cell + PAD), PAD + k * (cell + PAD)
        canvas[top:top + cell, left:left + cell] = image.repeat(scale, 0).repeat(scale, 1)
    return canvas


@dataclass(frozen=True)
class PreviewResult:
    out: Path  # the PNG written
    n: int  # training images in the grid
    size: tuple[int, int]  # the PNG's width and height (px)
    preset: str  # augment.preset shown


def write_preview(cfg: Config, out: Path, n: int = 16, seed: int = 0, overwrite: bool = False,
                  config_path: Path | None = None) -> PreviewResult:
    """Write the grid of n augmented training images to `out` (PNG, atomically); refuse to replace a file unless
    `overwrite`, and ever to write over the config (`config_path`) or the data it names, or into a run folder."""
    from PIL import Image


    out = Path(out)
    if out.suffix.lower() != ".png":
        raise PodiumError(f"--out '{out}' must name a .png file.")
    check_out(out, overwrite, data_paths(cfg, config_path))
    images = augmented_samples(cfg, n, seed)
    grid = make_grid(images)
    picture = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
    with atomic_path(out) as tmp:
        picture.save(tmp, format="PNG")
    return PreviewResult(out=out, n=len(images), size=picture.size, preset=cfg.augment.preset)
