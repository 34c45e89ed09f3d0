"""`podium train --mirror s3://...` against a real S3 API on loopback (moto's server): a run killed mid-fold and its
folder deleted resumes on a fresh folder from the mirror to the OOF of an uninterrupted run; a store that refuses
writes is reported and training finishes locally."""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import time

import numpy as np
import pandas as pd
import pytest

import podium.engine.fold as fold_module
from podium.commands.mirror import pull_run
from podium.commands.train import train
from podium.config import load_config
from podium.run.store import Store
from tests.conftest import CLASSES, podium_cmd


def test_killed_run_resumes_from_s3_on_a_fresh_folder_with_the_uninterrupted_oof(tiny_competition, s3, tmp_path,
                                                                                 monkeypatch):
    # 20 epochs, no early stop: on an idle machine the mirror's first checkpoint must still come well before the end
    args = ["train.epochs=20", "train.patience=0", "cv.n_folds=3", "train.batch_size=2", "train.workers=0"]
    train(load_config(tiny_competition, [*args, "name=ref"]), folds=[0])
    url = "s3://podium/runs"
    cmd = podium_cmd("train", str(tiny_competition), *args, "name=killed", "--folds", "0", "--mirror", url)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONHASHSEED": "0"})
    store, deadline, files = Store(f"{url}/killed"), time.time() + 600, {}
    while time.time() < deadline and proc.poll() is None:
        files = (store.manifest("fold0") or {"files": {}})["files"]
        if "fold0/last.ckpt" in files and "fold0/metrics.csv" in files:  # a checkpoint mirrored: kill mid-fold
            break
        time.sleep(0.1)
    assert proc.poll() is None, "training finished (or failed) before a checkpoint was mirrored"
    assert "fold0/last.ckpt" in files, "no checkpoint mirrored within 10 minutes"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    mirrored = store.manifest("fold0")["files"]
    assert "fold0/done.json" not in mirrored
    epochs_mirrored = len(pd.read_csv(io.BytesIO(store.read_object("fold0", mirrored["fold0/metrics.csv"]["sha256"]))))
    assert epochs_mirrored < 20
    shutil.rmtree(tiny_competition.parent / "runs" / "killed")  # the machine is gone

    resumed_from = []
    make_trainer = fold_module.make_trainer

    def recording_trainer(*a, **kw):  # which checkpoint the fold resumes from
        trainer = make_trainer(*a, **kw)
        fit = trainer.fit
        trainer.fit = lambda *fa, ckpt_path=None, **fkw: (resumed_from.append(ckpt_path), fit(*fa, ckpt_path=ckpt_path,
                                                                                              **fkw))[1]
        return trainer

    monkeypatch.setattr(fold_module, "make_trainer", recording_trainer)
    fresh = tmp_path / "another-machine"
    metrics = train(load_config(tiny_competition, [*args, "name=killed", f"output_dir={fresh}"]), folds=[0],
                    resume=True, mirror=url)
    assert resumed_from and resumed_from[0] is not None and resumed_from[0].startswith(str(fresh))
    assert metrics["folds_done"] == [0]
    ref = pd.read_csv(tiny_competition.parent / "runs" / "ref" / "oof.csv")
    got = pd.read_csv(fresh / "killed" / "oof.csv")
    assert list(got["id"]) == list(ref["id"])
    np.testing.assert_allclose(got[CLASSES].to_numpy(), ref[CLASSES].to_numpy(), atol=1e-6)
    curves = pd.read_csv(fresh / "killed" / "fold0" / "metrics.csv")
    assert list(curves["epoch"]) == list(range(20))
    # the mirror now holds the finished run: pulled anywhere, it is the same
    pulled = pull_run(f"{url}/killed", tmp_path / "pulled")
    assert pulled["folds_done"] == [0] and pulled["folds_unfinished"] == []
    np.testing.assert_allclose(pd.read_csv(tmp_path / "pulled" / "oof.csv")[CLASSES].to_numpy(),
                               ref[CLASSES].to_numpy(), atol=1e-6)


def test_a_store_refusing_writes_is_reported_and_training_finishes_locally(tiny_competition, s3, capsys):
    cfg = load_config(tiny_competition, ["train.epochs=1", "cv.n_folds=2", "name=alone"])
    metrics = train(cfg, mirror="s3://no-such-bucket/runs")  # the store answers every write with NoSuchBucket
    assert metrics["complete"]
    run = tiny_competition.parent / "runs" / "alone"
    assert all((run / f"fold{k}" / "done.json").is_file() for k in (0, 1)) and (run / "oof.csv").is_file()
    err = " ".join(capsys.readouterr().err.split())  # the terminal's line wrapping undone
    assert err.count("mirror s3://no-such-bucket/runs/alone") == 2, err  # reported once, and once at the end
    assert "Training goes on locally" in err and "still failing" in err and "complete on this disk" in err
    with pytest.raises(FileNotFoundError):
        Store("s3://no-such-bucket/runs/alone").fs.ls("no-such-bucket")
