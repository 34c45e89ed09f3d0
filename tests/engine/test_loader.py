"""engine/loader.py: the per-image stage in worker processes gives the in-process batches, epoch by epoch, also when
an epoch's iteration begins before its set_epoch (as Lightning does); how many workers train.workers starts; what
travels to a worker."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

import podium.engine.loader as loader_module
from podium.augment import AugmentedDataset, Draw, ImageStageError, ItemPipeline, eval_pipeline, train_pipeline
from podium.config import AugmentConfig
from podium.data.cache import CachedDataset
from podium.engine.loader import make_loader, resolve_workers
from podium.errors import PodiumError
from podium.samplers import WeightedEpochSampler

MB = 2**20


def _memmap(tmp_path, n: int = 40, side: int = 24, channels: int = 3) -> np.ndarray:
    """Random uint8 images in a .npy file, opened as the decode cache is: a read-only memmap."""
    path = tmp_path / "images.npy"
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, side, side, channels))
    arr[:] = np.random.default_rng(0).integers(0, 256, size=arr.shape, dtype=np.uint8)
    arr.flush()
    del arr
    return np.load(path, mmap_mode="r")


def _epochs(loader, epochs) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    out = []
    for e in epochs:
        batches = iter(loader)  # Lightning calls iter() before set_epoch at a fit's first epoch (and a resume's)
        loader.sampler.set_epoch(e)
        out.append([(x.clone(), y.clone()) for x, y in batches])
    return out


def test_augmented_batches_do_not_depend_on_the_number_of_workers(tmp_path):
    images = _memmap(tmp_path)
    targets = np.arange(40) % 4
    rows = np.arange(3, 40)  # 37 rows, batches of 8: the last one is short
    pipe = train_pipeline(AugmentConfig(preset="heavy"), 3)

    def run(workers: int, epochs: list[int]):
        sampler = WeightedEpochSampler(np.ones(len(rows)), seed=3)  # with replacement: an image may come twice
        loader = make_loader(images, targets, rows, 8, None, sampler=sampler, pipeline=pipe, augment_seed=11,
                             workers=workers)
        assert loader.num_workers == workers and loader.persistent_workers == (workers > 0)
        return _epochs(loader, epochs)

    reference = run(0, [0, 1, 2])
    assert [len(e) for e in reference] == [5, 5, 5] and len(reference[0][-1][0]) == 5
    for (xa, ya), (xb, yb) in zip(reference[0], reference[1]):
        assert not torch.equal(xa, xb)  # each epoch its own order and augmentation
    raw = torch.from_numpy(np.array(images)).permute(0, 3, 1, 2)
    first = list(WeightedEpochSampler(np.ones(len(rows)), seed=3))[:8]
    assert not torch.equal(reference[0][0][0], raw[rows[first]])  # the heavy stage changed the images
    assert torch.equal(reference[0][0][1], torch.as_tensor(targets[rows[first]]))
    for workers, epochs in [(2, [0, 1, 2]), (1, [1, 2])]:  # [1, 2]: a fit resumed at epoch 1
        got = run(workers, epochs)
        for e, batches in zip(epochs, got):
            assert len(batches) == len(reference[e])
            for (xa, ya), (xb, yb) in zip(reference[e], batches):
                assert torch.equal(xa, xb) and torch.equal(ya, yb), (workers, e)


def test_workers_run_only_a_per_image_stage(tmp_path):
    images = _memmap(tmp_path, channels=1)
    plain = make_loader(images, None, np.arange(40), 16, seed=0, workers=4)
    assert plain.num_workers == 0  # whole-batch reads are faster here than handed over from a worker
    edges = eval_pipeline(AugmentConfig(edges=True), 1)
    batches = {}
    for workers in (0, 2):
        loader = make_loader(images, None, np.arange(40), 16, None, pipeline=edges, workers=workers, pin_memory=False)
        assert loader.num_workers == workers
        batches[workers] = [x for x, _ in loader]
    assert [x.shape[1] for x in batches[2]] == [2, 2, 2]  # the edge channel, added in the workers
    assert all(torch.equal(a, b) for a, b in zip(batches[0], batches[2]))


class FailsOnWhite:
    """Stands in for albumentations' Compose: fails on an image whose first pixel is 255."""

    def set_random_seed(self, seed):
        pass

    def __call__(self, image):
        if image[0, 0, 0] == 255:
            raise ValueError("cannot warp this one")
        return {"image": image}


