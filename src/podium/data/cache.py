"""The decode cache: every image decoded once, fitted to the model's size, stored as uint8 on disk.

A cache is one folder under `cache_dir` holding `images.npy` (N x H x W x C uint8, rows in the order of
the paths it was built from) and `meta.json`. Its name carries a fingerprint of the file list (each path,
its size, its mtime) and of the decode settings, so a changed file or setting means another folder: a
stale cache is never read. A folder is built under a temporary name and renamed into place only when
complete; a folder whose meta.json does not match what is asked for is never read.

Training reads it with `CachedDataset`: whole batches per call, rows read from the file with `pread`
into the batch tensor, so memory is bounded by the batch, not by the data set (S0's single .npy in RAM
needed 15 GB). `benchmarks/data_loading.py` measures it against ImageFolder + PIL.
"""

from __future__ import annotations

import hashlib
import json
import math
import mmap
import multiprocessing
import os
import secrets
import shutil
import socket
import sys
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from podium.data.images import (
    GRAY_MODES,
    ImageReadError,
    crop_center,
    fit_image,
    read_image,
)
from podium.errors import PodiumError, fmt_list
from podium.io import atomic_write_json, process_alive, write_error

CACHE_FORMAT = 1  # bump when the layout or the decoding changes: every older cache then stops matching
RESIZE_POLICIES = ("resize", "pad", "keep")
CHUNK_MAX = 256  # images per worker task: the progress bar moves at least this often
_BUILDING = ".building-"  # prefix of folders being built (never read)
_STALE = ".stale-"  # prefix of invalid folders moved aside before deletion (never read)
_FIX = "Run `podium data check CONFIG` to list every unreadable image, then fix or remove those files."
_WRITABLE = "set data.cache_dir=/a/writable/folder (its default is <output_dir>/cache)"


@dataclass(frozen=True)
class DecodedImages:
    images: np.ndarray  # read-only np.memmap, N x H x W x C uint8, rows in the order of the paths
    fingerprint: str  # sha256 hex of the file list and the decode settings
    dir: Path  # the cache folder (images.npy + meta.json)
    reused: bool  # True when an existing cache was returned without decoding
    files: str = ""  # sha256 hex of the file list alone (paths, sizes, mtimes): what a run records as its images


# ------------------------------------------------------------------------------------------- channels


def resolve_channels(paths: Sequence[str | Path], setting: str | int) -> int:
    """1 or 3. `auto` is 1 when every file's header mode is grayscale, else 3; only headers are read,
    and the scan stops at the first colour image (so colour data sets cost one header)."""
    if setting in (1, 3):
        return int(setting)
    if setting != "auto":
        raise PodiumError(f"data.channels must be auto, 1 or 3 (got {setting!r}).")
    for path in paths:
        try:
            with Image.open(path) as img:
                mode = img.mode
        except FileNotFoundError:
            raise PodiumError(f"Image '{path}' does not exist. {_FIX}") from None
        except Exception as exc:  # PIL raises a zoo of errors on garbage
            raise PodiumError(f"Cannot read the header of '{path}' ({type(exc).__name__}: {exc}). {_FIX}") from None
        if mode not in GRAY_MODES:
            return 3
    return 1 if len(paths) > 0 else 3


# ----------------------------------------------------------------------------------------- fingerprint


def fingerprint(paths: Sequence[str | Path], image_size: int, resize: str, channels: int,
                center_crop: float = 1.0) -> str:
    """sha256 over the decode settings and, per file in order, its absolute path, size and mtime (ns).
    A file rewritten in place with the same size and mtime is not noticed (rsync -t can do that)."""
    return fingerprints(paths, image_size, resize, channels, center_crop)[0]


