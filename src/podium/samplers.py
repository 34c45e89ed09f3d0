"""Registry of training samplers (`train.sampler`, `podium list samplers`): which images an epoch draws, in what order.

Every sampler draws from (seed, epoch) alone: an epoch replays identically after a resume, and every process of a
multi-device run draws the same list. `ShardedSampler` then hands process (rank) r of W the items r, r + W, r + 2W,
... of that shared list, padded to a multiple of W, so the ranks' shares partition one draw and each keeps its class
balance (tests/test_samplers.py). podium shards its own loaders (Lightning's sampler replacement is off:
podium.engine.fold). The labels a sampler balances are those of the fold's training rows; indices are positions in
those rows.
"""

from __future__ import annotations

import numpy as np
import torch

from podium.registry import Entry, Registry


def _generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


class EpochSampler(torch.utils.data.Sampler):
    """Each image once per epoch, in an order drawn from (seed, epoch)."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        return iter(torch.randperm(self.n, generator=_generator(self.seed, self.epoch)).tolist())

    def __len__(self) -> int:
        return self.n


class WeightedEpochSampler(EpochSampler):
    """`len(weights)` draws with replacement per epoch, image i with probability proportional to weights[i]."""

    def __init__(self, weights: np.ndarray, seed: int):
        super().__init__(len(weights), seed)
        self.weights = torch.as_tensor(np.asarray(weights, dtype=np.float64))

    def __iter__(self):
        g = _generator(self.seed, self.epoch)
        return iter(torch.multinomial(self.weights, self.n, replacement=True, generator=g).tolist())


class RepeatFactorSampler(EpochSampler):
    """Repeat factor sampling (LVIS, Gupta et al. 2019): an image of a class holding a share f_c of the images is
    drawn r_c = max(1, sqrt(threshold / f_c)) times per epoch on average.

    Fractional repeats are rounded systematically over a shuffled order (each image appears floor(r) or ceil(r)
    times, r on average), and the epoch is cut to floor(sum of r): every epoch has the same length, as Lightning's
    step count and the learning-rate schedule need.
    """

    def __init__(self, labels: np.ndarray, seed: int, threshold: float):
        counts = np.bincount(labels)
        share = counts[labels] / len(labels)
        self.repeats = torch.as_tensor(np.maximum(1.0, np.sqrt(threshold / share)))
        super().__init__(int(np.floor(self.repeats.sum().item() + 1e-9)), seed)

    def __iter__(self):
        g = _generator(self.seed, self.epoch)
        order = torch.randperm(len(self.repeats), generator=g)
        ends = torch.cumsum(self.repeats[order], 0)
        u = torch.rand(1, generator=g, dtype=torch.float64)
        times = (torch.floor(ends + u) - torch.floor(ends - self.repeats[order] + u)).long()
        drawn = order.repeat_interleave(times)
        return iter(drawn[torch.randperm(len(drawn), generator=g)][: self.n].tolist())


class ShardedSampler(torch.utils.data.Sampler):
    """Rank `rank`'s share of each epoch of `sampler` in a run of `world` processes: items rank, rank + W, ... of the
    epoch's whole list, padded at its end with its first items to a multiple of W (as torch's DistributedSampler
    does), so every rank gets the same number of items, hence of batches: DDP's collectives pair them up.

    Every rank draws the whole list from (seed, epoch) and keeps its own items: no communication, and the same
    shares after a resume. `numbered()` gives each item with its place in the padded list (podium.augment's
    NumberedDraws seeds a batch's augmentation from it). Validation pads too: the padding is dropped again by the
    items' positions when the ranks' predictions are gathered (podium.engine.distributed)."""

    def __init__(self, sampler: torch.utils.data.Sampler, rank: int, world: int):
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} is not one of the {world} processes")
        self.sampler, self.rank, self.world = sampler, rank, world

    @property
    def epoch(self) -> int:
        return getattr(self.sampler, "epoch", 0)

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, "set_epoch"):  # a fixed order (validation's) has none
            self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return -(-len(self.sampler) // self.world)

    def numbered(self):
        """(place in the epoch's padded list, item) of this rank's items."""
        drawn = list(self.sampler)
        padded = [drawn[i % len(drawn)] for i in range(len(self) * self.world)]
        return ((k, padded[k]) for k in range(self.rank, len(padded), self.world))

    def __iter__(self):
        return (item for _, item in self.numbered())


def balanced_weights(labels: np.ndarray, power: float) -> np.ndarray:
    """Per-image weight n_(y_i)^(-power): power 1 draws every class equally often, 0.5 in proportion to sqrt(n_c)."""
    counts = np.bincount(labels).astype(np.float64)
    return counts[labels] ** -power


# build: (class index per training row, seed, train.repeat_threshold) -> torch Sampler
SAMPLERS = Registry("samplers", "train.sampler", [
    Entry("random", "each image once per epoch, shuffled (the natural class frequencies)", None,
          lambda y, seed, t: EpochSampler(len(y), seed)),
    Entry("class_balanced", "every class equally often: draws with replacement, P(image) ~ 1/n_class; an epoch has "
                            "as many draws as images", None,
          lambda y, seed, t: WeightedEpochSampler(balanced_weights(y, 1.0), seed)),
    Entry("sqrt", "class c drawn in proportion to sqrt(n_c): halfway between random and balanced (Mahajan et al. "
                  "2018)", None, lambda y, seed, t: WeightedEpochSampler(balanced_weights(y, 0.5), seed)),
    Entry("repeat_factor", "each image of a class with share f < train.repeat_threshold repeated sqrt(t/f) times per "
                           "epoch (LVIS, Gupta et al. 2019)", None, lambda y, seed, t: RepeatFactorSampler(y, seed, t)),
], noun="sampler", note="auto (the default): random, or class_balanced when train.stage=classifier (cRT)")
AUTO = "auto"  # train.sampler's default, resolved by TrainConfig.resolved_sampler (not an entry: it builds nothing)


def create_sampler(name: str, labels: np.ndarray, seed: int, repeat_threshold: float) -> torch.utils.data.Sampler:
    """The sampler `name` (a resolved train.sampler, not `auto`) over training rows with class indices `labels`."""
    return SAMPLERS.get(name).build(np.asarray(labels, dtype=np.int64), seed, repeat_threshold)
