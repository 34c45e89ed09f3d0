"""Persisted folds: stratification quality, group integrity, determinism, refusal on changed data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from podium.config import CVConfig, from_dict
from podium.data.splits import assign_folds, load_folds, make_folds_file
from podium.errors import PodiumError
from podium.strategies import STRATEGIES


def _frame(n=203, n_classes=7, n_groups=40, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.choice([f"class {c}" for c in range(n_classes)], size=n,
                        p=np.r_[0.4, np.full(n_classes - 1, 0.6 / (n_classes - 1))])
    return pd.DataFrame({"id": [f"img{i:04d}" for i in range(n)], "label": labels,
                         "group": rng.integers(0, n_groups, size=n).astype(str)})


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_every_strategy_covers_each_id_once_and_is_deterministic(strategy):
    frame = _frame()
    cv = CVConfig(strategy=strategy, n_folds=5, seed=3, group_col="group")
    a = assign_folds(frame, cv)
    assert sorted(a["id"]) == sorted(frame["id"]) and a["id"].is_unique
    assert set(a["fold"]) == set(range(5))
    # same seed -> identical, whatever the row order of the input
    b = assign_folds(frame.sample(frac=1.0, random_state=1), cv)
    pd.testing.assert_frame_equal(a, b)
    c = assign_folds(frame, cv.model_copy(update={"seed": 4}))
    assert not c["fold"].equals(a["fold"])


def test_stratified_counts_within_one_of_ideal():
    frame = _frame(n=517, n_classes=9)
    folds = assign_folds(frame, CVConfig(strategy="stratified", n_folds=5))
    merged = frame.merge(folds, on="id")
    for label, counts in merged.groupby("label")["fold"]:
        per_fold = counts.value_counts().reindex(range(5), fill_value=0)
        ideal = len(counts) / 5
        assert (abs(per_fold - ideal) <= 1).all(), (label, per_fold.tolist(), ideal)


@pytest.mark.parametrize("strategy", ["group", "stratified_group"])
def test_no_group_in_two_folds(strategy):
    frame = _frame()
    folds = assign_folds(frame, CVConfig(strategy=strategy, n_folds=5, group_col="group"))
    merged = frame.merge(folds, on="id")
    assert (merged.groupby("group")["fold"].nunique() == 1).all()


def test_too_few_groups_is_refused():
    frame = _frame(n_groups=3)
    with pytest.raises(PodiumError, match="3 groups"):
        assign_folds(frame, CVConfig(strategy="group", n_folds=5, group_col="group"))


def _competition(tmp_path, n=30):
    (tmp_path / "images").mkdir()
    for i in range(n):
        Image.new("L", (8, 8), color=i * 5).save(tmp_path / "images" / f"{i:03d}.png")
    pd.DataFrame({"id": [f"{i:03d}" for i in range(n)], "label": ["a", "b", "c"] * (n // 3)}).to_csv(
        tmp_path / "train.csv", index=False)
    return from_dict({"data": {"train_csv": str(tmp_path / "train.csv"), "image_dir": str(tmp_path / "images")},
                      "cv": {"n_folds": 3}})


def test_folds_file_persisted_reused_and_refused_when_data_changes(tmp_path):
    cfg = _competition(tmp_path)
    path, folds, status = make_folds_file(cfg)
    assert status == "wrote" and path == tmp_path / "folds.csv"
    before = path.read_bytes()
    assert make_folds_file(cfg)[2] == "up to date" and path.read_bytes() == before
    # another seed: refused without --overwrite, the file untouched
    with pytest.raises(PodiumError, match="--overwrite"):
        make_folds_file(cfg.model_copy(update={"cv": cfg.cv.model_copy(update={"seed": 7})}))
    assert path.read_bytes() == before
    # data changed: two ids gone, one new -> every later command refuses and names them
    train = pd.read_csv(tmp_path / "train.csv", dtype=str)
    train = pd.concat([train.iloc[2:], pd.DataFrame({"id": ["new1"], "label": ["a"]})])
    Image.new("L", (8, 8)).save(tmp_path / "images" / "new1.png")
    train.to_csv(tmp_path / "train.csv", index=False)
    from podium.data.sources import load_train

    frame, _ = load_train(cfg)
    with pytest.raises(PodiumError) as err:
        load_folds(cfg, frame)
    assert "1 id(s) in the data but not in the file (new1)" in str(err.value)
    assert "2 id(s) in the file but not in the data (000, 001)" in str(err.value)
    assert path.read_bytes() == before


def test_folds_file_with_other_fold_count_is_refused(tmp_path):
    cfg = _competition(tmp_path)
    make_folds_file(cfg)
    from podium.data.sources import load_train

    frame, _ = load_train(cfg)
    other = cfg.model_copy(update={"cv": cfg.cv.model_copy(update={"n_folds": 5})})
    with pytest.raises(PodiumError, match="cv.n_folds=5"):
        load_folds(other, frame)


def test_subset_gets_its_own_folds_file(tmp_path):
    cfg = _competition(tmp_path)
    sub = cfg.model_copy(update={"data": cfg.data.model_copy(update={"subset": 12})})
    path, folds, _ = make_folds_file(sub)
    assert path.name == "folds_subset12.csv" and len(folds) == 12


# ------------------------------------------------------------------------------- multi-label and multi-task


def _multilabel_frame(n=400, k=8, seed=0):
    rng = np.random.default_rng(seed)
    hot = rng.random((n, k)) < np.linspace(0.03, 0.5, k)  # from rare to common labels
    labels = [tuple(f"l{j}" for j in np.flatnonzero(row)) for row in hot]
    return pd.DataFrame({"id": [f"img{i:04d}" for i in range(n)], "label": [" ".join(t) for t in labels],
                         "labels": labels, "group": rng.integers(0, 60, size=n).astype(str)}), hot


def test_multilabel_stratification_keeps_every_label_within_one_of_ideal():
    frame, hot = _multilabel_frame()
    folds = assign_folds(frame, CVConfig(strategy="multilabel", n_folds=5, seed=3))
    fold = frame[["id"]].merge(folds, on="id")["fold"].to_numpy()
    for j in range(hot.shape[1]):
        per_fold = np.bincount(fold[hot[:, j]], minlength=5)
        assert (np.abs(per_fold - hot[:, j].sum() / 5) <= 1).all(), (j, per_fold.tolist())
    assert (np.abs(np.bincount(fold, minlength=5) - len(fold) / 5) <= 1).all()  # fold sizes too


def _write(root, train: pd.DataFrame, data: dict, cv: dict):
    (root / "images").mkdir(parents=True)
    for ident in train["id"]:
        Image.new("L", (4, 4)).save(root / "images" / f"{ident}.png")
    train.to_csv(root / "train.csv", index=False)
    return from_dict({"data": {"train_csv": str(root / "train.csv"), "image_dir": str(root / "images"), **data},
                      "cv": {"n_folds": 4, "folds_file": str(root / "folds.csv"), **cv}})


@pytest.mark.parametrize("strategy", ["group", "stratified_group", "stratified", "multilabel"])
def test_group_and_stratified_strategies_work_for_multilabel_data(tmp_path, strategy):
    frame, hot = _multilabel_frame(n=120, k=4)
    train = pd.DataFrame(hot.astype(int), columns=["a", "b", "c", "d"]).assign(id=frame["id"], person=frame["group"])
    cv = {"strategy": strategy, **({"group_col": "person"} if "group" in strategy else {})}
    cfg = _write(tmp_path, train, {"task": "multilabel", "label_col": ["a", "b", "c", "d"]}, cv)
    _, folds, _ = make_folds_file(cfg)
    merged = train.merge(folds, on="id")
    assert sorted(folds["fold"].unique()) == [0, 1, 2, 3]
    if "group" in strategy:
        assert (merged.groupby("person")["fold"].nunique() == 1).all()
    else:  # every label's images spread over the folds, the rarest ones included
        assert (merged.groupby("fold")[["a", "b", "c", "d"]].sum() > 0).all().all()


@pytest.mark.parametrize("strategy", ["group", "stratified_group", "stratified"])
def test_group_and_stratified_strategies_work_for_multitask_data(tmp_path, strategy):
    rng = np.random.default_rng(0)
    n = 144
    train = pd.DataFrame({"id": [f"i{i:03d}" for i in range(n)], "mask": rng.integers(0, 3, n),
                          "gender": rng.integers(0, 2, n), "person": rng.integers(0, 40, n)})
    cv = {"strategy": strategy, **({"group_col": "person"} if "group" in strategy else {})}
    cfg = _write(tmp_path, train, {"task": "multitask", "label_col": ["mask", "gender"]}, cv)
    _, folds, _ = make_folds_file(cfg)
    merged = train.astype({"id": str}).merge(folds, on="id")
    if "group" in strategy:
        assert (merged.groupby("person")["fold"].nunique() == 1).all()
    if strategy == "stratified":  # stratified on the combined class: each of the 6 within one of ideal
        for _, rows in merged.groupby(["mask", "gender"]):
            per_fold = rows["fold"].value_counts().reindex(range(4), fill_value=0)
            assert (abs(per_fold - len(rows) / 4) <= 1).all()


@pytest.mark.parametrize(
    "rows, match",
    [
        ("000,0\n001,1\n000,2\n", r"lists 1 id\(s\) more than once: '000' \(lines 2, 4\)"),
        ("000,0\n000,0\n001,1\n", r"lists 1 id\(s\) more than once: '000' \(lines 2, 3\)"),
        ("000,0\n001,-1\n", r"not non-negative integers: line 3 \('-1'\)"),
        ("000,0\n001,1.5\n", r"not non-negative integers: line 3 \('1.5'\)"),
        ("000,0\n001,\n", r"not non-negative integers: line 3 \(''\)"),
        ("000,zero\n", r"not non-negative integers: line 2 \('zero'\)"),
    ],
)
def test_bad_folds_files_name_the_file_the_rows_and_the_fix(tmp_path, rows, match):
    from podium.data.splits import read_folds

    path = tmp_path / "folds.csv"
    path.write_text("id,fold\n" + rows)
    with pytest.raises(PodiumError, match=match) as err:
        read_folds(path)
    assert str(path) in str(err.value) and "podium split CONFIG --overwrite" in str(err.value)


def test_duplicate_id_in_the_folds_file_is_refused_before_training(tmp_path):
    cfg = _competition(tmp_path)
    path, _, _ = make_folds_file(cfg)
    text = path.read_text().splitlines()
    text.append(text[1].split(",")[0] + ",2")  # the first id again, in another fold
    path.write_text("\n".join(text) + "\n")
    from podium.data.sources import load_train

    frame, _ = load_train(cfg)
    with pytest.raises(PodiumError, match=r"lists 1 id\(s\) more than once: '000'"):
        load_folds(cfg, frame)


def test_ids_that_pandas_would_read_as_missing_stay_ids(tmp_path):
    from podium.data.splits import read_folds

    path = tmp_path / "folds.csv"
    pd.DataFrame({"id": ["NA", "null", "007", "nan"], "fold": [0, 1, 0, 1]}).to_csv(path, index=False)
    folds = read_folds(path)
    assert folds["id"].tolist() == ["NA", "null", "007", "nan"] and folds["fold"].tolist() == [0, 1, 0, 1]


def test_read_only_data_folder_says_to_set_cv_folds_file(tmp_path, monkeypatch, capsys, read_only):
    data = tmp_path / "input"
    data.mkdir()
    cfg = _competition(data)
    read_only(data)
    with pytest.raises(PodiumError) as err:  # podium split
        make_folds_file(cfg)
    text = str(err.value)
    assert f"Cannot write '{data / 'folds.csv'}'" in text and "set cv.folds_file=/a/writable/folder/folds.csv" in text
    from podium.data.sources import load_train

    frame, _ = load_train(cfg)
    with pytest.raises(PodiumError, match=r"Cannot write .*folds\.csv.*set cv\.folds_file="):  # podium train
        load_folds(cfg, frame)
    # the way out works: folds written where cv.folds_file says
    moved = cfg.model_copy(update={"cv": cfg.cv.model_copy(update={"folds_file": tmp_path / "work" / "folds.csv"})})
    assert make_folds_file(moved)[2] == "wrote"
    # and the CLI prints one message, exit 2
    import sys

    from podium import cli

    (tmp_path / "cfg.yaml").write_text(
        f"data: {{train_csv: '{data / 'train.csv'}', image_dir: '{data / 'images'}'}}\ncv: {{n_folds: 3}}\n")
    monkeypatch.setattr(sys, "argv", ["podium", "split", str(tmp_path / "cfg.yaml")])
    monkeypatch.setitem(cli._state, "debug", False)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        cli.main()
    captured = capsys.readouterr()
    out = " ".join((captured.out + captured.err).split())
    assert exc.value.code == 2 and "set cv.folds_file=" in out and "Traceback" not in out
    assert not (data / "folds.csv").exists() and not list(data.glob(".folds.csv*"))
