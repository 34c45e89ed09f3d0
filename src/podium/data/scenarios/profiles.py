"""`profiles` (S1/S4): 18 classes = mask state (3) x gender (2) x age band (3), 7 images per person.

A person is a head drawn over their own background: a colour plus a striped texture and blotches, hair, eye
spacing and head shape of their own. Every picture of that person shares these, with a little jitter (position,
brightness, texture phase, noise), as photos of one person against one wall do. What the label depends on:
  mask     the shape drawn on the face: a mask over nose and mouth (wear), a mask under the mouth (incorrect),
           or a bare mouth (not wear); 5 wear, 1 incorrect, 1 not-wear picture per person, as in S1
  gender   the face's tint: redder (female) or bluer (male), blurred by each person's own skin tone
  age      head size and forehead lines (none, a few, many), blurred by each person's own build
Gender and age are readable but noisy from the face; they are given away exactly by the person, whose background
the network can memorise. A split by image puts the same person in train and validation, so CV learns that
shortcut and overstates; a split by person (cv.strategy group, cv.group_col person) does not.
Columns: id, person, mask, gender, age, label (= 6 mask + 3 gender + age, S1's encoding). Test persons are new.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from podium.data.scenarios import (
    draw_all,
    fresh_folder,
    image_rng,
    listing,
    positive_count,
    write_config,
)
from podium.errors import PodiumError
from podium.io import atomic_write_csv

SIZE = 128  # px, square
N_TRAIN = 2100  # train images by default (--n): 300 persons x 7
MASKS = [0] * 5 + [1, 2]  # each person's 7 pictures: 5 wear, 1 incorrect, 1 not wear (S1)
GENDER_P = [0.4, 0.6]  # male, female (S1 held more women)
AGE_P = [0.45, 0.42, 0.13]  # <30, 30-59, >=60: the oldest band is the rare one, as in S1
TINT = 14.0  # mean red-minus-blue shift of a face by gender (grey levels, either way)
TINT_SPREAD = 11.0  # each person's own deviation from it: gender is readable, not certain
HEAD = [0.25, 0.29, 0.33]  # head radius as a share of the side, by age band
HEAD_SPREAD = 0.025  # each person's own deviation from it
LINES = [0, 2, 4]  # forehead lines by age band (each person +-1)
TEST_SHARE = 3  # one test person per this many train persons
PERSON, TRAIN, TEST = 0, 1, 2  # the 'kind' in each seed


def label_of(mask: int, gender: int, age: int) -> int:
    return 6 * mask + 3 * gender + age


def person_traits(seed: int, p: int) -> dict:
    """Everything one person's 7 pictures share: the labels' sources and the identity (background, hair, build)."""
    rng = image_rng(seed, PERSON, p)
    gender = int(rng.choice(2, p=GENDER_P))
    age = int(rng.choice(3, p=AGE_P))
    tint = (TINT if gender else -TINT) + rng.normal(0, TINT_SPREAD)
    skin = rng.uniform(120, 215) + np.array([25.0, 0.0, -25.0]) + rng.normal(0, 6, 3)
    return {
        "gender": gender, "age": age,
        "face": skin + np.array([tint, 0.0, -tint]),
        "radius": HEAD[age] + rng.normal(0, HEAD_SPREAD),
        "lines": max(0, LINES[age] + int(rng.integers(-1, 2))),
        "aspect": rng.uniform(0.85, 1.15),  # head height / width
        "eyes": rng.uniform(0.3, 0.5),  # eye spacing as a share of the head's width
        "hair": rng.uniform(0, 255, 3),
        "wall": rng.uniform(0, 255, 3),  # background colour
        "stripe": (rng.uniform(0, np.pi), rng.uniform(0.05, 0.2), rng.uniform(10, 45)),  # angle, cycles/px at 128,
                                                                                         # amplitude
        "blotch": rng.normal(0, 30, (3, 3, 3)),
    }


def _background(t: dict, rng: np.random.Generator, size: int) -> np.ndarray:
    angle, freq, amp = t["stripe"]
    yy, xx = np.mgrid[0:size, 0:size] * (SIZE / size)
    phase = rng.uniform(0, 0.6)  # the wall moves a little between pictures
    stripes = amp * np.sin(2 * np.pi * freq * (xx * np.cos(angle) + yy * np.sin(angle)) + phase)
    blotch = np.stack([np.asarray(Image.fromarray(t["blotch"][:, :, c].astype(np.float32))
                                  .resize((size, size), Image.BICUBIC))
                       for c in range(3)], axis=2)
    return t["wall"][None, None] + stripes[:, :, None] + blotch


def draw_profile(seed: int, kind: int, index: int, path: str, traits: dict, mask: int, size: int = SIZE) -> None:
    """One picture of a person with the given mask state, written to `path`."""
    rng = image_rng(seed, kind, index)
    img = Image.fromarray(np.clip(_background(traits, rng, size), 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(img)
    cx, cy = size * (0.5 + rng.uniform(-0.05, 0.05, 2))
    rx = traits["radius"] * size
    ry = rx * traits["aspect"]
    d.ellipse([cx - rx * 1.08, cy - ry * 1.15, cx + rx * 1.08, cy + ry * 0.3],
              fill=tuple(int(v) for v in traits["hair"]))
    face = tuple(int(v) for v in np.clip(traits["face"], 0, 255))
    d.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=face)
    dark = tuple(int(v * 0.75) for v in face)
    for k in range(traits["lines"]):  # forehead lines
        y = cy - ry * (0.62 - 0.09 * k)
        d.line([cx - rx * 0.4, y, cx + rx * 0.4, y], fill=dark, width=max(1, size // 96))
    ex = rx * traits["eyes"]
    er = max(1.0, rx * 0.1)
    for sx in (-1, 1):
        d.ellipse([cx + sx * ex - er, cy - ry * 0.2 - er, cx + sx * ex + er, cy - ry * 0.2 + er], fill=(20, 20, 30))
    mouth_y = cy + ry * 0.45
    d.line([cx - rx * 0.3, mouth_y, cx + rx * 0.3, mouth_y], fill=(120, 30, 40), width=max(1, size // 48))
    d.line([cx, cy - ry * 0.05, cx, cy + ry * 0.22], fill=dark, width=max(1, size // 64))  # nose
    colour = tuple(int(v) for v in rng.uniform(0, 255, 3))  # any colour a mask may have
    if mask == 0:  # worn: over nose and mouth
        d.rounded_rectangle([cx - rx * 0.8, cy + ry * 0.02, cx + rx * 0.8, cy + ry * 0.8], radius=rx * 0.2, fill=colour)
    elif mask == 1:  # worn wrong: under the mouth, nose and mouth bare
        d.rounded_rectangle([cx - rx * 0.7, cy + ry * 0.58, cx + rx * 0.7, cy + ry * 0.95], radius=rx * 0.15,
                            fill=colour)
    arr = np.asarray(img, dtype=np.float32) * rng.uniform(0.9, 1.1) + rng.normal(0, 4, (size, size, 1))
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(path, compress_level=3)


def _split(seed: int, out: Path, kind: int, persons: range, prefix: str, size: int) -> tuple[pd.DataFrame, list]:
    rows, jobs = [], []
    for p in persons:
        traits = person_traits(seed, p)
        for m in MASKS:
            ident = f"{prefix}{len(rows):05d}"
            rows.append((ident, f"p{p:05d}", m, traits["gender"], traits["age"],
                         label_of(m, traits["gender"], traits["age"])))
            jobs.append((seed, kind, len(jobs), str(out / "images" / f"{ident}.png"), traits, m, size))
    return pd.DataFrame(rows, columns=["id", "person", "mask", "gender", "age", "label"]), jobs


def make_profiles(out: Path, n: int | None = None, seed: int = 0, size: int = SIZE, n_test_persons: int | None = None,
                  workers: int | None = None) -> list[Path]:
    """The S1/S4 stand-in: --n train images (default 2,100: 300 persons x 7; a whole number of persons), and
    a third as many new persons in test."""
    n = positive_count(n, N_TRAIN, "train images")
    if n < len(MASKS):
        raise PodiumError(f"--n {n} is fewer than one person's {len(MASKS)} pictures: give at least {len(MASKS)}.")
    if n % len(MASKS):
        low = n - n % len(MASKS)
        raise PodiumError(f"--n {n} is not a whole number of persons of {len(MASKS)} pictures each: give --n {low} "
                          f"or --n {low + len(MASKS)}.")
    out = fresh_folder(out)
    n_train = n // len(MASKS)
    n_test = n_test_persons if n_test_persons is not None else max(1, n_train // TEST_SHARE)
    train, train_jobs = _split(seed, out, TRAIN, range(n_train), "pro_tr", size)
    test, test_jobs = _split(seed, out, TEST, range(n_train, n_train + n_test), "pro_te", size)
    draw_all(draw_profile, train_jobs + test_jobs, workers)
    atomic_write_csv(out / "train.csv", train)
    atomic_write_csv(out / "test.csv", test[["id"]])
    atomic_write_csv(out / "sample_submission.csv", test[["id"]].assign(label=0))
    atomic_write_csv(out / "test_labels.csv", test)
    write_config(out, {
        "name": "profiles-18-group",
        "data": {"label_col": "label", "classes": [str(c) for c in range(18)], "image_size": min(size, 96)},
        "cv": {"strategy": "group", "group_col": "person", "n_folds": 5},  # split by person: no one in two folds
        "model": {"name": "podium_cnn_s", "pretrained": False},
        "train": {"epochs": 10},
    })
    return listing(out, ["train.csv", "test.csv", "sample_submission.csv", "test_labels.csv", "config.yaml"])
