"""The demo: the digits competition folder, and the whole loop on it (short budget)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from podium.commands.demo import run_demo
from podium.data.scenarios.digits import write_digits_competition
from podium.errors import PodiumError


def test_digits_competition_is_a_complete_folder_and_a_foreign_folder_is_refused(tmp_path):
    write_digits_competition(tmp_path / "d")
    train, test = pd.read_csv(tmp_path / "d" / "train.csv"), pd.read_csv(tmp_path / "d" / "test.csv")
    template = pd.read_csv(tmp_path / "d" / "sample_submission.csv")
    assert len(train) + len(test) == 1797 and not set(train["id"]) & set(test["id"])
    assert set(template["id"]) == set(test["id"]) and list(template["id"]) != list(test["id"])  # its own order
    assert len(list((tmp_path / "d" / "images").glob("*.png"))) == 1797
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(PodiumError, match="not empty"):
        write_digits_competition(tmp_path / "other")
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"
    assert write_digits_competition(tmp_path / "d")  # an earlier demo's folder is reused as it is
    # a competition of the user's own (with its train.csv and test_labels.csv) is not taken for the digits
    for name in ("train.csv", "test.csv", "test_labels.csv"):
        (tmp_path / "other" / name).write_text("id,label\nmine,1\n")
    with pytest.raises(PodiumError, match="not a digits folder"):
        write_digits_competition(tmp_path / "other")
    assert (tmp_path / "other" / "train.csv").read_text() == "id,label\nmine,1\n"


def test_whole_loop_scores_on_held_out_labels_and_submits_what_oof_favours(tmp_path):
    res = run_demo(tmp_path, epochs=3)
    assert res.cv > 0.8 and res.test_accuracy > 0.8  # 5 folds x 3 epochs already learn digits
    sub = pd.read_csv(res.run / "submission.csv")
    template = pd.read_csv(tmp_path / "data" / "sample_submission.csv")
    assert list(sub["id"]) == list(template["id"])
    assert res.cv_tta is not None  # the OOF was predicted again with hflip
    assert res.tta == ("hflip" if res.cv_tta >= res.cv else "none")
    assert json.loads((res.run / "predict.json").read_text())["tta"] == res.tta  # what the submission used
    assert set(res.test_accuracy_by_tta) == {"none", "hflip"}
