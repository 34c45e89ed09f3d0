"""Shared fixtures: a tiny competition folder a model can actually learn in a few seconds."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

# No test reaches the network or reads the user's hub cache: offline, with an empty cache of the tests' own. Set
# before huggingface_hub is first imported (it reads both then); tests that need weights build a cache (hub_cache).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_CACHE"] = os.path.join(tempfile.gettempdir(), f"podium-tests-empty-hub-{os.getpid()}")

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from tests.moto_s3 import s3  # noqa: F401  (a fixture: a real S3 API on loopback, for the mirror's tests)

CLASSES = ["Ankle boot", "T-shirt/top", "bag"]  # names with a space and a slash: they must round-trip as written


def draw(kind: int, rng: np.random.Generator, size: int = 16) -> np.ndarray:
    """Three easy patterns: horizontal stripes, vertical stripes, a bright square; plus noise."""
    img = rng.integers(0, 60, size=(size, size)).astype(np.uint8)
    if kind == 0:
        img[::4] = 230
    elif kind == 1:
        img[:, ::4] = 230
    else:
        o = rng.integers(2, 7)
        img[o:o + 8, o:o + 8] = 230
    return img


def write_tiny_competition(root: Path, n_train: int = 48, n_test: int = 12, seed: int = 0) -> Path:
    """images/, train.csv, test.csv, a shuffled sample_submission.csv, test_labels.csv and config.yaml."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    rows = []
    for i in range(n_train + n_test):
        kind = i % 3
        ident = f"{i:03d}"  # leading zeros: ids must stay text
        Image.fromarray(draw(kind, rng)).save(root / "images" / f"{ident}.png")
        rows.append((ident, CLASSES[kind]))
    frame = pd.DataFrame(rows, columns=["id", "label"])
    train, test = frame.iloc[:n_train], frame.iloc[n_train:]
    train.to_csv(root / "train.csv", index=False)
    test[["id"]].to_csv(root / "test.csv", index=False)
    test.to_csv(root / "test_labels.csv", index=False)
    test.assign(label=CLASSES[0]).sample(frac=1.0, random_state=3).to_csv(root / "sample_submission.csv", index=False)
    cfg = {
        "name": "tiny", "output_dir": str(root / "runs"),
        "data": {"train_csv": str(root / "train.csv"), "test_csv": str(root / "test.csv"),
                 "image_dir": str(root / "images"), "sample_submission": str(root / "sample_submission.csv"),
                 "image_size": 16, "cache_dir": str(root / "cache")},
        "cv": {"n_folds": 3},
        "model": {"name": "podium_cnn", "pretrained": False},
        "augment": {"hflip": False, "shift": 0.0},
        "train": {"epochs": 4, "batch_size": 8, "lr": 3e-3, "warmup_epochs": 0, "patience": 0},
    }
    (root / "config.yaml").write_text(yaml.safe_dump(cfg))
    return root / "config.yaml"


@pytest.fixture
def tiny_competition(tmp_path) -> Path:
    return write_tiny_competition(tmp_path / "comp")


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    """An empty Hugging Face hub cache folder of the test's own, offline: in this process (huggingface_hub's
    constants) and in the subprocesses it starts (the environment). tests/hub_cache.py writes weights into it."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def podium_cmd(*args: str) -> list[str]:
    """The CLI as a subprocess (exit codes, SIGKILL), with the interpreter running the tests."""
    return [sys.executable, "-c", "from podium.cli import main; main()", *args]


@pytest.fixture
def read_only(monkeypatch):
    """read_only(folder): make `folder` unwritable, as a read-only mount such as Kaggle's /kaggle/input is.

    chmod 0555 stops everyone but root; as root (containers, CI) creating a file or folder inside it is refused
    with EROFS instead, by wrapping the calls podium creates files and folders with. Undone after the test."""
    import errno
    import os
    import tempfile

    folders: list[Path] = []
    real_mkstemp, real_mkdir = tempfile.mkstemp, os.mkdir

    def inside(path) -> bool:
        path = Path(os.path.abspath(path))
        return any(path == f or f in path.parents for f in folders)

    def mkstemp(*args, **kwargs):
        folder = kwargs.get("dir") or (args[2] if len(args) > 2 else tempfile.gettempdir())
        if inside(Path(folder) / "x"):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(folder))
        return real_mkstemp(*args, **kwargs)

    def mkdir(path, *args, **kwargs):
        if inside(path):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_mkdir(path, *args, **kwargs)

    def make(folder: Path) -> None:
        folder = Path(os.path.abspath(folder))
        folder.chmod(0o555)
        folders.append(folder)
        if os.geteuid() == 0 and len(folders) == 1:
            monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
            monkeypatch.setattr(os, "mkdir", mkdir)

    yield make
    for folder in folders:
        folder.chmod(0o755)
