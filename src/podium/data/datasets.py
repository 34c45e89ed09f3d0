"""`podium datasets make NAME DIR`: offline data sets written as competition folders.

Each maker writes images/, train.csv (id,label), test.csv (id), sample_submission.csv and, held out,
test_labels.csv, so a full run can print a true test score. Listed by `podium datasets list`.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from PIL import Image

from podium.data.scenarios import check_n
from podium.data.scenarios.digits import write_digits_competition
from podium.data.scenarios.letters import make_letters
from podium.data.scenarios.profiles import make_profiles
from podium.errors import PodiumError
from podium.io import atomic_write_csv

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian package dataset-fashion-mnist
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (optionally gzipped) as a numpy array: the format MNIST-style data sets ship in."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    zero, dtype_code, ndim = raw[0] << 8 | raw[1], raw[2], raw[3]
    if zero != 0 or dtype_code != 0x08:
        raise PodiumError(f"'{path}' is not an unsigned-byte IDX file.")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _idx_file(stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        for p in FASHION_DIR.rglob(name):
            return p
    raise PodiumError(f"Fashion-MNIST not found under {FASHION_DIR}: install it with "
                      "`apt-get install dataset-fashion-mnist` (or `make fashion-mnist`).")


def load_fashion_mnist() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train images, train labels, test images, test labels) as uint8 arrays."""
    return (read_idx(_idx_file("train-images-idx3-ubyte")), read_idx(_idx_file("train-labels-idx1-ubyte")),
            read_idx(_idx_file("t10k-images-idx3-ubyte")), read_idx(_idx_file("t10k-labels-idx1-ubyte")))


def write_competition(out: Path, train_x, train_y, test_x, test_y, classes: list[str], prefix: str,
                      seed: int = 0) -> list[Path]:
    """Lay out arrays as a competition folder (PNG per image, class names as labels)."""
    out = Path(out)
    if (out / "train.csv").exists():
        raise PodiumError(f"'{out}' already holds a competition (train.csv). Pick an empty folder.")
    (out / "images").mkdir(parents=True, exist_ok=True)
    train_ids = [f"{prefix}_tr{i:05d}" for i in range(len(train_x))]
    test_ids = [f"{prefix}_te{i:05d}" for i in range(len(test_x))]
    for ids, xs in ((train_ids, train_x), (test_ids, test_x)):
        for ident, x in zip(ids, xs):
            Image.fromarray(x).save(out / "images" / f"{ident}.png", compress_level=1)
    names = np.asarray(classes, dtype=object)
    atomic_write_csv(out / "train.csv", pd.DataFrame({"id": train_ids, "label": names[train_y]}))
    atomic_write_csv(out / "test.csv", pd.DataFrame({"id": test_ids}))
    template = pd.DataFrame({"id": test_ids, "label": classes[0]}).sample(frac=1.0, random_state=seed)
    atomic_write_csv(out / "sample_submission.csv", template)
    atomic_write_csv(out / "test_labels.csv", pd.DataFrame({"id": test_ids, "label": names[test_y]}))
    return sorted(out.glob("*.csv"))


def random_subset(size: int, n: int | None, seed: int, name: str) -> np.ndarray:
    """Rows --n keeps: all when n is None, else a random n drawn with `seed` (the Fashion-MNIST sets: their
    measured benchmarks were made with this draw); refused when n is not between 1 and `size`."""
    if n is None:
        return np.arange(size)
    check_n(n, size, name)
    return np.random.default_rng(seed).permutation(size)[:n]


def make_fashion_mnist(out: Path, n: int | None = None, seed: int = 0) -> list[Path]:
    """Fashion-MNIST: 60,000 train / 10,000 test 28x28 grayscale, 10 named classes (n: a random n of the train
    images, drawn with seed)."""
    tx, ty, vx, vy = load_fashion_mnist()
    keep = random_subset(len(tx), n, seed, "fashion-mnist")
    return write_competition(out, tx[keep], ty[keep], vx, vy, FASHION_CLASSES, "fm", seed)


def long_tail_counts(n_max: int, imbalance: float, n_classes: int) -> list[int]:
    """Images per class, exponential profile: class c keeps int(n_max x imbalance^(-c / (C - 1))) (CIFAR-10-LT,
    Cui et al. 2019 / Cao et al. 2019): from n_max for class 0 down to n_max / imbalance for the last class."""
    if imbalance < 1:
        raise PodiumError(f"--imbalance must be at least 1 (the ratio of the largest to the smallest class); "
                          f"got {imbalance}.")
    return [int(n_max * imbalance ** (-c / (n_classes - 1))) for c in range(n_classes)]


def make_fashion_lt(out: Path, n: int | None = None, seed: int = 0, imbalance: float = 100.0) -> list[Path]:
    """Long-tailed Fashion-MNIST: class c (label order, T-shirt/top first) keeps a random long_tail_counts(6000, ...)[c]
    of its 6,000 training images; the balanced official 10,000-image test set is held out unchanged."""
    if n is not None:
        raise PodiumError("--n does not apply to fashion-lt: its size follows --imbalance "
                          "(6,000 down to 6,000/imbalance).")
    tx, ty, vx, vy = load_fashion_mnist()
    keep = long_tail_indices(ty, long_tail_counts(6000, imbalance, len(FASHION_CLASSES)), seed)
    return write_competition(out, tx[keep], ty[keep], vx, vy, FASHION_CLASSES, "flt", seed)


