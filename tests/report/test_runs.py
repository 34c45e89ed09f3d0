"""`podium runs`: every run under an output folder, best CV first within its metric, printed and as CSV."""

from __future__ import annotations

import json
import subprocess

import pandas as pd
import yaml

from podium.report.runs import collect_runs, list_runs
from tests.conftest import podium_cmd


def fake_run(root, name, metric, cv, std=0.01, seconds=(10.0, 12.5), loss=None):
    rd = root / name
    rd.mkdir(parents=True)
    train = {"epochs": 3, **({"loss": loss} if loss else {"label_smoothing": 0.1})}
    (rd / "config.yaml").write_text(yaml.safe_dump({"name": name, "model": {"name": "resnet18"},
                                                    "data": {"image_size": 64}, "train": train}))
    if cv is None:
        return rd
    (rd / "metrics.json").write_text(json.dumps({"cv_metric": metric, "cv": cv, "cv_fold_std": std, "n_folds": 5,
                                                 "higher_is_better": metric != "logloss"}))
    for k, s in enumerate(seconds):
        (rd / f"fold{k}").mkdir()
        (rd / f"fold{k}" / "done.json").write_text(json.dumps({"seconds": s}))
    return rd


def test_ranked_within_each_metric_unfinished_last(tmp_path):
    fake_run(tmp_path, "mid", "accuracy", 0.91)
    fake_run(tmp_path, "best", "accuracy", 0.95, loss="focal")
    fake_run(tmp_path, "worst", "accuracy", 0.80)
    fake_run(tmp_path, "ll-good", "logloss", 0.20)
    fake_run(tmp_path, "ll-bad", "logloss", 0.30)
    fake_run(tmp_path, "started", "accuracy", None)
    (tmp_path / "cache").mkdir()  # not a run
    frame = collect_runs(tmp_path)
    assert list(frame["name"]) == ["best", "mid", "worst", "started", "ll-good", "ll-bad"]
    best = frame.iloc[0]
    assert (best["model"], best["image_size"], best["loss"], best["folds"], best["wall_s"]) == \
        ("resnet18", 64, "focal", "2/5", 22.5)
    assert frame.iloc[1]["loss"] == "cross_entropy (ls 0.1)"


def test_real_runs_in_the_terminal_and_as_csv(two_runs):
    a, b = two_runs
    out = subprocess.run(podium_cmd("runs", str(a.parent)), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    csv = pd.read_csv(a.parent / "leaderboard.csv")
    ma, mb = (json.loads((r / "metrics.json").read_text()) for r in (a, b))
    assert list(csv["name"]) == [r.name for r, m in sorted(((a, ma), (b, mb)), key=lambda t: -t[1]["cv"])]
    row = csv.set_index("name").loc["tiny"]
    assert row["cv"] == ma["cv"] and row["cv_fold_std"] == ma["cv_fold_std"] and row["folds"] == "3/3"
    assert row["wall_s"] == round(sum(json.loads((a / f"fold{k}" / "done.json").read_text())["seconds"]
                                      for k in range(3)), 1)
    assert "tiny-b" in out.stdout and f"{ma['cv']:.4f}" in out.stdout and "podium_cnn" in out.stdout


def test_empty_folder_says_so(tmp_path, capsys):
    assert list_runs(tmp_path).empty
    assert "No runs" in capsys.readouterr().out
