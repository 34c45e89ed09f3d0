"""Tiny multi-label and multi-task competitions a model learns in a few seconds (conftest.py's tiny_competition style).

multi-label: 16 x 16 images holding any subset of three patterns, each at its own place: a bright band on top
(label 'top'), one on the left ('left'), a square in the middle ('mid'). multi-task: a shape task (0 horizontal
stripes, 1 vertical stripes, 2 square) and a brightness task (0 dim, 1 bright); the submission class is
2*shape + bright; several images per person, so group folds matter.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from PIL import Image

LABELS = ["top", "left", "mid"]


def draw_labels(present: np.ndarray, rng: np.random.Generator, size: int = 16) -> np.ndarray:
    img = rng.integers(0, 50, size=(size, size)).astype(np.uint8)
    if present[0]:
        img[:4, :] = 230
    if present[1]:
        img[:, :4] = 230
    if present[2]:
        img[6:11, 6:11] = 230
    return img


def _config(root: Path, name: str, data: dict, cv: dict | None = None, epochs: int = 2) -> Path:
    cfg = {
        "name": name, "output_dir": str(root / "runs"),
        "data": {"train_csv": str(root / "train.csv"), "test_csv": str(root / "test.csv"),
                 "image_dir": str(root / "images"), "sample_submission": str(root / "sample_submission.csv"),
                 "image_size": 16, "cache_dir": str(root / "cache"), **data},
        "cv": {"n_folds": 2, **(cv or {})},
        "model": {"name": "podium_cnn", "pretrained": False},
        "augment": {"hflip": False, "shift": 0.0},
        "train": {"epochs": epochs, "batch_size": 8, "lr": 3e-3, "warmup_epochs": 0, "patience": 0},
    }
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def write_multilabel(root: Path, n_train: int = 48, n_test: int = 12, seed: int = 0, delimited: bool = False) -> Path:
    """images/, train.csv (id + one 0/1 column per label, or id + 'labels' delimited by spaces), test.csv,
    sample_submission.csv (shuffled ids; 0/1 columns, or one 'labels' column), test_labels.csv; returns the config."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    hot = rng.random((n_train + n_test, len(LABELS))) < 0.5
    ids = [f"{i:03d}" for i in range(n_train + n_test)]
    for ident, row in zip(ids, hot):
        Image.fromarray(draw_labels(row, rng)).save(root / "images" / f"{ident}.png")
    frame = pd.DataFrame(hot.astype(int), columns=LABELS)
    frame.insert(0, "id", ids)
    if delimited:
        frame = pd.DataFrame({"id": ids, "labels": [" ".join(np.asarray(LABELS)[r]) for r in hot]})
    train, test = frame.iloc[:n_train], frame.iloc[n_train:]
    train.to_csv(root / "train.csv", index=False)
    test[["id"]].to_csv(root / "test.csv", index=False)
    test.to_csv(root / "test_labels.csv", index=False)
    template = test.copy()
    template.iloc[:, 1:] = 0 if not delimited else ""
    template.sample(frac=1.0, random_state=3).to_csv(root / "sample_submission.csv", index=False)
    data = {"task": "multilabel", "label_col": "labels" if delimited else LABELS}
    return _config(root, "tiny-ml", data)


def write_multitask(root: Path, n_people: int = 16, per_person: int = 4, n_test: int = 12, seed: int = 0) -> Path:
    """images/, train.csv (id, person, shape, bright, label = 2*shape + bright), test.csv, sample_submission.csv
    (id, label), test_labels.csv; returns the multi-task config (group folds by person)."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    rows = []
    for i in range(n_people * per_person + n_test):
        shape, bright = i % 3, (i // 3) % 2
        img = rng.integers(0, 40, size=(16, 16)).astype(np.uint8)
        level = 250 if bright else 120
        if shape == 0:
            img[::4] = level
        elif shape == 1:
            img[:, ::4] = level
        else:
            img[4:12, 4:12] = level
        ident = f"{i:03d}"
        Image.fromarray(img).save(root / "images" / f"{ident}.png")
        rows.append((ident, f"p{i // per_person}", shape, bright, 2 * shape + bright))
    frame = pd.DataFrame(rows, columns=["id", "person", "shape", "bright", "label"])
    n_train = n_people * per_person
    train, test = frame.iloc[:n_train], frame.iloc[n_train:]
    train.to_csv(root / "train.csv", index=False)
    test[["id"]].to_csv(root / "test.csv", index=False)
    test.to_csv(root / "test_labels.csv", index=False)
    test[["id"]].assign(label=0).sample(frac=1.0, random_state=3).to_csv(root / "sample_submission.csv", index=False)
    data = {"task": "multitask", "label_col": ["shape", "bright"], "combine": "2*shape + bright"}
    return _config(root, "tiny-mt", data, cv={"strategy": "group", "group_col": "person"})