def test_an_image_failing_in_a_worker_is_named(tmp_path):
    images = np.zeros((12, 8, 8, 1), np.uint8)
    images[9, 0, 0] = 255
    pipe = ItemPipeline(None, 1, edges=False)
    pipe.compose = FailsOnWhite()
    names = np.array([f"train/{i}.png" for i in range(12)], dtype=object)
    loader = make_loader(images, None, np.arange(12), 4, seed=0, pipeline=pipe, augment_seed=1, workers=2,
                         names=names)
    with pytest.raises(ImageStageError, match=r"(?s)worker process.*row 9 of the decode cache \(train/9.png\)"):
        list(loader)


def test_spawned_workers_give_the_same_batches(tmp_path, monkeypatch):
    """Where fork is not used (macOS, Windows), workers get the dataset pickled; batches stay the same."""
    images = _memmap(tmp_path, n=24)
    pipe = train_pipeline(AugmentConfig(preset="medium"), 3)
    ref = make_loader(images, np.arange(24), np.arange(24), 8, seed=5, pipeline=pipe, augment_seed=2)
    monkeypatch.setattr(loader_module, "START_METHOD", "spawn")
    spawned = make_loader(images, np.arange(24), np.arange(24), 8, seed=5, pipeline=pipe, augment_seed=2,
                          workers=1)
    assert spawned.multiprocessing_context.get_start_method() == "spawn"
    for a, b in zip(_epochs(ref, [0, 1]), _epochs(spawned, [0, 1])):
        assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))


def test_the_dataset_travels_to_a_worker_without_its_images(tmp_path):
    images = _memmap(tmp_path, n=400, side=64)  # 4.9 MB
    ds = AugmentedDataset(CachedDataset(images, np.arange(400), np.arange(400)),
                          train_pipeline(AugmentConfig(preset="heavy"), 3), seed=11, batch_size=8)
    blob = pickle.dumps(ds)
    assert len(blob) < 100_000  # the memmap travels as its file's name (spawn, forkserver), the pipeline ~43 kB
    draws = [Draw(1, 8 + k, 5 * k) for k in range(8)]
    x, y = ds.__getitems__(draws)
    x2, y2 = pickle.loads(blob).__getitems__(draws)
    assert torch.equal(x, x2) and torch.equal(y, y2)


def test_auto_workers_follow_cores_devices_and_shared_memory(monkeypatch):
    monkeypatch.setattr(loader_module, "_shared_memory_free", lambda: None)
    for cores, devices, expect in [(1, 1, 0), (2, 1, 1), (16, 1, 15), (16, 2, 7), (64, 1, 16)]:
        monkeypatch.setattr(loader_module, "available_cores", lambda c=cores: c)
        assert resolve_workers("auto", devices, 10 * MB) == expect, (cores, devices)
    assert resolve_workers(40, 1, 10 * MB) == 40  # a number is taken as given
    monkeypatch.setattr(loader_module, "_shared_memory_free", lambda: 100 * MB)
    assert resolve_workers("auto", 1, 10 * MB) == 2  # 2 workers x 2 batches x 10 MB: under half of the 100 MB
    assert resolve_workers(5, 1, 10 * MB) == 5  # 100 MB: fits
    with pytest.raises(PodiumError, match=r"train.workers=6 keeps up to 12 batches of 10 MB .* 100 MB free"):
        resolve_workers(6, 1, 10 * MB)
    assert resolve_workers(0, 1, 10**12) == 0
    assert resolve_workers("auto", 1, 10**12) == 0  # no room at all: read in process
