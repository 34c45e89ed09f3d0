"""podium.run: the marker, RunDir's readers, the fold locks, where a run folder may lie, the checkpoint loader."""

from __future__ import annotations

import json
import os
import socket

import pytest
import torch

from podium.config import load_config
from podium.errors import PodiumError
from podium.run.checkpoint import load_checkpoint
from podium.run.guard import check_location, clear_run, open_run
from podium.run.lock import fold_locks, live_holders, lock_path
from podium.run.marker import is_podium_run, run_above, write_marker
from podium.run.rundir import RunDir
from tests.run.helpers import dead_pid, evil_checkpoint

# ---------------------------------------------------------------------------------------------- marker


def test_marker_says_podium_made_the_folder_and_is_found_from_below(tmp_path):
    run = tmp_path / "runs" / "r"
    assert not is_podium_run(run) and run_above(run / "fold0" / "x.csv") is None
    write_marker(run)
    marker = json.loads((run / ".podium-run").read_text())
    assert marker["kind"] == "train" and marker["podium"] and marker["created"]
    assert is_podium_run(run) and run_above(run / "fold0" / "x.csv") == run.resolve()
    assert run_above(tmp_path / "runs") is None


# ---------------------------------------------------------------------------------------------- readers


@pytest.mark.parametrize("name, text, says", [
    ("classes.json", None, "is missing"),
    ("classes.json", "[\"a\", ", "is not valid JSON"),
    ("classes.json", '{"a": 1}', "must be a non-empty list of class names"),
    ("classes.json", "[1, 2]", "must be a non-empty list of class names"),
    ("classes.json", '["a", "a"]', "lists a class name twice"),
    ("run.json", '{"mean": [0.5]}', "must be a mapping with 'channels'"),
    ("run.json", '{"channels": 1, "mean": "0.5"}', "'mean' as a list of numbers"),
    ("metrics.json", '{"cv": "high"}', "lacks or has the wrong type for cv_metric, cv,"),
])
def test_readers_name_the_broken_file_and_the_fix(tmp_path, name, text, says):
    run = RunDir(tmp_path / "r")
    run.path.mkdir()
    if text is not None:
        (run.path / name).write_text(text)
    read = {"classes.json": run.classes, "run.json": run.info, "metrics.json": run.metrics}[name]
    with pytest.raises(PodiumError, match=says) as err:
        read()
    assert str(run.path / name) in str(err.value)
    assert "podium train" in str(err.value)  # and how to get a good one back


def test_readers_return_what_train_writes(tmp_path):
    run = RunDir(tmp_path)
    (tmp_path / "classes.json").write_text('["b", "a"]')
    (tmp_path / "run.json").write_text('{"channels": 1, "n_train": 4, "mean": [0.5], "std": [0.25]}')
    assert run.classes() == ["b", "a"] and run.info()["std"] == [0.25]
    assert run.best_ckpt(2) == tmp_path / "fold2" / "best.ckpt" and not run.has_progress()
    (tmp_path / "fold2").mkdir()
    (tmp_path / "fold2" / "last.ckpt").write_bytes(b"")
    assert run.has_progress() and run.finished_folds() == []


# ---------------------------------------------------------------------------------------------- checkpoints


def test_checkpoint_loads_tensors_only(tmp_path):
    path = tmp_path / "fold0" / "best.ckpt"
    path.parent.mkdir()
    torch.save({"state_dict": {"w": torch.ones(2)}, "epoch": 3}, path)
    assert load_checkpoint(path)["state_dict"]["w"].tolist() == [1.0, 1.0]


