"""The demo competition: scikit-learn's bundled digits (1,797 8x8 images) as a Kaggle-style folder.

`write_digits_competition` lays out what a competition gives you (images/, train.csv, test.csv,
sample_submission.csv) plus the held-out test labels (test_labels.csv) so the demo can print a true test score.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from podium.data.scenarios import train_subset
from podium.errors import PodiumError
from podium.io import atomic_write_csv, atomic_write_text

DEMO_SIZE = 32  # px: digits are upscaled from 8x8 so they look like a (tiny) real image set


TEST_FRACTION = 0.2  # share of the images held out as the competition's test set


SEED = 0  # fixes which images are test images


def write_digits_competition(out: Path | str, n: int | None = None, seed: int = 0) -> list[Path]:
    """Write the digits competition into `out`; refuses to write into a folder holding other files.
    n: keep a label-stratified n of the 1,437 training images (drawn with seed); the test set is unchanged."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    out = Path(out)
    if out.exists() and any(p.name not in ("images",) and not p.name.startswith(".") for p in out.iterdir()):
        if _is_digits_folder(out):
            return sorted(out.glob("*.csv"))  # already written by an earlier demo: reuse it
        raise PodiumError(f"'{out}' is not empty and is not a digits folder an earlier demo wrote; the demo writes "
                          "a fresh competition folder. Pick another folder.")
    digits = load_digits()
    images = np.clip(digits.images * (255.0 / 16.0), 0, 255).astype(np.uint8)
    ids = np.array([f"digit_{i:04d}" for i in range(len(images))])
    labels = digits.target.astype(int)
    train_idx, test_idx = train_test_split(
        np.arange(len(ids)), test_size=TEST_FRACTION, stratify=labels, random_state=SEED
    )

    train_idx = train_idx[train_subset(labels[train_idx], n, seed, "digits")]
    (out / "images").mkdir(parents=True, exist_ok=True)
    for i in np.concatenate([train_idx, test_idx]):
        img = Image.fromarray(images[i], "L").resize((DEMO_SIZE, DEMO_SIZE), Image.BICUBIC)
        img.save(out / "images" / f"{ids[i]}.png")
    atomic_write_csv(out / "train.csv", pd.DataFrame({"id": ids[train_idx], "label": labels[train_idx]}))
    atomic_write_csv(out / "test.csv", pd.DataFrame({"id": ids[test_idx]}))
    # the template a competition hands out: every test id, a placeholder label, in its own order
    template = pd.DataFrame({"id": ids[test_idx], "label": 0}).sample(frac=1.0, random_state=SEED)
    atomic_write_csv(out / "sample_submission.csv", template)
    atomic_write_csv(out / "test_labels.csv", pd.DataFrame({"id": ids[test_idx], "label": labels[test_idx]}))
    atomic_write_text(out / "README.txt", _README)
    return sorted(out.glob("*.csv"))


def _is_digits_folder(out: Path) -> bool:
    """What `write_digits_competition` leaves: its README.txt and every CSV (a competition with a train.csv and
    test_labels.csv of its own is not reused: the demo would call it the digits and train on it)."""
    readme = out / "README.txt"
    return (readme.is_file() and readme.read_text(errors="replace").startswith(_README[:40])
            and all((out / name).is_file() for name in ("train.csv", "test.csv", "test_labels.csv")))


_README = ("scikit-learn digits as a competition: 10 classes, 32x32 grayscale PNGs.\n"
           "test_labels.csv holds the held-out answers (a real competition keeps them secret).\n")