def long_tail_indices(labels: np.ndarray, counts: list[int], seed: int) -> np.ndarray:
    """Rows keeping a random counts[c] images of each class c, in shuffled order."""
    rng = np.random.default_rng(seed)
    have = np.bincount(labels, minlength=len(counts))
    if (have < counts).any():
        raise PodiumError(f"Cannot keep {counts} images per class from {have.tolist()}.")
    keep = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in enumerate(counts)])
    return rng.permutation(keep)


def corrupt_like_scans(images: np.ndarray, seed: int) -> np.ndarray:
    """S2's test corruption of grayscale images (N x H x W uint8, square) -> N x H x W x 3 uint8 RGB, drawn per image
    from `seed`: a rotation by 0/90/180/270 degrees, a horizontal and a vertical flip (each p 0.5), contrast x 0.6-1.2
    around mid-gray and brightness +-30, a colour cast (each channel x 0.8-1.2), Gaussian noise of std 5-25."""
    rng = np.random.default_rng(seed)
    out = np.empty((*images.shape, 3), np.uint8)
    for i, image in enumerate(images):
        x = np.rot90(image, int(rng.integers(4)))
        if rng.random() < 0.5:
            x = x[:, ::-1]
        if rng.random() < 0.5:
            x = x[::-1]
        x = (x.astype(np.float32) - 128.0) * rng.uniform(0.6, 1.2) + 128.0 + rng.uniform(-30, 30)
        rgb = x[..., None] * rng.uniform(0.8, 1.2, size=3).astype(np.float32)
        rgb += rng.normal(0.0, rng.uniform(5, 25), size=rgb.shape).astype(np.float32)
        out[i] = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    return out


def make_fashion_noisy(out: Path, n: int | None = None, seed: int = 0) -> list[Path]:
    """S2 stand-in: clean grayscale Fashion-MNIST train set (n: a random n of it), the official 10,000 test images
    corrupted by `corrupt_like_scans` (RGB), their labels held out in test_labels.csv."""
    tx, ty, vx, vy = load_fashion_mnist()
    if n is not None:
        keep = random_subset(len(tx), n, seed, "fashion-noisy")
        tx, ty = tx[keep], ty[keep]
    return write_competition(out, tx, ty, corrupt_like_scans(vx, seed), vy, FASHION_CLASSES, "fn", seed)


def make_digits(out: Path, n: int | None = None, seed: int = 0) -> list[Path]:
    """scikit-learn's digits upscaled to 32x32 (the demo's data): 1,437 train / 360 test (n: a label-stratified n
    of the train images, drawn with seed; the test set stays the same)."""
    if (Path(out) / "train.csv").exists():
        raise PodiumError(f"'{out}' already holds a competition (train.csv). Pick an empty folder.")
    return write_digits_competition(out, n, seed)


# name -> (maker, one-line description); makers take (out, n, seed), long-tailed ones also imbalance=
DATASETS: dict[str, tuple[Callable[..., list[Path]], str]] = {
    "digits": (make_digits, "scikit-learn digits, 1,437 train (--n) / 360 test 32x32 grayscale, 10 classes (the demo)"),
    "fashion-mnist": (make_fashion_mnist, "Fashion-MNIST 60,000 (--n)/10,000 28x28 grayscale, 10 named classes"),
    "fashion-lt": (make_fashion_lt, "long-tailed Fashion-MNIST (--imbalance 100: 6,000 down to 60 per class, "
                                    "14,886 images), balanced 10,000-image test set held out"),
    "letters": (make_letters, "S0: which of a-z (10-15 per image) appear, 256x256 RGB, 26 0/1 columns; "
                              "5,000 train (--n), a fifth as many test"),
    "profiles": (make_profiles, "S1/S4: 18 classes = mask x gender x age, 7 images per person (person column), "
                                "2,100 train (--n), new persons in test"),
    "fashion-noisy": (make_fashion_noisy, "Fashion-MNIST, clean 28x28 grayscale train set, test set rotated, flipped, "
                                          "noisy and colour-shifted like S2's scans (RGB)"),
}


def make_dataset(name: str, out: Path, n: int | None = None, seed: int = 0,
                 imbalance: float | None = None) -> list[Path]:
    if name not in DATASETS:
        import difflib

        close = difflib.get_close_matches(name, DATASETS, n=1)
        raise PodiumError(f"Unknown data set '{name}'." + (f" Did you mean '{close[0]}'?" if close else "")
                          + f" Known: {', '.join(DATASETS)}.")
    maker = DATASETS[name][0]
    if imbalance is None:
        return maker(Path(out), n, seed)
    import inspect

    if "imbalance" not in inspect.signature(maker).parameters:
        takes = [k for k, (m, _) in DATASETS.items() if "imbalance" in inspect.signature(m).parameters]
        raise PodiumError(f"--imbalance does not apply to '{name}' (it does to: {', '.join(takes)}).")
    return maker(Path(out), n, seed, imbalance=imbalance)
