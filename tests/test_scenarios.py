"""Scenario generators (`podium datasets make letters|profiles`): columns, label rules, persons, determinism."""

from __future__ import annotations

import hashlib
import string
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

import podium.data.scenarios as scenarios
from podium.config import load_config
from podium.data.datasets import DATASETS, make_dataset
from podium.data.scenarios.letters import LETTERS, font_files, make_letters
from podium.data.scenarios.profiles import MASKS, make_profiles
from podium.data.splits import make_folds_file
from podium.errors import PodiumError

CSVS = ["train.csv", "test.csv", "sample_submission.csv", "test_labels.csv"]


def _csv(folder: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(folder / name, dtype={"id": str, "person": str})


def _digests(folder: Path) -> dict[str, str]:
    """Every file's hash, config.yaml with the folder's own path taken out (it names where it was written)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            data = p.read_bytes().replace(str(folder).encode(), b"DIR")
            out[str(p.relative_to(folder))] = hashlib.sha256(data).hexdigest()
    return out


def test_both_are_listed_and_made_through_the_registry(tmp_path):
    assert {"letters", "profiles"} <= set(DATASETS)
    paths = make_dataset("profiles", tmp_path / "p", n=7, seed=1)
    assert [p.name for p in paths] == [*CSVS, "config.yaml"] and all(p.exists() for p in paths)
    with pytest.raises(PodiumError, match="fewer than one person's 7 pictures"):
        make_dataset("profiles", tmp_path / "q", n=5)


def test_letters_columns_and_10_to_15_distinct_letters(tmp_path):
    assert len(font_files()) >= 8 and all(Path(f).name.startswith("DejaVu") for f in font_files())
    out = tmp_path / "letters"
    make_letters(out, n=12, n_test=4, size=96)
    train, test, sub, truth = (_csv(out, name) for name in CSVS)
    assert list(train.columns) == ["id", *LETTERS] and LETTERS == list(string.ascii_lowercase)
    assert list(test.columns) == ["id"] and list(truth.columns) == ["id", *LETTERS]
    assert list(sub.columns) == ["id", *LETTERS] and (sub[LETTERS] == 0).all().all()
    assert list(sub["id"]) == list(test["id"]) == list(truth["id"]) and not set(test["id"]) & set(train["id"])
    both = pd.concat([train, truth])
    assert both[LETTERS].isin([0, 1]).all().all()
    assert both[LETTERS].sum(axis=1).between(10, 15).all()
    assert both[LETTERS].sum(axis=1).nunique() > 1  # the count varies
    for ident in both["id"]:
        img = Image.open(out / "images" / f"{ident}.png")
        assert img.mode == "RGB" and img.size == (96, 96)
    cfg = load_config(out / "config.yaml")  # ready for the multi-label pipeline as written
    assert cfg.data.label_col == LETTERS and cfg.data.task == "multilabel" and cfg.cv.strategy == "multilabel"
    assert cfg.cv.metric == "per_label_accuracy" and cfg.train.loss == "bce"
    assert cfg.data.train_csv == out / "train.csv"


def test_letters_default_size_and_test_share(tmp_path):
    make_letters(tmp_path / "l", n=5)
    assert len(_csv(tmp_path / "l", "test.csv")) == 1  # --n 5: a fifth as many test images
    assert Image.open(next((tmp_path / "l" / "images").iterdir())).size == (256, 256)


def test_profiles_labels_persons_and_mask_states(tmp_path):
    out = tmp_path / "profiles"
    with pytest.raises(PodiumError, match="--n 38 is not a whole number of persons .* give --n 35 or --n 42"):
        make_profiles(out, n=5 * 7 + 3, size=32)  # not rounded down in silence
    assert not out.exists()
    make_profiles(out, n=5 * 7, size=32)  # 5 persons
    train, test, sub, truth = (_csv(out, name) for name in CSVS)
    cols = ["id", "person", "mask", "gender", "age", "label"]
    assert list(train.columns) == cols and list(truth.columns) == cols
    assert list(test.columns) == ["id"] and list(sub.columns) == ["id", "label"] and list(sub["id"]) == list(test["id"])
    assert len(train) == 35 and train["person"].nunique() == 5 and truth["person"].nunique() == 1
    assert not set(train["person"]) & set(truth["person"])  # test persons are new
    for frame in (train, truth):
        assert (frame["label"] == 6 * frame["mask"] + 3 * frame["gender"] + frame["age"]).all()
        assert (frame["mask"].isin([0, 1, 2]).all() and frame["gender"].isin([0, 1]).all()
                and frame["age"].isin([0, 1, 2]).all())
        for _, rows in frame.groupby("person"):
            assert sorted(rows["mask"]) == sorted(MASKS) == [0, 0, 0, 0, 0, 1, 2]
            assert rows["gender"].nunique() == 1 and rows["age"].nunique() == 1
    assert Image.open(out / "images" / f"{train['id'][0]}.png").size == (32, 32)


def test_profiles_config_trains_by_person_today(tmp_path, monkeypatch):
    out = tmp_path / "profiles"
    make_profiles(out, n=70, size=32)
    monkeypatch.chdir(tmp_path)
    cfg = load_config(out / "config.yaml")
    assert (cfg.cv.strategy == "group" and cfg.cv.group_col == "person"
            and cfg.data.classes == [str(c) for c in range(18)])
    _, folds, _ = make_folds_file(cfg)
    person = _csv(out, "train.csv").set_index("id")["person"]
    assert folds.assign(person=folds["id"].map(person)).groupby("person")["fold"].nunique().eq(1).all()


def test_same_seed_same_files_other_seed_other_files(tmp_path):
    for name in ("a", "b"):
        make_profiles(tmp_path / name, n=14, seed=3, size=32)
        make_letters(tmp_path / f"l{name}", n=3, n_test=2, seed=3, size=64)
    make_profiles(tmp_path / "c", n=14, seed=4, size=32)
    assert _digests(tmp_path / "a") == _digests(tmp_path / "b")
    assert _digests(tmp_path / "la") == _digests(tmp_path / "lb")
    assert _digests(tmp_path / "a")["images/pro_tr00000.png"] != _digests(tmp_path / "c")["images/pro_tr00000.png"]


def test_two_processes_draw_the_same_files_as_one(tmp_path, monkeypatch):
    monkeypatch.setattr(scenarios, "PARALLEL_FROM", 1)
    make_profiles(tmp_path / "one", n=28, seed=5, size=32, workers=1)
    make_profiles(tmp_path / "two", n=28, seed=5, size=32, workers=2)
    assert _digests(tmp_path / "one") == _digests(tmp_path / "two")


def test_an_existing_competition_is_not_overwritten(tmp_path):
    make_profiles(tmp_path / "p", n=7, size=32)
    with pytest.raises(PodiumError, match="already holds a competition"):
        make_profiles(tmp_path / "p", n=7, size=32)
    with pytest.raises(PodiumError, match="--n must be a positive"):
        make_letters(tmp_path / "l", n=0)


def test_datasets_list_shows_them(monkeypatch, capsys):
    import sys

    from podium import cli

    monkeypatch.setattr(sys, "argv", ["podium", "datasets", "list"])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    out = capsys.readouterr().out
    assert exc.value.code == 0 and "letters" in out and "profiles" in out and "mask x gender x age" in out
