"""`podium errors RUN --suspect`: planted mislabels ranked first, a CSV data.exclude reads, the report's gallery,
multi-label pairs, refusals."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from podium.errors import PodiumError
from podium.report.analysis import label_suspects, suspects
from podium.report.suspects import how_many, rank, write_suspects
from tests.conftest import CLASSES, podium_cmd, write_tiny_competition

FLIPPED = ["004", "017", "031"]  # training ids whose label the fixture moves to the next class


def test_ranking_by_confidence_in_another_class():
    y = np.array([0, 1, 2, 0])
    probs = np.array([[0.9, 0.05, 0.05],   # right and sure: last
                      [0.7, 0.2, 0.1],     # given 1, the model says 0 at 0.7: first
                      [0.1, 0.5, 0.4],     # given 2, 1 at 0.5: second
                      [0.55, 0.15, 0.3]])  # right, but 0.3 on class 2: third
    rows, suspected, confidence = suspects(y, probs)
    assert rows.tolist() == [1, 2, 3, 0] and suspected.tolist() == [0, 1, 2, 1]
    assert confidence.tolist() == pytest.approx([0.7, 0.5, 0.3, 0.05])


def test_multilabel_images_rank_by_their_surest_disagreement():
    hot = np.array([[1, 0], [0, 0], [1, 1]], dtype=float)
    probs = np.array([[0.95, 0.6], [0.1, 0.2], [0.05, 0.9]])
    rows, labels, conf = label_suspects(hot, probs)
    assert rows.tolist() == [2, 0, 1] and labels.tolist() == [0, 1, 1]
    assert conf.tolist() == pytest.approx([0.95, 0.6, 0.2])


def test_how_many():
    assert how_many(1000, None, None) == 20 and how_many(10, None, None) == 1 and how_many(10, 30, None) == 10
    assert how_many(200, None, 0.1) == 20
    for top, fraction in ((3, 0.1), (0, None), (None, 0.0), (None, 1.5)):
        with pytest.raises(PodiumError):
            how_many(100, top, fraction)


@pytest.fixture(scope="module")
def noisy_run(tmp_path_factory) -> Path:
    """The tiny competition (60 training images) with three labels flipped, trained 3 folds x 6 epochs."""
    from podium.commands.train import train
    from podium.config import load_config

    config = write_tiny_competition(tmp_path_factory.mktemp("suspect") / "comp", n_train=60)
    csv = config.parent / "train.csv"
    table = pd.read_csv(csv, dtype=str)
    for ident in FLIPPED:
        row = table["id"] == ident
        table.loc[row, "label"] = CLASSES[(CLASSES.index(table.loc[row, "label"].item()) + 1) % 3]
    table.to_csv(csv, index=False)
    cfg = load_config(config, ["name=noisy", "train.epochs=6"])
    train(cfg)
    return Path(cfg.output_dir) / cfg.name


def test_planted_mislabels_are_ranked_first_and_written_for_data_exclude(noisy_run):
    res = subprocess.run(podium_cmd("errors", str(noisy_run), "--suspect", "--top", "3"), capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stderr
    written = pd.read_csv(noisy_run / "suspects.csv", dtype=str, keep_default_na=False)
    assert list(written.columns) == ["id", "given", "suspected", "confidence", "action", "fold"]
    assert sorted(written["id"]) == FLIPPED  # a wrong ranking puts a correctly labelled image here
    assert all(i in res.stderr for i in FLIPPED) and "data.exclude" in res.stderr
    truth = {i: CLASSES[int(i) % 3] for i in FLIPPED}  # what write_tiny_competition drew
    assert written.set_index("id")["suspected"].to_dict() == truth
    assert (written["action"] == "drop").all() and written["confidence"].astype(float).is_monotonic_decreasing
    folds = pd.read_csv(noisy_run / "folds.csv", dtype=str).set_index("id")["fold"]
    assert written.set_index("id")["fold"].to_dict() == folds[written["id"]].to_dict()
    again = subprocess.run(podium_cmd("errors", str(noisy_run), "--suspect"), capture_output=True, text=True)
    assert again.returncode == 2 and "--overwrite" in again.stderr  # the user's edits are never replaced silently
    both = subprocess.run(podium_cmd("errors", str(noisy_run), str(noisy_run.parent / "x"), "--suspect"),
                          capture_output=True, text=True)
    assert both.returncode == 2 and "--out" in both.stderr
    bare = subprocess.run(podium_cmd("errors", str(noisy_run), "--top", "3"), capture_output=True, text=True)
    assert bare.returncode == 2 and "go with --suspect" in bare.stderr  # the image folders still need OUT


def test_report_shows_the_suspects_images(noisy_run, tmp_path):
    from podium.report.build import build_report

    html = build_report(noisy_run, out=tmp_path / "r.html", gallery=3, gradcam=0).read_text()
    part = html[html.index('<section id="suspects">'):]
    part = part[:part.index("</section>")]
    assert part.count("<figure") == 3 and all(f"<b>{i}</b>" in part for i in FLIPPED)


def test_multilabel_run_lists_images_with_their_flipped_label_set(tmp_path):
    """A run folder written by hand: config, classes and OOF are all rank() reads."""
    from podium.config import load_config
    from podium.run.rundir import RunDir

    run = tmp_path / "ml"
    run.mkdir()
    rd = RunDir(run)
    rd.write_config(load_config(None, ["data.task=multilabel"]))
    rd.write_classes(["a", "b", "c"])
    oof = pd.DataFrame({"id": ["1", "2", "3"], "fold": [0, 1, 0], "label": ["a", "", "a b"],
                        "a": [0.9, 0.1, 0.97], "b": [0.1, 0.97, 0.2], "c": [0.2, 0.1, 0.93]})
    rd.write_oof(oof)
    table = rank(run, top=2).table
    # surest disagreements: 2 on b (0.97), 3 on c (0.93), 1 on c (0.2); suspected: what the OOF predicts at 0.5
    assert table["id"].tolist() == ["2", "3"] and table["suspected"].tolist() == ["b", "a c"]
    assert table["confidence"].tolist() == pytest.approx([0.97, 0.93])
    out = write_suspects(run, top=1, out=tmp_path / "s.csv").out
    assert pd.read_csv(out, dtype=str)["id"].tolist() == ["2"]
    rd.write_config(load_config(None, ["data.task=multitask", "data.label_col=[x, y]"]))
    with pytest.raises(PodiumError, match="multitask"):
        rank(run)
    assert json.loads((run / "classes.json").read_text()) == ["a", "b", "c"]
