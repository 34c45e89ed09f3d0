"""Tracking: MLflow read back through MlflowClient from the SQLite store, W&B offline runs read back from their
.wandb files, and resume continuing the same runs. One tiny run (2 folds x 2 epochs) logs to both."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pandas as pd
import pytest

from podium.commands.train import train
from podium.config import load_config
from podium.engine.tracking import flat_params, score_metrics
from tests.conftest import write_tiny_competition


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    config = write_tiny_competition(tmp_path_factory.mktemp("tracking") / "comp")
    cfg = load_config(config, ["track.mlflow=true", "track.wandb=true", "cv.n_folds=2", "train.epochs=2"])
    metrics = train(cfg)
    return cfg, Path(cfg.output_dir) / cfg.name, metrics


@pytest.fixture(scope="module")
def mlflow_runs(tracked):
    from mlflow import MlflowClient

    cfg, _, _ = tracked
    client = MlflowClient(f"sqlite:///{Path(cfg.output_dir).resolve()}/mlflow.db")
    experiment = client.get_experiment_by_name("podium")
    runs = client.search_runs([experiment.experiment_id])
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    children = {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    return client, experiment, runs, parent, children


def test_mlflow_parent_run_holds_params_scores_and_artifacts(tracked, mlflow_runs):
    cfg, rd, metrics = tracked
    client, experiment, runs, parent, children = mlflow_runs
    assert len(runs) == 3 and parent.info.run_name == "tiny" and parent.info.status == "FINISHED"
    assert experiment.artifact_location == (Path(cfg.output_dir) / "mlartifacts").resolve().as_uri()
    params = parent.data.params
    assert (params["train.lr"], params["model.name"], params["cv.n_folds"], params["track.mlflow"]) == \
        ("0.003", "podium_cnn", "2", "True")
    m = parent.data.metrics
    assert m["cv"] == metrics["cv"] and m["cv_fold_std"] == metrics["cv_fold_std"]
    assert (m["oof_logloss"] == metrics["oof"]["logloss"]
            and m["fold1_f1_macro"] == metrics["folds"]["fold1"]["f1_macro"])
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} == {"config.yaml", "metrics.json", "oof.csv",
                                                                        "report.html"}
    local = Path(client.download_artifacts(parent.info.run_id, "config.yaml", str(rd.parent / "dl")))
    assert local.read_text() == (rd / "config.yaml").read_text()


def test_mlflow_child_run_per_fold_has_the_epoch_curves(tracked, mlflow_runs):
    _, rd, _ = tracked
    client, _, _, _, children = mlflow_runs
    assert sorted(children) == ["tiny/fold0", "tiny/fold1"]
    for k in range(2):
        child = children[f"tiny/fold{k}"]
        rows = pd.read_csv(rd / f"fold{k}" / "metrics.csv")
        for name in ("val_accuracy", "val_logloss", "train_loss_epoch"):
            history = sorted(client.get_metric_history(child.info.run_id, name), key=lambda h: h.step)
            column = "train_loss" if name == "train_loss_epoch" else name
            assert [h.value for h in history] == pytest.approx(rows[column].tolist(), rel=1e-6), name
        assert child.data.tags["podium.fold"] == str(k)


def test_resume_logs_into_the_same_mlflow_runs(tracked, mlflow_runs):
    cfg, rd, _ = tracked
    client, experiment, runs, parent, _ = mlflow_runs
    assert json.loads((rd / "mlflow.json").read_text())["run_id"] == parent.info.run_id
    train(cfg, resume=True)  # nothing to train; logs the run again
    assert len(client.search_runs([experiment.experiment_id])) == len(runs)


def wandb_records(path: Path):
    """The protobuf records of a .wandb file (LevelDB log format: 7-byte header, 32 KiB blocks)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, pos, block, buf = path.read_bytes(), 7, 32768, b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        left = block - pos % block
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7]) if left >= 7 else (0, 0, 0)
        if left < 7 or (length == 0 and kind == 0):
            pos += left
            continue
        buf, pos = buf + data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind in (1, 4):  # a full record, or the last piece of one
            record = pb.Record()
            record.ParseFromString(buf)
            buf = b""
            yield record


def test_wandb_offline_runs_per_fold_and_a_summary(tracked):
    cfg, rd, metrics = tracked
    runs = {}
    for f in (Path(cfg.output_dir) / "wandb").glob("offline-run-*/run-*.wandb"):
        records = list(wandb_records(f))
        run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
        history = [{i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item} for r in records
                   if r.WhichOneof("record_type") == "history"]
        summary = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for r in records
                   if r.WhichOneof("record_type") == "summary" for i in r.summary.update}
        runs[run.display_name] = (run, history, summary)
    assert sorted(runs) == ["tiny-fold0", "tiny-fold1", "tiny-summary"]
    for k in range(2):
        run, history, _ = runs[f"tiny-fold{k}"]
        assert (run.project, run.run_group, run.job_type) == ("podium", "tiny", "fold")
        val = [h["val_accuracy"] for h in history if "val_accuracy" in h]
        assert val == pytest.approx(pd.read_csv(rd / f"fold{k}" / "metrics.csv")["val_accuracy"].tolist())
    _, _, summary = runs["tiny-summary"]
    assert summary["cv"] == metrics["cv"] and summary["oof_f1_macro"] == metrics["oof"]["f1_macro"]


def test_flat_params_and_score_metrics():
    cfg = load_config(None, ["train.lr=0.01", "model.name=resnet18"])
    params = flat_params(cfg)
    assert params["train.lr"] == "0.01" and params["model.name"] == "resnet18" and params["data.classes"] == "None"
    metrics = {"oof": {"accuracy": 0.9, "logloss": 0.3, "n": 10, "cv": 0.9}, "cv": 0.9, "cv_fold_std": 0.02,
               "folds": {"fold0": {"accuracy": 0.8, "logloss": 0.4, "n": 5, "cv": 0.8}}}
    assert score_metrics(metrics) == {"oof_accuracy": 0.9, "oof_logloss": 0.3, "cv": 0.9, "cv_fold_std": 0.02,
                                      "fold0_accuracy": 0.8, "fold0_logloss": 0.4}
