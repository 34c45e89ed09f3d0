"""The training and prediction loaders: whole-batch reads from the decode cache's memmap, an optional per-image
augmentation stage, and the epoch-seeded order (podium.samplers).

Where the work runs: without a per-image stage a batch is one read from the memmap, done in the loop's own process
(handing it over from a worker costs more than reading it: benchmarks/data_loading.py). With one (albumentations,
the edge channel) batches are read and augmented in `train.workers` persistent worker processes, a whole batch per
task, so the CPU work of the next batches runs while the network trains on this one. Batch-level operations
(flips, shifts, Mixup/CutMix, normalisation) stay in training_step, on the GPU when there is one.

Same seed, same batches, whatever the number of workers: the order is drawn in this process from (seed, epoch), and
each batch's augmentation seed from (seed, epoch, batch number), which travel with the batch's items
(podium.augment.NumberedDraws). No global RNG is drawn for the workers.
"""

from __future__ import annotations

import math
import os
import shutil
import sys

import numpy as np
import torch

from podium.augment import AugmentedDataset, NumberedDraws
from podium.data.cache import CachedDataset, keep_batch
from podium.errors import PodiumError
from podium.samplers import EpochSampler, ShardedSampler

PREFETCH = 2  # batches each worker keeps ready: enough to hide a slow batch, few to hold in shared memory
MAX_AUTO_WORKERS = 16  # train.workers=auto never starts more: past that, memory grows and the GPU is rarely waiting
SHARED_MEMORY = "/dev/shm"  # where Linux workers hand batches over (torch's file_descriptor sharing)
# fork starts a worker in milliseconds and shares the memmap and the pipeline; workers touch no CUDA. Elsewhere
# spawn pickles the dataset (CachedDataset travels as its file's name, not its bytes).
START_METHOD = "fork" if sys.platform == "linux" else "spawn"


def available_cores() -> int:
    """The cores this process may run on (a container's or taskset's share where the system says so)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _shared_memory_free() -> int | None:
    """Free bytes in /dev/shm on Linux (Docker's default is 64 MB); None where batches are not handed over there."""
    if sys.platform != "linux" or not os.path.isdir(SHARED_MEMORY):
        return None
    return shutil.disk_usage(SHARED_MEMORY).free


def resolve_workers(setting: int | str, devices: int, batch_bytes: int) -> int:
    """Worker processes for a loader that has a per-image stage (`train.workers`).

    auto: one per core this process may use, less one for the training loop itself, shared between the
    train.devices processes (each runs its own loader), at most MAX_AUTO_WORKERS, and only as many as half the free
    shared memory holds with PREFETCH batches of `batch_bytes` each waiting there. A number is taken as given,
    unless its waiting batches cannot fit in the free shared memory at all: that would end in a bus error."""
    per_worker = PREFETCH * batch_bytes
    room = _shared_memory_free()
    if setting == "auto":
        n = min(MAX_AUTO_WORKERS, max(0, available_cores() // devices - 1))
        return n if room is None else min(n, room // (2 * per_worker))
    n = int(setting)
    if n and room is not None and n * per_worker > room:
        raise PodiumError(
            f"train.workers={n} keeps up to {n * PREFETCH} batches of {batch_bytes / 2**20:.0f} MB waiting in shared "
            f"memory ({SHARED_MEMORY}), which has {room / 2**20:.0f} MB free. Set train.workers=auto (it fits the "
            "workers to the room), lower train.workers or train.batch_size, or give the machine more shared memory "
            "(Docker: docker run --shm-size=8g).")
    return n


class EpochLoader(torch.utils.data.DataLoader):
    """A DataLoader whose epoch starts at its first batch rather than when iter() is called.

    Lightning calls iter() on the training loader before `set_epoch` at the first epoch of every fit, a resumed one
    included; a worker-backed iterator queues its first batches' items at once, so that epoch would be drawn from
    the sampler's previous epoch. In-process loading has always drawn at the first batch; this makes workers wait
    for it too."""

    def __iter__(self):
        return _StartsAtFirstBatch(self)


class _StartsAtFirstBatch:
    def __init__(self, loader: EpochLoader):
        self.loader, self.batches = loader, None

    def __iter__(self):
        return self

    def __len__(self) -> int:
        return len(self.loader)

    def __next__(self):
        if self.batches is None:
            self.batches = torch.utils.data.DataLoader.__iter__(self.loader)
        return next(self.batches)


class WithPositions(torch.utils.data.Dataset):
    """A dataset whose batches end with their items' positions: (images, targets, positions). Validation under DDP
    gathers the ranks' predictions and drops the shards' padding by them (podium.engine.distributed)."""

    def __init__(self, base):
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitems__(self, positions):
        return (*self.base.__getitems__(positions), torch.as_tensor(positions, dtype=torch.int64))


def make_loader(images, targets, indices, batch_size: int, seed: int | None,
                sampler: torch.utils.data.Sampler | None = None, pipeline=None,
                augment_seed: int | None = None, workers: int | str = 0, devices: int = 1,
                pin_memory: bool = False, names: np.ndarray | None = None, rank: int = 0, world: int = 1,
                positions: bool = False) -> EpochLoader:
    """Whole-batch reads from the memmap (see benchmarks/data_loading.py).

    Order: `sampler` (positions in `indices`, see podium.samplers) when given; else shuffled from (seed, epoch);
    else (seed None) in order. `pipeline` (podium.augment.ItemPipeline): the per-image CPU stage each batch goes
    through, augmenting from `augment_seed` (None: edge channel only, no augmentation), in `workers` processes
    (`train.workers`: a number or auto, see resolve_workers; `devices`: processes sharing the machine's cores);
    without a pipeline, batches are read here. `pin_memory`: batches from workers go to page-locked memory, for
    CUDA. `names[row]` (e.g. the images' paths) names an image the stage fails on.

    Multi-device (`world` processes > 1): this process, `rank`, reads its share of every epoch's order
    (podium.samplers.ShardedSampler: the same number of batches on every rank). `positions`: batches end with their
    items' positions in `indices` (WithPositions): a validation gathered over the ranks is put in order by them."""
    ds = CachedDataset(images, targets, np.asarray(indices))
    if sampler is None and seed is not None:
        sampler = EpochSampler(len(ds), seed)
    if world > 1:
        order = sampler if sampler is not None else torch.utils.data.SequentialSampler(ds)
        sampler = ShardedSampler(order, rank, world)
    parallel = {}
    if pipeline is not None:
        if augment_seed is not None:
            sampler = NumberedDraws(sampler if sampler is not None else torch.utils.data.SequentialSampler(ds))
        ds = AugmentedDataset(ds, pipeline, augment_seed, batch_size, names)
        channels = images.shape[-1] + (1 if pipeline.edges else 0)
        n = resolve_workers(workers, devices, batch_size * math.prod(images.shape[1:3]) * channels)
        if n:
            parallel = dict(num_workers=n, persistent_workers=True, prefetch_factor=PREFETCH, pin_memory=pin_memory,
                            multiprocessing_context=START_METHOD)
    if positions:
        ds = WithPositions(ds)
    # its own generator: the workers' base seed is never drawn from torch's global RNG (it would be once per
    # epoch in process, once per fit with workers); nothing podium runs in a worker draws from it anyway
    return EpochLoader(ds, batch_size=batch_size, sampler=sampler, shuffle=False, collate_fn=keep_batch,
                       generator=torch.Generator().manual_seed(0), **parallel)