def fingerprints(paths: Sequence[str | Path], image_size: int, resize: str, channels: int,
                 center_crop: float = 1.0) -> tuple[str, str]:
    """(the cache's fingerprint, the files' alone), from one stat of each file: the second is the first without
    the decode settings, so runs at another image size on the same files share it (a run's data version)."""
    crop = f" crop{center_crop!r}" if center_crop < 1 else ""  # absent when off: older caches still match
    h = hashlib.sha256(f"podium-cache {CACHE_FORMAT} {image_size} {resize} {channels}{crop}\n".encode())
    files = hashlib.sha256(b"podium-files 1\n")
    for path in paths:
        path = os.path.abspath(path)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise PodiumError(f"Image '{path}' does not exist. {_FIX}") from None
        line = f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode()
        h.update(line)
        files.update(line)
    return h.hexdigest(), files.hexdigest()


def cache_folder(cache_dir: Path, n: int, image_size: int, resize: str, channels: int, fp: str,
                 center_crop: float = 1.0) -> Path:
    """<cache_dir>/<N>x<size>-<resize>[-crop<f>]-c<channels>-<fingerprint[:16]>: readable when listing the folder."""
    crop = f"-crop{center_crop:g}" if center_crop < 1 else ""
    return Path(cache_dir) / f"{n}x{image_size}-{resize}{crop}-c{channels}-{fp[:16]}"


# ---------------------------------------------------------------------------------------------- build


def build_cache(
    paths: Sequence[str | Path],
    image_size: int,
    resize: str,
    channels: int,
    cache_dir: Path,
    progress: bool = True,
    workers: int | None = None,
    center_crop: float = 1.0,
) -> DecodedImages:
    """Decode `paths` into a cache under `cache_dir`, or return the complete cache that already matches.

    workers: decoding processes; default one per available core, and none (decode here) for under
    64 images, where starting processes costs more than decoding. center_crop: the central fraction of each
    side kept before fitting (data.center_crop; 1 = all). Two processes building the same cache
    at once both decode; the first to finish publishes it and the other returns that one.
    """
    if resize not in RESIZE_POLICIES:
        raise PodiumError(f"data.resize must be one of {', '.join(RESIZE_POLICIES)} (got {resize!r}).")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3 (got {channels!r}); resolve 'auto' with resolve_channels")
    if len(paths) == 0:
        raise ValueError("build_cache needs at least one image path")
    paths = [os.fspath(p) for p in paths]
    shape = (len(paths), image_size, image_size, channels)
    fp, files = fingerprints(paths, image_size, resize, channels, center_crop)
    final = cache_folder(cache_dir, len(paths), image_size, resize, channels, fp, center_crop)
    found = _open_if_valid(final, fp, shape)
    if found is not None:
        return DecodedImages(found, fp, final, reused=True, files=files)

    cache_dir = Path(cache_dir)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        _remove_abandoned(cache_dir)
        _check_free_space(cache_dir, math.prod(shape))
        tmp = cache_dir / f"{_BUILDING}{final.name}@{socket.gethostname()}@{os.getpid()}@{secrets.token_hex(4)}"
        tmp.mkdir()
    except OSError as exc:
        raise _unwritable(cache_dir, exc) from None
    try:
        npy = tmp / "images.npy"
        try:
            np.lib.format.open_memmap(npy, mode="w+", dtype=np.uint8, shape=shape)  # sparse until written
        except OSError as exc:
            raise _unwritable(cache_dir, exc) from None
        _decode_all(paths, npy, image_size, resize, channels, progress, workers, center_crop)
        with open(npy, "rb+") as f:
            os.fsync(f.fileno())  # a machine that dies after the rename must not leave zeros behind a valid meta
        atomic_write_json(tmp / "meta.json", {**_meta(fp, shape, image_size, resize, channels),
                                              "center_crop": center_crop}, hint=_WRITABLE)
        _publish(tmp, final, fp, shape)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already when published
    images = _open_if_valid(final, fp, shape)
    if images is None:  # someone removed or damaged it between our rename and this read
        raise PodiumError(f"The decode cache '{final}' changed while it was being opened. Run the command again.")
    return DecodedImages(images, fp, final, reused=False, files=files)


def _unwritable(cache_dir: Path, exc: OSError) -> PodiumError:
    """The PodiumError for a decode cache folder that cannot be made or written: names it and the key to set."""
    error = write_error(cache_dir, exc, _WRITABLE)
    if error is not None:
        return error
    return PodiumError(f"Cannot make the decode cache in '{cache_dir}' ({exc.strerror or exc}). "
                       f"{_WRITABLE[0].upper()}{_WRITABLE[1:]}.")


