"""Folds on several machines through one mirror (file://): two processes, each with its own run folder (a machine
each), training disjoint folds make the run one process makes; `--folds next` never gives a fold to two of them;
a fold leased by a live machine is refused."""

from __future__ import annotations

import json
import re
import subprocess

import numpy as np
import pandas as pd
import pytest

from podium.commands.mirror import pull_run
from podium.commands.predict import predict
from podium.commands.train import train
from podium.config import load_config
from podium.errors import PodiumError
from podium.run import lease
from podium.run.pull import file_sha256
from podium.run.store import Store
from tests.conftest import CLASSES, podium_cmd

ARGS = ["train.epochs=1", "cv.n_folds=3", "train.workers=0"]


def machines(config, tmp_path, url, folds: list[str]) -> list[str]:
    """Run one `podium train` per entry of `folds` at the same time, each into its own output_dir; their stderr."""
    procs = []
    for i, which in enumerate(folds):
        log = (tmp_path / f"machine{i}.txt").open("w")
        cmd = podium_cmd("train", str(config), *ARGS, f"output_dir={tmp_path / f'machine{i}'}", "--folds", which,
                         "--mirror", url)
        procs.append((subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log), log))
    out = []
    for proc, log in procs:
        assert proc.wait(timeout=600) == 0, open(log.name).read()[-3000:]
        log.close()
        out.append(open(log.name).read())
    return out


def trained(stderr: str) -> set[int]:
    return {int(k) for k in re.findall(r"^fold (\d+): accuracy", stderr, re.M)}


def test_two_machines_training_disjoint_folds_make_the_single_process_run(tiny_competition, tmp_path):
    url = f"file://{tmp_path}/mirror"
    logs = machines(tiny_competition, tmp_path, url, ["0", "1,2"])
    assert [trained(log) for log in logs] == [{0}, {1, 2}]
    single = train(load_config(tiny_competition, ARGS))  # the same folds, seeds and epochs in one process
    pulled = pull_run(f"{url}/tiny", tmp_path / "pulled")
    assert pulled["folds_done"] == [0, 1, 2]
    merged = json.loads((tmp_path / "pulled" / "metrics.json").read_text())
    assert merged["complete"] and merged["cv"] == pytest.approx(single["cv"], abs=1e-9)
    assert merged["folds"].keys() == single["folds"].keys()
    assert all(merged["folds"][k] == pytest.approx(single["folds"][k]) for k in single["folds"])
    ours = pd.read_csv(tmp_path / "pulled" / "oof.csv", dtype={"id": str})
    theirs = pd.read_csv(tiny_competition.parent / "runs" / "tiny" / "oof.csv", dtype={"id": str})
    assert list(ours["id"]) == list(theirs["id"]) and ours["id"].is_unique
    np.testing.assert_allclose(ours[CLASSES].to_numpy(), theirs[CLASSES].to_numpy(), atol=1e-6)
    # each machine brought in the other's folds when it finished: the one that finished last holds the whole run
    assert any(json.loads((tmp_path / f"machine{i}" / "tiny" / "metrics.json").read_text())["complete"]
               for i in (0, 1))
    # merging again changes nothing: the merge is idempotent
    train(load_config(tiny_competition, [*ARGS, f"output_dir={tmp_path / 'pulled-again'}"]), resume=True, mirror=url)
    again = pd.read_csv(tmp_path / "pulled-again" / "tiny" / "oof.csv", dtype={"id": str})
    np.testing.assert_allclose(again[CLASSES].to_numpy(), ours[CLASSES].to_numpy(), atol=0)
    # predict on a machine without the run: pulled first, its submission mirrored back
    res = predict(tmp_path / "predictor" / "tiny", mirror=url)
    assert res.folds == [0, 1, 2]
    files = Store(f"{url}/tiny").manifest("run")["files"]
    assert files["submission.csv"]["sha256"] == file_sha256(res.submission)


def test_folds_next_never_gives_a_fold_to_two_machines(tiny_competition, tmp_path):
    url = f"file://{tmp_path}/mirror"
    logs = machines(tiny_competition, tmp_path, url, ["next", "next"])
    a, b = (trained(log) for log in logs)
    assert not a & b and a | b == {0, 1, 2}, logs
    store = Store(f"{url}/tiny")
    assert not store.fs.ls(f"{store.root}/leases", detail=False)  # every lease released
    pulled = pull_run(f"{url}/tiny", tmp_path / "pulled")
    oof = pd.read_csv(tmp_path / "pulled" / "oof.csv", dtype={"id": str})
    assert pulled["folds_done"] == [0, 1, 2] and oof["id"].is_unique and len(oof) == 48


def test_a_fold_leased_by_a_live_machine_is_refused_and_skipped(tiny_competition, tmp_path, capsys):
    url = f"file://{tmp_path}/mirror"
    store = Store(f"{url}/tiny")
    theirs, _ = lease.take(store, 1)  # another machine trains fold 1
    with pytest.raises(PodiumError, match=r"Fold 1 is being trained through the mirror .* by process"):
        train(load_config(tiny_competition, ARGS), folds=[0, 1], mirror=url)
    assert lease.take(store, 0)[0] is not None  # the refused command released what it had leased
    lease.release(store, 0, store.lease(0))
    metrics = train(load_config(tiny_competition, [*ARGS, "name=tiny"]), folds="next", mirror=url)
    assert metrics["folds_done"] == [0, 2]  # fold 1 passed over
    assert store.lease(1)["token"] == theirs["token"]


def test_folds_next_is_refused_for_a_multi_process_run(tiny_competition, tmp_path):
    with pytest.raises(PodiumError, match="name the folds instead"):  # its ranks would take different folds
        train(load_config(tiny_competition, [*ARGS, "train.devices=2"]), folds="next",
              mirror=f"file://{tmp_path}/mirror")
    assert not (tiny_competition.parent / "runs" / "tiny").exists()  # refused before the run folder was made
