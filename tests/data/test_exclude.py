"""data.exclude: listed ids dropped or relabelled in the run only; the other images keep their folds; every bad row
refused by line."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from podium.config import DataConfig, load_config
from podium.data.exclude import apply_exclude, dropped_ids, read_exclude
from podium.data.sources import load_train
from podium.data.splits import folds_path, load_folds, make_folds_file
from podium.errors import PodiumError
from tests.conftest import CLASSES, write_tiny_competition

FRAME = pd.DataFrame({"id": ["a", "b", "c", "d"], "label": ["x", "y", "x", "y"]})


def _csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ids.csv"
    path.write_text(text)
    return path


def test_drop_and_relabel_exactly_the_listed_ids(tmp_path):
    path = _csv(tmp_path, "id,given,suspected,confidence,action\nb,y,x,0.9,drop\nc,x,y,0.8,relabel\nd,y,x,0.7,\n")
    ex = read_exclude(path, FRAME, ["x", "y"], DataConfig())
    assert ex.drop == ["b", "d"] and ex.relabel == {"c": "y"}  # an empty action is a drop
    out = apply_exclude(FRAME, ex, DataConfig())
    assert out.to_dict("list") == {"id": ["a", "c"], "label": ["x", "y"]}
    assert dropped_ids(path) == {"b", "d"}
    only_ids = _csv(tmp_path, "id\na\n")
    assert read_exclude(only_ids, FRAME, ["x", "y"], DataConfig()).drop == ["a"]


def test_multilabel_relabel_replaces_the_label_set(tmp_path):
    data = DataConfig(task="multilabel")
    frame = pd.DataFrame({"id": ["1", "2"], "label": ["p", "p q"], "labels": [("p",), ("p", "q")]})
    path = _csv(tmp_path, "id,suspected,action\n1,q r,relabel\n2,,relabel\n")
    out = apply_exclude(frame, read_exclude(path, frame, ["p", "q", "r"], data), data)
    assert out["labels"].tolist() == [("q", "r"), ()] and out["label"].tolist() == ["q r", ""]


@pytest.mark.parametrize("text, expected", [
    ("id,action\nzz,drop\n", "line 2: id 'zz' is not in the training data"),
    ("id,action\na,remove\n", "line 2: action 'remove' for id 'a' is not one of drop, relabel"),
    ("id,suspected,action\na,w,relabel\n", "line 2: id 'a' cannot be relabelled: its suspected class 'w'"),
    ("id,action\na,relabel\n", "no 'suspected' column"),
    ("id,action\na,drop\nb,drop\na,drop\n", "line 4: id 'a' is listed again (first on line 2)"),
    ("name,action\na,drop\n", "has no 'id' column"),
])
def test_refusals_name_the_row(tmp_path, text, expected):
    with pytest.raises(PodiumError, match="data.exclude") as err:
        read_exclude(_csv(tmp_path, text), FRAME, ["x", "y"], DataConfig())
    assert expected in str(err.value)


def test_multitask_takes_drop_only(tmp_path):
    data = DataConfig(task="multitask", label_col=["m", "g"])
    with pytest.raises(PodiumError, match="drop only"):
        read_exclude(_csv(tmp_path, "id,suspected,action\na,x,relabel\n"), FRAME, ["m:x"], data)


def test_a_run_with_exclude_keeps_the_other_images_folds(tmp_path):
    from podium.commands.train import train

    config = write_tiny_competition(tmp_path / "comp")
    train_csv = config.parent / "train.csv"
    before = train_csv.read_bytes()
    base = load_config(config)
    folds_file, folds, _ = make_folds_file(base)
    original = folds.set_index("id")["fold"]
    ids = config.parent / "ids.csv"
    ids.write_text("id,given,suspected,confidence,action\n000,x,,0.9,drop\n005,x,,0.9,drop\n"
                   f"007,x,{CLASSES[2]},0.8,relabel\n")
    cfg = load_config(config, ["name=cleaned", "train.epochs=1", f"data.exclude={ids}"])
    frame, _ = load_train(cfg)
    assert len(frame) == 46 and {"000", "005"}.isdisjoint(frame["id"])
    assert frame.set_index("id").loc["007", "label"] == CLASSES[2]
    assert frame.set_index("id").loc["007", "target"] == 2  # what the loss trains on follows the new label
    train(cfg)
    run = Path(cfg.output_dir) / cfg.name
    run_folds = pd.read_csv(run / "folds.csv", dtype={"id": str}).set_index("id")["fold"]
    assert run_folds.to_dict() == original.drop(["000", "005"]).to_dict()  # nobody moved; the dropped vanished
    oof = pd.read_csv(run / "oof.csv", dtype={"id": str}).set_index("id")
    assert len(oof) == 46 and oof.loc["007", "label"] == CLASSES[2]
    record = json.loads((run / "data.json").read_text())["exclude"]
    assert record["file"] == str(ids) and record["dropped"] == 2 and record["relabelled"] == 1
    assert train_csv.read_bytes() == before  # the user's CSV untouched
    assert make_folds_file(cfg)[2] == "up to date"  # `podium split` with data.exclude draws on the whole table
    folds_file.unlink()  # made again on first use: from the whole table too
    assert load_folds(cfg, frame).tolist() == original.loc[frame["id"]].tolist()
    assert folds_path(cfg) == folds_file