def test_a_crafted_checkpoint_never_runs_even_when_the_environment_asks(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    path = evil_checkpoint(tmp_path / "fold0" / "last.ckpt", marker)
    torch.load(path, weights_only=False)  # the file does run code when unpickled: the test means something
    assert marker.exists()
    marker.unlink()
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(PodiumError, match="pickled objects besides tensors") as err:
        load_checkpoint(path)
    assert str(path) in str(err.value) and not marker.exists()


def test_missing_truncated_and_foreign_checkpoints_name_the_file_and_the_fold_to_retrain(tmp_path):
    run = tmp_path / "r"
    (run / "fold1").mkdir(parents=True)
    (run / "config.yaml").write_text("name: r\n")
    path = run / "fold1" / "best.ckpt"
    with pytest.raises(PodiumError, match="is missing"):
        load_checkpoint(path)
    torch.save({"state_dict": {"w": torch.ones(1000)}}, path)
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(PodiumError, match=r"truncated or corrupt .* --folds 1 --overwrite") as err:
        load_checkpoint(path)
    assert str(path) in str(err.value)
    torch.save([1, 2], path)
    with pytest.raises(PodiumError, match="not a checkpoint written by `podium train`"):
        load_checkpoint(path)


# ---------------------------------------------------------------------------------------------- locks


def test_a_held_fold_refuses_a_second_writer_and_is_released_however_the_block_ends(tmp_path):
    with fold_locks(tmp_path, [0, 1]) as held:
        holder = json.loads(lock_path(tmp_path, 1).read_text())
        assert (holder["host"], holder["pid"]) == (socket.gethostname(), os.getpid()) and holder["started"]
        assert live_holders(tmp_path, held) == []  # this process's own
        with pytest.raises(PodiumError, match=rf"process {os.getpid()} on host {socket.gethostname()}") as err:
            with fold_locks(tmp_path, [1]):
                pass
        assert str(lock_path(tmp_path, 1)) in str(err.value)
        with fold_locks(tmp_path, [2]):  # disjoint folds: another writer trains them at the same time
            assert [p.name for p, _ in live_holders(tmp_path, held)] == ["fold2.lock"]
    assert not lock_path(tmp_path, 0).exists() and not lock_path(tmp_path, 1).exists()
    with pytest.raises(RuntimeError):
        with fold_locks(tmp_path, [0]):
            raise RuntimeError("training failed")
    assert not lock_path(tmp_path, 0).exists()


def test_a_dead_holder_on_this_host_is_taken_over_with_a_note(tmp_path):
    path = lock_path(tmp_path, 0)
    path.parent.mkdir()
    pid = dead_pid()
    path.write_text(json.dumps({"host": socket.gethostname(), "pid": pid, "started": "2020-01-01T00:00:00"}))
    notes = []
    with fold_locks(tmp_path, [0], note=notes.append):
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert len(notes) == 1 and f"process {pid}" in notes[0] and "stale" in notes[0]
    other_host = {"host": "elsewhere.example", "pid": pid, "started": "2020-01-01T00:00:00"}
    path.write_text(json.dumps(other_host))  # a dead-looking pid of another machine says nothing: refused
    with pytest.raises(PodiumError, match=r"elsewhere.example .* delete"):
        with fold_locks(tmp_path, [0]):
            pass
    assert json.loads(path.read_text()) == other_host


# ---------------------------------------------------------------------------------------------- guard


@pytest.mark.parametrize("name", ["..", ".", "/tmp", "a/../.."])
def test_run_folder_lies_inside_output_dir(tiny_competition, name):
    cfg = load_config(tiny_competition).model_copy(update={"name": name})  # past the config's own checks
    with pytest.raises(PodiumError, match="outside output_dir"):
        check_location(cfg)


def test_run_folder_never_holds_the_users_files_and_an_unmarked_one_is_refused(tiny_competition):
    comp = tiny_competition.parent
    for overrides, key in [([f"output_dir={comp}", "name=images"], "data.image_dir"),
                           ([f"output_dir={comp.parent}", f"name={comp.name}"], "data.train_csv")]:
        with pytest.raises(PodiumError, match=key):
            check_location(load_config(tiny_competition, overrides))
    with pytest.raises(PodiumError, match="the config file"):
        check_location(load_config(tiny_competition, [f"output_dir={comp.parent}", f"name={comp.name}",
                                                      "data.train_csv=null", f"data.train_dir={comp / 'images'}",
                                                      "data.image_dir=null", "data.test_csv=null",
                                                      "data.sample_submission=null",
                                                      f"cv.folds_file={comp / 'f.csv'}"]),
                       config_path=tiny_competition)
    mine = comp / "runs" / "mine"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("my notes")
    cfg = load_config(tiny_competition, ["name=mine"])
    with pytest.raises(PodiumError, match="was not made by `podium train`"):
        open_run(cfg)
    with pytest.raises(PodiumError, match="does not carry"):
        clear_run(RunDir(mine))
    assert (mine / "notes.txt").read_text() == "my notes" and not is_podium_run(mine)
    fresh = open_run(load_config(tiny_competition, ["name=fresh"]))
    assert fresh.is_podium_run() and list(fresh.path.iterdir()) == [fresh.marker]


def test_a_file_of_a_run_passed_for_the_run_names_its_folder(tmp_path):
    run = tmp_path / "exp"
    run.mkdir()
    (run / "config.yaml").write_text("name: exp\n")
    with pytest.raises(PodiumError, match=r"a file of a run; pass the run folder itself: '.*exp'"):
        RunDir(run / "config.yaml").load_config()
    with pytest.raises(PodiumError, match="is not a run folder"):
        RunDir(tmp_path / "elsewhere").load_config()
