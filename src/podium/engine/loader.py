"""The training and prediction loaders: whole-batch reads from the decode cache's memmap in the loop's own process,
an optional per-image augmentation stage, and the epoch-seeded order (podium.samplers)."""

from __future__ import annotations

import numpy as np
import torch

from podium.augment import AugmentedDataset
from podium.data.cache import CachedDataset
from podium.samplers import EpochSampler


def make_loader(images, targets, indices, batch_size: int, seed: int | None,
                sampler: torch.utils.data.Sampler | None = None, pipeline=None,
                augment_seed: int | None = None) -> torch.utils.data.DataLoader:
    """Whole-batch reads from the memmap in the loop's own process (see benchmarks/data_loading.py).

    Order: `sampler` (positions in `indices`, see podium.samplers) when given; else shuffled from (seed, epoch);
    else (seed None) in order. `pipeline` (podium.augment.ItemPipeline): the per-image CPU stage each batch goes
    through, augmenting from `augment_seed` (None: edge channel only, no augmentation)."""
    ds = CachedDataset(images, targets, np.asarray(indices))
    if sampler is None and seed is not None:
        sampler = EpochSampler(len(ds), seed)
    if pipeline is not None:
        ds = AugmentedDataset(ds, pipeline, augment_seed, sampler)
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, sampler=sampler, shuffle=False,
                                       num_workers=0, collate_fn=lambda batch: batch)
