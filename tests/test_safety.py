"""Issue 11, on the command line: podium removes and overwrites only what it made, never runs a pickle, keeps one
writer per fold, and turns broken run files and disk problems into one message (exit 2, no traceback).

The commands run in this process (podium.cli.main, as the console script runs it): a subprocess per call would
cost seconds of imports each.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import sys
from pathlib import Path

import pytest
import torch

from podium.commands.train import train
from podium.config import load_config, save_config
from podium.tasks.check import check_config
from tests.conftest import write_tiny_competition
from tests.run.helpers import dead_pid, evil_checkpoint

FAST = ["train.epochs=1"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    """Two finished one-epoch runs, tiny and b, on the same folds of one tiny competition. Tests that change a run
    change a copy (copy_run)."""
    config = write_tiny_competition(tmp_path_factory.mktemp("safety") / "comp")
    for extra in ([], ["name=b", "train.seed=7"]):
        train(load_config(config, [*FAST, *extra]))
    return config.parent / "runs" / "tiny", config.parent / "runs" / "b"


def config_of(run: Path) -> Path:
    return run.parent.parent / "config.yaml"


def copy_run(run: Path, name: str) -> Path:
    """A copy of `run` named `name`, whose config.yaml is what `podium train CONFIG train.epochs=1 name=NAME` uses."""
    copy = run.parent / name
    shutil.copytree(run, copy)
    save_config(check_config(load_config(config_of(run), [*FAST, f"name={name}"])), copy / "config.yaml")
    return copy


def run_podium(capsys, *args: str) -> tuple[int, str]:
    """Run the podium command in this process: (exit code, stderr on one line)."""
    code, _, err = podium_out(capsys, *args)
    return code, err


def podium_out(capsys, *args: str) -> tuple[int, str, str]:
    """Run the podium command in this process: (exit code, stdout, stderr), each on one line."""
    from podium import cli

    capsys.readouterr()
    saved = sys.argv, cli.console.width, os.environ.get("COLUMNS")
    sys.argv, cli.console.width = ["podium", *args], 10_000  # rich would wrap paths mid-word at 80 columns
    os.environ["COLUMNS"] = "10000"  # the consoles made while the command runs
    try:
        with pytest.raises(SystemExit) as exit_:
            cli.main()
    finally:
        sys.argv, cli.console.width = saved[:2]
        if saved[2] is None:
            os.environ.pop("COLUMNS")
        else:
            os.environ["COLUMNS"] = saved[2]
    out = capsys.readouterr()
    return exit_.value.code, " ".join(out.out.split()), " ".join(out.err.split())


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------ 1. only what podium made


@pytest.mark.parametrize("where", ["name=..", "output_dir=COMP name=images", "output_dir=PARENT name=comp"])
def test_overwrite_never_removes_the_users_folders(tiny_competition, capsys, where):
    comp = tiny_competition.parent
    args = where.replace("COMP", str(comp)).replace("PARENT", str(comp.parent)).split()
    before = snapshot(comp.parent)
    code, err = run_podium(capsys, "train", str(tiny_competition), *FAST, *args, "--overwrite")
    # name=.. is refused by the config (one folder name); the guard refuses the other two (and name=.. as well,
    # tests/run/test_rundir.py)
    assert code == 2 and ("not a folder name" in err or "holding your data" in err), err
    assert snapshot(comp.parent) == before  # not one file removed, added or changed


def test_a_run_that_failed_before_its_first_checkpoint_does_not_block_the_corrected_rerun(tiny_competition, capsys,
                                                                                         monkeypatch):
    import podium.commands.train

    def broken(*args, **kwargs):
        raise RuntimeError("the first try dies before a checkpoint")

    with monkeypatch.context() as m:
        m.setattr(podium.commands.train, "train_fold", broken)
        with pytest.raises(RuntimeError):
            train(load_config(tiny_competition, ["train.epochs=2"]))
    capsys.readouterr()
    metrics = train(load_config(tiny_competition, FAST), folds=[0])  # corrected config, no --overwrite
    assert metrics["folds_done"] == [0]
    assert "never got a checkpoint" in " ".join(capsys.readouterr().err.split())
    from podium.errors import PodiumError

    with pytest.raises(PodiumError, match="different config"):  # now it has one: replacing it needs --overwrite
        train(load_config(tiny_competition, ["train.epochs=2"]), folds=[0])


@pytest.mark.parametrize("case", ["report over the train CSV", "predict over the run's metrics",
                                  "ensemble into a run", "compare over the test CSV", "errors into the run",
                                  "errors into the images", "preview over an image"])
def test_no_out_writes_over_data_or_into_a_run(runs, capsys, case):
    """The bug report's cases (report over data/train.csv, predict over RUN/metrics.json, ensemble A B --out A)
    and their kin; none needs --overwrite to do the damage before the fix."""
    a, b = runs
    comp = a.parent.parent
    args, victim, says = {
        "report over the train CSV": (["report", str(a), "--out", str(comp / "train.csv")],
                                      comp / "train.csv", "data.train_csv"),
        "predict over the run's metrics": (["predict", str(a), "--out", str(a / "metrics.json")],
                                           a / "metrics.json", "the run folder"),
        "ensemble into a run": (["ensemble", str(a), str(b), "--out", str(a)], a / "oof.csv",
                                "the run"),
        "compare over the test CSV": (["report", "--compare", str(a), str(b), "--out", str(comp / "test.csv")],
                                      comp / "test.csv", "data.test_csv"),
        "errors into the run": (["errors", str(a), str(a / "errors"), "--all"], a / "errors", "the run folder"),
        "errors into the images": (["errors", str(a), str(comp / "images" / "errors"), "--all"],
                                   comp / "images" / "errors", "data.image_dir"),
        "preview over an image": (["augment", "preview", str(comp / "config.yaml"), "--out",
                                   str(comp / "images" / "000.png"), "--overwrite"], comp / "images" / "000.png",
                                  "data.image_dir"),
    }[case]
    before = snapshot(comp)
    code, err = run_podium(capsys, *args)
    assert code == 2 and says in err and "Traceback" not in err, err
    assert snapshot(comp) == before, f"{victim} changed"


def test_every_out_refuses_an_existing_file_unless_overwrite(runs, capsys, tmp_path):
    a, b = runs
    mine = tmp_path / "mine.csv"
    sub_a, sub_b = tmp_path / "a.csv", tmp_path / "b.csv"
    for path, label in ((sub_a, "bag"), (sub_b, "Ankle boot")):
        path.write_text(f"id,label\n1,{label}\n2,bag\n")
    for args in (["diff", str(sub_a), str(sub_b), "--out", str(mine)],
                 ["runs", str(a.parent), "--csv", str(mine)],
                 ["ensemble", "--files", str(sub_a), str(sub_b), "--out", str(mine)],
                 ["report", str(a), "--out", str(mine), "--gradcam", "0"]):
        mine.write_text("precious\n")
        code, err = run_podium(capsys, *args)
        assert code == 2 and "--overwrite" in err and mine.read_text() == "precious\n", (args, err)
        code, err = run_podium(capsys, *args, "--overwrite")
        assert code == 0 and mine.read_text() != "precious\n", (args, err)
    code, err = run_podium(capsys, "ensemble", "--files", str(sub_a), str(sub_b), "--out", str(sub_a), "--overwrite")
    assert code == 2 and "input file" in err and sub_a.read_text().startswith("id,label\n1,bag")


def test_an_earlier_ensemble_folder_is_replaced_only_with_overwrite(runs, capsys, tmp_path):
    a, b = runs
    out = tmp_path / "blend"
    assert run_podium(capsys, "ensemble", str(a), str(b), "--out", str(out))[0] == 0
    assert json.loads((out / ".podium-run").read_text())["kind"] == "ensemble"
    code, err = run_podium(capsys, "ensemble", str(a), str(b), "--out", str(out))
    assert code == 2 and "earlier ensemble" in err and "--overwrite" in err
    assert run_podium(capsys, "ensemble", str(a), str(b), "--out", str(out), "--overwrite")[0] == 0
    for folder in (a.parent.parent, a.parent):  # the competition, the output_dir: not podium's to write into
        code, err = run_podium(capsys, "ensemble", str(a), str(b), "--out", str(folder), "--overwrite")
        assert code == 2 and ("not made by `podium ensemble`" in err or "holds" in err), err


# ------------------------------------------------------------------------ 2. no pickle ever runs


@pytest.mark.parametrize("command", ["train --resume", "predict", "report", "train.init_from"])
def test_a_crafted_checkpoint_never_runs(runs, capsys, monkeypatch, tmp_path, command):
    a, _ = runs
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # what a user's environment may say
    marker = tmp_path / "pwned"
    run = copy_run(a, f"evil-{command.split()[0].replace('.', '-')}")
    config = str(config_of(a))
    if command == "train --resume":
        (run / "fold0" / "done.json").unlink()  # unfinished: --resume restarts it from last.ckpt
        bad = evil_checkpoint(run / "fold0" / "last.ckpt", marker)
        args = ["train", config, *FAST, f"name={run.name}", "--folds", "0", "--resume"]
    else:
        bad = run / "fold0" / "best.ckpt"
        for k in range(3):  # whichever fold a command reads first
            evil_checkpoint(run / f"fold{k}" / "best.ckpt", marker)
        bad = {"predict": ["predict", str(run)], "report": ["report", str(run)],
               "train.init_from": ["train", config, *FAST, "name=crt", "train.stage=classifier",
                                   f"train.init_from={run}", "--folds", "0"]}[command]
        args, bad = bad, run
    code, err = run_podium(capsys, *args)
    assert code == 2 and "pickled objects" in err and str(bad) in err and "Traceback" not in err, err
    assert not marker.exists()


# ------------------------------------------------------------------------ 3. one writer per run


def test_a_second_train_of_a_fold_being_trained_refuses_and_disjoint_folds_still_train(runs, capsys):
    a, _ = runs
    run = copy_run(a, "locked")
    (run / "fold0" / "done.json").unlink()
    lock = run / "locks" / "fold0.lock"  # locks/ is there: the copied run's training made it
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": "now"}))  # alive
    config = str(config_of(a))
    code, err = run_podium(capsys, "train", config, *FAST, "name=locked", "--resume")
    assert code == 2 and f"process {os.getpid()} on host {socket.gethostname()}" in err and str(lock) in err, err
    assert not (run / "fold0" / "done.json").exists()
    code, err = run_podium(capsys, "train", config, *FAST, "name=locked", "--folds", "1,2", "--overwrite")
    assert code == 0, err  # another machine's folds
    assert json.loads(lock.read_text())["pid"] == os.getpid()  # its lock untouched
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": dead_pid(), "started": "then"}))
    code, err = run_podium(capsys, "train", config, *FAST, "name=locked", "--resume")
    assert code == 0 and "stale lock" in err, err
    assert not lock.exists() and (run / "fold0" / "done.json").exists()


# ------------------------------------------------------------------------ 4. I/O errors


def test_an_output_dir_that_cannot_be_written_is_named(tiny_competition, capsys):
    blocked = tiny_competition.parent / "train.csv" / "runs"  # under a file: no user can create it
    code, err = run_podium(capsys, "train", str(tiny_competition), *FAST, f"output_dir={blocked}")
    assert code == 2 and str(blocked) in err and "output_dir=" in err and "Traceback" not in err, err


def test_a_full_disk_while_saving_a_checkpoint_is_one_message(tiny_competition, capsys, monkeypatch):
    def full(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    code, err = run_podium(capsys, "train", str(tiny_competition), *FAST, "--folds", "0")
    fold = tiny_competition.parent / "runs" / "tiny" / "fold0"
    assert code == 2 and str(fold) in err and "disk is full" in err and "output_dir" in err, err
    assert "Traceback" not in err and not [p for p in fold.iterdir() if p.name.endswith(".tmp")]


def test_os_errors_a_user_can_fix_are_one_message_unless_debug(tmp_path, capsys, monkeypatch):
    import podium.report.runs

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "secret"))

    monkeypatch.setattr(podium.report.runs, "collect_runs", denied)
    code, err = run_podium(capsys, "runs", str(tmp_path))
    assert code == 2 and str(tmp_path / "secret") in err and "permission denied" in err, err
    from podium.cli import main

    monkeypatch.setattr(sys, "argv", ["podium", "--debug", "runs", str(tmp_path)])
    with pytest.raises(PermissionError):
        main()


# ------------------------------------------------------------------------ 5. broken run files name themselves


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:1000])


BROKEN = {
    "classes.json not a list": ("classes.json", lambda r: (r / "classes.json").write_text('{"a": 1}')),
    "classes.json one class more": ("classes.json", lambda r: (r / "classes.json").write_text(
        json.dumps([*json.loads((r / "classes.json").read_text()), "extra"]))),
    "run.json missing": ("run.json", lambda r: (r / "run.json").unlink()),
    "best.ckpt missing": ("best.ckpt", lambda r: [(r / f"fold{k}" / "best.ckpt").unlink() for k in range(3)]),
    "best.ckpt truncated": ("best.ckpt", lambda r: [_truncate(r / f"fold{k}" / "best.ckpt") for k in range(3)]),
    "metrics.json corrupt": ("metrics.json", lambda r: (r / "metrics.json").write_text('{"cv": ')),
}


@pytest.mark.parametrize("broken, command", [
    ("classes.json not a list", "predict"), ("classes.json not a list", "ensemble"),
    ("classes.json not a list", "posthoc"), ("classes.json not a list", "errors"),
    ("classes.json not a list", "compare"), ("classes.json one class more", "predict"),
    ("run.json missing", "predict"), ("run.json missing", "report"), ("best.ckpt missing", "predict"),
    ("best.ckpt missing", "report"), ("best.ckpt truncated", "predict"), ("metrics.json corrupt", "report"),
    ("metrics.json corrupt", "posthoc"),
])
def test_a_broken_run_file_names_itself(runs, capsys, tmp_path, broken, command):
    a, b = runs
    name, damage = BROKEN[broken]
    run = copy_run(a, f"broken-{len(list(a.parent.iterdir()))}")
    damage(run)
    args = {"predict": ["predict", str(run)], "report": ["report", str(run)], "posthoc": ["posthoc", str(run)],
            "ensemble": ["ensemble", str(run), str(b)], "errors": ["errors", str(run), str(tmp_path / "errors")],
            "compare": ["report", "--compare", str(b), str(run)]}[command]
    code, err = run_podium(capsys, *args)
    assert code == 2 and "Traceback" not in err, err
    assert str(run) in err and name in err, err


def test_the_leaderboard_lists_a_broken_run_and_the_others(runs, capsys):
    a, b = runs
    run = copy_run(a, "zz-broken")
    (run / "metrics.json").write_text('{"cv": ')
    code, out, err = podium_out(capsys, "runs", str(a.parent), "--csv", str(a.parent.parent / "board.csv"),
                                "--overwrite")
    assert code == 0 and f"broken run zz-broken: '{run / 'metrics.json'}' is not valid JSON" in out, (out, err)
    import pandas as pd

    board = pd.read_csv(a.parent.parent / "board.csv")
    assert {"tiny", "b", "zz-broken"} <= set(board["name"]) and list(board["name"])[-1] == "zz-broken"
    assert board.set_index("name").loc["zz-broken", "problem"].count("metrics.json")
