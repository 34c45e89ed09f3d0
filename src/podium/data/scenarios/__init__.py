"""Scenario generators: offline stand-ins with the shape of the seed competitions (`podium datasets make`).

`letters` (S0, multi-label letters) and `profiles` (S1/S4, 18 classes with a person per 7 images) each write a
competition folder: images/<id>.png, train.csv, test.csv, sample_submission.csv, the held-out test_labels.csv and a
config.yaml ready to train on it. Every image is drawn from its own generator seeded by (seed, kind, index), so
the files depend on --seed only, not on how many processes drew them.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import yaml

from podium.errors import PodiumError
from podium.io import atomic_write_text

PARALLEL_FROM = 400  # images: fewer are drawn in this process (starting workers costs ~1 s)


def fresh_folder(out: Path) -> Path:
    out = Path(out)
    if (out / "train.csv").exists():
        raise PodiumError(f"'{out}' already holds a competition (train.csv). Pick an empty folder.")
    (out / "images").mkdir(parents=True, exist_ok=True)
    return out


def image_rng(seed: int, kind: int, index: int) -> np.random.Generator:
    """The generator one image is drawn from: the same (seed, kind, index) always gives the same picture."""
    return np.random.default_rng([seed, kind, index])


def _draw_chunk(draw: Callable, jobs: list) -> list:
    return [draw(*job) for job in jobs]


def draw_all(draw: Callable, jobs: list[tuple], workers: int | None = None) -> list:
    """draw(*job) for every job, in order; on up to 2 processes when there are many (drawing is CPU-bound)."""
    workers = workers or min(2, os.cpu_count() or 1)
    if workers < 2 or len(jobs) < PARALLEL_FROM:
        return _draw_chunk(draw, jobs)
    size = max(50, len(jobs) // (workers * 8))  # chunks small enough to keep both workers busy to the end
    chunks = [jobs[i:i + size] for i in range(0, len(jobs), size)]
    out: list = []
    with ProcessPoolExecutor(workers) as pool:
        for part in pool.map(_draw_chunk, [draw] * len(chunks), chunks):
            out += part
    return out


def write_config(out: Path, raw: dict) -> Path:
    """DIR/config.yaml pointing at the folder's files (paths as the folder was named: relative to the cwd)."""
    d = Path(out)
    data = {"train_csv": str(d / "train.csv"), "test_csv": str(d / "test.csv"), "image_dir": str(d / "images"),
            "sample_submission": str(d / "sample_submission.csv")}
    raw = {**raw, "data": {**data, **raw.get("data", {})}}
    atomic_write_text(d / "config.yaml", yaml.safe_dump(raw, sort_keys=False))
    return d / "config.yaml"


def positive_count(n: int | None, default: int, what: str) -> int:
    """--n as given (refused unless positive), or the default when it was not given."""
    if n is None:
        return default
    if n < 1:
        raise PodiumError(f"--n must be a positive number of {what}; got {n}.")
    return n


def listing(out: Path, names: Iterable[str]) -> list[Path]:
    return [Path(out) / name for name in names]


def train_subset(labels: np.ndarray, n: int | None, seed: int, name: str) -> np.ndarray:
    """Rows of the training set that --n keeps: all when n is None, else exactly n drawn label-stratified with
    `seed` (each class keeps its share), sorted; refused when n is not between 1 and the training set's size."""
    if n is None:
        return np.arange(len(labels))
    check_n(n, len(labels), name)
    from podium.data.sources import stratified_subset

    return stratified_subset(np.asarray(labels), n, seed)


def check_n(n: int, have: int, name: str) -> None:
    if not 1 <= n <= have:
        raise PodiumError(f"--n {n}: {name} has {have:,} training images; give --n between 1 and {have} (or leave "
                          "it out for all of them).")
