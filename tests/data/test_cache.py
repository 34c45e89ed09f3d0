"""The decode cache: rows match decoding by hand, reuse decodes nothing, any change rebuilds, nothing
stale or half-built is ever read; the dataset returns batches in the requested order."""

from __future__ import annotations

import json
import os
import pickle
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from podium.data import cache as cache_mod
from podium.data.cache import CachedDataset, batch_loader, build_cache, cache_folder, fingerprint, resolve_channels
from podium.data.images import fit_image, read_image
from podium.errors import PodiumError

SIZE = 16  # px: the cache side in these tests


def _write(path, seed: int, size=(20, 14), mode="RGB"):
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)
    return str(path)


@pytest.fixture
def files(tmp_path):
    """Six small images: PNG and JPEG, one grayscale, different sizes."""
    d = tmp_path / "img"
    d.mkdir()
    out = [_write(d / f"{i}.{'png' if i % 2 else 'jpg'}", i, size=(20 + i, 14 + 2 * i)) for i in range(5)]
    out.append(_write(d / "gray.png", 99, mode="L"))
    return out


def _by_hand(paths, size, resize, channels):
    return np.stack([fit_image(read_image(p, channels), size, resize) for p in paths])


def _no_decoding(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("decoded an image although a valid cache exists")

    monkeypatch.setattr(cache_mod, "read_image", refuse)


@pytest.mark.parametrize("workers,resize,channels", [(1, "resize", 3), (1, "pad", 1), (2, "resize", 3)])
def test_rows_match_decoding_by_hand(files, tmp_path, workers, resize, channels):
    c = build_cache(files, SIZE, resize, channels, tmp_path / "cache", progress=False, workers=workers)
    assert c.images.shape == (len(files), SIZE, SIZE, channels) and c.images.dtype == np.uint8
    assert not c.images.flags.writeable
    np.testing.assert_array_equal(np.asarray(c.images), _by_hand(files, SIZE, resize, channels))
    meta = json.loads((c.dir / "meta.json").read_text())
    assert meta["fingerprint"] == c.fingerprint and meta["count"] == len(files) and not c.reused


def test_second_build_reuses_and_decodes_nothing(files, tmp_path, monkeypatch):
    first = build_cache(files, SIZE, "resize", 3, tmp_path / "cache", progress=False)
    _no_decoding(monkeypatch)
    again = build_cache(files, SIZE, "resize", 3, tmp_path / "cache", progress=False)
    assert again.reused and again.dir == first.dir and again.fingerprint == first.fingerprint
    np.testing.assert_array_equal(np.asarray(again.images), np.asarray(first.images))


def test_changed_file_rebuilds_with_new_content(files, tmp_path):
    first = build_cache(files, SIZE, "resize", 3, tmp_path / "cache", progress=False)
    before = np.array(first.images)
    st = os.stat(files[2])
    _write(files[2], seed=1234, size=(22, 18))  # same name and size, other pixels
    os.utime(files[2], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    second = build_cache(files, SIZE, "resize", 3, tmp_path / "cache", progress=False)
    assert second.fingerprint != first.fingerprint and second.dir != first.dir and not second.reused
    np.testing.assert_array_equal(np.asarray(second.images), _by_hand(files, SIZE, "resize", 3))
    assert not np.array_equal(second.images[2], before[2])
    np.testing.assert_array_equal(np.asarray(second.images[:2]), before[:2])


@pytest.mark.parametrize("change", [{"image_size": 8}, {"resize": "pad"}, {"channels": 1}])
def test_settings_change_rebuilds(files, tmp_path, change):
    base = {"image_size": SIZE, "resize": "resize", "channels": 3}
    first = build_cache(files, cache_dir=tmp_path / "cache", progress=False, **base)
    args = base | change
    second = build_cache(files, cache_dir=tmp_path / "cache", progress=False, **args)
    assert second.fingerprint != first.fingerprint and second.dir != first.dir and not second.reused
    np.testing.assert_array_equal(np.asarray(second.images), _by_hand(files, args["image_size"], args["resize"],
                                                                      args["channels"]))


def test_center_crop_is_decoded_and_fingerprinted(files, tmp_path):
    from podium.data.images import crop_center, fit_image, read_image

    whole = build_cache(files, SIZE, "resize", 3, tmp_path / "cache", progress=False)
    crop = build_cache(files, SIZE, "resize", 3, tmp_path / "cache", progress=False, center_crop=0.5)
    assert crop.fingerprint != whole.fingerprint and crop.dir != whole.dir and "-crop0.5-" in crop.dir.name
    assert whole.fingerprint == fingerprint(files, SIZE, "resize", 3)  # no crop: caches built before still match
    by_hand = np.stack([fit_image(crop_center(read_image(f, 3), 0.5), SIZE, "resize") for f in files])
    np.testing.assert_array_equal(np.asarray(crop.images), by_hand)
    assert crop_center(np.zeros((20, 14, 1)), 0.5).shape == (10, 7, 1)


def test_leftover_building_folder_is_never_read(files, tmp_path):
    """A complete-looking folder under a temporary name (a build that died before its rename) is ignored."""
    cache_dir = tmp_path / "cache"
    fp = fingerprint(files, SIZE, "resize", 3)
    final = cache_folder(cache_dir, len(files), SIZE, "resize", 3, fp)
    fake = cache_dir / f".building-{final.name}@otherhost@1@abcd"
    fake.mkdir(parents=True)
    np.save(fake / "images.npy", np.full((len(files), SIZE, SIZE, 3), 7, np.uint8))
    (fake / "meta.json").write_text(json.dumps(cache_mod._meta(fp, (len(files), SIZE, SIZE, 3), SIZE, "resize", 3)))
    c = build_cache(files, SIZE, "resize", 3, cache_dir, progress=False)
    assert not c.reused and c.dir == final
    np.testing.assert_array_equal(np.asarray(c.images), _by_hand(files, SIZE, "resize", 3))


@pytest.mark.parametrize("damage", ["other fingerprint", "no meta", "truncated images", "other shape"])
def test_folder_with_mismatching_meta_is_rebuilt(files, tmp_path, damage):
    cache_dir = tmp_path / "cache"
    first = build_cache(files, SIZE, "resize", 3, cache_dir, progress=False)
    meta_file, npy = first.dir / "meta.json", first.dir / "images.npy"
    meta = json.loads(meta_file.read_text())
    del first
    if damage == "other fingerprint":
        meta_file.write_text(json.dumps(meta | {"fingerprint": "0" * 64}))
    elif damage == "no meta":
        meta_file.unlink()
    elif damage == "truncated images":
        os.truncate(npy, npy.stat().st_size // 2)
    elif damage == "other shape":
        np.save(npy, np.zeros((len(files), SIZE, SIZE, 1), np.uint8))
    c = build_cache(files, SIZE, "resize", 3, cache_dir, progress=False)
    assert not c.reused
    np.testing.assert_array_equal(np.asarray(c.images), _by_hand(files, SIZE, "resize", 3))
    assert [p.name for p in cache_dir.iterdir()] == [c.dir.name]  # the damaged one was replaced, not kept


def test_dead_builds_are_cleaned_up_and_live_ones_kept(files, tmp_path):
    cache_dir = tmp_path / "cache"
    host = socket.gethostname()
    dead_pid = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout.strip()
    dead = cache_dir / f".building-x@{host}@{dead_pid}@0000"
    live = cache_dir / f".building-y@{host}@{os.getpid()}@0000"
    for d in (dead, live):
        d.mkdir(parents=True)
    build_cache(files, SIZE, "resize", 3, cache_dir, progress=False)
    assert not dead.exists() and live.exists()


def test_concurrent_build_keeps_the_first_published(files, tmp_path, monkeypatch):
    """Another process publishes the same cache while this one is decoding: this one returns theirs."""
    cache_dir = tmp_path / "cache"
    real = cache_mod.read_image
    state = {}

    def read_while_another_builds(path, channels):
        if "other" not in state:
            state["other"] = None  # the nested build below decodes with the real function
            state["other"] = build_cache(files, SIZE, "resize", 3, cache_dir, progress=False)
            with open(state["other"].dir / "winner", "w"):
                pass
        return real(path, channels)

    monkeypatch.setattr(cache_mod, "read_image", read_while_another_builds)
    c = build_cache(files, SIZE, "resize", 3, cache_dir, progress=False)
    assert c.dir == state["other"].dir and (c.dir / "winner").exists()
    assert [p.name for p in cache_dir.iterdir()] == [c.dir.name]  # our own temporary folder is gone
    np.testing.assert_array_equal(np.asarray(c.images), _by_hand(files, SIZE, "resize", 3))


@pytest.mark.parametrize("workers", [1, 2])
def test_corrupt_file_names_it(files, tmp_path, workers):
    bad = tmp_path / "img" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    cache_dir = tmp_path / "cache"
    with pytest.raises(PodiumError, match="broken.png") as err:
        build_cache(files + [str(bad)], SIZE, "resize", 3, cache_dir, progress=False, workers=workers)
    assert "podium data check" in str(err.value)
    assert list(cache_dir.iterdir()) == []  # nothing half-built left behind


def test_keep_policy_with_wrong_size_names_file(files, tmp_path):
    with pytest.raises(PodiumError, match=r"0\.jpg.*data\.resize"):
        build_cache(files, SIZE, "keep", 3, tmp_path / "cache", progress=False)


def test_missing_file_names_it(files, tmp_path):
    with pytest.raises(PodiumError, match="nope.png"):
        build_cache(files + [str(tmp_path / "nope.png")], SIZE, "resize", 3, tmp_path / "cache", progress=False)


def test_resolve_channels(files, tmp_path):
    grays = [_write(tmp_path / f"g{i}.png", i, mode="L") for i in range(3)]
    assert resolve_channels(grays, "auto") == 1
    assert resolve_channels(grays + files[:1], "auto") == 3
    assert resolve_channels(grays, 3) == 3 and resolve_channels(files, 1) == 1


# -------------------------------------------------------------------------------------------- dataset


@pytest.fixture
def numbered(tmp_path):
    """A 10-row cache file whose row r is filled with the value r."""
    path = tmp_path / "rows.npy"
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(10, 4, 5, 3))
    arr[:] = np.arange(10, dtype=np.uint8)[:, None, None, None]
    del arr
    return np.load(path, mmap_mode="r")


@pytest.mark.parametrize("kind", ["memmap", "in memory", "memmap slice"])
def test_getitems_returns_rows_in_requested_order(numbered, kind):
    images = {"memmap": numbered, "in memory": np.array(numbered), "memmap slice": numbered[2:]}[kind]
    base = {"memmap": 0, "in memory": 0, "memmap slice": 2}[kind]
    targets = np.arange(len(images)) * 10
    indices = np.array([7, 2, 5, 4, 0, 6])
    ds = CachedDataset(images, targets, indices)
    assert (ds._file is not None) == (kind == "memmap")  # pread only where the offset is known to be right
    x, y = ds.__getitems__([5, 0, 3, 3, 1])
    rows = indices[[5, 0, 3, 3, 1]]
    assert x.shape == (5, 3, 4, 5) and x.dtype == torch.uint8
    assert x[:, :, :, :].flatten(1).unique(dim=1).shape[1] == 1  # each image is one value throughout
    assert x[:, 0, 0, 0].tolist() == (rows + base).tolist()
    assert y.dtype == torch.int64 and y.tolist() == (rows * 10).tolist()
    one, target = ds[2]
    assert one.shape == (3, 4, 5) and int(one[0, 0, 0]) == 5 + base and int(target) == 50


def test_multilabel_targets_come_back_as_float(numbered):
    multi_hot = np.eye(10, 4, dtype=bool)
    x, y = CachedDataset(numbered, multi_hot, np.arange(10)).__getitems__([3, 1])
    assert y.dtype == torch.float32 and y.tolist() == multi_hot[[3, 1]].astype(float).tolist()
    assert CachedDataset(numbered, None, np.arange(10)).__getitems__([0])[1] is None


def test_loader_order_is_seeded_and_reproducible(numbered):
    ds = CachedDataset(numbered, np.arange(10), np.arange(10))

    def two_epochs(seed):
        loader = batch_loader(ds, batch_size=4, shuffle=True, seed=seed)
        assert isinstance(loader, torch.utils.data.DataLoader) and loader.num_workers == 0
        epochs = []
        for _ in range(2):
            seen = []
            for x, y in loader:
                assert x.shape[1:] == (3, 4, 5) and x[:, 0, 0, 0].tolist() == y.tolist()
                seen += y.tolist()
            epochs.append(seen)
        return epochs

    a, b = two_epochs(1), two_epochs(1)
    assert a == b and sorted(a[0]) == list(range(10)) and a[0] != a[1]
    assert two_epochs(2) != a
    in_order = [y.tolist() for _, y in batch_loader(ds, 4, shuffle=False, seed=0, drop_last=True)]
    assert in_order == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_file_backed_dataset_pickles_as_a_file_name(numbered):
    ds = CachedDataset(numbered, None, np.arange(10))
    blob = pickle.dumps(ds)
    assert len(blob) < numbered.nbytes  # the pixels are not copied into the pickle
    back = pickle.loads(blob)
    assert torch.equal(back.__getitems__([9, 1])[0], ds.__getitems__([9, 1])[0])


def test_forked_decoders_survive_opencv_threads_used_before(files, tmp_path):
    # albumentations' per-image ops run OpenCV in the training process; a decode worker forked after OpenCV had
    # started its thread pool hung for good (seen in the suite). podium keeps OpenCV single-threaded.
    script = f"""
import cv2, numpy as np
from albumentations import GaussianBlur
from podium.data.cache import build_cache
big = np.random.default_rng(0).integers(0, 255, (3000, 3000, 3), dtype=np.uint8)
cv2.resize(big, (1500, 1500), interpolation=cv2.INTER_AREA)
GaussianBlur(p=1.0)(image=big)
build_cache({[str(p) for p in files]!r}, 16, "resize", 3, {str(tmp_path / "cache")!r}, progress=False, workers=2)
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_an_unwritable_cache_folder_says_to_set_data_cache_dir(files, tmp_path, read_only):
    folder = tmp_path / "ro"
    folder.mkdir()
    read_only(folder)
    for cache_dir in (folder, folder / "cache"):  # the folder itself, or one to be made inside it
        with pytest.raises(PodiumError) as exc:
            build_cache(files, 8, "resize", 3, cache_dir, progress=False, workers=1)
        text = str(exc.value)
        assert f"Cannot write '{cache_dir}'" in text and "set data.cache_dir=" in text
    assert list(folder.iterdir()) == []


def test_a_file_in_place_of_the_cache_folder_says_to_set_data_cache_dir(files, tmp_path):
    (tmp_path / "cache").write_text("not a folder")
    with pytest.raises(PodiumError, match=r"'.*cache': a file stands where a folder is needed\. "
                                          r"Move that file, or write elsewhere: set data\.cache_dir="):
        build_cache(files, 8, "resize", 3, tmp_path / "cache", progress=False, workers=1)
    with pytest.raises(PodiumError,
                       match=r"Cannot write '.*cache/sub': a part of the path is a file.*set data\.cache_dir="):
        build_cache(files, 8, "resize", 3, tmp_path / "cache" / "sub", progress=False, workers=1)


def test_the_files_fingerprint_is_the_file_list_without_the_decode_settings(files, tmp_path):
    """What a run records as the images it trained on (RunDir.write_data): another size shares it, a changed file
    does not."""
    small = build_cache(files, SIZE, "resize", 3, tmp_path / "cache", progress=False)
    large = build_cache(files, 2 * SIZE, "pad", 1, tmp_path / "cache", progress=False)
    assert small.files == large.files and small.fingerprint != large.fingerprint and len(small.files) == 64
    assert build_cache(files, SIZE, "resize", 3, tmp_path / "cache", progress=False).files == small.files  # reused
    _write(files[0], 7, size=(30, 30))  # rewritten: another size on disk
    assert build_cache(files, SIZE, "resize", 3, tmp_path / "cache", progress=False).files != small.files
    assert build_cache(files[:-1], SIZE, "resize", 3, tmp_path / "cache", progress=False).files != small.files
