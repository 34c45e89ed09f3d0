"""`podium runs`: every run under an output folder, best CV first within its metric, printed and as CSV."""

from __future__ import annotations

import json
import os
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
    # a wide terminal: at rich's default 80 columns a long wall time (a loaded machine) can squeeze a name to "tiny…"
    out = subprocess.run(podium_cmd("runs", str(a.parent)), capture_output=True, text=True,
                         env={**os.environ, "COLUMNS": "200"})
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


def _data(rd, table: str, stamp: float):
    """data.json of a run trained on table `table` (the image files the same), last changed at `stamp`."""
    from podium.run.rundir import RunDir

    RunDir(rd).write_data(RunDir.data_record(table * 64, "f" * 64, "c" * 64, 48))
    for p in [rd / "config.yaml", *rd.glob("fold*/done.json")]:
        os.utime(p, (stamp, stamp))
    return RunDir(rd).data_version()


def test_runs_on_other_data_than_the_newest_are_flagged(tmp_path, capsys):
    from rich.console import Console

    fake_run(tmp_path, "old", "accuracy", 0.70)  # made before runs recorded their data
    v1 = _data(fake_run(tmp_path, "a", "accuracy", 0.90), "1", 1_000_000)
    assert _data(fake_run(tmp_path, "b", "accuracy", 0.80), "1", 2_000_000) == v1
    v2 = _data(fake_run(tmp_path, "c", "accuracy", 0.85), "2", 3_000_000)  # the newest, on other data
    frame = collect_runs(tmp_path).set_index("name")
    assert dict(frame["data"]) == {"a": v1[:8], "b": v1[:8], "c": v2[:8], "old": ""}
    assert dict(frame["data_note"]) == {"a": f"trained on other data than c (data {v2[:8]})",
                                        "b": f"trained on other data than c (data {v2[:8]})", "c": "", "old": ""}
    list_runs(tmp_path, console=Console(width=200))
    out = capsys.readouterr().out
    assert f"{v1[:8]} *" in out and f"{v2[:8]} " in out and f"{v2[:8]} *" not in out
    assert next(line for line in out.splitlines() if " old " in line).rstrip().endswith(" -")  # no version
    assert f"* a, b: trained on other data than c (data {v2[:8]}), the newest run" in out
    assert pd.read_csv(tmp_path / "leaderboard.csv").set_index("name").loc["a", "data_note"].startswith("trained on")


def test_two_runs_on_the_same_data_share_its_version_and_one_changed_label_flags_the_others(tiny_competition, capsys):
    from podium.commands.train import train
    from podium.config import load_config
    from podium.run.rundir import RunDir

    fast = ["train.epochs=1"]
    for name in ("first", "second"):
        train(load_config(tiny_competition, [*fast, f"name={name}"]), folds=[0])
    runs = tiny_competition.parent / "runs"
    first, second = (RunDir(runs / n).data() for n in ("first", "second"))
    assert first["version"] == second["version"] and first["n_train"] == 48
    csv = tiny_competition.parent / "train.csv"
    table = pd.read_csv(csv, dtype=str)
    assert table.loc[0, "label"] != "bag"
    table.loc[0, "label"] = "bag"  # one label changed, nothing else
    table.to_csv(csv, index=False)
    train(load_config(tiny_competition, [*fast, "name=relabelled"]), folds=[0])
    third = RunDir(runs / "relabelled").data()
    assert third["version"] != first["version"] and third["images"] == first["images"]  # the same image files
    assert third["table"] != first["table"]
    out = subprocess.run(podium_cmd("runs", str(runs)), capture_output=True, text=True,
                         env={**os.environ, "COLUMNS": "200"})
    assert out.returncode == 0, out.stderr
    assert f"{first['version'][:8]} *" in out.stdout and f"{third['version'][:8]}" in out.stdout
    assert "first, second: trained on other data than relabelled" in " ".join(out.stdout.split())
    capsys.readouterr()
    train(load_config(tiny_competition, [*fast, "name=first"]), folds=[0], resume=True)  # fold 0 is finished
    assert (f"the data changed since fold(s) 0 of '{runs / 'first'}' were trained (data version "
            f"{first['version'][:8]}, now {third['version'][:8]};") in " ".join(capsys.readouterr().err.split())
    assert RunDir(runs / "first").data() == first  # still the data its finished fold was trained on
