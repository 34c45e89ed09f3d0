"""Batch transforms on uint8 tensors (B, C, H, W), run on the training device.

The decode cache hands whole uint8 batches to the loop; normalising and augmenting the batch as tensors costs
far less than per-image work in DataLoader workers (and runs on the GPU when there is one).
"""

from __future__ import annotations

from typing import Callable

import torch

from podium.config import AugmentConfig

Tensor = torch.Tensor


def to_float(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """uint8 0..255 -> normalised float32: (x/255 - mean) / std, per channel."""
    return (x.float().div_(255.0) - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)


def random_flip(x: Tensor, dim: int, p: float = 0.5) -> Tensor:
    """Flip each image along `dim` (3 = horizontal, 2 = vertical) with probability p."""
    mask = torch.rand(x.shape[0], device=x.device) < p
    return torch.where(mask.view(-1, 1, 1, 1), x.flip(dim), x)


def random_shift(x: Tensor, fraction: float) -> Tensor:
    """Translate each image by up to fraction x side pixels in each direction, filling with zeros."""
    b, _, h, w = x.shape
    pad_h, pad_w = round(h * fraction), round(w * fraction)
    if pad_h == 0 and pad_w == 0:
        return x
    padded = torch.nn.functional.pad(x, (pad_w, pad_w, pad_h, pad_h))
    dy = torch.randint(0, 2 * pad_h + 1, (b,), device=x.device)
    dx = torch.randint(0, 2 * pad_w + 1, (b,), device=x.device)
    rows = (torch.arange(h, device=x.device)[None, :] + dy[:, None])[:, :, None]  # (B, H, 1)
    cols = (torch.arange(w, device=x.device)[None, :] + dx[:, None])[:, None, :]  # (B, 1, W)
    batch = torch.arange(b, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)  # (B, C, H, W)


def train_transform(cfg: AugmentConfig) -> Callable[[Tensor], Tensor]:
    """The training augmentation for a normalised float batch."""

    def apply(x: Tensor) -> Tensor:
        if cfg.hflip:
            x = random_flip(x, 3)
        if cfg.vflip:
            x = random_flip(x, 2)
        if cfg.shift > 0:
            x = random_shift(x, cfg.shift)
        return x

    return apply