def _meta(fp: str, shape: tuple, image_size: int, resize: str, channels: int) -> dict:
    return {"format": CACHE_FORMAT, "fingerprint": fp, "count": shape[0], "shape": list(shape),
            "dtype": "uint8", "image_size": image_size, "resize": resize, "channels": channels}


def _open_if_valid(folder: Path, fp: str, shape: tuple) -> np.ndarray | None:
    """The folder's images as a read-only memmap when its meta and file match exactly; else None."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        if (meta.get("format"), meta.get("fingerprint"), meta.get("count"), meta.get("shape")) != (
            CACHE_FORMAT, fp, shape[0], list(shape)):
            return None
        images = np.load(folder / "images.npy", mmap_mode="r")
    except (OSError, ValueError):  # missing, unreadable, truncated, not JSON, not .npy
        return None
    if images.shape != shape or images.dtype != np.uint8:
        return None
    return images


def _publish(tmp: Path, final: Path, fp: str, shape: tuple) -> None:
    """Rename the finished folder into place. If another process published first, keep theirs; if an
    invalid folder squats the name, move it aside and delete it."""
    for _ in range(3):
        try:
            os.rename(tmp, final)  # atomic; fails when `final` exists and is not empty
            return
        except OSError:
            if not final.exists():
                raise
        if _open_if_valid(final, fp, shape) is not None:
            return  # another builder won; `tmp` is removed by the caller
        aside = final.parent / f"{_STALE}{final.name}-{secrets.token_hex(4)}"
        try:
            os.rename(final, aside)
        except FileNotFoundError:
            pass  # someone else moved it first
        shutil.rmtree(aside, ignore_errors=True)
    raise PodiumError(f"Could not put the decode cache in place at '{final}'. Remove that folder and run again.")


def _remove_abandoned(cache_dir: Path) -> None:
    """Delete folders left by builds that died (their process on this host is gone) and stale folders."""
    host = socket.gethostname()
    for entry in cache_dir.iterdir():
        if entry.name.startswith(_STALE):
            shutil.rmtree(entry, ignore_errors=True)
        elif entry.name.startswith(_BUILDING):
            parts = entry.name.split("@")  # .building-<name>@<host>@<pid>@<random>
            if len(parts) == 4 and parts[1] == host and parts[2].isdigit() and not process_alive(int(parts[2])):
                shutil.rmtree(entry, ignore_errors=True)


def _check_free_space(cache_dir: Path, nbytes: int) -> None:
    free = shutil.disk_usage(cache_dir).free
    if free < nbytes + 256 * 2**20:  # 256 MiB to spare for everything else on that disk
        raise PodiumError(
            f"The decode cache needs {nbytes / 1e9:.1f} GB in '{cache_dir}', but only {free / 1e9:.1f} GB is free. "
            "Set data.cache_dir to a disk with room, lower data.image_size, or delete old caches in that folder.")


def _decode_all(paths: list[str], npy: Path, image_size: int, resize: str, channels: int, progress: bool,
                workers: int | None, center_crop: float = 1.0) -> None:
    n = len(paths)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    workers = workers if workers is not None else (cores if n >= 64 else 1)
    workers = max(1, min(workers, n))
    # ~4 chunks per worker so a slow chunk does not leave a core idle at the end; at most CHUNK_MAX each
    chunk = max(1, min(CHUNK_MAX, math.ceil(n / (4 * workers))))
    starts = range(0, n, chunk)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), disable=not progress, transient=False) as bar:
        task = bar.add_task(f"Decoding {n:,} images ({image_size}px, {resize})", total=n)
        if workers == 1:
            for s in starts:
                _raise_failures(_decode_chunk(str(npy), paths[s:s + chunk], s, image_size, resize, channels,
                                              center_crop))
                bar.advance(task, min(chunk, n - s))
            return
        # fork starts workers in milliseconds and they only touch numpy/PIL/OpenCV; spawn (macOS, Windows)
        # re-imports torch in every worker (~3 s each)
        ctx = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker)
        try:
            pending = {pool.submit(_decode_chunk, str(npy), paths[s:s + chunk], s, image_size, resize, channels,
                                   center_crop):
                       min(chunk, n - s) for s in starts}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    _raise_failures(fut.result())
                    bar.advance(task, pending.pop(fut))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # running chunks finish (<= CHUNK_MAX images)


def _init_worker() -> None:
    import cv2

    cv2.setNumThreads(1)  # one process per core already; OpenCV's own threads would only contend


def _decode_chunk(npy: str, paths: list[str], first_row: int, image_size: int, resize: str,
                  channels: int, center_crop: float = 1.0) -> list[tuple[str, str]]:
    """Decode paths into rows first_row.. of the cache file; return (path, why) for each that failed.
    Usually runs in a worker process: it maps the file itself and writes only its own rows."""
    rows = np.load(npy, mmap_mode="r+")
    failures = []
    for k, path in enumerate(paths):
        try:
            arr = crop_center(read_image(path, channels), center_crop)
        except ImageReadError as exc:
            failures.append((path, f"{exc.kind}: {exc.detail}"))
            continue
        if resize == "keep" and arr.shape[:2] != (image_size, image_size):
            h, w = arr.shape[:2]
            failures.append((path, f"is {w}x{h}, but data.resize=keep needs {image_size}x{image_size}"))
            continue
        rows[first_row + k] = fit_image(arr, image_size, resize)
    del rows  # unmap: the pages stay in the page cache and reach the disk from there
    return failures


def _raise_failures(failures: list[tuple[str, str]]) -> None:
    if not failures:
        return
    listed = fmt_list([f"'{path}' ({why})" for path, why in failures], limit=5)
    if any("data.resize=keep" in why for _, why in failures):
        hint = "Set data.resize=resize or data.resize=pad, or make every image data.image_size square."
    else:
        hint = _FIX
    raise PodiumError(f"Cannot decode {len(failures)} image(s) into the cache: {listed}. {hint}")


# -------------------------------------------------------------------------------------------- reading


class CachedDataset(torch.utils.data.Dataset):
    """Rows `indices` of a decoded-images array (a fold's training rows, say), with their targets.

    images: N x H x W x C uint8 (DecodedImages.images, or any array); targets: None or indexed by the
    same rows as `images` (N, or N x K for multi-label); indices: the rows this dataset serves, in order.
    `__getitems__` returns a whole batch; the DataLoader must then pass it through (see `batch_loader`).
    Batches are uint8 B x C x H x W views of channels-last memory (`.contiguous()` makes a copy when
    needed); integer targets come back as int64, float and bool targets (multi-hot) as float32.
    """

    def __init__(self, images: np.ndarray, targets: np.ndarray | None, indices: np.ndarray):
        if images.ndim != 4 or images.dtype != np.uint8:
            raise ValueError(f"images must be N x H x W x C uint8 (got {images.shape} {images.dtype})")
        indices = np.asarray(indices, dtype=np.int64)
        if indices.ndim != 1 or (len(indices) and (indices.min() < 0 or indices.max() >= len(images))):
            raise ValueError(f"indices must be a 1-D array of rows in 0..{len(images) - 1}")
        if targets is not None:
            targets = np.asarray(targets)
            if len(targets) != len(images) or targets.dtype.kind not in "iubf":
                raise ValueError(f"targets must be numbers, one row per image ({len(images)}); got "
                                 f"{targets.shape} {targets.dtype}")
        self.images = images
        self.targets = targets
        self.indices = indices
        self._file = _file_span(images)  # (path, byte offset of row 0) when rows can be read with pread

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        x, y = self.__getitems__([i])
        return x[0], None if y is None else y[0]

    def __getitems__(self, positions: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor | None]:
        rows = self.indices[np.asarray(positions, dtype=np.int64)]
        # numpy's buffer, not torch.empty: glibc kept ~100 MB more of torch's freed 12 MB batches (measured)
        out = np.empty((len(rows), *self.images.shape[1:]), dtype=np.uint8)
        order = np.argsort(rows, kind="stable")  # ascending file offsets: sequential-ish disk access
        if self._file is not None:
            path, offset = self._file
            row_bytes = math.prod(self.images.shape[1:])
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                raise PodiumError(f"The decode cache file '{path}' was deleted while it was being read. "
                                  "Run the command again to rebuild it.") from None
            try:
                for k in order:
                    _read_exact(fd, out[k], offset + int(rows[k]) * row_bytes, path)
            finally:
                os.close(fd)
        else:
            out[order] = self.images[rows[order]]
        y = None if self.targets is None else _targets_tensor(self.targets[rows])
        return torch.from_numpy(out).permute(0, 3, 1, 2), y

    def __getstate__(self) -> dict:
        # pickling an np.memmap copies every byte of it; a file-backed dataset travels as its file's name
        state = dict(self.__dict__)
        if self._file is not None:
            state["images"] = (self.images.shape, str(self.images.dtype))
        return state

    def __setstate__(self, state: dict) -> None:
        if state["_file"] is not None:
            shape, dtype = state["images"]
            path, offset = state["_file"]
            state["images"] = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
        self.__dict__.update(state)


def _file_span(images: np.ndarray) -> tuple[str, int] | None:
    """(file, offset of row 0) for an unsliced, C-ordered memmap on a system with preadv; else None.

    Why pread and not fancy indexing on the memmap: pages read through a mapping stay mapped and count
    in the process's RSS, so RSS grows to the cache's size (file-backed, reclaimable, but it looks like
    a leak and is what a memory limit sees). pread copies into the batch and maps nothing: RSS stays at
    the batch, and it is as fast as a first pass over the mapping (benchmarks/data_loading.py).
    """
    if not (isinstance(images, np.memmap) and isinstance(images.base, mmap.mmap) and hasattr(os, "preadv")):
        return None  # a slice of a memmap keeps the parent's offset attribute: only the whole array is safe
    if not images.flags.c_contiguous or images.filename is None:
        return None
    return str(images.filename), int(images.offset)


def _read_exact(fd: int, dest: np.ndarray, pos: int, path: str) -> None:
    view = memoryview(dest).cast("B")
    while len(view):
        n = os.preadv(fd, [view], pos)
        if n == 0:
            raise PodiumError(f"The decode cache file '{path}' is shorter than its header says. Delete its folder "
                              "and run again to rebuild it.")
        view, pos = view[n:], pos + n


def _targets_tensor(t: np.ndarray) -> torch.Tensor:
    t = np.ascontiguousarray(t)
    return torch.from_numpy(t).long() if t.dtype.kind in "iu" else torch.from_numpy(t).float()


def keep_batch(batch):
    """The DataLoader collate for CachedDataset: its batch is already (images, targets)."""
    return batch


def batch_loader(dataset: CachedDataset, batch_size: int, shuffle: bool, seed: int,
                 drop_last: bool = False) -> torch.utils.data.DataLoader:
    """Whole-batch reads in the loop's own process (num_workers=0): handing each batch from a worker
    process costs more than reading it (benchmarks/data_loading.py). A real DataLoader, so Lightning can
    swap its sampler for a distributed one; the seeded generator makes the order reproducible."""
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
                                       num_workers=0, collate_fn=keep_batch,
                                       generator=torch.Generator().manual_seed(seed))


def data_stats(images: np.ndarray, chunk: int = 1024) -> tuple[tuple, tuple]:
    """Per-channel mean and std of uint8 images (N x H x W x C), scaled to [0, 1]; read in chunks."""
    reader = CachedDataset(images, None, np.arange(len(images)))
    c = images.shape[-1]
    total, squares, count = np.zeros(c), np.zeros(c), 0
    for start in range(0, len(images), chunk):
        x, _ = reader.__getitems__(range(start, min(start + chunk, len(images))))
        x = x.permute(0, 2, 3, 1).reshape(-1, c).numpy().astype(np.float64)
        total += x.sum(0)
        squares += (x * x).sum(0)
        count += len(x)
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
    return tuple(float(m) for m in mean / 255), tuple(float(max(s, 1e-3)) for s in std / 255)
